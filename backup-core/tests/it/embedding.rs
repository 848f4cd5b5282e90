//! What an embedding service relies on: the library never stalls the
//! runtime it runs on, long operations stop when cancelled and clean up
//! after themselves, and partial results come with their typed failures.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use backup_core::{
    BackupOptions, BackupSummary, CancellationToken, DirectorySnapshotter, Entry, Error,
    FailureKind, Finisher, InitOptions, LocalSink, MemorySink, Phase, ProgressSink, PruneOptions,
    Repository, RestoreOptions, Sink, Snapshot, Snapshotter, SourceInfo, Status, VerifyOptions,
};
use backup_testkit::fault::{FaultPlan, FaultSink};
use backup_testkit::repo::verify_data;
use backup_testkit::rng::random_bytes;

/// A new unencrypted repository in `place/repo`, and the directory
/// `place/source` to back up (created empty).
async fn local_repository(place: &Path) -> (Repository, PathBuf) {
    let sink = Arc::new(LocalSink::create(place.join("repo")).unwrap());
    let repo = Repository::init(sink, InitOptions::default())
        .await
        .unwrap();
    let source = place.join("source");
    std::fs::create_dir_all(&source).unwrap();
    (repo, source)
}

/// Backs `source` up into `repo` with the default options.
async fn back_up(repo: &Repository, source: &Path) -> BackupSummary {
    repo.backup(
        &DirectorySnapshotter::new(vec![source.to_path_buf()]),
        BackupOptions::default(),
    )
    .await
    .unwrap()
}

/// Counts how often it gets to run: a task of the embedding service that
/// yields after every step, so that it runs whenever the runtime's one
/// worker is free.
fn spawn_ticker(ticks: &Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let ticks = Arc::clone(ticks);
    tokio::spawn(async move {
        loop {
            ticks.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    })
}

#[test]
fn opening_an_encrypted_repository_leaves_a_one_worker_runtime_free() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // In memory, every storage call completes at once: the only wait
        // left in `init` and `open` is the key derivation (real Argon2id
        // costs, 64 MiB and 3 passes). Run inline, it would hold the one
        // worker for its whole duration and the ticker would not run.
        let sink: Arc<dyn Sink> = Arc::new(MemorySink::new());
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = spawn_ticker(&ticks);
        Repository::init(
            Arc::clone(&sink),
            InitOptions::default().with_password("secret"),
        )
        .await
        .unwrap();
        let during_init = ticks.swap(0, Ordering::Relaxed);
        Repository::open(Arc::clone(&sink), Some(b"secret"))
            .await
            .unwrap();
        let during_open = ticks.load(Ordering::Relaxed);
        ticker.abort();
        println!("ticker ran {during_init} times during init, {during_open} during open");
        // A yield takes well under a microsecond; the derivation tens of
        // milliseconds: a ticker left to run turns thousands of times.
        assert!(during_init > 1000, "{during_init} ticks during init");
        assert!(during_open > 1000, "{during_open} ticks during open");
    });
}

