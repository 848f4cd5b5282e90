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

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::{Engine, INDEX_PREFIX};
use crate::format::envelope::ObjectKind;
use crate::format::index::{IndexFile, IndexedPack};
use crate::format::manifest::{BackupStats, ItemError};
use crate::format::pack::{self, BlobKind, PackBuilder};
use crate::format::tree::{self, Node, NodeKind};
use crate::progress::Tracker;
use crate::readahead::{self, Cached};
use crate::sink::{PutMode, StagedObject};
use crate::snapshot::Entry;
use crate::{Error, Id, Result};
use restore::{RestoreOptions, RestoreSummary};

pub(crate) mod restore;

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
    pub errors: Vec<ItemError>,
}

/// The default archiver: content-defined chunking, dedup, zstd, encryption,
/// packs.
#[derive(Debug, Clone)]
pub struct ChunkArchiver {
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
        // Whether or not the walk succeeded, finish the uploads already
        // started so that a rerun can reuse them; report the first error.
        let flushed = writer.flush().await;
        let root = result?;
        flushed?;
        let mut stats = writer.stats.snapshot();
        stats.bytes_added = writer.bytes_added.load(Ordering::Relaxed);
        let errors = writer.errors.lock().map(|e| e.clone()).unwrap_or_default();
        Ok(Archived {
            root,
            stats,
            errors,
        })
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
enum ItemFailure {
    Item(String),
    Fatal(Error),
}

impl From<Error> for ItemFailure {
    fn from(error: Error) -> Self {
        ItemFailure::Fatal(error)
    }
}

/// Hashes a chunk and, unless it is stored or claimed already, claims and
/// encodes it (on the CPU pool).
fn encode_chunk(
    repo: &Engine,
    claimed: &Mutex<HashSet<Id>>,
    kind: BlobKind,
    plaintext: &[u8],
) -> Encoded {
    let id = repo.chunk_id(plaintext);
    let is_new =
        !repo.index_contains(&id) && claimed.lock().map(|mut set| set.insert(id)).unwrap_or(true);
    if is_new {
        let level = repo.config.compression_level;
        let (stored, flags) = pack::encode_blob(&id, kind, plaintext, repo.key(), level);
        Encoded::New {
            id,
            stored,
            flags,
            raw_length: u32::try_from(plaintext.len()).unwrap_or(u32::MAX),
        }
    } else {
        Encoded::Known(id)
    }
}

/// Reads a whole file of about `size` bytes (its size when it was listed):
/// `std::fs::read` would ask the file system for the size once more.
fn read_whole(path: &Path, size: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// A file read whole and encoded on the CPU pool
/// ([`BackupWriter::store_small_file`]).
struct SmallFile {
    repo: Arc<Engine>,
    claimed: Arc<Mutex<HashSet<Id>>>,
    path: PathBuf,
    /// Its size when it was listed.
    size: u64,
    sender: tokio::sync::oneshot::Sender<std::io::Result<(u64, Vec<Encoded>)>>,
}

impl SmallFile {
    /// Chunks, hashes and encodes the file's bytes (on the CPU pool).
    fn encode(self, data: Vec<u8>) {
        let encoded: Vec<Encoded> = self
            .repo
            .chunker
            .split(&data)
            .into_iter()
            .map(|chunk| encode_chunk(&self.repo, &self.claimed, BlobKind::Data, chunk))
            .collect();
        let _ = self.sender.send(Ok((data.len() as u64, encoded)));
    }

    fn fail(self, error: std::io::Error) {
        let _ = self.sender.send(Err(error));
    }

    /// Reads the file on a blocking thread, which hands the bytes to the
    /// CPU pool.
    fn read_blocking(self, runtime: &tokio::runtime::Handle) {
        drop(
            runtime.spawn_blocking(move || match read_whole(&self.path, self.size) {
                Ok(data) => rayon::spawn(move || self.encode(data)),
                Err(error) => self.fail(error),
            }),
        );
    }
}

/// Files of one directory to be read ahead, in batches of at most
/// [`PREFETCH_FILES`] files and [`PREFETCH_BYTES`] bytes: the first two
/// batches when the walk starts on the directory, each later one when it
/// reaches the first file of the batch before, so the kernel reads one to
/// two batches ahead of the files being read.
struct Prefetch {
    /// Each batch: the position of its first file among the directory's
    /// children, and the files.
    batches: Vec<(usize, Vec<PathBuf>)>,
    /// The first batch not asked for yet.
    next: usize,
}

impl Prefetch {
    /// `files`: position among the children, path and size, in order.
    fn new(files: Vec<(usize, PathBuf, u64)>) -> Prefetch {
        let mut batches: Vec<(usize, Vec<PathBuf>)> = Vec::new();
        let mut bytes = 0;
        for (at, path, size) in files {
            match batches.last_mut() {
                Some((_, batch))
                    if batch.len() < PREFETCH_FILES && bytes + size <= PREFETCH_BYTES =>
                {
                    bytes += size;
                    batch.push(path);
                }
                _ => {
                    bytes = size;
                    batches.push((at, vec![path]));
                }
            }
        }
        Prefetch { batches, next: 0 }
    }

    /// The walk has reached the child at position `at`: asks for the
    /// batches due.
    fn reached(&mut self, at: usize) {
        while self.next < self.batches.len()
            && (self.next == 0 || self.batches[self.next - 1].0 <= at)
        {
            let paths = std::mem::take(&mut self.batches[self.next].1);
            drop(tokio::task::spawn_blocking(move || {
                readahead::prefetch(&paths);
            }));
            self.next += 1;
        }
    }
}

/// Buffers of finished work kept for the next: fresh memory costs a page
/// fault for each of its pages when it is first written.
struct BufferPool {
    buffers: Mutex<Vec<Vec<u8>>>,
    /// The most buffers kept; more are freed.
    keep: usize,
}

impl BufferPool {
    fn new(keep: usize) -> BufferPool {
        BufferPool {
            buffers: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A kept buffer, if there is one.
    fn take(&self) -> Option<Vec<u8>> {
        self.buffers
            .lock()
            .ok()
            .and_then(|mut buffers| buffers.pop())
    }

    /// Keeps `buffer` for a later [`take`](Self::take), unless enough are kept.
    fn give(&self, buffer: Vec<u8>) {
        if let Ok(mut buffers) = self.buffers.lock() {
            if buffers.len() < self.keep {
                buffers.push(buffer);
            }
        }
    }
}

/// The outcome of hashing and encoding one chunk on the CPU pool.
enum Encoded {
    Known(Id),
    New {
        id: Id,
        stored: Vec<u8>,
        flags: u8,
        raw_length: u32,
    },
}

struct BackupWriter {
    repo: Arc<Engine>,
    tracker: Arc<Tracker>,
    /// Chunks stored in the repository or by this backup so far.
    claimed: Arc<Mutex<HashSet<Id>>>,
    data_pack: tokio::sync::Mutex<OpenPack>,
    tree_pack: tokio::sync::Mutex<OpenPack>,
    /// Set once the sink has declined to stage a pack.
    no_staging: std::sync::atomic::AtomicBool,
    /// Cleared once reads that do not wait turn out to be unavailable
    /// (see [`readahead`]).
    cached_reads: Arc<std::sync::atomic::AtomicBool>,
    /// Buffers of blocks written, for the next blocks.
    block_buffers: Arc<BufferPool>,
    /// Chunker windows of streamed files that ended.
    windows: Arc<BufferPool>,
    uploads: tokio::sync::Mutex<JoinSet<Result<IndexedPack>>>,
    upload_slots: Arc<Semaphore>,
    /// Buffers of stored packs, for the next packs.
    pack_buffers: Arc<BufferPool>,
    file_slots: Semaphore,
    small_file_slots: Semaphore,
    memory: Arc<Semaphore>,
    unindexed: tokio::sync::Mutex<Vec<IndexedPack>>,
    stats: Counters,
    bytes_added: AtomicU64,
    errors: Mutex<Vec<ItemError>>,
}

impl BackupWriter {
    fn new(repo: Arc<Engine>, tracker: Arc<Tracker>) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let uploads = repo.sink.write_concurrency().max(1);
        BackupWriter {
            repo,
            tracker,
            claimed: Arc::new(Mutex::new(HashSet::new())),
            data_pack: tokio::sync::Mutex::new(OpenPack::default()),
            tree_pack: tokio::sync::Mutex::new(OpenPack::default()),
            no_staging: std::sync::atomic::AtomicBool::new(false),
            cached_reads: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            // Enough for the blocks queued and being filled.
            block_buffers: Arc::new(BufferPool::new(STREAM_BLOCKS_QUEUED + 2)),
            // One for each file read at once.
            windows: Arc::new(BufferPool::new(cores)),
            uploads: tokio::sync::Mutex::new(JoinSet::new()),
            upload_slots: Arc::new(Semaphore::new(uploads)),
            // One for each pack being uploaded and being filled.
            pack_buffers: Arc::new(BufferPool::new(uploads + 2)),
            file_slots: Semaphore::new(cores),
            small_file_slots: Semaphore::new(SMALL_FILES_IN_FLIGHT),
            memory: Arc::new(Semaphore::new(MEMORY_BUDGET_KIB as usize)),
            unindexed: tokio::sync::Mutex::new(Vec::new()),
            stats: Counters::default(),
            bytes_added: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// The memory-budget permits for `bytes` of chunk data (see
    /// [`MEMORY_BUDGET_KIB`]).
    fn memory_permits(bytes: u64) -> u32 {
        u32::try_from((bytes * 2).div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, MEMORY_BUDGET_KIB)
    }

    fn record_error(&self, path: &Path, message: String) {
        tracing::warn!(path = %path.display(), %message, "item not backed up");
        if let Ok(mut errors) = self.errors.lock() {
            errors.push(ItemError {
                path: path.display().to_string(),
                message,
            });
        }
    }

    async fn archive_entries(
        self: &Arc<Self>,
        entries: Vec<Entry>,
        parent: Option<&[Id]>,
    ) -> Result<Vec<Id>> {
        let parent_nodes = match parent {
            Some(ids) => self.load_parent_tree("/", ids).await,
            None => HashMap::new(),
        };
        let mut nodes = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = entry.name().to_string();
            tree::validate_name(&name)?;
            let parent = parent_nodes.get(&name);
            let name_for_error = name.clone();
            let outcome = match entry {
                Entry::Path { path, .. } => {
                    self.archive_path(path, name, None, parent.cloned()).await
                }
                Entry::Stream { reader, mode, .. } => self.archive_stream(name, reader, mode).await,
            };
            match outcome {
                Ok(Some(node)) => nodes.push(node),
                Ok(None) => {}
                Err(ItemFailure::Fatal(error)) => return Err(error),
                Err(ItemFailure::Item(message)) => {
                    return Err(Error::Snapshot {
                        source_name: name_for_error,
                        detail: message,
                    })
                }
            }
        }
        self.store_tree(nodes).await
    }

    /// A parent directory listing by name; a damaged or missing parent only
    /// means files are read again.
    async fn load_parent_tree(&self, what: &str, ids: &[Id]) -> HashMap<String, Node> {
        match self.repo.load_tree(what, ids).await {
            Ok(nodes) => nodes
                .into_iter()
                .map(|node| (node.name.clone(), node))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "parent tree unreadable; files will be read again");
                HashMap::new()
            }
        }
    }

    fn archive_path(
        self: &Arc<Self>,
        path: PathBuf,
        name: String,
        metadata: Option<std::io::Result<std::fs::Metadata>>,
        parent: Option<Node>,
    ) -> BoxFuture<'_, Result<Option<Node>, ItemFailure>> {
        async move {
            let metadata = match metadata {
                Some(metadata) => metadata,
                None => tokio::fs::symlink_metadata(&path).await,
            };
            let metadata = match metadata {
                Ok(metadata) => metadata,
                Err(error) => {
                    self.record_error(&path, format!("cannot read metadata: {error}"));
                    return Ok(None);
                }
            };
            let mut node = node_from_metadata(name, &metadata);
            let file_type = metadata.file_type();
            if file_type.is_dir() {
                node.kind = NodeKind::Dir;
                self.stats.dirs.fetch_add(1, Ordering::Relaxed);
                let parent_children = match parent.as_ref().and_then(|p| p.subtree.as_ref()) {
                    Some(ids) => {
                        self.load_parent_tree(&path.display().to_string(), ids)
                            .await
                    }
                    None => HashMap::new(),
                };
                let children = match read_dir_names(&path).await {
                    Ok((children, unnamed)) => {
                        for skipped in unnamed {
                            self.record_error(
                                &skipped,
                                "the name is not valid UTF-8: not backed up".into(),
                            );
                        }
                        children
                    }
                    Err(message) => {
                        self.record_error(&path, message);
                        return Ok(None);
                    }
                };
                let mut nodes = Vec::with_capacity(children.len());
                let mut prefetch = self.prefetch_plan(&path, &children, &parent_children);
                let mut results = futures::stream::iter(children.into_iter().enumerate())
                    .map(|(at, (child, metadata))| {
                        prefetch.reached(at);
                        let parent = parent_children.get(&child).cloned();
                        self.archive_path(path.join(&child), child, Some(metadata), parent)
                    })
                    .buffered(16);
                while let Some(result) = results.next().await {
                    if let Some(child) = result? {
                        nodes.push(child);
                    }
                }
                node.subtree = Some(self.store_tree(nodes).await?);
                Ok(Some(node))
            } else if file_type.is_symlink() {
                let target = match tokio::fs::read_link(&path).await {
                    Ok(target) => target,
                    Err(error) => {
                        self.record_error(&path, format!("cannot read link: {error}"));
                        return Ok(None);
                    }
                };
                let Some(target) = target.to_str() else {
                    self.record_error(&path, "link target is not UTF-8".into());
                    return Ok(None);
                };
                node.kind = NodeKind::Symlink;
                node.target = Some(target.to_string());
                self.stats.symlinks.fetch_add(1, Ordering::Relaxed);
                Ok(Some(node))
            } else if file_type.is_file() {
                node.kind = NodeKind::File;
                self.archive_file(&path, node, parent).await
            } else {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %path.display(), "special file skipped");
                Ok(None)
            }
        }
        .boxed()
    }

