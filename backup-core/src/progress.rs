//! Progress of long operations, as structured events.
//!
//! Pass a [`ProgressSink`] in [`BackupOptions`](crate::BackupOptions) or
//! [`RestoreOptions`](crate::RestoreOptions) to receive a [`Progress`] event
//! a few times per second and a last one with the final phase. Totals are
//! known for restores at once, and for backups of paths once a scan running
//! beside the backup has counted them; for streams they stay unknown. An
//! item that fails is reported at once, in an event whose
//! [`Progress::failure`] names it.
//!
//! ```
//! use backup_core::ProgressSink;
//! let (sink, mut events) = ProgressSink::channel();
//! # drop(sink);
//! # assert!(events.try_recv().is_err());
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::snapshot::Selection;

/// How often progress is reported while an operation runs.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Working.
    Running,
    /// Done, everything stored (or restored).
    Completed,
    /// Done, but some items failed (listed in the manifest or the error).
    PartiallyFailed,
    /// Stopped by an error; nothing was recorded.
    Failed,
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Progress {
    /// `backup`, `restore`, `verify`, `prune` or `forget`.
    pub operation: &'static str,
    /// Where it stands.
    pub phase: Phase,
    /// Files finished.
    pub files_done: u64,
    /// Files in all, once known.
    pub files_total: Option<u64>,
    /// Bytes of file content finished.
    pub bytes_done: u64,
    /// Bytes in all, once known.
    pub bytes_total: Option<u64>,
    /// `bytes_done / bytes_total` in percent, once the total is known.
    pub percent: Option<f64>,
    /// The item being worked on.
    pub current: Option<String>,
    /// Time since the start, in milliseconds.
    pub elapsed_ms: u64,
    /// Set on the event sent at once when an item fails (a file that
    /// cannot be read or restored): the item, the kind of failure and why.
    /// The operation goes on; the failures are also in its summary.
    pub failure: Option<crate::outcome::ItemFailure>,
}

/// Receives progress events: a callback, or the sending side of a channel.
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(&Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

impl ProgressSink {
    /// Calls `callback` for every event (from a background task: keep it quick).
    pub fn new(callback: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        ProgressSink(Arc::new(callback))
    }

    /// Events delivered to the returned receiver.
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Progress>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        (
            ProgressSink::new(move |event| {
                let _ = sender.send(event.clone());
            }),
            receiver,
        )
    }

    fn emit(&self, event: &Progress) {
        (self.0)(event);
    }
}

/// Counters an operation updates as it goes.
#[derive(Debug)]
pub(crate) struct Tracker {
    operation: &'static str,
    started: Instant,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    totals_known: AtomicBool,
    current: Mutex<Option<String>>,
    /// Where failure events go at once (set by [`Reporter::start`]).
    sink: Mutex<Option<ProgressSink>>,
}

impl Tracker {
    pub(crate) fn new(operation: &'static str) -> Arc<Tracker> {
        Arc::new(Tracker {
            operation,
            started: Instant::now(),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            totals_known: AtomicBool::new(false),
            current: Mutex::new(None),
            sink: Mutex::new(None),
        })
    }

    /// Reports that `failure`'s item failed, in an event of its own.
    pub(crate) fn item_failed(&self, failure: &crate::outcome::ItemFailure) {
        let sink = self.sink.lock().ok().and_then(|sink| sink.clone());
        if let Some(sink) = sink {
            let mut event = self.snapshot(Phase::Running);
            event.failure = Some(failure.clone());
            sink.emit(&event);
        }
    }

    pub(crate) fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bytes_done(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_current(&self, item: impl Into<String>) {
        if let Ok(mut current) = self.current.lock() {
            *current = Some(item.into());
        }
    }

    pub(crate) fn set_totals(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.totals_known.store(true, Ordering::Release);
    }

    pub(crate) fn snapshot(&self, phase: Phase) -> Progress {
        let known = self.totals_known.load(Ordering::Acquire);
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let files_done = self.files_done.load(Ordering::Relaxed);
        let (files_total, bytes_total) = if known {
            // Files may grow during a backup: totals never fall behind.
            (
                Some(self.files_total.load(Ordering::Relaxed).max(files_done)),
                Some(self.bytes_total.load(Ordering::Relaxed).max(bytes_done)),
            )
        } else {
            (None, None)
        };
        let percent = match (phase, bytes_total) {
            (Phase::Completed | Phase::PartiallyFailed, _) => Some(100.0),
            (_, Some(0)) => Some(if known { 100.0 } else { 0.0 }),
            (_, Some(total)) => Some((bytes_done as f64 / total as f64 * 100.0).min(100.0)),
            (_, None) => None,
        };
        Progress {
            operation: self.operation,
            phase,
            files_done,
            files_total,
            bytes_done,
            bytes_total,
            percent,
            current: self.current.lock().ok().and_then(|c| c.clone()),
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            failure: None,
        }
    }
}

/// Reports a tracker's progress periodically until finished.
pub(crate) struct Reporter {
    tracker: Arc<Tracker>,
    sink: Option<ProgressSink>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    pub(crate) fn start(tracker: Arc<Tracker>, sink: Option<ProgressSink>) -> Reporter {
        if let Ok(mut slot) = tracker.sink.lock() {
            slot.clone_from(&sink);
        }
        let task = sink.clone().map(|sink| {
            let tracker = tracker.clone();
            tokio::spawn(async move {
                loop {
                    sink.emit(&tracker.snapshot(Phase::Running));
                    tokio::time::sleep(REPORT_EVERY).await;
                }
            })
        });
        Reporter {
            tracker,
            sink,
            task,
        }
    }

    /// Stops the periodic reports and sends the last event.
    pub(crate) fn finish(mut self, phase: Phase) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(sink) = &self.sink {
            sink.emit(&self.tracker.snapshot(phase));
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Counts the files and bytes at and below `paths` that a backup stores
/// (without following symlinks, leaving out what each path's selection
/// does), on a blocking thread; used for backup totals.
pub(crate) async fn scan_totals(paths: Vec<(PathBuf, Option<Arc<Selection>>)>) -> (u64, u64) {
    tokio::task::spawn_blocking(move || {
        let mut files = 0u64;
        let mut bytes = 0u64;
        let mut count = |_: &std::path::Path, metadata: &std::fs::Metadata| {
            if metadata.is_file() {
                files += 1;
                bytes += metadata.len();
            }
        };
        let everything = Selection::new();
        for (path, selection) in paths {
            if let Ok(metadata) = std::fs::symlink_metadata(&path) {
                count(&path, &metadata);
            }
            selection
                .as_deref()
                .unwrap_or(&everything)
                .walk(&path, &mut count);
        }
        (files, bytes)
    })
    .await
    .unwrap_or((0, 0))
}
