//! The corruption campaign: one flipped byte, a truncation and a swapped
//! object, for every object type (config, key file, index, manifest, data
//! pack, tree pack; inside a blob, in a pack's header and in its trailer),
//! in an unencrypted and an encrypted repository.
//!
//! After each damage, on a fresh copy of the repository:
//! - `verify --read-data` names the damaged object (or opening the
//!   repository fails with an error naming it);
//! - restoring each backup writes only correct files: every file it writes
//!   is byte for byte the original, every file it does not write is named
//!   in the error (itself or a directory above it), and no temporary file
//!   is left;
//! - what is undamaged is restored, and restoring only undamaged files
//!   succeeds.

use backup_testkit::repo::verify_data;
use backup_testkit::rng::{random_bytes, text_bytes};
use backup_testkit::tree::{copy_tree, read_tree};
use backup_testkit::TestRng;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::internals::pack::BlobKind;
use backup_core::{
    BackupOptions, DirectorySnapshotter, Id, InitOptions, KdfParams, LocalSink, Repository,
    RestoreOptions, Sink,
};

const PASSWORD: &[u8] = b"corruption campaign";

/// Version 1 of the source: three directories, text, logs and binaries
/// (several chunks each), about 14 MiB.
fn write_source(root: &Path, version: u64) {
    for dir in ["docs", "logs", "bin"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for i in 0..24u64 {
        std::fs::write(
            root.join(format!("docs/note-{i:02}.txt")),
            text_bytes(i + 10, 200 + (i as usize) * 900),
        )
        .unwrap();
    }
    for i in 0..4u64 {
        std::fs::write(
            root.join(format!("logs/app-{i}.log")),
            text_bytes(i + 100, 300_000 + (i as usize) * 50_000),
        )
        .unwrap();
    }
    for i in 0..4u64 {
        let seed = if version > 1 && i == 3 { 999 } else { i + 1000 };
        std::fs::write(
            root.join(format!("bin/blob-{i}.bin")),
            random_bytes(seed, 1_500_000 + (i as usize) * 700_000),
        )
        .unwrap();
    }
    if version > 1 {
        std::fs::write(root.join("docs/added.txt"), text_bytes(77, 5000)).unwrap();
        std::fs::write(root.join("docs/note-03.txt"), text_bytes(78, 1234)).unwrap();
    }
    let _ = std::fs::remove_file(root.join("docs/link"));
    std::os::unix::fs::symlink("note-00.txt", root.join("docs/link")).unwrap();
}

/// Relative path -> content (files), or the link target (symlinks).
struct Fixture {
    _place: tempfile::TempDir,
    place: PathBuf,
    pristine: PathBuf,
    /// (backup id, the source tree it holds)
    backups: Vec<(Id, BTreeMap<String, Vec<u8>>)>,
    encrypted: bool,
}

async fn fixture(encrypted: bool) -> Fixture {
    let place = tempfile::tempdir().unwrap();
    let root = place.path().to_path_buf();
    let pristine = root.join("pristine");
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::create(&pristine).unwrap());
    Repository::init(sink.clone(), {
        let mut options = InitOptions::default();
        options.password = encrypted.then(|| PASSWORD.to_vec());
        options.kdf = KdfParams::insecure_for_tests();
        options
    })
    .await
    .unwrap();
    let repo = Repository::open(sink, encrypted.then_some(PASSWORD))
        .await
        .unwrap();
    let source = root.join("source");
    let mut backups = Vec::new();
    for version in 1..=2 {
        write_source(&source, version);
        let summary = repo
            .backup(
                &DirectorySnapshotter::new(vec![source.clone()]),
                BackupOptions::default(),
            )
            .await
            .unwrap();
        backups.push((summary.id, read_tree(&source)));
    }
    Fixture {
        _place: place,
        place: root,
        pristine,
        backups,
        encrypted,
    }
}

/// One way to damage one object.
#[derive(Debug, Clone)]
enum Damage {
    Flip { key: String, at: u64 },
    Truncate { key: String, to: u64 },
    Swap { key: String, other: String },
}

impl Damage {
    fn keys(&self) -> Vec<&str> {
        match self {
            Damage::Flip { key, .. } | Damage::Truncate { key, .. } => vec![key],
            Damage::Swap { key, other } => vec![key, other],
        }
    }

    fn apply(&self, repo: &Path) {
        match self {
            Damage::Flip { key, at } => {
                let path = repo.join(key);
                let mut bytes = std::fs::read(&path).unwrap();
                let at = (*at as usize).min(bytes.len() - 1);
                bytes[at] ^= 0x20;
                std::fs::write(&path, bytes).unwrap();
            }
            Damage::Truncate { key, to } => {
                let path = repo.join(key);
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..(*to as usize).min(bytes.len() - 1)]).unwrap();
            }
            Damage::Swap { key, other } => {
                let (a, b) = (repo.join(key), repo.join(other));
                let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
                std::fs::write(&a, bytes_b).unwrap();
                std::fs::write(&b, bytes_a).unwrap();
            }
        }
    }
}