    async fn archive_file(
        &self,
        path: &Path,
        mut node: Node,
        parent: Option<Node>,
    ) -> Result<Option<Node>, ItemFailure> {
        self.stats.files.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_total
            .fetch_add(node.size, Ordering::Relaxed);
        if let Some(parent) = parent {
            if self.unchanged(&parent, &node) {
                self.stats.files_unchanged.fetch_add(1, Ordering::Relaxed);
                self.tracker.bytes_done(node.size);
                self.tracker.file_done();
                node.content = parent.content;
                return Ok(Some(node));
            }
        }
        let stored = if self.reads_whole(node.size) {
            self.store_small_file(path, node.size).await
        } else {
            self.store_large_file(path).await
        };
        match stored {
            Ok((content, size)) => {
                if size != node.size {
                    self.stats.bytes_total.fetch_add(size, Ordering::Relaxed);
                    self.stats
                        .bytes_total
                        .fetch_sub(node.size, Ordering::Relaxed);
                    node.size = size;
                }
                node.content = content;
                self.tracker.file_done();
                Ok(Some(node))
            }
            Err(ItemFailure::Item(message)) => {
                self.stats.files.fetch_sub(1, Ordering::Relaxed);
                self.stats
                    .bytes_total
                    .fetch_sub(node.size, Ordering::Relaxed);
                self.record_error(path, message);
                Ok(None)
            }
            Err(fatal) => Err(fatal),
        }
    }

