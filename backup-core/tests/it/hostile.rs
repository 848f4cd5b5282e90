//! Hostile repositories: manifests and directory listings crafted by someone
//! who can write to the storage (or who holds the key). Restore and `ls`
//! must refuse them with a clear error and write nothing outside the target
//! directory.
//!
//! Objects are crafted with the crate's public encoders, bypassing the
//! writer's own checks: an unencrypted repository is one that anybody with
//! write access to the storage can forge consistently.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::internals::envelope::{self, ObjectKind};
use backup_core::internals::index::{IndexFile, IndexedPack};
use backup_core::internals::pack::{self, BlobKind, PackBuilder};
use backup_core::{BackupStats, BackupStatus, Manifest, SourceInfo};
use backup_core::{Id, InitOptions, LocalSink, PutMode, Repository, RestoreOptions, Sink};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A scratch area: the repository, a restore target, and an "outside"
/// directory that must stay untouched.
struct Scene {
    _place: tempfile::TempDir,
    root: PathBuf,
    sink: Arc<dyn Sink>,
}

impl Scene {
    async fn new() -> Scene {
        let place = tempfile::tempdir().unwrap();
        let root = place.path().to_path_buf();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::fs::write(root.join("outside/precious"), b"must not change").unwrap();
        let sink: Arc<dyn Sink> = Arc::new(LocalSink::create(root.join("repo")).unwrap());
        Repository::init(sink.clone(), InitOptions::default())
            .await
            .unwrap();
        Scene {
            _place: place,
            root,
            sink,
        }
    }

    fn outside(&self) -> PathBuf {
        self.root.join("outside")
    }

    /// Every path under the scene except the repository and the target.
    fn snapshot_outside_target(&self, target: &Path) -> BTreeSet<(PathBuf, Vec<u8>)> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path == self.root.join("repo") || path.starts_with(target) {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let content = if meta.is_file() {
                    std::fs::read(&path).unwrap()
                } else {
                    Vec::new()
                };
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                out.insert((path, content));
            }
        }
        out
    }

    /// Stores blobs (kind, plaintext) in one new pack and indexes it.
    async fn store(&self, blobs: &[(BlobKind, Vec<u8>)]) -> Vec<Id> {
        let mut builder = PackBuilder::with_capacity(1 << 20);
        let mut ids = Vec::new();
        for (kind, plaintext) in blobs {
            let id = Id::digest(plaintext);
            let (stored, flags) = pack::encode_blob(&id, *kind, plaintext, None, 3);
            builder.add(id, *kind, flags, plaintext.len() as u32, &stored);
            ids.push(id);
        }
        let (pack_id, bytes, entries) = builder.finish(None);
        let size = bytes.len() as u64;
        // The same blobs make the same pack (no encryption, no nonce).
        match self
            .sink
            .put(&pack::pack_key(&pack_id), bytes.into(), PutMode::Create)
            .await
        {
            Ok(()) | Err(backup_core::Error::AlreadyExists { .. }) => {}
            Err(error) => panic!("{error}"),
        }
        let index = IndexFile {
            supersedes: vec![IndexFile::uniqueness_marker()],
            packs: vec![IndexedPack {
                id: pack_id,
                size,
                blobs: entries,
            }],
        };
        self.put_named("index/", ObjectKind::Index, &index.encode())
            .await;
        ids
    }

    async fn put_named(&self, prefix: &str, kind: ObjectKind, payload: &[u8]) -> Id {
        let object = envelope::seal(kind, payload, true, None);
        let id = Id(Sha256::digest(&object).into());
        self.sink
            .put(&format!("{prefix}{id}"), object.into(), PutMode::Create)
            .await
            .unwrap();
        id
    }

    /// Stores a directory listing given as raw JSON lines (no checks).
    async fn listing(&self, nodes: &[Value]) -> Vec<Id> {
        self.store(&[(BlobKind::Tree, lines(nodes))]).await
    }

    /// Writes a manifest whose root is `root`; returns the backup's id.
    async fn manifest(&self, root: Vec<Id>) -> Id {
        let now = chrono::Utc::now();
        let manifest = Manifest {
            version: 1,
            set: "default".into(),
            time: now,
            started: now,
            finished: now,
            writer: "forger".into(),
            hostname: "forger".into(),
            source: SourceInfo {
                kind: "directory".into(),
                paths: vec![],
            },
            tags: Default::default(),
            root,
            parent: None,
            facts: Default::default(),
            stats: BackupStats::default(),
            status: BackupStatus::Completed,
            errors: vec![],
        };
        self.put_named(
            "manifests/",
            ObjectKind::Manifest,
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .await
    }

    /// Restores the backup `id` into `target`, checking that nothing
    /// outside the target changed. Returns the outcome.
    async fn restore(
        &self,
        id: &Id,
        target: &Path,
    ) -> backup_core::Result<backup_core::RestoreSummary> {
        let before = self.snapshot_outside_target(target);
        let repo = Repository::open(self.sink.clone(), None).await.unwrap();
        let backup = repo.find_backup(&id.to_hex(), None).await.unwrap();
        let outcome = repo
            .restore(&backup, target, &RestoreOptions::default())
            .await;
        let after = self.snapshot_outside_target(target);
        assert_eq!(before, after, "something outside the target changed");
        assert_eq!(
            std::fs::read(self.outside().join("precious")).unwrap(),
            b"must not change"
        );
        outcome
    }
}

