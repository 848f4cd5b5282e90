//! Comparing two backups: the paths added, removed and changed between
//! them, and the chunks only one of them references.
//!
//! Both trees are walked together, directory by directory. A directory is
//! referenced by the ids of its listing's chunks, so two directories with
//! the same id list are equal down to their last file: such a pair is not
//! read at all, and diffing two large backups that differ in a few places
//! reads only the listings on the way to those places.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use crate::engine::Engine;
use crate::format::manifest::Backup;
use crate::format::tree::{Node, NodeKind};
use crate::{Error, Id, Result};

/// The deepest directory nesting compared: the limit restore and `ls` apply
/// (paths deeper than this cannot be created on common file systems).
const MAX_DEPTH: usize = 2048;

/// The most entries read before the comparison is refused, as restore and
/// `ls` refuse a tree that expands beyond it: identical directories share
/// one listing, so a hostile repository could describe an exponentially
/// large tree in a few kilobytes.
const MAX_ENTRIES: u64 = 100_000_000;

/// How a path differs between two backups, with the letter `restic diff`
/// shows for it ([`DiffChange::symbol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DiffChange {
    /// Only in the second backup (`+`).
    Added,
    /// Only in the first backup (`-`).
    Removed,
    /// A file whose content changed, or a symlink whose target changed
    /// (`M`).
    Modified,
    /// The same content, but other permission bits, owner or modification
    /// time (`U`).
    Metadata,
    /// Another kind of entry under the same name: a file became a directory
    /// or a symlink, or the other way around (`T`).
    TypeChanged,
}

impl DiffChange {
    /// The letter shown for the change: `+`, `-`, `M`, `U` or `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use backup_core::DiffChange;
    /// assert_eq!(DiffChange::Added.symbol(), '+');
    /// assert_eq!(DiffChange::Metadata.symbol(), 'U');
    /// ```
    pub fn symbol(self) -> char {
        match self {
            DiffChange::Added => '+',
            DiffChange::Removed => '-',
            DiffChange::Modified => 'M',
            DiffChange::Metadata => 'U',
            DiffChange::TypeChanged => 'T',
        }
    }
}

/// One path that differs between two backups.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DiffEntry {
    /// Path relative to the backups' root, `/`-separated.
    pub path: String,
    /// How it differs.
    pub change: DiffChange,
    /// What it is in the second backup (in the first, when removed).
    #[serde(rename = "type")]
    pub kind: NodeKind,
}

/// The counts of a [`DiffReport`].
///
/// Entries are counted by their kind in the second backup (in the first for
/// removed ones); "changed" counts the `M`, `U` and `T` entries. Chunks
/// are counted once each, with their uncompressed size. A chunk counts as
/// added when the paths that differ reference it in the second backup and
/// no path compared references it in the first, and the other way around
/// for removed: directories equal on both sides are not read, so a new file
/// whose content also lies in such a directory counts as added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DiffStats {
    /// Regular files added.
    pub files_added: u64,
    /// Regular files removed.
    pub files_removed: u64,
    /// Regular files changed.
    pub files_changed: u64,
    /// Directories added.
    pub dirs_added: u64,
    /// Directories removed.
    pub dirs_removed: u64,
    /// Directories changed (their own metadata, or their type).
    pub dirs_changed: u64,
    /// Symlinks added.
    pub others_added: u64,
    /// Symlinks removed.
    pub others_removed: u64,
    /// Symlinks changed.
    pub others_changed: u64,
    /// File content chunks only in the second backup.
    pub chunks_added: u64,
    /// Their uncompressed size in bytes.
    pub bytes_added: u64,
    /// File content chunks only in the first backup.
    pub chunks_removed: u64,
    /// Their uncompressed size in bytes.
    pub bytes_removed: u64,
    /// Directory listing chunks only in the second backup.
    pub tree_chunks_added: u64,
    /// Their uncompressed size in bytes.
    pub tree_bytes_added: u64,
    /// Directory listing chunks only in the first backup.
    pub tree_chunks_removed: u64,
    /// Their uncompressed size in bytes.
    pub tree_bytes_removed: u64,
}

/// What [`Repository::diff`](crate::Repository::diff) found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DiffReport {
    /// The backup compared from.
    pub from: Id,
    /// The backup compared to.
    pub to: Id,
    /// The paths that differ, depth first, each directory before its
    /// entries, names in byte order.
    pub entries: Vec<DiffEntry>,
    /// The counts.
    pub stats: DiffStats,
}

