//! Looking inside backups: `Repository::diff` (what changed between two
//! backups, and that equal directories are not read), `Repository::find`
//! (glob patterns across backups) and `Repository::stats` (restore size,
//! distinct chunks and what deduplication saves).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backup_core::{
    Backup, BackupOptions, DirectorySnapshotter, FindOptions, InitOptions, MemorySink, NodeKind,
    Repository, Sink, SinkExt, StatsMode,
};
use backup_testkit::rng::random_bytes;
use backup_testkit::tree::{generate_tree, TreeSpec};

/// A new unencrypted repository on `sink`.
async fn repository(sink: Arc<dyn Sink>) -> Repository {
    Repository::init(sink, InitOptions::default())
        .await
        .unwrap()
}

/// Backs `source` up and returns the backup.
async fn back_up(repo: &Repository, source: &Path) -> Backup {
    let summary = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.to_path_buf()]),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    repo.load_backup(&summary.id).await.unwrap()
}

/// Sets a path's modification time to `seconds` after the epoch.
fn set_mtime(path: &Path, seconds: u64) {
    fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
        .unwrap();
}

/// The diff as `restic diff` lines: change letter and path.
fn lines(report: &backup_core::DiffReport) -> Vec<String> {
    report
        .entries
        .iter()
        .map(|entry| format!("{} {}", entry.change.symbol(), entry.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_lists_added_removed_changed_chmod_and_type_changes_with_their_bytes() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    fs::create_dir_all(source.join("same")).unwrap();
    let old_change = random_bytes(1, 3000);
    let removed = random_bytes(2, 4000);
    let old_kind = random_bytes(3, 500);
    fs::write(source.join("same/inner.txt"), random_bytes(4, 700)).unwrap();
    fs::write(source.join("keep.txt"), random_bytes(5, 800)).unwrap();
    fs::write(source.join("change.txt"), &old_change).unwrap();
    fs::write(source.join("chmod.txt"), random_bytes(6, 900)).unwrap();
    fs::write(source.join("remove.txt"), &removed).unwrap();
    fs::write(source.join("kind"), &old_kind).unwrap();
    fs::set_permissions(source.join("chmod.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    set_mtime(&source, 1_000_000);
    let repo = repository(Arc::new(MemorySink::new())).await;
    let before = back_up(&repo, &source).await;

    let added = random_bytes(7, 1500);
    let new_change = random_bytes(8, 3300);
    let below_kind = random_bytes(9, 600);
    fs::write(source.join("new.txt"), &added).unwrap();
    fs::remove_file(source.join("remove.txt")).unwrap();
    let mtime = fs::metadata(source.join("change.txt"))
        .unwrap()
        .modified()
        .unwrap();
    fs::write(source.join("change.txt"), &new_change).unwrap();
    // The content alone tells the change: the modification time is kept.
    fs::File::open(source.join("change.txt"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::set_permissions(source.join("chmod.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(source.join("kind")).unwrap();
    fs::create_dir(source.join("kind")).unwrap();
    fs::write(source.join("kind/below.txt"), &below_kind).unwrap();
    set_mtime(&source, 2_000_000);
    let after = back_up(&repo, &source).await;

    let report = repo.diff(&before, &after).await.unwrap();
    assert_eq!((report.from, report.to), (before.id, after.id));
    assert_eq!(
        lines(&report),
        [
            "U data",
            "M data/change.txt",
            "U data/chmod.txt",
            "T data/kind",
            "+ data/kind/below.txt",
            "+ data/new.txt",
            "- data/remove.txt",
        ],
        "{report:#?}"
    );
    let kinds: Vec<NodeKind> = report.entries.iter().map(|entry| entry.kind).collect();
    use NodeKind::{Dir, File};
    assert_eq!(kinds, [Dir, File, File, Dir, File, File, File]);
    let stats = report.stats;
    assert_eq!(
        (stats.files_added, stats.files_removed, stats.files_changed),
        (2, 1, 2)
    );
    assert_eq!(
        (stats.dirs_added, stats.dirs_removed, stats.dirs_changed),
        (0, 0, 2)
    );
    // Every file here is one chunk of its own.
    assert_eq!(stats.chunks_added, 3);
    assert_eq!(
        stats.bytes_added,
        (added.len() + new_change.len() + below_kind.len()) as u64
    );
    assert_eq!(stats.chunks_removed, 3);
    assert_eq!(
        stats.bytes_removed,
        (removed.len() + old_change.len() + old_kind.len()) as u64
    );
    // The root's listing, `data`'s, and the new `kind`'s on one side; the
    // first two on the other.
    assert!(stats.tree_chunks_added >= 3, "{stats:?}");
    assert!(stats.tree_chunks_removed >= 2, "{stats:?}");

    // Backwards, every change turns around.
    let back = repo.diff(&after, &before).await.unwrap();
    assert_eq!(
        lines(&back),
        [
            "U data",
            "M data/change.txt",
            "U data/chmod.txt",
            "T data/kind",
            "- data/kind/below.txt",
            "- data/new.txt",
            "+ data/remove.txt",
        ]
    );
    assert_eq!(back.stats.bytes_added, stats.bytes_removed);
    assert_eq!(back.stats.bytes_removed, stats.bytes_added);

    // A backup against itself, or an unchanged tree backed up again.
    let again = back_up(&repo, &source).await;
    for (a, b) in [(&after, &after), (&after, &again)] {
        let report = repo.diff(a, b).await.unwrap();
        assert!(report.entries.is_empty(), "{report:#?}");
        assert_eq!(report.stats, Default::default());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_moved_file_is_not_counted_as_added_data() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("a.bin"), random_bytes(11, 5000)).unwrap();
    let repo = repository(Arc::new(MemorySink::new())).await;
    let before = back_up(&repo, &source).await;
    fs::rename(source.join("a.bin"), source.join("b.bin")).unwrap();
    let after = back_up(&repo, &source).await;
    let report = repo.diff(&before, &after).await.unwrap();
    let changes: Vec<String> = lines(&report)
        .into_iter()
        .filter(|line| !line.starts_with('U'))
        .collect();
    assert_eq!(changes, ["- data/a.bin", "+ data/b.bin"]);
    assert_eq!(
        (report.stats.chunks_added, report.stats.chunks_removed),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_never_reads_the_directories_equal_on_both_sides() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    fs::create_dir_all(&source).unwrap();
    let tree = generate_tree(&source.join("big"), &TreeSpec::new(21, 500));
    assert!(tree.dirs > 5, "{tree:?}");
    let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
    let repo = repository(sink.clone()).await;
    back_up(&repo, &source).await;
    // Every listing of `data/big` lies in these packs; the backups below
    // reuse them and store only their own root and `data` listings.
    let packs_of_big = sink.list_keys("data/").await.unwrap();
    fs::write(source.join("x.txt"), random_bytes(12, 3000)).unwrap();
    let from = back_up(&repo, &source).await;
    fs::remove_file(source.join("x.txt")).unwrap();
    fs::write(source.join("y.txt"), random_bytes(13, 2000)).unwrap();
    let to = back_up(&repo, &source).await;
    for key in &packs_of_big {
        sink.delete(key).await.unwrap();
    }
    let repo = Repository::open(sink.clone(), None).await.unwrap();

    let report = repo.diff(&from, &to).await.unwrap();
    let changes: Vec<String> = lines(&report)
        .into_iter()
        .filter(|line| !line.starts_with('U'))
        .collect();
    assert_eq!(changes, ["- data/x.txt", "+ data/y.txt"]);
    assert_eq!(
        (report.stats.bytes_added, report.stats.bytes_removed),
        (2000, 3000)
    );
    // Walking the whole tree needs the packs that are gone.
    assert!(repo.ls(&to).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_reports_the_backups_holding_a_match_with_its_paths() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    fs::create_dir_all(source.join("logs")).unwrap();
    fs::write(source.join("README.md"), b"read me").unwrap();
    fs::write(source.join("logs/Server.LOG"), b"started\n").unwrap();
    let repo = repository(Arc::new(MemorySink::new())).await;
    let first = back_up(&repo, &source).await;
    fs::write(source.join("logs/Server.LOG"), b"started\nstopped\n").unwrap();
    let second = back_up(&repo, &source).await;
    fs::remove_file(source.join("logs/Server.LOG")).unwrap();
    let third = back_up(&repo, &source).await;
    let all = repo.list().await.unwrap();
    assert_eq!(all.len(), 3);

    let found = repo
        .find(&all, &FindOptions::new(["*.log"]).with_ignore_case(true))
        .await
        .unwrap();
    let ids: Vec<_> = found.iter().map(|matches| matches.id).collect();
    assert_eq!(ids, [first.id, second.id]);
    for (matches, size) in found.iter().zip([8, 16]) {
        assert_eq!(
            matches.time,
            all.iter()
                .find(|b| b.id == matches.id)
                .unwrap()
                .manifest
                .time
        );
        assert_eq!(matches.set, "default");
        let paths: Vec<(&str, u64)> = matches
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry.size))
            .collect();
        assert_eq!(paths, [("data/logs/Server.LOG", size)]);
    }

    // Case matters unless told otherwise.
    let exact = repo.find(&all, &FindOptions::new(["*.log"])).await.unwrap();
    assert!(exact.is_empty(), "{exact:?}");
    // A pattern with `/` matches whole paths; `*` stops at `/`.
    let by_path = repo
        .find(&all, &FindOptions::new(["/data/*"]))
        .await
        .unwrap();
    assert_eq!(by_path.len(), 3);
    let third_paths: Vec<&str> = by_path[2]
        .entries
        .iter()
        .map(|entry| entry.path.as_str())
        .collect();
    assert_eq!(third_paths, ["data/README.md", "data/logs"]);
    assert_eq!(by_path[2].id, third.id);
    assert_eq!(by_path[2].entries[1].kind, NodeKind::Dir);
    let deep = repo
        .find(&all, &FindOptions::new(["data/**/*.LOG"]))
        .await
        .unwrap();
    assert_eq!(deep.len(), 2);

    // Only the backups asked about are searched.
    let one = repo
        .find(
            std::slice::from_ref(&second),
            &FindOptions::new(["Server.*"]),
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, second.id);

    for bad in [
        FindOptions::new(Vec::<String>::new()),
        FindOptions::new(["a[b"]),
    ] {
        let error = repo.find(&all, &bad).await.unwrap_err();
        assert!(
            matches!(error, backup_core::Error::InvalidArgument(_)),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_restore_size_is_the_sum_of_the_file_sizes_of_the_tree() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    let tree = generate_tree(&source, &TreeSpec::new(31, 400).with_big_file(2 << 20));
    let repo = repository(Arc::new(MemorySink::new())).await;
    let backup = back_up(&repo, &source).await;
    let stats = repo
        .stats(std::slice::from_ref(&backup), StatsMode::RestoreSize)
        .await
        .unwrap();
    assert_eq!(stats.backups, 1);
    assert_eq!(stats.files, tree.files);
    assert_eq!(stats.restore_size, tree.bytes);
    assert_eq!(stats.dirs, tree.dirs);
    assert_eq!(stats.symlinks, tree.symlinks);
    assert_eq!(stats.restore_size, backup.manifest.stats.bytes_total);
    assert_eq!(stats.raw_data, None);
    // The ls of the backup agrees.
    let listed: u64 = repo
        .ls(&backup)
        .await
        .unwrap()
        .iter()
        .filter(|entry| entry.kind == NodeKind::File)
        .map(|entry| entry.size)
        .sum();
    assert_eq!(listed, tree.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_raw_data_of_two_identical_backups_shows_no_new_chunk_and_a_2x_ratio() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    let tree = generate_tree(&source, &TreeSpec::new(32, 300).with_big_file(3 << 20));
    let repo = repository(Arc::new(MemorySink::new())).await;
    let first = back_up(&repo, &source).await;
    let second = back_up(&repo, &source).await;
    assert_eq!(second.manifest.stats.chunks_added, 0);

    let one = repo
        .stats(std::slice::from_ref(&first), StatsMode::RawData)
        .await
        .unwrap();
    let both = repo
        .stats(&[first.clone(), second.clone()], StatsMode::RawData)
        .await
        .unwrap();
    let (raw_one, raw_both) = (one.raw_data.unwrap(), both.raw_data.unwrap());
    println!("one backup: {one:?}\nboth: {both:?}");
    // The second backup references no chunk the first does not.
    assert_eq!(raw_both, raw_one);
    assert_eq!(both.backups, 2);
    assert_eq!(both.restore_size, 2 * tree.bytes);
    assert_eq!(both.files, 2 * tree.files);
    assert!(raw_one.data_size <= tree.bytes);
    // The tree holds a few duplicate files of its own.
    let ratio_one = one.deduplication_ratio().unwrap();
    assert!((1.0..1.2).contains(&ratio_one), "{ratio_one}");
    let ratio_both = both.deduplication_ratio().unwrap();
    assert!((ratio_both - 2.0 * ratio_one).abs() < 1e-9, "{ratio_both}");
    assert!(raw_one.stored_size > 0 && raw_one.tree_chunks > 0);
    let saving = both.space_saving().unwrap();
    assert!(saving > 0.45, "{saving}");
    assert!(both.compression_ratio().unwrap() > 0.9);

    // Naming a backup twice counts it once.
    let twice = repo
        .stats(&[first.clone(), first.clone()], StatsMode::RestoreSize)
        .await
        .unwrap();
    assert_eq!((twice.backups, twice.restore_size), (1, tree.bytes));
}