/// The index objects `sink` was asked to read.
fn index_reads(sink: &FaultSink) -> usize {
    sink.operations()
        .iter()
        .filter(|(operation, key)| *operation == "get" && key.starts_with("index/"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_reads_only_the_index_objects_written_since_the_repository_opened() {
    let place = tempfile::tempdir().unwrap();
    let local: Arc<dyn Sink> = Arc::new(LocalSink::create(place.path().join("repo")).unwrap());
    let repo = Repository::init(Arc::clone(&local), InitOptions::default())
        .await
        .unwrap();
    let source = place.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    for round in 0..3u64 {
        std::fs::write(source.join(format!("{round}")), random_bytes(round, 5000)).unwrap();
        back_up(&repo, &source).await;
    }
    let counted = Arc::new(FaultSink::new(Arc::clone(&local), FaultPlan::default()));
    let repo = Repository::open(counted.clone(), None).await.unwrap();
    assert_eq!(
        index_reads(&counted),
        3,
        "open reads each index object once"
    );

    // Another process adds a backup (one index object) meanwhile.
    std::fs::write(source.join("other"), random_bytes(9, 5000)).unwrap();
    let other = Repository::open(Arc::clone(&local), None).await.unwrap();
    back_up(&other, &source).await;

    counted.clear_operations();
    std::fs::write(source.join("mine"), random_bytes(10, 5000)).unwrap();
    let summary = back_up(&repo, &source).await;
    assert_eq!(
        index_reads(&counted),
        1,
        "the backup reads the one index object written since open: {:?}",
        counted.operations()
    );
    // What the other process stored is deduplicated against.
    assert!(
        summary.manifest.stats.bytes_added < 5000 * 2,
        "{:?}",
        summary.manifest.stats
    );
    let report = verify_data(&repo).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}

/// A source whose one stream yields a first block and then blocks until
/// released: a backup of it runs until it is cancelled. Records how its
/// snapshot was released.
struct EndlessSource {
    started: tokio::sync::mpsc::UnboundedSender<()>,
    release: Arc<std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>>,
    finished: Arc<std::sync::Mutex<Option<bool>>>,
}

struct BlockingReader {
    first: Option<Vec<u8>>,
    started: tokio::sync::mpsc::UnboundedSender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl std::io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(first) = self.first.take() {
            let n = first.len().min(buf.len());
            buf[..n].copy_from_slice(&first[..n]);
            let _ = self.started.send(());
            return Ok(n);
        }
        // Until released (or the test ends): then end of stream.
        let _ = self.release.recv();
        Ok(0)
    }
}

struct RecordFinish(Arc<std::sync::Mutex<Option<bool>>>);

#[async_trait::async_trait]
impl Finisher for RecordFinish {
    async fn finish(
        self: Box<Self>,
        success: bool,
    ) -> backup_core::Result<std::collections::BTreeMap<String, serde_json::Value>> {
        *self.0.lock().unwrap() = Some(success);
        Ok(Default::default())
    }
}

#[async_trait::async_trait]
impl Snapshotter for EndlessSource {
    fn kind(&self) -> &str {
        "endless"
    }

    async fn snapshot(&self) -> backup_core::Result<Snapshot> {
        let release = self.release.lock().unwrap().take().expect("one snapshot");
        let reader = BlockingReader {
            first: Some(random_bytes(1, 64 * 1024)),
            started: self.started.clone(),
            release,
        };
        let entries = vec![Entry::Stream {
            name: "endless".into(),
            reader: Box::new(reader),
            mode: 0o600,
        }];
        let source = SourceInfo {
            kind: "endless".into(),
            paths: Vec::new(),
        };
        Ok(Snapshot::new(entries, source)
            .with_finisher(Box::new(RecordFinish(Arc::clone(&self.finished)))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_backup_returns_cancelled_and_leaves_nothing_behind() {
    let place = tempfile::tempdir().unwrap();
    let repo_dir = place.path().join("repo");
    let sink = Arc::new(LocalSink::create(&repo_dir).unwrap());
    let repo = Arc::new(
        Repository::init(sink, InitOptions::default())
            .await
            .unwrap(),
    );
    let source = place.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("kept"), random_bytes(2, 100_000)).unwrap();
    let earlier = back_up(&repo, &source).await;

    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let finished = Arc::new(std::sync::Mutex::new(None));
    let endless = EndlessSource {
        started: started_tx,
        release: Arc::new(std::sync::Mutex::new(Some(release_rx))),
        finished: Arc::clone(&finished),
    };
    let token = CancellationToken::new();
    let running = {
        let (repo, token) = (Arc::clone(&repo), token.clone());
        tokio::spawn(async move {
            repo.backup(&endless, BackupOptions::default().with_cancellation(token))
                .await
        })
    };
    // The backup is reading its source, with its in-flight marker written.
    started.recv().await.unwrap();
    assert_eq!(
        std::fs::read_dir(repo_dir.join("inflight"))
            .unwrap()
            .count(),
        1
    );

    token.cancel();
    // The stream never ends by itself: only the cancellation ends the
    // backup. A second is the bound the embedding service may rely on.
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(1), running)
        .await
        .expect("the cancelled backup returned within a second")
        .unwrap();
    assert!(
        matches!(
            outcome,
            Err(Error::Cancelled {
                operation: "backup"
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(
        *finished.lock().unwrap(),
        Some(false),
        "the snapshot was released"
    );
    assert_eq!(
        std::fs::read_dir(repo_dir.join("inflight"))
            .unwrap()
            .count(),
        0,
        "no in-flight marker is left"
    );
    // The blocked read on the blocking thread can end now.
    drop(release);

    let backups = repo.list().await.unwrap();
    assert_eq!(backups.len(), 1, "the cancelled backup is invisible");
    assert_eq!(backups[0].id, earlier.id);
    let report = repo
        .prune(&PruneOptions::default().with_grace(chrono::Duration::zero()))
        .await
        .unwrap();
    assert_eq!(report.marks_postponed, 0, "prune does not wait: {report:?}");
    let verify = verify_data(&repo).await;
    assert!(verify.is_ok(), "{:?}", verify.errors);
    let target = place.path().join("restored");
    let restored = repo
        .restore(&backups[0], &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(restored.status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_restore_verify_and_prune_return_cancelled() {
    let place = tempfile::tempdir().unwrap();
    let (repo, source) = local_repository(place.path()).await;
    std::fs::write(source.join("file"), random_bytes(3, 100_000)).unwrap();
    let summary = back_up(&repo, &source).await;
    let backup = repo.load_backup(&summary.id).await.unwrap();
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let restore = repo
        .restore(
            &backup,
            &place.path().join("restored"),
            &RestoreOptions::default().with_cancellation(cancelled.clone()),
        )
        .await;
    assert!(
        matches!(
            restore,
            Err(Error::Cancelled {
                operation: "restore"
            })
        ),
        "{restore:?}"
    );
    let verify = repo
        .verify(&VerifyOptions::default().with_cancellation(cancelled.clone()))
        .await;
    assert!(
        matches!(
            verify,
            Err(Error::Cancelled {
                operation: "verify"
            })
        ),
        "{verify:?}"
    );
    let prune = repo
        .prune(&PruneOptions::default().with_cancellation(cancelled))
        .await;
    assert!(
        matches!(prune, Err(Error::Cancelled { operation: "prune" })),
        "{prune:?}"
    );
    let report = verify_data(&repo).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_with_unwritable_files_reports_typed_failures_and_partially_failed() {
    let place = tempfile::tempdir().unwrap();
    let (repo, source) = local_repository(place.path()).await;
    std::fs::create_dir_all(source.join("sub")).unwrap();
    for name in ["a.txt", "b.txt", "sub/c.txt", "sub/d.txt"] {
        std::fs::write(source.join(name), name.as_bytes()).unwrap();
    }
    let summary = back_up(&repo, &source).await;
    assert_eq!(summary.status, Status::Completed);
    assert!(summary.failures.is_empty());
    let backup = repo.load_backup(&summary.id).await.unwrap();

    // Two files cannot be written: a directory that is not empty holds
    // their place (whoever runs the test, root included, cannot replace
    // it with a file).
    let target = place.path().join("restored");
    for name in ["a.txt", "sub/d.txt"] {
        std::fs::create_dir_all(target.join("source").join(name).join("occupied")).unwrap();
    }
    let (progress, mut events) = ProgressSink::channel();
    let restored = repo
        .restore(
            &backup,
            &target,
            &RestoreOptions::default().with_progress(progress),
        )
        .await
        .unwrap();
    assert_eq!(restored.status, Status::PartiallyFailed, "{restored:?}");
    // Each failure was also an event of its own, as it happened.
    let mut reported = Vec::new();
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        if let Some(failure) = &event.failure {
            reported.push(failure.clone());
        }
        last = Some(event);
    }
    reported.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(reported, restored.failures);
    assert_eq!(last.map(|event| event.phase), Some(Phase::PartiallyFailed));
    let failed: Vec<(&str, FailureKind)> = restored
        .failures
        .iter()
        .map(|failure| (failure.path.as_str(), failure.kind))
        .collect();
    assert_eq!(
        failed,
        [
            ("source/a.txt", FailureKind::Refused),
            ("source/sub/d.txt", FailureKind::Refused)
        ],
        "{restored:?}"
    );
    assert!(restored
        .failures
        .iter()
        .all(|failure| !failure.message.is_empty()));
    assert_eq!(
        restored.files, 2,
        "the other files are restored: {restored:?}"
    );
    for name in ["b.txt", "sub/c.txt"] {
        assert_eq!(
            std::fs::read(target.join("source").join(name)).unwrap(),
            name.as_bytes()
        );
    }
    assert_eq!(
        Status::of(&Ok::<_, Error>(restored), |summary| summary.status),
        Status::PartiallyFailed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_progress_over_the_backups_and_the_packs_it_reads() {
    let place = tempfile::tempdir().unwrap();
    let (repo, source) = local_repository(place.path()).await;
    for round in 0..2u64 {
        std::fs::write(
            source.join(format!("{round}")),
            random_bytes(round, 200_000),
        )
        .unwrap();
        back_up(&repo, &source).await;
    }
    let (progress, mut events) = ProgressSink::channel();
    let report = repo
        .verify(
            &VerifyOptions::default()
                .with_read_data(true)
                .with_progress(progress),
        )
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        assert_eq!(event.operation, "verify");
        last = Some(event);
    }
    let last = last.expect("at least the final event");
    assert_eq!(last.phase, Phase::Completed, "{last:?}");
    assert_eq!(
        last.files_done,
        report.backups + report.packs_read,
        "{last:?}"
    );
    assert_eq!(last.files_total, Some(last.files_done), "{last:?}");
    assert_eq!(last.bytes_done, report.bytes_read, "{last:?}");
    assert_eq!(last.percent, Some(100.0), "{last:?}");
}

/// Forgets every backup a retention would (the engine keeps the floor).
struct ForgetAll;

impl backup_core::RetentionPolicy for ForgetAll {
    fn decide(
        &self,
        backups: &[backup_core::Backup],
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<backup_core::Decision> {
        backups
            .iter()
            .map(|backup| backup_core::Decision {
                id: backup.id,
                keep: false,
                reasons: vec!["forget all".into()],
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_reports_progress_over_the_packs_it_repacks() {
    let place = tempfile::tempdir().unwrap();
    let (repo, source) = local_repository(place.path()).await;
    // Two files in one pack; the newest backup keeps only one of them, so
    // once the older backup is forgotten the pack is half unused.
    std::fs::write(source.join("kept"), random_bytes(1, 300_000)).unwrap();
    std::fs::write(source.join("dropped"), random_bytes(2, 300_000)).unwrap();
    back_up(&repo, &source).await;
    std::fs::remove_file(source.join("dropped")).unwrap();
    back_up(&repo, &source).await;
    let (progress, mut events) = ProgressSink::channel();
    let decisions = repo
        .forget(
            &ForgetAll,
            chrono::Utc::now(),
            &backup_core::ForgetOptions::default().with_progress(progress),
        )
        .await
        .unwrap();
    let forgotten = decisions
        .iter()
        .filter(|(_, decision)| !decision.keep)
        .count() as u64;
    assert_eq!(forgotten, 1);
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        assert_eq!(event.operation, "forget");
        last = Some(event);
    }
    let last = last.expect("the final forget event");
    assert_eq!(last.phase, Phase::Completed, "{last:?}");
    assert_eq!(
        (last.files_done, last.files_total),
        (forgotten, Some(forgotten))
    );
    let (progress, mut events) = ProgressSink::channel();
    let report = repo
        .prune(
            &PruneOptions::default()
                .with_grace(chrono::Duration::zero())
                .with_progress(progress),
        )
        .await
        .unwrap();
    assert!(report.packs_repacked >= 1, "{report:?}");
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        assert_eq!(event.operation, "prune");
        last = Some(event);
    }
    let last = last.expect("at least the final event");
    assert_eq!(last.phase, Phase::Completed, "{last:?}");
    assert_eq!(last.files_done, report.packs_repacked, "{last:?}");
    assert_eq!(last.files_total, Some(report.packs_repacked), "{last:?}");
    assert_eq!(last.percent, Some(100.0), "{last:?}");
    let verify = verify_data(&repo).await;
    assert!(verify.is_ok(), "{:?}", verify.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_reports_each_item_it_cannot_store_as_it_goes() {
    use std::os::unix::ffi::OsStrExt;
    let place = tempfile::tempdir().unwrap();
    let (repo, source) = local_repository(place.path()).await;
    std::fs::write(source.join("fine.txt"), b"fine").unwrap();
    // A name that is not UTF-8 cannot be stored in a tree.
    let odd = source.join(std::ffi::OsStr::from_bytes(b"odd-\xff-name"));
    std::fs::write(&odd, b"odd").unwrap();
    let (progress, mut events) = ProgressSink::channel();
    let summary = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.clone()]),
            BackupOptions::default().with_progress(progress),
        )
        .await
        .unwrap();
    assert_eq!(summary.status, Status::PartiallyFailed, "{summary:?}");
    assert_eq!(summary.failures.len(), 1, "{summary:?}");
    assert_eq!(summary.failures[0].kind, FailureKind::Unsupported);
    assert_eq!(summary.manifest.errors.len(), 1);
    // The manifest keeps the kind too, as the listing reads it back.
    let listed = repo.load_backup(&summary.id).await.unwrap();
    assert_eq!(listed.manifest.errors, summary.failures);
    let mut reported = Vec::new();
    while let Ok(event) = events.try_recv() {
        reported.extend(event.failure);
    }
    assert_eq!(reported, summary.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_each_damaged_object_as_it_goes() {
    let place = tempfile::tempdir().unwrap();
    let (repo, source) = local_repository(place.path()).await;
    std::fs::write(source.join("data"), random_bytes(5, 300_000)).unwrap();
    back_up(&repo, &source).await;
    let (key, size) = backup_testkit::repo::packs(&place.path().join("repo"))
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    backup_testkit::repo::flip_byte(&place.path().join("repo").join(&key), size as usize / 2);
    let (progress, mut events) = ProgressSink::channel();
    let report = repo
        .verify(
            &VerifyOptions::default()
                .with_read_data(true)
                .with_progress(progress),
        )
        .await
        .unwrap();
    assert!(!report.is_ok());
    let mut reported = Vec::new();
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        reported.extend(event.failure.clone());
        last = Some(event);
    }
    let objects: Vec<&str> = reported
        .iter()
        .map(|failure| failure.path.as_str())
        .collect();
    let expected: Vec<&str> = report
        .errors
        .iter()
        .map(|problem| problem.object.as_str())
        .collect();
    assert_eq!(objects, expected);
    assert!(objects.contains(&key.as_str()), "{objects:?}");
    assert!(reported
        .iter()
        .all(|failure| failure.kind == FailureKind::Corrupt));
    assert_eq!(last.map(|event| event.phase), Some(Phase::PartiallyFailed));
}