/// Which backup a directory read on one side only belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    From,
    To,
}

/// A directory still to be read.
enum Task {
    /// The same path in both backups, with different listings.
    Compare {
        path: String,
        from: Vec<Id>,
        to: Vec<Id>,
        depth: usize,
    },
    /// A directory in one backup only: every entry below it differs.
    Only {
        side: Side,
        path: String,
        tree: Vec<Id>,
        depth: usize,
    },
}

/// The state of one comparison.
struct Walk<'a> {
    engine: &'a Engine,
    entries: Vec<DiffEntry>,
    stats: DiffStats,
    data_from: HashSet<Id>,
    data_to: HashSet<Id>,
    trees_from: HashSet<Id>,
    trees_to: HashSet<Id>,
    read: u64,
    tasks: Vec<Task>,
}

/// Compares two backups; see [`Repository::diff`](crate::Repository::diff).
pub(crate) async fn run(engine: &Arc<Engine>, from: &Backup, to: &Backup) -> Result<DiffReport> {
    let mut walk = Walk {
        engine,
        entries: Vec::new(),
        stats: DiffStats::default(),
        data_from: HashSet::new(),
        data_to: HashSet::new(),
        trees_from: HashSet::new(),
        trees_to: HashSet::new(),
        read: 0,
        tasks: Vec::new(),
    };
    if from.manifest.root != to.manifest.root {
        walk.tasks.push(Task::Compare {
            path: String::new(),
            from: from.manifest.root.clone(),
            to: to.manifest.root.clone(),
            depth: 0,
        });
    }
    while let Some(task) = walk.tasks.pop() {
        match task {
            Task::Compare {
                path,
                from,
                to,
                depth,
            } => walk.compare_dirs(&path, &from, &to, depth).await?,
            Task::Only {
                side,
                path,
                tree,
                depth,
            } => walk.only(side, &path, &tree, depth).await?,
        }
    }
    let Walk {
        mut entries,
        mut stats,
        data_from,
        data_to,
        trees_from,
        trees_to,
        ..
    } = walk;
    entries.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    (stats.chunks_added, stats.bytes_added) =
        super::stats::raw_size(engine, data_to.difference(&data_from))?;
    (stats.chunks_removed, stats.bytes_removed) =
        super::stats::raw_size(engine, data_from.difference(&data_to))?;
    (stats.tree_chunks_added, stats.tree_bytes_added) =
        super::stats::raw_size(engine, trees_to.difference(&trees_from))?;
    (stats.tree_chunks_removed, stats.tree_bytes_removed) =
        super::stats::raw_size(engine, trees_from.difference(&trees_to))?;
    Ok(DiffReport {
        from: from.id,
        to: to.id,
        entries,
        stats,
    })
}