    /// Whether a file listed as `node` is stored as it was in the parent
    /// backup (`parent`), unread.
    fn unchanged(&self, parent: &Node, node: &Node) -> bool {
        same_file(parent, node) && parent.content.iter().all(|id| self.repo.index_contains(id))
    }

    /// Whether a file of `size` bytes is read whole (not streamed).
    fn reads_whole(&self, size: u64) -> bool {
        size <= u64::from(self.repo.chunker.params().max_size)
    }

    /// The files of a directory that will be read whole (regular, not
    /// empty, changed since the parent backup), to be read ahead.
    fn prefetch_plan(
        &self,
        path: &Path,
        children: &[(String, std::io::Result<std::fs::Metadata>)],
        parent_children: &HashMap<String, Node>,
    ) -> Prefetch {
        let mut files = Vec::new();
        if self.cached_reads.load(Ordering::Relaxed) {
            for (at, (name, metadata)) in children.iter().enumerate() {
                let Ok(metadata) = metadata else { continue };
                if !metadata.is_file() || metadata.len() == 0 || !self.reads_whole(metadata.len()) {
                    continue;
                }
                // (Whether its chunks are still stored is looked up once,
                // when the file comes to be stored.)
                if let Some(parent) = parent_children.get(name) {
                    if same_file(parent, &node_from_metadata(String::new(), metadata)) {
                        continue;
                    }
                }
                files.push((at, path.join(name), metadata.len()));
            }
        }
        Prefetch::new(files)
    }

