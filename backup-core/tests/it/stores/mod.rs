//! Data-store snapshotters and restorers against real servers on
//! 127.0.0.1, and the snapshotter conformance suite run by every
//! snapshotter.

mod cassandra;
mod conformance;
mod etcd;
mod mariadb;
mod postgres;
mod redis;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use backup_core::{InitOptions, LocalSink, Repository};

/// A local repository in a fresh directory.
pub(crate) async fn local_repo() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(LocalSink::create(dir.path().join("repo")).unwrap());
    let repo = Repository::init(sink, InitOptions::default())
        .await
        .unwrap();
    (dir, repo)
}

/// A writer that writes `seq/00000000`, `seq/00000001`... one at a time
/// until stopped, counting what the store acknowledged.
pub(crate) struct SequenceWriter {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SequenceWriter {
    /// Starts writing with `put(n)`, which returns whether the store took it.
    pub(crate) fn start(mut put: impl FnMut(u64) -> bool + Send + 'static) -> SequenceWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (stopping, counting) = (stop.clone(), written.clone());
        let thread = std::thread::spawn(move || {
            let mut next = 0;
            while !stopping.load(Ordering::SeqCst) {
                if !put(next) {
                    break;
                }
                next += 1;
                counting.store(next, Ordering::SeqCst);
            }
        });
        SequenceWriter {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// How many writes were acknowledged so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` writes were acknowledged.
    pub(crate) fn wait_for(&self, count: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.written() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer stalled at {}",
                self.written()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Stops and returns how many writes were acknowledged.
    pub(crate) fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.written()
    }
}

/// Checks that `numbers` is exactly 0..n for some n within `bounds`.
pub(crate) fn assert_gap_free_prefix(mut numbers: Vec<u64>, bounds: std::ops::RangeInclusive<u64>) {
    numbers.sort_unstable();
    let n = numbers.len() as u64;
    for (expected, got) in numbers.iter().enumerate() {
        assert_eq!(
            *got, expected as u64,
            "the writer's sequence has a gap at {expected}"
        );
    }
    assert!(
        bounds.contains(&n),
        "the restored sequence holds {n} writes, outside {bounds:?} (acknowledged before and after the backup)"
    );
}
