//! `Repository::copy_to`: backups copied into a repository with another
//! password (so other chunk ids and chunk boundaries), restored from there
//! byte for byte; a backup already copied is skipped and stores nothing;
//! files already in the destination are not stored again; backups of every
//! kind keep every node; partially failed backups are not copied.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::{
    Backup, BackupOptions, BackupStatus, CopyOptions, DirectorySnapshotter, Entry, Error,
    InitOptions, KdfParams, LocalSink, Repository, RestoreOptions, Snapshot, Snapshotter,
    SourceInfo, COPIED_FROM_FACT,
};
use backup_testkit::repo::{pack_bytes, packs, repo_objects, verify_data};
use backup_testkit::rng::random_bytes;
use backup_testkit::tree::{assert_same_tree, generate_tree, TreeSpec};
use chrono::{TimeZone, Utc};

/// A new encrypted repository in `place`.
async fn encrypted_repo(place: &Path, password: &str) -> Repository {
    let sink = Arc::new(LocalSink::create(place).unwrap());
    let options = InitOptions::default()
        .with_password(password)
        .with_kdf(KdfParams::insecure_for_tests());
    Repository::init(sink, options).await.unwrap()
}

/// Two new encrypted repositories under `place`, `from` and `to`, each with
/// its own password.
async fn two_repos(place: &Path) -> (Repository, Repository) {
    (
        encrypted_repo(&place.join("from"), "one password").await,
        encrypted_repo(&place.join("to"), "another password").await,
    )
}