    /// Streams a file larger than one maximum chunk through the chunker.
    async fn store_large_file(&self, path: &Path) -> Result<(Vec<Id>, u64), ItemFailure> {
        let _slot = self
            .file_slots
            .acquire()
            .await
            .map_err(|_| ItemFailure::Fatal(closed()))?;
        self.tracker.set_current(path.display().to_string());
        let file = std::fs::File::open(path)
            .map_err(|error| ItemFailure::Item(format!("cannot open: {error}")))?;
        self.store_stream(Box::new(file)).await
    }

    async fn archive_stream(
        &self,
        name: String,
        reader: Box<dyn Read + Send>,
        mode: u32,
    ) -> Result<Option<Node>, ItemFailure> {
        let (content, size) = match self.store_stream(reader).await {
            Ok(done) => done,
            Err(ItemFailure::Item(message)) => {
                return Err(ItemFailure::Fatal(Error::Snapshot {
                    source_name: name,
                    detail: message,
                }))
            }
            Err(fatal) => return Err(fatal),
        };
        self.stats.files.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_total.fetch_add(size, Ordering::Relaxed);
        self.tracker.file_done();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        Ok(Some(Node {
            name,
            kind: NodeKind::File,
            mode: mode & 0o7777,
            mtime_ns: now,
            size,
            uid: None,
            gid: None,
            inode: None,
            ctime_ns: None,
            content,
            subtree: None,
            target: None,
        }))
    }