fn keys_under(repo: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![repo.join(prefix)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(repo).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn size_of(repo: &Path, key: &str) -> u64 {
    std::fs::metadata(repo.join(key)).unwrap().len()
}

/// The damages of the campaign, with what each should break.
async fn damages(fixture: &Fixture, rng: &mut TestRng) -> Vec<(String, Damage)> {
    let repo_dir = &fixture.pristine;
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::create(repo_dir).unwrap());
    let repo = Repository::open(sink, fixture.encrypted.then_some(PASSWORD))
        .await
        .unwrap();
    let mut out: Vec<(String, Damage)> = Vec::new();
    let mut three = |label: &str, key: &str, other: &str, rng: &mut TestRng| {
        let size = size_of(repo_dir, key);
        out.push((
            format!("{label}: flipped byte"),
            Damage::Flip {
                key: key.into(),
                at: rng.below(size),
            },
        ));
        out.push((
            format!("{label}: truncated"),
            Damage::Truncate {
                key: key.into(),
                to: rng.below(size),
            },
        ));
        out.push((
            format!("{label}: swapped with another object"),
            Damage::Swap {
                key: key.into(),
                other: other.into(),
            },
        ));
    };
    let indexes = keys_under(repo_dir, "index");
    let manifests = keys_under(repo_dir, "manifests");
    three("config", "config", &manifests[0], rng);
    if fixture.encrypted {
        let keys = keys_under(repo_dir, "keys");
        three("key file", &keys[0], &indexes[0], rng);
    }
    three("index", &indexes[0], &indexes[1], rng);
    three("manifest", &manifests[0], &manifests[1], rng);

    // Packs: classify them by the blobs their headers list.
    let mut data_packs = Vec::new();
    let mut tree_packs = Vec::new();
    for (id, size) in repo.packs().await.unwrap() {
        let blobs = repo.pack_blobs(&id).await.unwrap();
        let key = format!("data/{}/{}", &id.to_hex()[..2], id.to_hex());
        if blobs.iter().all(|blob| blob.kind == BlobKind::Tree) {
            tree_packs.push((key, size, blobs));
        } else {
            data_packs.push((key, size, blobs));
        }
    }
    assert!(data_packs.len() >= 2 && !tree_packs.is_empty());
    for (label, packs) in [("data pack", &data_packs), ("tree pack", &tree_packs)] {
        for (key, size, blobs) in packs.iter() {
            // Inside two blobs, in the header, in the trailer.
            for _ in 0..2 {
                let blob = &blobs[rng.below(blobs.len() as u64) as usize];
                let at = u64::from(blob.offset) + rng.below(u64::from(blob.stored_length));
                out.push((
                    format!("{label}: byte flipped inside a blob"),
                    Damage::Flip {
                        key: key.clone(),
                        at,
                    },
                ));
            }
            let header_start = blobs
                .iter()
                .map(|b| u64::from(b.offset) + u64::from(b.stored_length))
                .max()
                .unwrap();
            out.push((
                format!("{label}: byte flipped in the header"),
                Damage::Flip {
                    key: key.clone(),
                    at: header_start + rng.below(size - 8 - header_start),
                },
            ));
            out.push((
                format!("{label}: byte flipped in the trailer"),
                Damage::Flip {
                    key: key.clone(),
                    at: size - 1 - rng.below(8),
                },
            ));
            out.push((
                format!("{label}: truncated"),
                Damage::Truncate {
                    key: key.clone(),
                    to: rng.below(*size),
                },
            ));
        }
    }
    out.push((
        "data pack: swapped with another data pack".into(),
        Damage::Swap {
            key: data_packs[0].0.clone(),
            other: data_packs[1].0.clone(),
        },
    ));
    out.push((
        "data pack: swapped with a tree pack".into(),
        Damage::Swap {
            key: data_packs[0].0.clone(),
            other: tree_packs[0].0.clone(),
        },
    ));
    out
}

/// Checks one restore: what was written is exactly the original, what was
/// not is named in the error. Returns (files restored, files refused).
fn check_restore(
    what: &str,
    outcome: &backup_core::Result<backup_core::RestoreSummary>,
    expected: &BTreeMap<String, Vec<u8>>,
    target: &Path,
) -> (usize, usize) {
    let failures: Vec<String> = match outcome {
        Ok(summary) => {
            assert_eq!(
                summary.status == backup_core::Status::Completed,
                summary.failures.is_empty(),
                "{what}: {summary:?}"
            );
            summary
                .failures
                .iter()
                .map(|failure| failure.path.clone())
                .collect()
        }
        Err(other) => panic!("{what}: restore failed without a partial result: {other}"),
    };
    let restored = read_tree(&target.join("source"));
    for (path, content) in &restored {
        let original = expected.get(path).unwrap_or_else(|| {
            panic!("{what}: restore wrote {path:?}, which is not in the backup")
        });
        assert!(
            original == content,
            "{what}: restore wrote wrong bytes to {path:?}"
        );
    }
    let mut refused = 0;
    for path in expected.keys() {
        if restored.contains_key(path) {
            continue;
        }
        refused += 1;
        let full = format!("source/{path}");
        let named = failures.iter().any(|failure| {
            failure == "/" || full == *failure || full.starts_with(&format!("{failure}/"))
        });
        assert!(
            named,
            "{what}: {path:?} was not restored and not named in {failures:?}"
        );
    }
    (restored.len(), refused)
}

async fn campaign(encrypted: bool) -> usize {
    let fixture = fixture(encrypted).await;
    let mut rng = TestRng::new(if encrypted { 0xC0FFEE } else { 0xBADC0DE });
    let damages = damages(&fixture, &mut rng).await;
    let mode = if encrypted { "encrypted" } else { "plain" };
    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (trial, (label, damage)) in damages.iter().enumerate() {
        let what = format!("{mode} #{trial} {label} {damage:?}");
        let repo_dir = fixture.place.join(format!("trial-{trial}"));
        copy_tree(&fixture.pristine, &repo_dir);
        damage.apply(&repo_dir);
        let sink: Arc<dyn Sink> = Arc::new(LocalSink::create(&repo_dir).unwrap());
        let password = fixture.encrypted.then_some(PASSWORD);
        let repo = match Repository::open(sink, password).await {
            Ok(repo) => repo,
            Err(error) => {
                // Only the config and key files stop a repository from
                // opening, and the error says which.
                let text = error.to_string();
                assert!(
                    damage.keys().iter().any(|key| {
                        (key.starts_with("config") || key.starts_with("keys/"))
                            && (text.contains(key) || text.contains("wrong password"))
                    }),
                    "{what}: open failed with {text:?}"
                );
                std::fs::remove_dir_all(&repo_dir).unwrap();
                tally.entry(label.clone()).or_default().0 += 1;
                continue;
            }
        };
        let report = verify_data(&repo).await;
        let named: BTreeSet<&str> = report.errors.iter().map(|p| p.object.as_str()).collect();
        assert!(
            damage.keys().iter().any(|key| named.contains(key)),
            "{what}: verify did not name the damaged object; it named {named:?}"
        );
        let mut refused_total = 0;
        for (index, (id, expected)) in fixture.backups.iter().enumerate() {
            let target = fixture.place.join(format!("restore-{trial}-{index}"));
            let backup = match repo.load_backup(id).await {
                Ok(backup) => backup,
                Err(error) => {
                    let text = error.to_string();
                    assert!(
                        damage
                            .keys()
                            .iter()
                            .any(|key| key.starts_with("manifests/") && text.contains(key)),
                        "{what}: loading backup {id} failed with {text:?}"
                    );
                    continue;
                }
            };
            let outcome = repo
                .restore(&backup, &target, &RestoreOptions::default())
                .await;
            let (restored, refused) = check_restore(&what, &outcome, expected, &target);
            if restored == 0 {
                // Only the loss of the top directory's own listing costs
                // everything, and the error says so.
                let text = match &outcome {
                    Ok(summary) => {
                        assert_ne!(summary.status, backup_core::Status::Completed, "{what}");
                        summary
                            .failures
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    }
                    Err(error) => error.to_string(),
                };
                assert!(
                    text.contains("/: directory listing unreadable")
                        || text.contains("source: directory listing unreadable"),
                    "{what}: nothing restored: {text}"
                );
            }
            refused_total += refused;
            if refused > 0 && restored > 0 {
                // Asked for the undamaged files only, restore succeeds.
                let good: Vec<String> = read_tree(&target.join("source"))
                    .keys()
                    .filter(|path| !path.ends_with("link"))
                    .map(|path| format!("source/{path}"))
                    .collect();
                if good.is_empty() {
                    continue;
                }
                let again = fixture.place.join(format!("again-{trial}-{index}"));
                let summary = repo
                    .restore(
                        &backup,
                        &again,
                        &RestoreOptions::default().with_include(good.clone()),
                    )
                    .await
                    .unwrap_or_else(|error| panic!("{what}: undamaged files: {error}"));
                assert_eq!(summary.files as usize, good.len(), "{what}");
                std::fs::remove_dir_all(&again).unwrap();
            }
            std::fs::remove_dir_all(&target).ok();
        }
        // Every blob is used by some backup: damage inside one costs the
        // files that use it (a tree blob: the files below its directory).
        // Damage to a pack's header or trailer, or to an index, costs
        // nothing: blobs are read by their indexed ranges, and a damaged
        // index's packs are read from their headers.
        if label.contains("inside a blob") {
            assert!(refused_total > 0, "{what}: no file refused");
        }
        if label.contains("header") || label.contains("trailer") || label.starts_with("index") {
            assert_eq!(refused_total, 0, "{what}: files refused");
        }
        let entry = tally.entry(label.clone()).or_default();
        entry.0 += 1;
        entry.1 += refused_total;
        std::fs::remove_dir_all(&repo_dir).unwrap();
    }
    println!("corruption campaign ({mode}): {} trials", damages.len());
    for (label, (trials, refused)) in &tally {
        println!("  {label:55} {trials:2} trials, {refused:3} files refused (named)");
    }
    damages.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_campaign_unencrypted() {
    assert!(campaign(false).await >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_campaign_encrypted() {
    assert!(campaign(true).await >= 20);
}
