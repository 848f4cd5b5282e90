//! The archiver: turns snapshot entries into packs, trees and indexes, and
//! back into files.
//!
//! # Pipeline
//!
//! ```text
//! walk (async) ─► read + chunk (blocking threads) ─► hash, dedup, compress,
//! encrypt (CPU pool, all cores) ─► pack (16 MiB) ─► upload (bounded, async)
//! ─► index every 32 packs and at the end
//! ```
//!
//! Files up to the maximum chunk size are read whole. The walk asks the
//! kernel to read them ahead, a few dozen at a time, and the CPU pool reads
//! those whose bytes are already cached itself, with reads that never wait
//! for the disk; the others are read on blocking threads (see
//! `readahead`).
//!
//! Memory is bounded: the chunk data read but not yet in a pack is capped
//! in bytes for all files together (`MEMORY_BUDGET_KIB`), a bounded number
//! of files are read at once, and at most a few packs (as many as the sink's
//! [`write_concurrency`](crate::sink::Sink::write_concurrency)) are being
//! uploaded; the buffers of stored packs are reused. A sink that stages
//! objects ([`Sink::stage`](crate::sink::Sink::stage), a local disk) gets
//! data packs as they fill, a few MiB at a time, so no whole pack is held.
//! A chunk is hashed before it is compressed, and a chunk already stored
//! (or already being stored by this backup) is never compressed or stored
//! again.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::Engine;
use crate::format::manifest::BackupStats;
use crate::outcome::{FailureKind, ItemFailure};
use crate::progress::Tracker;
use crate::snapshot::Entry;
use crate::{Error, Id, Result};
use restore::{RestoreOptions, RestoreSummary};

mod listed;
mod packing;
pub(crate) mod restore;
mod small_files;
mod streams;
mod tar_stream;
mod tree_writer;
mod walk;
mod writer;

use packing::*;
use small_files::*;
pub(crate) use tree_writer::TreeWriter;
use writer::*;

/// Turns snapshot entries into repository objects, and back.
///
/// # Contract
///
/// * `archive` stores every entry (recursively for directories) and returns
///   the root tree; it writes packs and indexes, never manifests. An entry
///   that cannot be read is recorded in [`Archived::errors`], not fatal; a
///   storage failure is fatal. When it returns `Ok`, every chunk the root
///   tree references is in a stored index.
/// * `restore` writes the tree under `target` and nowhere else, verifies
///   every chunk before writing it, and never leaves a partly written file
///   under its final name.
#[async_trait]
pub trait Archiver: Send + Sync + std::fmt::Debug {
    /// Stores `entries`; `parent` is the root of an earlier backup whose
    /// unchanged files need not be read again.
    async fn archive(&self, entries: Vec<Entry>, parent: Option<&[Id]>) -> Result<Archived>;

    /// Restores the tree `root` under `target`.
    async fn restore(
        &self,
        root: &[Id],
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<RestoreSummary>;
}

/// What [`Archiver::archive`] produced.
#[derive(Debug, Clone)]
pub struct Archived {
    /// Tree chunk ids of the root directory.
    pub root: Vec<Id>,
    /// Counters (duration left zero).
    pub stats: BackupStats,
    /// Items that could not be stored.
    pub errors: Vec<ItemFailure>,
    /// The manifest version the tree needs:
    /// 1, or 2 when a listing holds
    /// hard links or extended attributes (FORMAT.md, "Manifests"). An
    /// archiver that writes such fields MUST say 2, so that readers of
    /// version 1 refuse the backup instead of restoring it without them.
    pub manifest_version: u32,
}

/// The default archiver: content-defined chunking, dedup, zstd, encryption,
/// packs.
#[derive(Debug, Clone)]
pub(crate) struct ChunkArchiver {
    pub(crate) repo: Arc<Engine>,
    tracker: Arc<Tracker>,
}

impl ChunkArchiver {
    pub(crate) fn new(repo: Arc<Engine>) -> Self {
        ChunkArchiver {
            repo,
            tracker: Tracker::new("backup"),
        }
    }

    /// Reports backup progress to `tracker`.
    pub(crate) fn with_tracker(mut self, tracker: Arc<Tracker>) -> Self {
        self.tracker = tracker;
        self
    }
}

#[async_trait]
impl Archiver for ChunkArchiver {
    async fn archive(&self, entries: Vec<Entry>, parent: Option<&[Id]>) -> Result<Archived> {
        let writer = Arc::new(BackupWriter::new(self.repo.clone(), self.tracker.clone()));
        let result = writer.archive_entries(entries, parent).await;
        writer.finish(result).await
    }