fn lines(nodes: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for node in nodes {
        out.extend_from_slice(serde_json::to_string(node).unwrap().as_bytes());
        out.push(b'\n');
    }
    out
}

fn file_node(name: &str, content: &[Id], size: u64) -> Value {
    json!({"name": name, "type": "file", "mode": 420, "mtime_ns": 0, "size": size,
           "content": content})
}

fn dir_node(name: &str, subtree: &[Id]) -> Value {
    json!({"name": name, "type": "dir", "mode": 493, "mtime_ns": 0, "subtree": subtree})
}

fn symlink_node(name: &str, target: &str) -> Value {
    json!({"name": name, "type": "symlink", "mode": 511, "mtime_ns": 0, "target": target})
}

/// Every file under `dir` (relative paths), symlinks included, not followed.
fn contents(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            out.insert(path.strip_prefix(dir).unwrap().display().to_string());
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// What the restore reported: its error, or the failures of a restore
/// that was not complete (each `path: message`).
fn message(outcome: &backup_core::Result<backup_core::RestoreSummary>) -> String {
    match outcome {
        Ok(summary) if summary.failures.is_empty() => {
            panic!("a hostile repository was restored without an error")
        }
        Ok(summary) => {
            assert_ne!(
                summary.status,
                backup_core::Status::Completed,
                "{summary:?}"
            );
            summary
                .failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        }
        Err(error) => error.to_string(),
    }
}

/// The hostile listings that a directory decoder must refuse, with the
/// words the error must contain.
fn refused_listings(outside: &Path, data: Id) -> Vec<(&'static str, Vec<Value>, &'static str)> {
    let outside = outside.display().to_string();
    let absolute = format!("{outside}/escaped");
    vec![
        ("dot-dot name", vec![file_node("..", &[data], 5)], "'..'"),
        (
            "dot-dot path",
            vec![file_node("../../outside/escaped", &[data], 5)],
            "may not contain '/'",
        ),
        (
            "absolute path",
            vec![file_node(&absolute, &[data], 5)],
            "may not contain '/'",
        ),
        ("dot name", vec![dir_node(".", &[])], "'.'"),
        ("empty name", vec![file_node("", &[data], 5)], "empty name"),
        (
            "NUL in a name",
            vec![file_node("a\u{0}b", &[data], 5)],
            "NUL",
        ),
        (
            "symlink then a directory of the same name",
            vec![symlink_node("link", &outside), dir_node("link", &[])],
            "duplicated or out of order",
        ),
        (
            "duplicate file",
            vec![
                file_node("twice", &[data], 5),
                file_node("twice", &[data], 5),
            ],
            "duplicated or out of order",
        ),
        (
            "unsorted entries",
            vec![file_node("b", &[data], 5), file_node("a", &[data], 5)],
            "duplicated or out of order",
        ),
        (
            "character device",
            vec![
                json!({"name": "tty", "type": "chardev", "mode": 438, "mtime_ns": 0,
                        "rdev": 1025}),
            ],
            "invalid entry",
        ),
        (
            "block device",
            vec![json!({"name": "sda", "type": "blockdev", "mode": 432, "mtime_ns": 0})],
            "invalid entry",
        ),
        (
            "FIFO",
            vec![json!({"name": "pipe", "type": "fifo", "mode": 420, "mtime_ns": 0})],
            "invalid entry",
        ),
        (
            "setuid bits beyond the mode mask",
            vec![json!({"name": "x", "type": "file", "mode": 0o100_4755, "mtime_ns": 0})],
            "do not fit its type",
        ),
        (
            "directory with content",
            vec![
                json!({"name": "d", "type": "dir", "mode": 493, "mtime_ns": 0,
                        "subtree": [], "content": [data]}),
            ],
            "do not fit its type",
        ),
        (
            "symlink with a size",
            vec![
                json!({"name": "l", "type": "symlink", "mode": 511, "mtime_ns": 0,
                        "target": "x", "size": 1u64 << 40}),
            ],
            "do not fit its type",
        ),
    ]
}

#[tokio::test]
async fn hostile_listings_are_refused_and_nothing_escapes() {
    let scene = Scene::new().await;
    let data = scene.store(&[(BlobKind::Data, b"evil\n".to_vec())]).await[0];
    let cases = refused_listings(&scene.outside(), data);
    let mut trials = 0;
    for (what, nodes, expected) in &cases {
        // The hostile listing at the root, and one level down.
        for nested in [false, true] {
            let listing = scene.listing(nodes).await;
            let root = if nested {
                scene.listing(&[dir_node("sub", &listing)]).await
            } else {
                listing
            };
            let id = scene.manifest(root).await;
            let target = scene.root.join(format!("target-{trials}"));
            let outcome = scene.restore(&id, &target).await;
            let text = message(&outcome);
            assert!(
                text.contains(expected),
                "{what} (nested: {nested}): error {text:?} does not say {expected:?}"
            );
            let restored = contents(&target);
            let allowed: BTreeSet<String> = if nested {
                ["sub".to_string()].into()
            } else {
                BTreeSet::new()
            };
            assert!(
                restored.is_subset(&allowed),
                "{what}: restore wrote {restored:?}"
            );
            // `ls` refuses the same listing.
            let repo = Repository::open(scene.sink.clone(), None).await.unwrap();
            let backup = repo.find_backup(&id.to_hex(), None).await.unwrap();
            let listed = repo.ls(&backup).await;
            assert!(listed.is_err(), "{what}: ls accepted the listing");
            trials += 1;
        }
    }
    println!(
        "hostile listings: {} kinds, {trials} trials, all refused, nothing written outside",
        cases.len()
    );
}

#[tokio::test]
async fn a_symlink_is_never_followed_by_a_later_restore() {
    let scene = Scene::new().await;
    let data = scene.store(&[(BlobKind::Data, b"evil\n".to_vec())]).await[0];
    let outside = scene.outside().display().to_string();
    // Backup A: `link` -> the outside directory (a legitimate symlink).
    let first = scene
        .manifest(scene.listing(&[symlink_node("link", &outside)]).await)
        .await;
    // Backup B: a directory `link` holding `precious`: restored over A's
    // result, a writer that followed symlinks would overwrite outside/precious.
    let inner = scene.listing(&[file_node("precious", &[data], 5)]).await;
    let second = scene
        .manifest(scene.listing(&[dir_node("link", &inner)]).await)
        .await;
    // Backup C: a relative escape through the link.
    let escape = scene.listing(&[symlink_node("up", "../../..")]).await;
    let third = scene
        .manifest(
            scene
                .listing(&[dir_node("dir", &escape), file_node("dir2", &[data], 5)])
                .await,
        )
        .await;

    let target = scene.root.join("target");
    let restored = scene.restore(&first, &target).await.unwrap();
    assert_eq!(
        restored.status,
        backup_core::Status::Completed,
        "{restored:?}"
    );
    assert_eq!(
        std::fs::read_link(target.join("link")).unwrap(),
        scene.outside()
    );
    let text = message(&scene.restore(&second, &target).await);
    assert!(text.contains("link"), "{text}");
    assert!(text.contains("symlink is never followed"), "{text}");
    // Symlinks are restored as links (as tar and restic do); nothing is
    // written through them.
    let restored = scene.restore(&third, &target).await.unwrap();
    assert_eq!(
        restored.status,
        backup_core::Status::Completed,
        "{restored:?}"
    );
    assert_eq!(
        std::fs::read_link(target.join("dir/up")).unwrap(),
        PathBuf::from("../../..")
    );
    println!("symlink traversal: 3 restores into one target, nothing written through a link");
}

#[tokio::test]
async fn a_directory_in_the_way_of_a_file_is_named_and_the_rest_restored() {
    let scene = Scene::new().await;
    let data = scene.store(&[(BlobKind::Data, b"data\n".to_vec())]).await[0];
    let backup = scene
        .manifest(
            scene
                .listing(&[
                    file_node("a", &[data], 5),
                    file_node("blocked", &[data], 5),
                    file_node("c", &[data], 5),
                ])
                .await,
        )
        .await;
    let target = scene.root.join("target");
    std::fs::create_dir_all(target.join("blocked/inner")).unwrap();
    std::fs::write(target.join("blocked/inner/kept"), b"kept").unwrap();
    // An older file in the way is replaced.
    std::fs::write(target.join("c"), b"older content").unwrap();
    let text = message(&scene.restore(&backup, &target).await);
    assert!(text.contains("blocked"), "{text}");
    assert!(text.contains("a directory is in the way"), "{text}");
    assert_eq!(std::fs::read(target.join("a")).unwrap(), b"data\n");
    assert_eq!(std::fs::read(target.join("c")).unwrap(), b"data\n");
    assert_eq!(
        std::fs::read(target.join("blocked/inner/kept")).unwrap(),
        b"kept"
    );
    // No temporary file is left behind.
    assert_eq!(contents(&target), contents_expected());
}

fn contents_expected() -> BTreeSet<String> {
    ["a", "blocked", "blocked/inner", "blocked/inner/kept", "c"]
        .into_iter()
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn huge_declared_sizes_are_refused_before_writing() {
    let scene = Scene::new().await;
    let data = scene.store(&[(BlobKind::Data, b"small\n".to_vec())]).await[0];
    let tree_plain = lines(&[file_node("x", &[data], 6)]);
    let tree_chunk = scene.store(&[(BlobKind::Tree, tree_plain.clone())]).await[0];
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "size far beyond the content",
            file_node("huge", &[data], u64::MAX),
            "recorded size",
        ),
        (
            "size below the content",
            file_node("short", &[data, data], 6),
            "recorded size",
        ),
        (
            "content that is not stored",
            file_node("missing", &[Id([7; 32])], 6),
            "not in any index",
        ),
        (
            "content that is a directory listing",
            file_node("confused", &[tree_chunk], tree_plain.len() as u64),
            "directory metadata, not file content",
        ),
    ];
    let mut trials = 0;
    for (what, node, expected) in &cases {
        let mut nodes = vec![node.clone(), file_node("fine", &[data], 6)];
        nodes.sort_by_key(|node| node["name"].as_str().unwrap().to_string());
        let root = scene.listing(&nodes).await;
        let id = scene.manifest(root).await;
        let target = scene.root.join(format!("target-{trials}"));
        let outcome = scene.restore(&id, &target).await;
        let text = message(&outcome);
        assert!(text.contains(expected), "{what}: {text}");
        let name = node["name"].as_str().unwrap();
        assert!(
            text.contains(name),
            "{what}: the error names the file: {text}"
        );
        // The damaged file is absent (no temporary file either); the other
        // file is restored.
        assert_eq!(
            contents(&target),
            BTreeSet::from(["fine".to_string()]),
            "{what}"
        );
        assert_eq!(std::fs::read(target.join("fine")).unwrap(), b"small\n");
        trials += 1;
    }
    println!("huge or inconsistent sizes: {trials} trials, refused before writing");
}