    /// Chunks and stores a byte stream; returns its chunk ids and length.
    async fn store_stream(
        &self,
        reader: Box<dyn Read + Send>,
    ) -> Result<(Vec<Id>, u64), ItemFailure> {
        // The reader takes each chunk's share of the memory budget before
        // handing it over, so only what is in the budget waits in the
        // channel or in flight.
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<
            std::io::Result<(Vec<u8>, tokio::sync::OwnedSemaphorePermit)>,
        >(2);
        let chunker = self.repo.chunker;
        let memory = self.memory.clone();
        let windows = self.windows.clone();
        let runtime = tokio::runtime::Handle::current();
        let reading = tokio::task::spawn_blocking(move || {
            let mut chunks = chunker.chunks_in(reader, windows.take().unwrap_or_default());
            for chunk in &mut chunks {
                let item = match chunk {
                    Ok(chunk) => {
                        let wanted = Self::memory_permits(chunk.len() as u64);
                        let Ok(permit) =
                            runtime.block_on(memory.clone().acquire_many_owned(wanted))
                        else {
                            break;
                        };
                        Ok((chunk, permit))
                    }
                    Err(error) => Err(error),
                };
                let failed = item.is_err();
                if sender.blocking_send(item).is_err() || failed {
                    break;
                }
            }
            windows.give(chunks.into_window());
        });
        let mut in_flight = FuturesOrdered::new();
        let mut ids = Vec::new();
        let mut size = 0u64;
        let mut done_reading = false;
        let mut read_error = None;
        let mut fatal = None;
        // Every chunk handed to `store_chunk` is driven to completion, even
        // after a read error: a chunk claimed by this backup must end up in
        // a pack, since other files may already reference it. The chunks in
        // flight are driven while waiting for the next: their permits are
        // what the reader may be waiting for.
        loop {
            let receiving =
                !done_reading && fatal.is_none() && in_flight.len() < CHUNKS_IN_FLIGHT_PER_FILE;
            if !receiving && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                received = receiver.recv(), if receiving => match received {
                    Some(Ok((chunk, permit))) => {
                        size += chunk.len() as u64;
                        self.stats
                            .bytes_read
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        self.tracker.bytes_done(chunk.len() as u64);
                        in_flight.push_back(self.store_chunk(BlobKind::Data, chunk).map(
                            move |done| {
                                drop(permit);
                                done
                            },
                        ));
                    }
                    Some(Err(error)) => {
                        read_error = Some(error);
                        done_reading = true;
                    }
                    None => done_reading = true,
                },
                Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                    Ok(id) => ids.push(id),
                    Err(error) => {
                        fatal.get_or_insert(error);
                    }
                },
            }
        }
        drop(receiver);
        let _ = reading.await;
        if let Some(error) = fatal {
            return Err(ItemFailure::Fatal(error));
        }
        if let Some(error) = read_error {
            return Err(ItemFailure::Item(format!("read failed: {error}")));
        }
        Ok((ids, size))
    }

    /// Reads a small file whole, then chunks, hashes and encodes it in one
    /// task on the CPU pool; stores the new chunks.
    async fn store_small_file(
        &self,
        path: &Path,
        size: u64,
    ) -> Result<(Vec<Id>, u64), ItemFailure> {
        // Up to a maximum-size chunk is read at once: small files share many
        // slots, larger ones the few slots of streamed files.
        let slots = if size <= SMALL_FILE {
            &self.small_file_slots
        } else {
            &self.file_slots
        };
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| ItemFailure::Fatal(closed()))?;
        // Held until the file's new chunks are in a pack.
        let _memory = self
            .memory
            .acquire_many(Self::memory_permits(size))
            .await
            .map_err(|_| ItemFailure::Fatal(closed()))?;
        let repo = self.repo.clone();
        let claimed = self.claimed.clone();
        let path_owned = path.to_path_buf();
        // The CPU pool reads the file itself when its bytes are in the page
        // cache (the walk asked for them to be read ahead, see
        // [`readahead`]): one thread wake-up for the whole file. Otherwise
        // the read waits on the disk in the blocking pool, which has many
        // threads (a cold cache needs many reads outstanding), and the
        // thread that read the file hands the bytes to the CPU pool itself:
        // this task wakes once, when the chunks are encoded. (Encoding in
        // the blocking pool too costs more: one zstd context per thread,
        // and more threads competing for the cores.)
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let job = SmallFile {
            repo,
            claimed,
            path: path_owned,
            size,
            sender,
        };
        let runtime = tokio::runtime::Handle::current();
        if self.cached_reads.load(Ordering::Relaxed) {
            let cached_reads = self.cached_reads.clone();
            rayon::spawn(move || match readahead::read_cached(&job.path, job.size) {
                Ok(Cached::Read(data)) => job.encode(data),
                Ok(Cached::WouldWait) => job.read_blocking(&runtime),
                Ok(Cached::Unsupported) => {
                    cached_reads.store(false, Ordering::Relaxed);
                    job.read_blocking(&runtime);
                }
                Err(error) => job.fail(error),
            });
        } else {
            job.read_blocking(&runtime);
        }
        let (size, encoded) = receiver
            .await
            .map_err(|_| ItemFailure::Fatal(closed()))?
            .map_err(|error| ItemFailure::Item(format!("read failed: {error}")))?;
        self.stats.bytes_read.fetch_add(size, Ordering::Relaxed);
        self.tracker.bytes_done(size);
        let mut ids = Vec::with_capacity(encoded.len());
        for chunk in encoded {
            ids.push(self.finish_chunk(BlobKind::Data, chunk).await?);
        }
        Ok((ids, size))
    }

    /// Hashes a chunk and, if new, encodes it and adds it to a pack.
    async fn store_chunk(&self, kind: BlobKind, plaintext: Vec<u8>) -> Result<Id> {
        let repo = self.repo.clone();
        let claimed = self.claimed.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let _ = sender.send(encode_chunk(&repo, &claimed, kind, &plaintext));
        });
        let encoded = receiver.await.map_err(|_| closed())?;
        self.finish_chunk(kind, encoded).await
    }

    /// Adds an encoded chunk to a pack if it is new; returns its id.
    async fn finish_chunk(&self, kind: BlobKind, encoded: Encoded) -> Result<Id> {
        match encoded {
            Encoded::Known(id) => Ok(id),
            Encoded::New {
                id,
                stored,
                flags,
                raw_length,
            } => {
                if kind == BlobKind::Data {
                    self.stats.chunks_added.fetch_add(1, Ordering::Relaxed);
                }
                self.add_to_pack(kind, id, flags, raw_length, stored)
                    .await?;
                Ok(id)
            }
        }
    }

    async fn add_to_pack(
        &self,
        kind: BlobKind,
        id: Id,
        flags: u8,
        raw_length: u32,
        stored: Vec<u8>,
    ) -> Result<()> {
        let pack_size = self.repo.config.pack_size as usize;
        let full = {
            let mut pack = match kind {
                BlobKind::Data => self.data_pack.lock().await,
                BlobKind::Tree => self.tree_pack.lock().await,
            };
            // A blob that would take the pack past its size goes to the next
            // pack: packs stay within one buffer of a fixed size.
            let full = if !pack.builder.is_empty() && pack.builder.len() + stored.len() > pack_size
            {
                Some(std::mem::take(&mut *pack))
            } else {
                None
            };
            if pack.builder.is_empty() {
                *pack = self.open_pack(kind, pack_size.max(stored.len())).await?;
            }
            let OpenPack { builder, stream } = &mut *pack;
            match stream {
                None => builder.add(id, kind, flags, raw_length, &stored),
                // Written as it fills, in blocks of exactly STREAM_BLOCK
                // bytes: a large blob is cut across blocks, so block
                // buffers never grow past their size.
                Some(stream) => {
                    builder.add_entry(id, kind, flags, raw_length, stored.len());
                    let mut rest = stored.as_slice();
                    while !rest.is_empty() {
                        let room = STREAM_BLOCK.saturating_sub(builder.pending()).max(1);
                        let (piece, after) = rest.split_at(room.min(rest.len()));
                        builder.append(piece);
                        rest = after;
                        if builder.pending() < STREAM_BLOCK {
                            continue;
                        }
                        let next = stream
                            .spare
                            .take()
                            .unwrap_or_else(|| Vec::with_capacity(STREAM_BLOCK));
                        let block = builder.take_pending(next);
                        if stream.blocks.send(StreamBlock::Bytes(block)).await.is_err() {
                            // The writer stopped: its outcome says why.
                            let failed = std::mem::take(&mut *pack);
                            return Err(failed.writer_error().await);
                        }
                    }
                }
            }
            full
        };
        if let Some(full) = full {
            self.upload(full).await?;
        }
        Ok(())
    }

    /// A new, empty pack for blobs of `kind` that will hold `size` bytes
    /// of blobs (the pack size, or a larger first blob): written as it
    /// fills when it is a data pack and the sink stages objects, otherwise
    /// kept whole in a buffer (sized once so it never grows by doubling,
    /// and reused for data packs: fresh memory costs a page fault per page;
    /// a tree pack fills slowly, and its untouched pages cost no memory).
    async fn open_pack(&self, kind: BlobKind, size: usize) -> Result<OpenPack> {
        if kind == BlobKind::Data && !self.no_staging.load(Ordering::Relaxed) {
            let sink = self.repo.sink.clone();
            let staged = tokio::task::spawn_blocking(move || sink.stage())
                .await
                .map_err(|_| closed())??;
            match staged {
                Some(staged) => {
                    return Ok(OpenPack {
                        builder: PackBuilder::with_capacity(STREAM_BLOCK),
                        stream: Some(PackStream::start(staged, self.block_buffers.clone())),
                    })
                }
                None => self.no_staging.store(true, Ordering::Relaxed),
            }
        }
        let capacity = size + PACK_HEADER_ROOM;
        let reused = match kind {
            BlobKind::Data => self.pack_buffers.take(),
            BlobKind::Tree => None,
        };
        let builder = match reused {
            Some(buffer) if buffer.capacity() >= capacity => PackBuilder::with_buffer(buffer),
            _ => PackBuilder::with_capacity(capacity),
        };
        Ok(OpenPack {
            builder,
            stream: None,
        })
    }

    /// Finishes a pack and uploads it in the background (bounded).
    async fn upload(&self, pack: OpenPack) -> Result<()> {
        let permit = self
            .upload_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        // Surface upload failures early instead of piling up more work.
        let mut uploads = self.uploads.lock().await;
        while let Some(done) = uploads.try_join_next() {
            self.on_uploaded(done).await?;
        }
        let repo = self.repo.clone();
        let OpenPack { builder, stream } = pack;
        if let Some(stream) = stream {
            uploads.spawn(async move {
                let key = repo.key().cloned();
                let (tail, blobs) = builder.finish_pending(key.as_ref());
                let outcome = stream.finish(tail).await;
                drop(permit);
                let (id, size) = outcome?;
                Ok(IndexedPack { id, size, blobs })
            });
            return Ok(());
        }
        let pool = self.pack_buffers.clone();
        uploads.spawn(async move {
            let key = repo.key().cloned();
            let (id, bytes, blobs) =
                tokio::task::spawn_blocking(move || builder.finish(key.as_ref()))
                    .await
                    .map_err(|_| closed())?;
            let size = bytes.len() as u64;
            let pack_key = pack::pack_key(&id);
            let bytes = Bytes::from(bytes);
            repo.sink
                .put(&pack_key, bytes.clone(), PutMode::Overwrite)
                .await?;
            // The buffer back for the next pack, unless the sink kept it.
            if let Ok(buffer) = bytes.try_into_mut() {
                pool.give(Vec::from(buffer));
            }
            drop(permit);
            Ok(IndexedPack { id, size, blobs })
        });
        Ok(())
    }

    async fn on_uploaded(
        &self,
        done: Result<Result<IndexedPack>, tokio::task::JoinError>,
    ) -> Result<()> {
        let pack = done.map_err(|_| closed())??;
        self.bytes_added.fetch_add(pack.size, Ordering::Relaxed);
        let mut unindexed = self.unindexed.lock().await;
        unindexed.push(pack);
        if unindexed.len() >= INDEX_EVERY_PACKS {
            let packs = std::mem::take(&mut *unindexed);
            drop(unindexed);
            self.write_index(packs).await?;
        }
        Ok(())
    }

    async fn write_index(&self, packs: Vec<IndexedPack>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            supersedes: vec![IndexFile::uniqueness_marker()],
            packs,
        };
        let id = self
            .repo
            .put_named(INDEX_PREFIX, ObjectKind::Index, &file.encode())
            .await?;
        if let Ok(mut index) = self.repo.index.write() {
            index.add_file(id, &file);
        }
        Ok(())
    }

    /// Uploads the partly filled packs, waits for every upload and writes
    /// the last index.
    async fn flush(&self) -> Result<()> {
        let mut first_error = None;
        for pack in [&self.data_pack, &self.tree_pack] {
            let open = std::mem::take(&mut *pack.lock().await);
            if !open.builder.is_empty() {
                if let Err(error) = self.upload(open).await {
                    first_error.get_or_insert(error);
                }
            }
        }
        loop {
            let next = self.uploads.lock().await.join_next().await;
            match next {
                Some(done) => {
                    if let Err(error) = self.on_uploaded(done).await {
                        first_error.get_or_insert(error);
                    }
                }
                None => break,
            }
        }
        let packs = std::mem::take(&mut *self.unindexed.lock().await);
        if let Err(error) = self.write_index(packs).await {
            first_error.get_or_insert(error);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Encodes a directory listing, chunks it and stores the chunks.
    async fn store_tree(&self, mut nodes: Vec<Node>) -> Result<Vec<Id>> {
        let bytes = tree::encode(&mut nodes)?;
        let mut ids = Vec::new();
        for chunk in self.repo.tree_chunker.split(&bytes) {
            ids.push(self.store_chunk(BlobKind::Tree, chunk.to_vec()).await?);
        }
        Ok(ids)
    }
}

/// The pack being filled: its blobs, and its writer when the pack is
/// written as it fills (handed [`STREAM_BLOCK`] bytes at a time).
#[derive(Default)]
struct OpenPack {
    builder: PackBuilder,
    stream: Option<PackStream>,
}

impl OpenPack {
    /// Why the writer of this (streamed) pack stopped early.
    async fn writer_error(self) -> Error {
        match self.stream {
            Some(stream) => match stream.writer.await {
                Ok(Err(error)) => error,
                _ => closed(),
            },
            None => closed(),
        }
    }
}

/// What a pack's writer receives.
enum StreamBlock {
    /// More of the pack.
    Bytes(Vec<u8>),
    /// The pack's last bytes (header and trailer): hash, commit, done.
    Last(Vec<u8>),
}

/// A blocking task that appends a pack's bytes to a staged object as they
/// come, hashing them, and commits the object under the pack's id once it
/// has the last bytes. A pack abandoned before (a failed backup) is
/// discarded, never committed.
struct PackStream {
    blocks: tokio::sync::mpsc::Sender<StreamBlock>,
    writer: tokio::task::JoinHandle<Result<(Id, u64)>>,
    /// Buffers of blocks written (shared by the writer's packs).
    spare: Arc<BufferPool>,
}

impl PackStream {
    fn start(mut staged: Box<dyn StagedObject>, spare: Arc<BufferPool>) -> PackStream {
        use sha2::{Digest, Sha256};
        let (blocks, mut receiver) = tokio::sync::mpsc::channel(STREAM_BLOCKS_QUEUED);
        let returned = spare.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(block) = receiver.blocking_recv() {
                let (bytes, last) = match block {
                    StreamBlock::Bytes(bytes) => (bytes, false),
                    StreamBlock::Last(bytes) => (bytes, true),
                };
                hasher.update(&bytes);
                size += bytes.len() as u64;
                staged.append(&bytes)?;
                returned.give(bytes);
                if last {
                    let id = Id(hasher.finalize().into());
                    staged.commit(&pack::pack_key(&id))?;
                    return Ok((id, size));
                }
            }
            // Dropped unfinished: the staged object goes with it.
            Err(closed())
        });
        PackStream {
            blocks,
            writer,
            spare,
        }
    }

    /// Sends the pack's last bytes and waits for it to be stored.
    async fn finish(self, tail: Vec<u8>) -> Result<(Id, u64)> {
        // A send fails only when the writer stopped; its outcome says why.
        let _ = self.blocks.send(StreamBlock::Last(tail)).await;
        drop(self.blocks);
        self.writer.await.map_err(|_| closed())?
    }
}