/// A directory `place/dir` holding one file, `name`.
fn dir_with_file(place: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let dir = place.join("dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), content).unwrap();
    dir
}

/// The object keys of a local repository.
fn keys(repo: &Path) -> Vec<String> {
    repo_objects(repo).into_iter().map(|(key, _)| key).collect()
}

/// Restores `backup` of `repo` under `target`.
async fn restore(repo: &Repository, backup: &Backup, target: &Path) {
    let summary = repo
        .restore(backup, target, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(summary.failures.is_empty(), "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backups_copied_under_another_password_restore_byte_for_byte_and_copy_once() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    let tree = generate_tree(&source, &TreeSpec::new(41, 120).with_big_file(3 << 20));
    let from = encrypted_repo(&place.path().join("from"), "the source's password").await;
    let options = BackupOptions::default()
        .with_set("docs")
        .with_tag("owner", "ops")
        .with_time(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let snapshotter = DirectorySnapshotter::new(vec![source.clone()]);
    let first = from.backup(&snapshotter, options.clone()).await.unwrap();
    // The second backup: one file rewritten, one added.
    let rewritten = random_bytes(7, 200_000);
    let added = random_bytes(8, 50_000);
    std::fs::write(source.join(&tree.file_paths[3]), &rewritten).unwrap();
    std::fs::write(source.join("added.bin"), &added).unwrap();
    let second = from
        .backup(
            &snapshotter,
            options.with_time(Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap()),
        )
        .await
        .unwrap();

    let to_path = place.path().join("to");
    let to = encrypted_repo(&to_path, "the destination's password").await;
    let report = from.copy_to(&to, CopyOptions::default()).await.unwrap();
    println!(
        "first copy: {} copied, {} bytes read, {} bytes uploaded",
        report.copied.len(),
        report.bytes_read,
        report.bytes_uploaded
    );
    let sources: Vec<_> = report.copied.iter().map(|copy| copy.source).collect();
    assert_eq!(sources, [first.id, second.id], "{report:?}");
    assert!(report.skipped.is_empty() && report.not_completed.is_empty());
    assert_eq!(report.bytes_uploaded, pack_bytes(&to_path), "{report:?}");
    assert!(report.bytes_uploaded > 3 << 20, "{report:?}");

    // Each copy records what its original does, and where it comes from.
    for (copy, original) in report.copied.iter().zip([&first, &second]) {
        let copied = to.load_backup(&copy.destination).await.unwrap().manifest;
        let original = &original.manifest;
        assert_eq!(
            copied.facts.get(COPIED_FROM_FACT),
            Some(&copy.source.to_hex().into())
        );
        let mut facts = copied.facts.clone();
        facts.remove(COPIED_FROM_FACT);
        assert_eq!(facts, original.facts);
        assert_eq!(
            (&copied.set, copied.time, &copied.tags),
            (&original.set, original.time, &original.tags)
        );
        assert_eq!(
            (&copied.source, &copied.writer, copied.status),
            (&original.source, &original.writer, BackupStatus::Completed)
        );
        assert_eq!(
            (
                copied.stats.files,
                copied.stats.dirs,
                copied.stats.bytes_total
            ),
            (
                original.stats.files,
                original.stats.dirs,
                original.stats.bytes_total
            )
        );
        assert_ne!(
            copied.root, original.root,
            "chunk ids are the destination's own"
        );
    }
    // The second copy took the files the first one holds from it, unread:
    // only the two changed files were read again.
    let second_copy = to
        .load_backup(&report.copied[1].destination)
        .await
        .unwrap()
        .manifest;
    assert_eq!(second_copy.parent, Some(report.copied[0].destination));
    assert_eq!(
        second_copy.stats.bytes_read,
        (rewritten.len() + added.len()) as u64
    );
    assert_eq!(
        report.bytes_read,
        first.manifest.stats.bytes_total + second_copy.stats.bytes_read
    );

    // Both restore from the destination as they do from the source.
    let restored = place.path().join("restored");
    let first_copy = to.load_backup(&report.copied[0].destination).await.unwrap();
    restore(&to, &first_copy, &restored.join("first-copy")).await;
    let first_backup = from.load_backup(&first.id).await.unwrap();
    restore(&from, &first_backup, &restored.join("first")).await;
    assert_same_tree(
        &restored.join("first/data"),
        &restored.join("first-copy/data"),
    );
    let latest = to.find_backup("latest", Some("docs")).await.unwrap();
    assert_eq!(latest.id, report.copied[1].destination);
    restore(&to, &latest, &restored.join("second-copy")).await;
    assert_same_tree(&source, &restored.join("second-copy/data"));
    let verified = verify_data(&to).await;
    assert!(verified.is_ok(), "{verified:?}");

    // Copying again stores nothing at all.
    let packs_before = packs(&to_path);
    let objects_before = keys(&to_path);
    let again = from.copy_to(&to, CopyOptions::default()).await.unwrap();
    println!(
        "second copy: {} copied, {} skipped, {} bytes read, {} bytes uploaded",
        again.copied.len(),
        again.skipped.len(),
        again.bytes_read,
        again.bytes_uploaded
    );
    assert!(again.copied.is_empty(), "{again:?}");
    assert_eq!(again.skipped, report.copied);
    assert_eq!((again.bytes_read, again.bytes_uploaded), (0, 0));
    assert_eq!(packs(&to_path), packs_before);
    assert_eq!(keys(&to_path), objects_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_stores_no_chunk_the_destination_already_holds() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    let tree = generate_tree(&source, &TreeSpec::new(42, 60).with_big_file(4 << 20));
    let snapshotter = DirectorySnapshotter::new(vec![source.clone()]);
    let (from, to) = two_repos(place.path()).await;
    from.backup(&snapshotter, BackupOptions::default())
        .await
        .unwrap();
    // The same files backed up into the destination directly.
    to.backup(&snapshotter, BackupOptions::default())
        .await
        .unwrap();

    let report = from.copy_to(&to, CopyOptions::default()).await.unwrap();
    println!(
        "copy onto the same files: {} bytes read, {} bytes uploaded",
        report.bytes_read, report.bytes_uploaded
    );
    assert_eq!(report.copied.len(), 1, "{report:?}");
    assert_eq!(report.bytes_read, tree.bytes);
    let copy = to.load_backup(&report.copied[0].destination).await.unwrap();
    // Cut by the destination's chunker and named under its key, every
    // chunk was one the destination had.
    assert_eq!(copy.manifest.stats.chunks_added, 0, "{report:?}");
    assert!(report.bytes_uploaded * 100 < tree.bytes, "{report:?}");
}

/// A backup of two entries that are not paths: a stream and a tar stream.
struct Streams {
    stream: Vec<u8>,
    tar: Vec<u8>,
}

#[async_trait]
impl Snapshotter for Streams {
    fn kind(&self) -> &str {
        "streams"
    }

    async fn snapshot(&self) -> backup_core::Result<Snapshot> {
        let mut snapshot = Snapshot::new(
            vec![
                Entry::Stream {
                    name: "dump.sql".into(),
                    reader: Box::new(Cursor::new(self.stream.clone())),
                    mode: 0o600,
                },
                Entry::Tar {
                    name: "tree".into(),
                    reader: Box::new(Cursor::new(self.tar.clone())),
                    capture: None,
                },
            ],
            SourceInfo {
                kind: "streams".into(),
                paths: vec!["pg_dump".into()],
            },
        );
        snapshot.facts = BTreeMap::from([("lsn".to_string(), "0/3000060".into())]);
        Ok(snapshot)
    }
}

/// A tar stream of a directory, a file, an empty file and a symlink.
fn tar_stream() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o640);
        header.set_mtime(1_700_000_000);
        header.set_size(data.len() as u64);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        builder.append_data(&mut header, path, data).unwrap();
    };
    add("dir/", tar::EntryType::Directory, b"", None);
    add(
        "dir/big.bin",
        tar::EntryType::Regular,
        &random_bytes(9, 3 << 20),
        None,
    );
    add("dir/empty", tar::EntryType::Regular, b"", None);
    add("dir/link", tar::EntryType::Symlink, b"", Some("big.bin"));
    builder.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_tar_trees_symlinks_and_empty_directories_are_copied_node_for_node() {
    let place = tempfile::tempdir().unwrap();
    let (from, to) = two_repos(place.path()).await;
    let streams = Streams {
        stream: random_bytes(10, 1 << 20),
        tar: tar_stream(),
    };
    let stored = from
        .backup(&streams, BackupOptions::default().with_set("db"))
        .await
        .unwrap();
    let dir = dir_with_file(place.path(), "small", b"small");
    std::fs::create_dir_all(dir.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("../elsewhere", dir.join("dangling")).unwrap();
    from.backup(
        &DirectorySnapshotter::new(vec![dir]),
        BackupOptions::default().with_set("files"),
    )
    .await
    .unwrap();

    let report = from.copy_to(&to, CopyOptions::default()).await.unwrap();
    assert_eq!(report.copied.len(), 2, "{report:?}");
    for copy in &report.copied {
        let original = from.load_backup(&copy.source).await.unwrap();
        let copied = to.load_backup(&copy.destination).await.unwrap();
        assert_eq!(copied.manifest.source, original.manifest.source);
        // Every node as it was: names, types, sizes, modes, times, targets.
        let listed = from.ls(&original).await.unwrap();
        assert_eq!(to.ls(&copied).await.unwrap(), listed);
        for entry in listed.iter().filter(|entry| entry.size > 0) {
            let mut here = Vec::new();
            let mut there = Vec::new();
            let reader = from.open_file(&original, &entry.path).await.unwrap();
            reader.copy_to(&mut here).await.unwrap();
            let reader = to.open_file(&copied, &entry.path).await.unwrap();
            reader.copy_to(&mut there).await.unwrap();
            assert!(here == there, "{} differs in the copy", entry.path);
        }
    }
    let copied = to.find_backup("latest", Some("db")).await.unwrap();
    assert_eq!(copied.manifest.facts["lsn"], "0/3000060");
    assert_eq!(
        copied.manifest.facts[COPIED_FROM_FACT],
        stored.id.to_hex().as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_completed_backups_are_copied() {
    let place = tempfile::tempdir().unwrap();
    let (from, to) = two_repos(place.path()).await;
    let dir = dir_with_file(place.path(), "kept", b"kept");
    let snapshotter = DirectorySnapshotter::new(vec![dir.clone()]);
    let completed = from
        .backup(&snapshotter, BackupOptions::default())
        .await
        .unwrap();
    // A name that is not UTF-8 cannot be stored: the backup partially fails.
    let unnamed = std::ffi::OsStr::from_bytes(b"not-utf8-\xff");
    std::fs::write(dir.join(unnamed), b"lost").unwrap();
    let partial = from
        .backup(&snapshotter, BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(partial.manifest.status, BackupStatus::PartiallyFailed);

    let report = from.copy_to(&to, CopyOptions::default()).await.unwrap();
    let sources: Vec<_> = report.copied.iter().map(|copy| copy.source).collect();
    assert_eq!(sources, [completed.id]);
    assert_eq!(report.not_completed, [partial.id]);
    assert_eq!(to.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn selected_backups_only_and_never_into_the_same_repository() {
    let place = tempfile::tempdir().unwrap();
    let (from, to) = two_repos(place.path()).await;
    let dir = dir_with_file(place.path(), "file", b"content");
    let snapshotter = DirectorySnapshotter::new(vec![dir]);
    let mut ids = Vec::new();
    for set in ["a", "b", "a"] {
        let options = BackupOptions::default().with_set(set);
        ids.push(from.backup(&snapshotter, options).await.unwrap().id);
    }
    let report = from
        .copy_to(&to, CopyOptions::default().with_set("a"))
        .await
        .unwrap();
    let sources: Vec<_> = report.copied.iter().map(|copy| copy.source).collect();
    assert_eq!(sources, [ids[0], ids[2]]);
    let report = from
        .copy_to(
            &to,
            CopyOptions::default().with_backups([ids[1].short(), ids[2].to_hex()]),
        )
        .await
        .unwrap();
    let sources: Vec<_> = report.copied.iter().map(|copy| copy.source).collect();
    assert_eq!(sources, [ids[1]]);
    assert_eq!(report.skipped.len(), 1);

    let itself = from.copy_to(&from, CopyOptions::default()).await;
    assert!(
        matches!(itself, Err(Error::InvalidArgument(_))),
        "{itself:?}"
    );
}
