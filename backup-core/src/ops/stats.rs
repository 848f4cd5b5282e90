//! Sizes of backups: what they restore to, and the distinct chunks they
//! reference with the space those take in packs.
//!
//! Each distinct directory listing is read once for all the backups
//! counted, and its totals are remembered: a listing shared by many
//! backups, or by many places in one backup, counts at every place it
//! appears without being read again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::engine::Engine;
use crate::format::manifest::Backup;
use crate::format::tree::{Node, NodeKind};
use crate::{Error, Id, Result};

/// The deepest directory nesting read: the limit restore and `ls` apply.
const MAX_DEPTH: usize = 2048;

/// What [`Repository::stats`](crate::Repository::stats) counts, after
/// restic's modes of the same names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatsMode {
    /// The files, directories and symlinks the backups restore to, and the
    /// bytes of their files.
    #[default]
    RestoreSize,
    /// As [`StatsMode::RestoreSize`], and the distinct chunks the backups
    /// reference ([`StatsReport::raw_data`]).
    RawData,
}

/// The distinct chunks some backups reference, and their sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RawDataStats {
    /// File content chunks.
    pub data_chunks: u64,
    /// Their uncompressed size in bytes.
    pub data_size: u64,
    /// Directory listing chunks.
    pub tree_chunks: u64,
    /// Their uncompressed size in bytes.
    pub tree_size: u64,
    /// The bytes all these chunks take in packs (compressed, and sealed in
    /// an encrypted repository).
    pub stored_size: u64,
}

impl RawDataStats {
    /// Data and tree chunks together.
    pub fn chunks(&self) -> u64 {
        self.data_chunks.saturating_add(self.tree_chunks)
    }

    /// The uncompressed size of data and tree chunks together.
    pub fn uncompressed_size(&self) -> u64 {
        self.data_size.saturating_add(self.tree_size)
    }
}

/// What [`Repository::stats`](crate::Repository::stats) counted.
///
/// # Examples
///
/// ```
/// # async fn demo() -> backup_core::Result<()> {
/// use std::sync::Arc;
/// use backup_core::{BackupOptions, DirectorySnapshotter, InitOptions, MemorySink, Repository, StatsMode};
///
/// let source = tempfile::tempdir().unwrap();
/// std::fs::write(source.path().join("hello.txt"), b"hello").unwrap();
/// let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
/// let snapshotter = DirectorySnapshotter::new(vec![source.path().into()]);
/// repo.backup(&snapshotter, BackupOptions::default()).await?;
/// repo.backup(&snapshotter, BackupOptions::default()).await?;
/// let backups = repo.list().await?;
/// let stats = repo.stats(&backups, StatsMode::RawData).await?;
/// assert_eq!((stats.backups, stats.files, stats.restore_size), (2, 2, 10));
/// let raw = stats.raw_data.unwrap();
/// assert_eq!((raw.data_chunks, raw.data_size), (1, 5));
/// assert_eq!(stats.deduplication_ratio(), Some(2.0));
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StatsReport {
    /// The backups counted (each once, however often it was named).
    pub backups: u64,
    /// Regular files, summed over the backups.
    pub files: u64,
    /// Directories, summed over the backups.
    pub dirs: u64,
    /// Symlinks, summed over the backups.
    pub symlinks: u64,
    /// The bytes of all those files: what restoring every backup counted
    /// would write.
    pub restore_size: u64,
    /// The distinct chunks, with [`StatsMode::RawData`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_data: Option<RawDataStats>,
}

impl StatsReport {
    /// What deduplication saves: the restore size over the uncompressed
    /// size of the distinct file chunks (2.0 for two backups of the same
    /// files). `None` without raw data, or when no file has content.
    pub fn deduplication_ratio(&self) -> Option<f64> {
        let raw = self.raw_data?;
        (raw.data_size > 0).then(|| self.restore_size as f64 / raw.data_size as f64)
    }

    /// What compression saves: the uncompressed size of the distinct chunks
    /// over the bytes they take in packs. `None` without raw data, or when
    /// nothing is stored.
    pub fn compression_ratio(&self) -> Option<f64> {
        let raw = self.raw_data?;
        (raw.stored_size > 0).then(|| raw.uncompressed_size() as f64 / raw.stored_size as f64)
    }

    /// The share of the restore size that deduplication and compression
    /// save together, between 0 and 1 (`1 - stored size / restore size`;
    /// negative when the packs take more, as for tiny files). `None`
    /// without raw data, or when the restore size is 0.
    pub fn space_saving(&self) -> Option<f64> {
        let raw = self.raw_data?;
        (self.restore_size > 0).then(|| 1.0 - raw.stored_size as f64 / self.restore_size as f64)
    }
}

/// What a directory listing expands to, below it.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    files: u64,
    dirs: u64,
    symlinks: u64,
    bytes: u64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.files = self.files.saturating_add(other.files);
        self.dirs = self.dirs.saturating_add(other.dirs);
        self.symlinks = self.symlinks.saturating_add(other.symlinks);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// One listing on the way down, read (`nodes`) or not yet.
struct Frame {
    ids: Vec<Id>,
    path: String,
    depth: usize,
    nodes: Option<Arc<Vec<Node>>>,
}