#[tokio::test]
async fn exponential_deep_and_cyclic_trees_are_refused_before_the_walk() {
    let scene = Scene::new().await;
    let data = scene.store(&[(BlobKind::Data, b"x".to_vec())]).await[0];

    // 64 levels, each directory holding two references to the same child:
    // 2^64 paths in a few kilobytes.
    let mut level = scene.listing(&[file_node("leaf", &[data], 1)]).await;
    for _ in 0..64 {
        level = scene
            .listing(&[dir_node("a", &level), dir_node("b", &level)])
            .await;
    }
    let bomb = scene.manifest(level).await;
    // Refused from the count of paths, before walking any of them (a walk
    // would never end).
    let text = message(&scene.restore(&bomb, &scene.root.join("t-bomb")).await);
    assert!(text.contains("expands to more than"), "{text}");
    assert!(contents(&scene.root.join("t-bomb")).is_empty());
    let repo = Repository::open(scene.sink.clone(), None).await.unwrap();
    let backup = repo.find_backup(&bomb.to_hex(), None).await.unwrap();
    assert!(repo.ls(&backup).await.is_err());

    // 3000 nested directories.
    let mut deep = scene.listing(&[file_node("leaf", &[data], 1)]).await;
    for _ in 0..3000 {
        deep = scene.listing(&[dir_node("d", &deep)]).await;
    }
    let deep = scene.manifest(deep).await;
    let text = message(&scene.restore(&deep, &scene.root.join("t-deep")).await);
    assert!(text.contains("deeper than"), "{text}");
    assert!(contents(&scene.root.join("t-deep")).is_empty());

    // A cycle: a directory whose listing is its own parent's. Content
    // addressing makes a true cycle impossible to store (a listing would
    // have to contain its own hash), so the forger points the child at a
    // chunk id and stores different bytes under that id; the chunk check
    // refuses it.
    let parent_plain = lines(&[dir_node("loop", &[Id([9; 32])])]);
    let parent_id = Id::digest(&parent_plain);
    let forged = lines(&[dir_node("loop", &[parent_id])]);
    let mut builder = PackBuilder::with_capacity(4096);
    let (stored, flags) = pack::encode_blob(&parent_id, BlobKind::Tree, &forged, None, 0);
    builder.add(
        parent_id,
        BlobKind::Tree,
        flags,
        forged.len() as u32,
        &stored,
    );
    let (pack_id, bytes, entries) = builder.finish(None);
    let size = bytes.len() as u64;
    scene
        .sink
        .put(&pack::pack_key(&pack_id), bytes.into(), PutMode::Create)
        .await
        .unwrap();
    let index = IndexFile {
        supersedes: vec![IndexFile::uniqueness_marker()],
        packs: vec![IndexedPack {
            id: pack_id,
            size,
            blobs: entries,
        }],
    };
    scene
        .put_named("index/", ObjectKind::Index, &index.encode())
        .await;
    let cycle = scene.manifest(vec![parent_id]).await;
    let text = message(&scene.restore(&cycle, &scene.root.join("t-cycle")).await);
    assert!(text.contains("hash mismatch"), "{text}");
    assert!(contents(&scene.root.join("t-cycle")).is_empty());
    println!("tree bombs: 2^64-path tree, 3000-deep tree and a forged cycle refused");
}

/// The scene itself is sound: a well-formed crafted backup restores, so the
/// refusals above are about the hostile parts only.
#[tokio::test]
async fn a_well_formed_crafted_backup_restores() {
    let scene = Scene::new().await;
    let data = scene.store(&[(BlobKind::Data, b"hello\n".to_vec())]).await[0];
    let inner = scene.listing(&[file_node("f", &[data], 6)]).await;
    let root = scene
        .listing(&[
            dir_node("d", &inner),
            file_node("g", &[data, data], 12),
            symlink_node("s", "d/f"),
        ])
        .await;
    let id = scene.manifest(root).await;
    let target = scene.root.join("target");
    let restored = scene.restore(&id, &target).await.unwrap();
    assert_eq!(
        restored.status,
        backup_core::Status::Completed,
        "{restored:?}"
    );
    assert_eq!(std::fs::read(target.join("d/f")).unwrap(), b"hello\n");
    assert_eq!(std::fs::read(target.join("g")).unwrap(), b"hello\nhello\n");
    assert_eq!(std::fs::read(target.join("s")).unwrap(), b"hello\n");
}