impl Walk<'_> {
    /// Reads one directory listing, within the limits on depth and size.
    async fn load(&mut self, path: &str, ids: &[Id], depth: usize) -> Result<Vec<Node>> {
        let shown = if path.is_empty() { "/" } else { path };
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(
                "tree of \"/\"",
                0,
                format!("directories are nested deeper than {MAX_DEPTH} levels at {shown:?}"),
            ));
        }
        let nodes = self.engine.load_tree(shown, ids).await?;
        self.read = self.read.saturating_add(nodes.len() as u64);
        if self.read > MAX_ENTRIES {
            return Err(Error::corrupt(
                "tree of \"/\"",
                0,
                format!("the trees compared expand to more than {MAX_ENTRIES} entries"),
            ));
        }
        Ok(nodes)
    }

    /// Compares two different listings of the same directory, entry by
    /// entry (both are sorted by name).
    async fn compare_dirs(
        &mut self,
        path: &str,
        from: &[Id],
        to: &[Id],
        depth: usize,
    ) -> Result<()> {
        let old = self.load(path, from, depth).await?;
        let new = self.load(path, to, depth).await?;
        self.trees_from.extend(from.iter().copied());
        self.trees_to.extend(to.iter().copied());
        let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.name.cmp(&b.name),
            };
            match order {
                Ordering::Less => {
                    if let Some(node) = old.next() {
                        self.one_side(Side::From, path, node, depth);
                    }
                }
                Ordering::Greater => {
                    if let Some(node) = new.next() {
                        self.one_side(Side::To, path, node, depth);
                    }
                }
                Ordering::Equal => {
                    if let (Some(a), Some(b)) = (old.next(), new.next()) {
                        self.compare_nodes(path, a, b, depth);
                    }
                }
            }
        }
        Ok(())
    }

    /// Lists every entry of a directory that is in one backup only.
    async fn only(&mut self, side: Side, path: &str, tree: &[Id], depth: usize) -> Result<()> {
        let nodes = self.load(path, tree, depth).await?;
        match side {
            Side::From => self.trees_from.extend(tree.iter().copied()),
            Side::To => self.trees_to.extend(tree.iter().copied()),
        }
        for node in nodes {
            self.one_side(side, path, node, depth);
        }
        Ok(())
    }

    /// An entry in one backup only: listed, its content counted, and its
    /// directory's entries read in turn.
    fn one_side(&mut self, side: Side, parent: &str, node: Node, depth: usize) {
        let path = join(parent, &node.name);
        let change = match side {
            Side::From => DiffChange::Removed,
            Side::To => DiffChange::Added,
        };
        self.record(&path, change, node.kind);
        self.take_content(side, path, node, depth);
    }

    /// Counts a one-sided node's chunks, and queues its directory.
    fn take_content(&mut self, side: Side, path: String, node: Node, depth: usize) {
        let data = match side {
            Side::From => &mut self.data_from,
            Side::To => &mut self.data_to,
        };
        data.extend(node.content.iter().copied());
        if let Some(tree) = node.subtree {
            self.tasks.push(Task::Only {
                side,
                path,
                tree,
                depth: depth + 1,
            });
        }
    }

    /// Compares the two entries of one name.
    fn compare_nodes(&mut self, parent: &str, old: Node, new: Node, depth: usize) {
        let path = join(parent, &new.name);
        if old.kind != new.kind {
            self.record(&path, DiffChange::TypeChanged, new.kind);
            self.take_content(Side::From, path.clone(), old, depth);
            self.take_content(Side::To, path, new, depth);
            return;
        }
        let metadata_differs = old.mode != new.mode
            || old.uid != new.uid
            || old.gid != new.gid
            || old.mtime_ns != new.mtime_ns;
        let content_differs = match new.kind {
            NodeKind::File => old.content != new.content || old.size != new.size,
            NodeKind::Symlink => old.target != new.target,
            NodeKind::Dir => false,
        };
        if content_differs {
            self.record(&path, DiffChange::Modified, new.kind);
        } else if metadata_differs {
            self.record(&path, DiffChange::Metadata, new.kind);
        }
        // The chunks of files compared go to both sides, so that content
        // that moved or was copied within the compared directories is not
        // counted as added or removed.
        self.data_from.extend(old.content.iter().copied());
        self.data_to.extend(new.content.iter().copied());
        if let (Some(from), Some(to)) = (old.subtree, new.subtree) {
            if from != to {
                self.tasks.push(Task::Compare {
                    path,
                    from,
                    to,
                    depth: depth + 1,
                });
            }
        }
    }

    /// Lists one change and counts it.
    fn record(&mut self, path: &str, change: DiffChange, kind: NodeKind) {
        let stats = &mut self.stats;
        let counter = match (kind, change) {
            (NodeKind::File, DiffChange::Added) => &mut stats.files_added,
            (NodeKind::File, DiffChange::Removed) => &mut stats.files_removed,
            (NodeKind::File, _) => &mut stats.files_changed,
            (NodeKind::Dir, DiffChange::Added) => &mut stats.dirs_added,
            (NodeKind::Dir, DiffChange::Removed) => &mut stats.dirs_removed,
            (NodeKind::Dir, _) => &mut stats.dirs_changed,
            (NodeKind::Symlink, DiffChange::Added) => &mut stats.others_added,
            (NodeKind::Symlink, DiffChange::Removed) => &mut stats.others_removed,
            (NodeKind::Symlink, _) => &mut stats.others_changed,
        };
        *counter += 1;
        self.entries.push(DiffEntry {
            path: path.to_string(),
            change,
            kind,
        });
    }
}

/// `parent/name`, or `name` at the root.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}
