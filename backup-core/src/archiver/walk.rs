//! The walk over a directory tree: metadata, the parent backup's
//! unchanged files, and the read-ahead plan for small files.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::format::tree::{Node, NodeKind, Xattr};
use crate::readahead::{self};
use crate::snapshot::{Selection, Verdict};
use crate::Result;

use super::*;

/// How many times a file that changes while it is read is read before it
/// is reported as changed instead of stored.
const READ_ATTEMPTS: u32 = 2;

/// Files of one directory to be read ahead, in batches of at most
/// [`PREFETCH_FILES`] files and [`PREFETCH_BYTES`] bytes: the first two
/// batches when the walk starts on the directory, each later one when it
/// reaches the first file of the batch before, so the kernel reads one to
/// two batches ahead of the files being read.
pub(super) struct Prefetch {
    /// Each batch: the position of its first file among the directory's
    /// children, and the files.
    pub(super) batches: Vec<(usize, Vec<PathBuf>)>,
    /// The first batch not asked for yet.
    pub(super) next: usize,
}

impl Prefetch {
    /// `files`: position among the children, path and size, in order.
    pub(super) fn new(files: Vec<(usize, PathBuf, u64)>) -> Prefetch {
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
    pub(super) fn reached(&mut self, at: usize) {
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

/// The selection a walk applies, with the device of the tree's root.
pub(super) struct Scope {
    selection: Arc<Selection>,
    root_dev: u64,
}

impl Scope {
    /// The scope of a walk of the tree at `root`.
    pub(super) async fn of(selection: Arc<Selection>, root: &Path) -> Scope {
        let root_dev = tokio::fs::symlink_metadata(root)
            .await
            .map(|metadata| metadata.dev())
            .unwrap_or(0);
        Scope {
            selection,
            root_dev,
        }
    }

    /// Whether a directory found with `metadata` is on another file system
    /// than the root's, and is to be stored without its contents.
    fn beyond(&self, metadata: &std::fs::Metadata) -> bool {
        self.selection.one_file_system_on() && metadata.dev() != self.root_dev
    }

    /// The entries of the directory `dir` that are backed up.
    fn select(
        &self,
        dir: &Path,
        mut children: Vec<(String, std::io::Result<std::fs::Metadata>)>,
    ) -> Vec<(String, std::io::Result<std::fs::Metadata>)> {
        let names: Vec<&str> = children.iter().map(|(name, _)| name.as_str()).collect();
        if let Some(kept) = self.selection.tagged(dir, &names) {
            children.retain(|(name, _)| kept.contains(name));
        }
        children.retain(|(name, metadata)| match metadata {
            Ok(metadata) => {
                self.selection
                    .verdict(&dir.join(name), metadata, self.root_dev)
                    != Verdict::Skip
            }
            // Reported when the walk reaches it.
            Err(_) => true,
        });
        children
    }
}

impl BackupWriter {
    pub(super) fn archive_path(
        self: &Arc<Self>,
        path: PathBuf,
        name: String,
        metadata: Option<std::io::Result<std::fs::Metadata>>,
        parent: Option<Node>,
        scope: Option<Arc<Scope>>,
    ) -> BoxFuture<'_, Result<Option<Node>, FileFailure>> {
        async move {
            let metadata = match metadata {
                Some(metadata) => metadata,
                None => tokio::fs::symlink_metadata(&path).await,
            };
            let metadata = match metadata {
                Ok(metadata) => metadata,
                Err(error) => {
                    self.record_error(
                        &path,
                        FailureKind::of_io(&error),
                        format!("cannot read metadata: {error}"),
                    );
                    return Ok(None);
                }
            };
            let mut node = node_from_metadata(name, &metadata);
            let file_type = metadata.file_type();
            if file_type.is_file() || file_type.is_dir() {
                node.xattrs = self.read_xattrs(&path);
            }
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
                // A mount point, with --one-file-system: stored empty.
                let beyond = scope.as_ref().is_some_and(|scope| scope.beyond(&metadata));
                let children = match read_dir_names(&path).await {
                    _ if beyond => Vec::new(),
                    Ok((children, unnamed)) => {
                        for skipped in unnamed {
                            self.record_error(
                                &skipped,
                                FailureKind::Unsupported,
                                "the name is not valid UTF-8: not backed up".into(),
                            );
                        }
                        match &scope {
                            Some(scope) => scope.select(&path, children),
                            None => children,
                        }
                    }
                    Err((kind, message)) => {
                        self.record_error(&path, kind, message);
                        return Ok(None);
                    }
                };
                let mut nodes = Vec::with_capacity(children.len());
                let mut prefetch = self.prefetch_plan(&path, &children, &parent_children);
                let mut results = futures::stream::iter(children.into_iter().enumerate())
                    .map(|(at, (child, metadata))| {
                        prefetch.reached(at);
                        let parent = parent_children.get(&child).cloned();
                        self.archive_path(
                            path.join(&child),
                            child,
                            Some(metadata),
                            parent,
                            scope.clone(),
                        )
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
                        self.record_error(
                            &path,
                            FailureKind::of_io(&error),
                            format!("cannot read link: {error}"),
                        );
                        return Ok(None);
                    }
                };
                let Some(target) = target.to_str() else {
                    self.record_error(
                        &path,
                        FailureKind::Unsupported,
                        "link target is not UTF-8".into(),
                    );
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

    pub(super) async fn archive_file(
        &self,
        path: &Path,
        mut node: Node,
        parent: Option<Node>,
    ) -> Result<Option<Node>, FileFailure> {
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
        let listed_size = node.size;
        let mut attempt = 1;
        let outcome = loop {
            let stored = if self.reads_whole(node.size) {
                self.store_small_file(path, node.size).await
            } else {
                self.store_large_file(path).await
            };
            let (content, size) = match stored {
                Ok(stored) => stored,
                Err(failure) => break Err(failure),
            };
            // The file as it is now: unchanged since the look before the
            // read (same size, times and inode, and as many bytes read), or
            // what was read may never have been on disk at one moment.
            let now = match tokio::fs::symlink_metadata(path).await {
                Ok(now) => now,
                Err(error) => {
                    break Err(FileFailure::Item(
                        FailureKind::of_io(&error),
                        format!("vanished while being read: {error}"),
                    ))
                }
            };
            let after = node_from_metadata(String::new(), &now);
            if now.is_file() && same_file(&node, &after) && size == node.size {
                node.content = content;
                break Ok(());
            }
            if attempt == READ_ATTEMPTS || !now.is_file() {
                break Err(FileFailure::Item(
                    FailureKind::Changed,
                    format!(
                        "changed while being read, {attempt} times: not backed up (its size \
                         went from {} to {} bytes)",
                        node.size,
                        now.len()
                    ),
                ));
            }
            tracing::info!(path = %path.display(), attempt, "changed while being read; reading it again");
            attempt += 1;
            node = Node {
                name: std::mem::take(&mut node.name),
                kind: NodeKind::File,
                xattrs: std::mem::take(&mut node.xattrs),
                ..node_from_metadata(String::new(), &now)
            };
        };
        // The total counted the size the file was listed with.
        self.stats
            .bytes_total
            .fetch_sub(listed_size, Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                self.stats
                    .bytes_total
                    .fetch_add(node.size, Ordering::Relaxed);
                self.tracker.file_done();
                Ok(Some(node))
            }
            Err(FileFailure::Item(kind, message)) => {
                self.stats.files.fetch_sub(1, Ordering::Relaxed);
                self.record_error(path, kind, message);
                Ok(None)
            }
            Err(fatal) => Err(fatal),
        }
    }

    /// Whether a file listed as `node` is stored as it was in the parent
    /// backup (`parent`), unread.
    pub(super) fn unchanged(&self, parent: &Node, node: &Node) -> bool {
        same_file(parent, node) && parent.content.iter().all(|id| self.repo.index_contains(id))
    }

    /// Whether a file of `size` bytes is read whole (not streamed).
    pub(super) fn reads_whole(&self, size: u64) -> bool {
        size <= u64::from(self.repo.chunker.params().max_size)
    }

    /// The files of a directory that will be read whole (regular, not
    /// empty, changed since the parent backup), to be read ahead.
    pub(super) fn prefetch_plan(
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
}

impl BackupWriter {
    /// The extended attributes of the file or directory at `path` (POSIX
    /// ACLs among them), sorted by name; none where the file system keeps
    /// none. One that cannot be read, or whose name is not UTF-8, is
    /// reported (the item is stored without it).
    fn read_xattrs(&self, path: &Path) -> Vec<Xattr> {
        let names = match xattr::list(path) {
            Ok(names) => names,
            Err(error) if xattrs_unsupported(&error) => return Vec::new(),
            Err(error) => {
                self.record_error(
                    path,
                    FailureKind::of_io(&error),
                    format!("cannot list extended attributes (stored without them): {error}"),
                );
                return Vec::new();
            }
        };
        let mut xattrs = Vec::new();
        for name in names {
            let Some(text) = name.to_str() else {
                self.record_error(
                    path,
                    FailureKind::Unsupported,
                    format!(
                        "extended attribute {name:?} has a name that is not UTF-8: not backed up"
                    ),
                );
                continue;
            };
            match xattr::get(path, &name) {
                Ok(Some(value)) => xattrs.push(Xattr {
                    name: text.to_string(),
                    value,
                }),
                // Removed since it was listed.
                Ok(None) => {}
                Err(error) => self.record_error(
                    path,
                    FailureKind::of_io(&error),
                    format!("cannot read extended attribute {text:?} (stored without it): {error}"),
                ),
            }
        }
        xattrs.sort_by(|a, b| a.name.cmp(&b.name));
        xattrs
    }
}

/// Whether `error` says the file system keeps no extended attributes.
fn xattrs_unsupported(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::ENOTSUP) || error.kind() == std::io::ErrorKind::Unsupported
}

/// Whether a file listed as `node` looks as it did in the parent backup
/// (`parent`): same size, times and inode.
pub(super) fn same_file(parent: &Node, node: &Node) -> bool {
    parent.kind == NodeKind::File
        && parent.size == node.size
        && parent.mtime_ns == node.mtime_ns
        && parent.ctime_ns == node.ctime_ns
        && parent.inode == node.inode
}

pub(super) fn node_from_metadata(name: String, metadata: &std::fs::Metadata) -> Node {
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
        // Hard links: a file's other names are found by device and inode.
        links: (metadata.is_file() && metadata.nlink() > 1).then(|| metadata.nlink()),
        dev: (metadata.is_file() && metadata.nlink() > 1).then(|| metadata.dev()),
        xattrs: Vec::new(),
    }
}

/// A directory's entries (sorted by name) with their metadata (not
/// following symlinks), read in one blocking task; and the paths of entries
/// whose names are not UTF-8 (the format stores UTF-8 names only).
#[allow(clippy::type_complexity)]
pub(super) async fn read_dir_names(
    path: &Path,
) -> std::result::Result<
    (
        Vec<(String, std::io::Result<std::fs::Metadata>)>,
        Vec<PathBuf>,
    ),
    (FailureKind, String),
> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut names = Vec::new();
        let mut unnamed = Vec::new();
        let reader = std::fs::read_dir(&path).map_err(|error| {
            (
                FailureKind::of_io(&error),
                format!("cannot list directory: {error}"),
            )
        })?;
        for entry in reader {
            let entry = entry.map_err(|error| {
                (
                    FailureKind::of_io(&error),
                    format!("cannot list directory: {error}"),
                )
            })?;
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
    .map_err(|error| {
        (
            FailureKind::Other,
            format!("cannot list directory: {error}"),
        )
    })?
}