    async fn restore(
        &self,
        root: &[Id],
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<RestoreSummary> {
        crate::archiver::restore::restore(self.repo.clone(), root, target, options).await
    }
}

/// Packs flushed to the sink before an index object is written.
const INDEX_EVERY_PACKS: usize = 32;
/// Chunks of one file in flight at once.
const CHUNKS_IN_FLIGHT_PER_FILE: usize = 4;
/// Files up to the maximum chunk size are read whole and chunked in memory
/// on the CPU pool, in one step: for them the hand-offs and the read-ahead
/// buffer of the streaming path cost more than the work. Files up to this
/// size share many slots.
const SMALL_FILE: u64 = 1024 * 1024;
/// Files the walk asks the kernel to read ahead at once (see
/// [`Prefetch`]), at most.
const PREFETCH_FILES: usize = 32;
/// Bytes of files the walk asks the kernel to read ahead at once, at most
/// (a larger file goes alone).
const PREFETCH_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes a pack buffer holds beyond the pack size, for the header and
/// trailer (42 bytes a blob: room for about 6,000 blobs; a pack of more,
/// smaller blobs grows its buffer once).
const PACK_HEADER_ROOM: usize = 256 * 1024;
/// Small files being read and encoded at once: a cold cache needs many
/// reads outstanding; their bytes are bounded by [`MEMORY_BUDGET_KIB`].
const SMALL_FILES_IN_FLIGHT: usize = 64;
/// Bytes of a pack written as it fills (see [`OpenPack`]) handed to its
/// writer at once.
const STREAM_BLOCK: usize = 1024 * 1024;
/// Blocks queued for a pack's writer.
const STREAM_BLOCKS_QUEUED: usize = 2;
/// KiB of chunk data read or encoded but not yet in a pack, for all files
/// together. A chunk counts twice its length (plaintext and encoded copy).
/// Bounds the backup's memory whatever the files' sizes; packs being
/// filled and uploaded come on top.
const MEMORY_BUDGET_KIB: u32 = 32 * 1024;

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    files_unchanged: AtomicU64,
    bytes_total: AtomicU64,
    bytes_read: AtomicU64,
    chunks_added: AtomicU64,
    skipped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> BackupStats {
        BackupStats {
            files: self.files.load(Ordering::Relaxed),
            dirs: self.dirs.load(Ordering::Relaxed),
            symlinks: self.symlinks.load(Ordering::Relaxed),
            files_unchanged: self.files_unchanged.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            chunks_added: self.chunks_added.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            ..BackupStats::default()
        }
    }
}

/// A per-item failure (the item is skipped) or a fatal one.
enum FileFailure {
    Item(FailureKind, String),
    Fatal(Error),
}

impl From<Error> for FileFailure {
    fn from(error: Error) -> Self {
        FileFailure::Fatal(error)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::walk::Prefetch;
    use super::writer::BackupWriter;
    use super::*;
    use crate::repository::{InitOptions, Repository};
    use crate::sink::MemorySink;

    /// Backs `dir` up through a writer that reads small files on the CPU
    /// pool when they are cached (`cached_reads`) or always on blocking
    /// threads; returns the root tree ids and the counters.
    async fn archive(
        repo: &Repository,
        dir: &Path,
        cached_reads: bool,
    ) -> (Vec<Id>, BackupStats, Vec<ItemFailure>) {
        let writer = Arc::new(BackupWriter::new(
            repo.engine().clone(),
            Tracker::new("backup"),
        ));
        writer.cached_reads.store(cached_reads, Ordering::Relaxed);
        let entries = vec![Entry::path("tree", dir)];
        let root = writer.archive_entries(entries, None).await.unwrap();
        writer.flush().await.unwrap();
        let errors = writer.errors.lock().unwrap().clone();
        (root, writer.stats.snapshot(), errors)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_read_on_the_cpu_pool_or_on_blocking_threads_give_the_same_backup() {
        let dir = tempfile::tempdir().unwrap();
        // More files than a prefetch batch, of sizes from empty to above a
        // batch's bytes, and one streamed (above the maximum chunk size).
        for i in 0..80u32 {
            let size = match i {
                0 => 0,
                1 => 5 * 1024 * 1024,
                2 => 9 * 1024 * 1024,
                _ => (i as usize * 7919) % 70_000,
            };
            let content: Vec<u8> = (0..size)
                .map(|at| (at as u32 ^ i).to_le_bytes()[at % 3])
                .collect();
            let sub = dir.path().join(format!("d{}", i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("f{i:03}")), content).unwrap();
        }
        let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default())
            .await
            .unwrap();
        let (cpu_root, cpu_stats, cpu_errors) = archive(&repo, dir.path(), true).await;
        let (blocking_root, blocking_stats, blocking_errors) =
            archive(&repo, dir.path(), false).await;
        assert!(cpu_errors.is_empty() && blocking_errors.is_empty());
        assert_eq!(cpu_root, blocking_root);
        assert_eq!(cpu_stats.files, 80);
        assert_eq!(cpu_stats.bytes_read, blocking_stats.bytes_read);
        assert_eq!(cpu_stats.files, blocking_stats.files);
        // The second backup found every chunk stored by the first.
        assert!(cpu_stats.chunks_added > 0);
        assert_eq!(blocking_stats.chunks_added, 0);
    }

    #[tokio::test]
    async fn prefetch_batches_are_bounded_and_asked_for_ahead() {
        let files: Vec<(usize, PathBuf, u64)> = (0..100)
            .map(|at| {
                (
                    at * 2,
                    PathBuf::from(format!("f{at}")),
                    if at == 50 { PREFETCH_BYTES + 1 } else { 1000 },
                )
            })
            .collect();
        let mut prefetch = Prefetch::new(files);
        let sizes: Vec<usize> = prefetch
            .batches
            .iter()
            .map(|(_, batch)| batch.len())
            .collect();
        assert!(sizes.iter().all(|&size| size <= PREFETCH_FILES));
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        // The large file is alone in its batch, which starts where it is.
        assert!(prefetch
            .batches
            .iter()
            .any(|(at, batch)| *at == 100 && batch.len() == 1));
        let starts: Vec<usize> = prefetch.batches.iter().map(|(at, _)| *at).collect();
        assert!(starts.windows(2).all(|pair| pair[0] < pair[1]));
        // The first two batches at once; each later one when the walk
        // reaches the batch before it; none twice.
        prefetch.reached(0);
        assert_eq!(prefetch.next, 2);
        prefetch.reached(starts[1] - 1);
        assert_eq!(prefetch.next, 2);
        prefetch.reached(starts[1]);
        assert_eq!(prefetch.next, 3);
        prefetch.reached(starts[1]);
        assert_eq!(prefetch.next, 3);
        prefetch.reached(usize::MAX);
        assert_eq!(prefetch.next, starts.len());
        assert!(prefetch.batches.iter().all(|(_, batch)| batch.is_empty()));
    }
}