/// Counts `backups`; see [`Repository::stats`](crate::Repository::stats).
pub(crate) async fn run(
    engine: &Arc<Engine>,
    backups: &[Backup],
    mode: StatsMode,
) -> Result<StatsReport> {
    let raw = mode == StatsMode::RawData;
    let mut memo: HashMap<Vec<Id>, Totals> = HashMap::new();
    let mut data: HashSet<Id> = HashSet::new();
    let mut trees: HashSet<Id> = HashSet::new();
    let mut seen: HashSet<Id> = HashSet::new();
    let mut report = StatsReport::default();
    let mut sum = Totals::default();
    for backup in backups {
        if !seen.insert(backup.id) {
            continue;
        }
        report.backups += 1;
        let root = &backup.manifest.root;
        sum.add(
            totals(
                engine,
                root,
                &mut memo,
                raw.then_some((&mut data, &mut trees)),
            )
            .await?,
        );
    }
    report.files = sum.files;
    report.dirs = sum.dirs;
    report.symlinks = sum.symlinks;
    report.restore_size = sum.bytes;
    if raw {
        let (data_chunks, data_size) = raw_size(engine, data.iter())?;
        let (tree_chunks, tree_size) = raw_size(engine, trees.iter())?;
        let stored_size = stored_size(engine, data.iter().chain(trees.iter()))?;
        report.raw_data = Some(RawDataStats {
            data_chunks,
            data_size,
            tree_chunks,
            tree_size,
            stored_size,
        });
    }
    Ok(report)
}

/// The totals below the listing `root`, reading each listing not in `memo`
/// once (and adding its chunks to `chunks`, when given).
async fn totals(
    engine: &Engine,
    root: &[Id],
    memo: &mut HashMap<Vec<Id>, Totals>,
    mut chunks: Option<(&mut HashSet<Id>, &mut HashSet<Id>)>,
) -> Result<Totals> {
    let refuse = |detail: String| Error::corrupt("tree of \"/\"", 0, detail);
    // Listings read whose totals are not known yet: the way down.
    let mut open: HashSet<Vec<Id>> = HashSet::new();
    let mut stack = vec![Frame {
        ids: root.to_vec(),
        path: String::new(),
        depth: 0,
        nodes: None,
    }];
    while let Some(frame) = stack.pop() {
        match frame.nodes {
            None => {
                if memo.contains_key(&frame.ids) {
                    continue;
                }
                let shown = if frame.path.is_empty() {
                    "/".to_string()
                } else {
                    frame.path.clone()
                };
                if frame.depth > MAX_DEPTH {
                    return Err(refuse(format!(
                        "directories are nested deeper than {MAX_DEPTH} levels at {shown:?}"
                    )));
                }
                if !open.insert(frame.ids.clone()) {
                    return Err(refuse(format!("directory {shown:?} contains itself")));
                }
                let nodes = Arc::new(engine.load_tree(&shown, &frame.ids).await?);
                if let Some((data, trees)) = chunks.as_mut() {
                    trees.extend(frame.ids.iter().copied());
                    for node in nodes.iter() {
                        data.extend(node.content.iter().copied());
                    }
                }
                let children: Vec<Frame> = nodes
                    .iter()
                    .filter_map(|node| {
                        let subtree = node.subtree.as_ref()?;
                        Some(Frame {
                            ids: subtree.clone(),
                            path: if frame.path.is_empty() {
                                node.name.clone()
                            } else {
                                format!("{}/{}", frame.path, node.name)
                            },
                            depth: frame.depth + 1,
                            nodes: None,
                        })
                    })
                    .collect();
                if let Some(child) = children.iter().find(|child| open.contains(&child.ids)) {
                    return Err(refuse(format!(
                        "directory {:?} contains one of its own ancestors",
                        child.path
                    )));
                }
                stack.push(Frame {
                    nodes: Some(nodes),
                    ..frame
                });
                stack.extend(children);
            }
            Some(nodes) => {
                let mut total = Totals::default();
                for node in nodes.iter() {
                    match node.kind {
                        NodeKind::File => {
                            total.files += 1;
                            total.bytes = total.bytes.saturating_add(node.size);
                        }
                        NodeKind::Dir => total.dirs += 1,
                        NodeKind::Symlink => total.symlinks += 1,
                    }
                    if let Some(below) = node.subtree.as_ref().and_then(|ids| memo.get(ids)) {
                        total.add(*below);
                    }
                }
                open.remove(&frame.ids);
                memo.insert(frame.ids, total);
            }
        }
    }
    Ok(memo.get(root).copied().unwrap_or_default())
}

/// The number of `chunks` and their total uncompressed size, from the
/// index.
///
/// # Errors
///
/// [`Error::Corrupt`] for a chunk in no index.
pub(super) fn raw_size<'a>(
    engine: &Engine,
    chunks: impl Iterator<Item = &'a Id>,
) -> Result<(u64, u64)> {
    sizes(engine, chunks, |entry| entry.raw_length)
}

/// The bytes `chunks` take in packs, from the index.
fn stored_size<'a>(engine: &Engine, chunks: impl Iterator<Item = &'a Id>) -> Result<u64> {
    sizes(engine, chunks, |entry| entry.stored_length).map(|(_, size)| size)
}

fn sizes<'a>(
    engine: &Engine,
    mut chunks: impl Iterator<Item = &'a Id>,
    size: impl Fn(&crate::format::pack::BlobEntry) -> u32,
) -> Result<(u64, u64)> {
    let index = engine.index.read().map_err(|_| crate::engine::poisoned())?;
    chunks.try_fold((0u64, 0u64), |(count, total), id| {
        let location = index.get(id).ok_or_else(|| {
            Error::corrupt(
                format!("blob {id}"),
                0,
                "the blob is referenced but not in any index",
            )
        })?;
        Ok((
            count + 1,
            total.saturating_add(u64::from(size(&location.entry))),
        ))
    })
}
