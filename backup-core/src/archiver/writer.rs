//! The state of one backup being written: what it has stored, its
//! packs in progress, its limits; the walk over the entries starts here.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::Engine;
use crate::format::index::IndexedPack;
use crate::format::manifest::{MANIFEST_VERSION, MANIFEST_VERSION_2};
use crate::format::pack::BlobKind;
use crate::format::tree::{self, Node};
use crate::outcome::{FailureKind, ItemFailure};
use crate::progress::Tracker;
use crate::snapshot::Entry;
use crate::{Error, Id, Result};

use super::walk::Scope;
use super::*;

pub(super) struct BackupWriter {
    pub(super) repo: Arc<Engine>,
    pub(super) tracker: Arc<Tracker>,
    /// Chunks stored in the repository or by this backup so far.
    pub(super) claimed: Arc<Mutex<HashSet<Id>>>,
    pub(super) data_pack: tokio::sync::Mutex<OpenPack>,
    pub(super) tree_pack: tokio::sync::Mutex<OpenPack>,
    /// Set once the sink has declined to stage a pack.
    pub(super) no_staging: std::sync::atomic::AtomicBool,
    /// Cleared once reads that do not wait turn out to be unavailable
    /// (see [`readahead`]).
    pub(super) cached_reads: Arc<std::sync::atomic::AtomicBool>,
    /// Buffers of blocks written, for the next blocks.
    pub(super) block_buffers: Arc<BufferPool>,
    /// Chunker windows of streamed files that ended.
    pub(super) windows: Arc<BufferPool>,
    pub(super) uploads: tokio::sync::Mutex<JoinSet<Result<IndexedPack>>>,
    pub(super) upload_slots: Arc<Semaphore>,
    /// Buffers of stored packs, for the next packs.
    pub(super) pack_buffers: Arc<BufferPool>,
    pub(super) file_slots: Semaphore,
    pub(super) small_file_slots: Semaphore,
    pub(super) memory: Arc<Semaphore>,
    pub(super) unindexed: tokio::sync::Mutex<Vec<IndexedPack>>,
    pub(super) stats: Counters,
    pub(super) bytes_added: AtomicU64,
    pub(super) errors: Mutex<Vec<ItemFailure>>,
    /// Set once a listing holds a field of manifest version 2.
    pub(super) version_2: std::sync::atomic::AtomicBool,
}

impl BackupWriter {
    pub(super) fn new(repo: Arc<Engine>, tracker: Arc<Tracker>) -> Self {
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
            version_2: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The memory-budget permits for `bytes` of chunk data (see
    /// [`MEMORY_BUDGET_KIB`]).
    pub(super) fn memory_permits(bytes: u64) -> u32 {
        u32::try_from((bytes * 2).div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, MEMORY_BUDGET_KIB)
    }

    pub(super) fn record_error(&self, path: &Path, kind: FailureKind, message: String) {
        tracing::warn!(path = %path.display(), ?kind, %message, "item not backed up");
        let failure = ItemFailure::new(path.display().to_string(), kind, message);
        self.tracker.item_failed(&failure);
        if let Ok(mut errors) = self.errors.lock() {
            errors.push(failure);
        }
    }

    pub(super) async fn archive_entries(
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
                Entry::Path {
                    path, selection, ..
                } => {
                    let scope = match selection {
                        Some(selection) => Some(Arc::new(Scope::of(selection, &path).await)),
                        None => None,
                    };
                    self.archive_path(path, name, None, parent.cloned(), scope)
                        .await
                }
                Entry::Stream { reader, mode, .. } => self.archive_stream(name, reader, mode).await,
                Entry::Tar {
                    reader, capture, ..
                } => self.archive_tar(name, reader, capture).await,
                Entry::Files { files, fetch, .. } => {
                    self.archive_files(name, files, fetch, parent.cloned())
                        .await
                }
            };
            match outcome {
                Ok(Some(node)) => nodes.push(node),
                Ok(None) => {}
                Err(FileFailure::Fatal(error)) => return Err(error),
                Err(FileFailure::Item(_, message)) => {
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
    pub(super) async fn load_parent_tree(&self, what: &str, ids: &[Id]) -> HashMap<String, Node> {
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

    /// Encodes a directory listing, chunks it and stores the chunks.
    pub(super) async fn store_tree(&self, mut nodes: Vec<Node>) -> Result<Vec<Id>> {
        if nodes.iter().any(Node::needs_version_2) {
            self.version_2.store(true, Ordering::Relaxed);
        }
        let bytes = tree::encode(&mut nodes)?;
        let mut ids = Vec::new();
        for chunk in self.repo.tree_chunker.split(&bytes) {
            ids.push(self.store_chunk(BlobKind::Tree, chunk.to_vec()).await?);
        }
        Ok(ids)
    }

    /// Ends the backup whose walk gave `root`: whether or not the walk
    /// succeeded, finishes the uploads already started so that a rerun can
    /// reuse them; reports the first error, else what was stored.
    pub(super) async fn finish(&self, root: Result<Vec<Id>>) -> Result<Archived> {
        let flushed = self.flush().await;
        let root = root?;
        flushed?;
        let mut stats = self.stats.snapshot();
        stats.bytes_added = self.bytes_added.load(Ordering::Relaxed);
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        Ok(Archived {
            root,
            stats,
            errors,
            manifest_version: if self.version_2.load(Ordering::Relaxed) {
                MANIFEST_VERSION_2
            } else {
                MANIFEST_VERSION
            },
        })
    }
}