/// Whether a file listed as `node` looks as it did in the parent backup
/// (`parent`): same size, times and inode.
fn same_file(parent: &Node, node: &Node) -> bool {
    parent.kind == NodeKind::File
        && parent.size == node.size
        && parent.mtime_ns == node.mtime_ns
        && parent.ctime_ns == node.ctime_ns
        && parent.inode == node.inode
}

fn closed() -> Error {
    Error::Io {
        context: "backup pipeline stopped",
        path: PathBuf::new(),
        source: std::io::Error::other("a worker task ended unexpectedly"),
    }
}

fn node_from_metadata(name: String, metadata: &std::fs::Metadata) -> Node {
    Node {
        name,
        kind: NodeKind::File,
        mode: metadata.mode() & 0o7777,
        mtime_ns: metadata
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(metadata.mtime_nsec()),
        size: if metadata.is_file() {
            metadata.len()
        } else {
            0
        },
        uid: Some(metadata.uid()),
        gid: Some(metadata.gid()),
        inode: Some(metadata.ino()),
        ctime_ns: Some(
            metadata
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(metadata.ctime_nsec()),
        ),
        content: Vec::new(),
        subtree: None,
        target: None,
    }
}

/// A directory's entries (sorted by name) with their metadata (not
/// following symlinks), read in one blocking task; and the paths of entries
/// whose names are not UTF-8 (the format stores UTF-8 names only).
#[allow(clippy::type_complexity)]
async fn read_dir_names(
    path: &Path,
) -> std::result::Result<
    (
        Vec<(String, std::io::Result<std::fs::Metadata>)>,
        Vec<PathBuf>,
    ),
    String,
> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut names = Vec::new();
        let mut unnamed = Vec::new();
        let reader =
            std::fs::read_dir(&path).map_err(|error| format!("cannot list directory: {error}"))?;
        for entry in reader {
            let entry = entry.map_err(|error| format!("cannot list directory: {error}"))?;
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(raw) => unnamed.push(path.join(raw)),
            }
        }
        names.sort();
        let entries = names
            .into_iter()
            .map(|name| {
                let metadata = std::fs::symlink_metadata(path.join(&name));
                (name, metadata)
            })
            .collect();
        Ok((entries, unnamed))
    })
    .await
    .map_err(|error| format!("cannot list directory: {error}"))?
}

#[cfg(test)]
mod tests {
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
    ) -> (Vec<Id>, BackupStats, Vec<ItemError>) {
        let writer = Arc::new(BackupWriter::new(
            repo.engine().clone(),
            Tracker::new("backup"),
        ));
        writer.cached_reads.store(cached_reads, Ordering::Relaxed);
        let entries = vec![Entry::Path {
            name: "tree".into(),
            path: dir.to_path_buf(),
        }];
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
