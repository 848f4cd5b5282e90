//! Restoring a backup's tree to a local directory.
//!
//! Safety rules, in order of importance:
//!
//! 1. Nothing is written outside the target directory. Names come from
//!    validated trees (no `/`, `.`, `..`), and every directory on the way to
//!    a file is checked to be a real directory, not a symlink, before it is
//!    entered; files are created with `O_NOFOLLOW`.
//! 2. No unverified byte is written: each chunk is checked against its id
//!    before it reaches the disk, and a file is written under a temporary
//!    name and renamed into place only once it is complete and its size
//!    matches the tree.
//! 3. A damaged file does not stop the others: it is reported in
//!    [`Error::PartialRestore`] with its path and reason.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::engine::Engine;
use crate::format::index::Index;
use crate::format::pack::{self, BlobEntry, BlobKind};
use crate::format::tree::{Node, NodeKind};
use crate::progress::{Phase, Reporter, Tracker};
use crate::{Error, Id, Result};

/// Files restored at once (each in a task of its own, so that their chunks
/// are decoded on every core).
const FILES_IN_FLIGHT: usize = 4;
/// Chunks of one file fetched and decoded ahead of the one being written.
const CHUNKS_AHEAD: usize = 3;

/// Small files are restored in batches: files whose chunks lie close
/// together in one pack are fetched with one range read, then decoded and
/// written by one blocking task, so a small file costs no hand-off between
/// threads (a backup stores a directory's small files next to each other).
/// Files up to this size are batched.
const BATCH_FILE_MAX: u64 = 1024 * 1024;
/// The most pack bytes one batch reads.
const BATCH_SPAN_MAX: u64 = 4 * 1024 * 1024;
/// The most bytes between two of a batch's blobs that it reads for nothing
/// (only a partial restore leaves such gaps).
const BATCH_GAP_MAX: u64 = 256 * 1024;
/// The most files in one batch.
const BATCH_FILES_MAX: usize = 512;
/// Batches read, decoded and written at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// The most entries (files, directories, symlinks) a backup's tree may
/// expand to before restore or `ls` refuses it. Content addressing lets
/// identical directories share one listing, so a hostile repository could
/// otherwise describe an exponentially large tree in a few kilobytes.
pub const MAX_TREE_ENTRIES: u64 = 100_000_000;

/// The deepest directory nesting read. Paths deeper than this cannot be
/// created on common file systems anyway (`PATH_MAX` is 4096 bytes).
pub const MAX_TREE_DEPTH: usize = 2048;

/// The distinct directory listings of one backup, each read once, and the
/// number of entries the whole tree expands to.
pub(crate) struct Listings {
    loaded: HashMap<Vec<Id>, std::result::Result<Arc<Vec<Node>>, String>>,
    /// Entries below the root, counting shared listings once per use.
    pub(crate) entries: u64,
}

impl Listings {
    /// Reads the distinct listings below `root` that `selector` may need
    /// (all of them without one) and counts the entries the tree expands
    /// to, refusing trees that are too deep, cyclic, or expand beyond
    /// [`MAX_TREE_ENTRIES`]. A listing that cannot be read is kept as its
    /// error (the caller reports it for that directory).
    pub(crate) async fn read(
        repo: &Engine,
        root: &[Id],
        selector: Option<&Selector>,
    ) -> Result<Listings> {
        let refuse = |detail: String| Error::corrupt("tree of \"/\"", 0, detail);
        let all_below = |relative: &str| selector.is_none_or(|s| s.needs_all_below(relative));
        let mut loaded: HashMap<Vec<Id>, std::result::Result<Arc<Vec<Node>>, String>> =
            HashMap::new();
        // Entries below a listing, for listings whose whole subtree is read
        // (then the count does not depend on the path it is reached by).
        let mut counts: HashMap<Vec<Id>, u64> = HashMap::new();
        let mut open: HashSet<Vec<Id>> = HashSet::new();
        // Per frame: listing, relative path, children pushed, depth, and
        // (when expanded) the count of the children on the path.
        struct Frame {
            ids: Vec<Id>,
            relative: String,
            expanded: bool,
            depth: usize,
        }
        // Entries counted below frames whose subtree is read only in part
        // (bounded: such directories lie on the literal prefix of a pattern).
        let mut partial: Vec<u64> = Vec::new();
        let mut stack = vec![Frame {
            ids: root.to_vec(),
            relative: String::new(),
            expanded: false,
            depth: 0,
        }];
        let mut root_entries = 0u64;
        while let Some(frame) = stack.pop() {
            let whole = all_below(&frame.relative);
            if whole && counts.contains_key(&frame.ids) {
                if let Some(slot) = partial.last_mut() {
                    *slot = slot.saturating_add(counts[&frame.ids]);
                }
                continue;
            }
            let shown = display(&frame.relative);
            if !frame.expanded {
                if frame.depth > MAX_TREE_DEPTH {
                    return Err(refuse(format!(
                        "directories are nested deeper than {MAX_TREE_DEPTH} levels at {shown:?}"
                    )));
                }
                if !open.insert(frame.ids.clone()) {
                    return Err(refuse(format!("directory {shown:?} contains itself")));
                }
                if !loaded.contains_key(&frame.ids) {
                    let listing = repo
                        .load_tree(&shown, &frame.ids)
                        .await
                        .map(Arc::new)
                        .map_err(|error| error.to_string());
                    loaded.insert(frame.ids.clone(), listing);
                }
                let mut children = Vec::new();
                if let Some(Ok(nodes)) = loaded.get(&frame.ids) {
                    for node in nodes.iter() {
                        let Some(subtree) = &node.subtree else {
                            continue;
                        };
                        let child = join(&frame.relative, &node.name);
                        if open.contains(subtree) {
                            return Err(refuse(format!(
                                "directory {child:?} contains one of its own ancestors"
                            )));
                        }
                        if whole || selector.is_none_or(|s| s.may_contain(&child)) {
                            children.push(Frame {
                                ids: subtree.clone(),
                                relative: child,
                                expanded: false,
                                depth: frame.depth + 1,
                            });
                        }
                    }
                }
                stack.push(Frame {
                    expanded: true,
                    ..frame
                });
                partial.push(0);
                stack.extend(children);
            } else {
                let below = partial.pop().unwrap_or(0);
                let own = match loaded.get(&frame.ids) {
                    Some(Ok(nodes)) => nodes.len() as u64,
                    _ => 0,
                };
                let total = own.saturating_add(below);
                if total > MAX_TREE_ENTRIES {
                    return Err(refuse(format!(
                        "directory {shown:?} expands to more than {MAX_TREE_ENTRIES} entries"
                    )));
                }
                open.remove(&frame.ids);
                if whole {
                    counts.insert(frame.ids.clone(), total);
                }
                match partial.last_mut() {
                    Some(slot) => *slot = slot.saturating_add(total),
                    None => root_entries = total,
                }
            }
        }
        Ok(Listings {
            loaded,
            entries: root_entries,
        })
    }

    /// The listing of one directory, or why it could not be read.
    pub(crate) fn get(&self, ids: &[Id]) -> std::result::Result<Arc<Vec<Node>>, String> {
        match self.loaded.get(ids) {
            Some(listing) => listing.clone(),
            None => Err("directory listing was not read".into()),
        }
    }
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Glob patterns selecting what to restore; empty restores everything.
    ///
    /// A pattern is matched against the path relative to the backup's root
    /// (`data/logs/app.log`); a pattern without `/` is also matched against
    /// each name alone (`*.log`). A selected directory is restored with all
    /// it contains; the directories leading to a selected item are created.
    pub include: Vec<String>,
    /// Where progress events go.
    pub progress: Option<crate::progress::ProgressSink>,
}

/// Counters of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreSummary {
    /// Files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

pub(crate) struct Selector {
    paths: GlobSet,
    names: GlobSet,
    everything: bool,
    /// Of each pattern with a `/`: the part before its first glob
    /// character. Only directories on the way to, or below, such a prefix
    /// can hold a match.
    literal_prefixes: Vec<String>,
}

impl Selector {
    fn new(patterns: &[String]) -> Result<Selector> {
        let mut paths = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        let mut literal_prefixes = Vec::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern.trim_start_matches('/'))
                .literal_separator(true)
                .build()
                .map_err(|error| {
                    Error::InvalidArgument(format!("invalid pattern {pattern:?}: {error}"))
                })?;
            let trimmed = pattern.trim_start_matches('/');
            if !pattern.contains('/') {
                names.add(glob.clone());
            } else {
                let end = trimmed
                    .find(['*', '?', '[', '{', '\\'])
                    .unwrap_or(trimmed.len());
                literal_prefixes.push(trimmed[..end].to_string());
            }
            paths.add(glob);
        }
        let build = |builder: GlobSetBuilder| {
            builder
                .build()
                .map_err(|error| Error::InvalidArgument(error.to_string()))
        };
        Ok(Selector {
            paths: build(paths)?,
            names: build(names)?,
            everything: patterns.is_empty(),
            literal_prefixes,
        })
    }

    fn selects(&self, relative: &str, name: &str) -> bool {
        self.everything || self.paths.is_match(relative) || self.names.is_match(name)
    }

    /// Whether anything below directory `relative` may be selected
    /// regardless of the path it is reached by.
    fn needs_all_below(&self, relative: &str) -> bool {
        let prefix = dir_prefix(relative);
        self.everything
            || !self.names.is_empty()
            || self
                .literal_prefixes
                .iter()
                .any(|literal| prefix.starts_with(literal.as_str()))
    }

    /// Whether directory `relative` may hold a selected item.
    fn may_contain(&self, relative: &str) -> bool {
        let prefix = dir_prefix(relative);
        self.needs_all_below(relative)
            || self
                .literal_prefixes
                .iter()
                .any(|literal| literal.starts_with(prefix.as_str()))
    }
}

/// One item to restore: its path relative to the target and its node.
struct Planned {
    relative: String,
    node: Node,
}

#[derive(Default)]
struct Plan {
    dirs: Vec<Planned>,
    files: Vec<Planned>,
    symlinks: Vec<Planned>,
    failures: Vec<(String, String)>,
}

pub(crate) async fn restore(
    repo: Arc<Engine>,
    root: &[Id],
    target: &Path,
    options: &RestoreOptions,
) -> Result<RestoreSummary> {
    let selector = Selector::new(&options.include)?;
    tokio::fs::create_dir_all(target)
        .await
        .map_err(|source| Error::io("cannot create the restore target", target, source))?;
    let base = tokio::fs::canonicalize(target)
        .await
        .map_err(|source| Error::io("cannot open the restore target", target, source))?;

    let listings = Listings::read(&repo, root, Some(&selector)).await?;
    let mut plan = Plan::default();
    let mut stack = vec![(String::new(), root.to_vec(), selector.everything)];
    while let Some((relative, ids, selected)) = stack.pop() {
        let nodes = match listings.get(&ids) {
            Ok(nodes) => nodes,
            Err(error) => {
                plan.failures.push((
                    display(&relative),
                    format!("directory listing unreadable: {error}"),
                ));
                continue;
            }
        };
        for node in nodes.iter().cloned() {
            let child = join(&relative, &node.name);
            let child_selected = selected || selector.selects(&child, &node.name);
            match node.kind {
                NodeKind::Dir => {
                    let subtree = node.subtree.clone().unwrap_or_default();
                    let descend = child_selected || selector.may_contain(&child);
                    if child_selected {
                        plan.dirs.push(Planned {
                            relative: child.clone(),
                            node,
                        });
                    }
                    if descend {
                        stack.push((child, subtree, child_selected));
                    }
                }
                NodeKind::File if child_selected => plan.files.push(Planned {
                    relative: child,
                    node,
                }),
                NodeKind::Symlink if child_selected => plan.symlinks.push(Planned {
                    relative: child,
                    node,
                }),
                _ => {}
            }
        }
    }
    if !selector.everything
        && plan.dirs.is_empty()
        && plan.files.is_empty()
        && plan.symlinks.is_empty()
        && plan.failures.is_empty()
    {
        return Err(Error::InvalidArgument(format!(
            "no file in the backup matches {:?}",
            options.include
        )));
    }

    let tracker = Tracker::new("restore");
    tracker.set_totals(
        plan.files.len() as u64,
        plan.files
            .iter()
            .fold(0u64, |total, file| total.saturating_add(file.node.size)),
    );
    let reporter = Reporter::start(tracker.clone(), options.progress.clone());
    let writer = Arc::new(SafeWriter {
        base,
        checked: Mutex::new(HashSet::new()),
        tracker,
    });
    let mut summary = RestoreSummary::default();
    let mut failures = plan.failures;

    // Parents before children: the plan was built depth first from the root.
    plan.dirs.sort_by(|a, b| a.relative.cmp(&b.relative));
    for dir in &plan.dirs {
        match writer.directory(&dir.relative).await {
            Ok(_) => summary.dirs += 1,
            Err(error) => failures.push((display(&dir.relative), error.to_string())),
        }
    }

    let (batches, singles) = match repo.index.read() {
        Ok(index) => plan_batches(&index, plan.files),
        Err(_) => (Vec::new(), plan.files),
    };
    let batched = futures::stream::iter(batches)
        .map(|batch| restore_batch(&repo, &writer, batch))
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .collect::<Vec<_>>();
    let (batched, mut results) = futures::join!(batched, restore_singles(&repo, &writer, singles));
    let mut again = Vec::new();
    for outcome in batched.into_iter().flatten() {
        match outcome {
            BatchOutcome::Done(relative, outcome) => results.push((relative, outcome)),
            BatchOutcome::Again(file) => again.push(file),
        }
    }
    // A blob of a batch that failed its check, or a batch whose read failed,
    // gets the single-file path: it reads again and reports the reason.
    results.extend(restore_singles(&repo, &writer, again).await);
    for (relative, outcome) in results {
        match outcome {
            Ok(bytes) => {
                writer.tracker.file_done();
                summary.files += 1;
                summary.bytes += bytes;
            }
            Err(error) => failures.push((display(&relative), error.to_string())),
        }
    }

    for link in &plan.symlinks {
        match writer.symlink(&link.relative, &link.node).await {
            Ok(()) => summary.symlinks += 1,
            Err(error) => failures.push((display(&link.relative), error.to_string())),
        }
    }

    // Directory modes and times last, deepest first, so that writing the
    // children neither fails on a read-only directory nor bumps its mtime.
    for dir in plan.dirs.iter().rev() {
        if let Err(error) = writer.finish_directory(&dir.relative, &dir.node).await {
            failures.push((display(&dir.relative), error.to_string()));
        }
    }

    if failures.is_empty() {
        reporter.finish(Phase::Completed);
        Ok(summary)
    } else {
        reporter.finish(Phase::PartiallyFailed);
        failures.sort();
        Err(Error::PartialRestore { failures })
    }
}

/// Restores files one by one, a few at a time, each chunk fetched and
/// decoded in a task of its own.
async fn restore_singles(
    repo: &Arc<Engine>,
    writer: &Arc<SafeWriter>,
    files: Vec<Planned>,
) -> Vec<(String, Result<u64>)> {
    futures::stream::iter(files)
        .map(|file| {
            let repo = repo.clone();
            let writer = writer.clone();
            let relative = file.relative.clone();
            let task =
                tokio::spawn(async move { writer.file(&repo, &file.relative, &file.node).await });
            async move {
                let outcome = task.await.unwrap_or_else(|error| Err(task_failed(error)));
                (relative, outcome)
            }
        })
        .buffer_unordered(FILES_IN_FLIGHT)
        .collect()
        .await
}

/// A small file whose chunks are all in one pack, with their entries in
/// content order.
struct BatchFile {
    file: Planned,
    blobs: Vec<BlobEntry>,
}

/// Small files restored together from one range of one pack.
struct Batch {
    /// The pack; `None` while the batch holds only empty files.
    pack: Option<Id>,
    /// The pack range read: from the first blob's start to the last one's end.
    span: std::ops::Range<u64>,
    files: Vec<BatchFile>,
}

enum BatchOutcome {
    /// Restored, or failed for a reason that reading again cannot change.
    Done(String, Result<u64>),
    /// To be restored alone (see [`restore_singles`]).
    Again(Planned),
}

/// Splits `files` into batches of small files (see [`BATCH_FILE_MAX`]) and
/// the files restored alone: large ones, and any the index cannot place
/// in a single pack with the recorded size (the single-file path reports
/// what is wrong with them).
fn plan_batches(index: &Index, files: Vec<Planned>) -> (Vec<Batch>, Vec<Planned>) {
    let mut singles = Vec::new();
    let mut small: Vec<(Option<Id>, std::ops::Range<u64>, BatchFile)> = Vec::new();
    for file in files {
        if file.node.size > BATCH_FILE_MAX {
            singles.push(file);
            continue;
        }
        let mut pack = None;
        let mut blobs = Vec::with_capacity(file.node.content.len());
        let mut fits = true;
        for id in &file.node.content {
            match index.get(id) {
                Some(location)
                    if location.entry.kind == BlobKind::Data
                        && pack.is_none_or(|pack| pack == location.pack) =>
                {
                    pack = Some(location.pack);
                    blobs.push(location.entry);
                }
                _ => {
                    fits = false;
                    break;
                }
            }
        }
        let raw: u64 = blobs.iter().map(|blob| u64::from(blob.raw_length)).sum();
        let start = blobs.iter().map(|blob| u64::from(blob.offset)).min();
        let end = blobs.iter().map(blob_end).max();
        let extent = start.unwrap_or(0)..end.unwrap_or(0);
        if !fits || raw != file.node.size || extent.end - extent.start > BATCH_SPAN_MAX {
            singles.push(file);
            continue;
        }
        small.push((pack, extent, BatchFile { file, blobs }));
    }
    // Pack order: neighbours in a pack become neighbours in a batch.
    small.sort_by_key(|(pack, extent, _)| (*pack, extent.start));
    let mut batches: Vec<Batch> = Vec::new();
    for (pack, std::ops::Range { start, end }, file) in small {
        let joins = batches.last().is_some_and(|batch| {
            batch.files.len() < BATCH_FILES_MAX
                && match (batch.pack, pack) {
                    // Empty files (no pack) go together, before the rest.
                    (None, None) => true,
                    (None, Some(_)) | (Some(_), None) => false,
                    (Some(current), Some(pack)) => {
                        current == pack
                            && start <= batch.span.end + BATCH_GAP_MAX
                            && end.max(batch.span.end) - batch.span.start <= BATCH_SPAN_MAX
                    }
                }
        });
        match batches.last_mut() {
            Some(batch) if joins => {
                batch.span.end = batch.span.end.max(end);
                batch.files.push(file);
            }
            _ => batches.push(Batch {
                pack,
                span: start..end,
                files: vec![file],
            }),
        }
    }
    (batches, singles)
}

fn blob_end(blob: &BlobEntry) -> u64 {
    u64::from(blob.offset) + u64::from(blob.stored_length)
}

/// Reads a batch's range of its pack, then decodes and writes its files in
/// one blocking task.
async fn restore_batch(
    repo: &Arc<Engine>,
    writer: &Arc<SafeWriter>,
    batch: Batch,
) -> Vec<BatchOutcome> {
    let again = |batch: Batch| {
        batch
            .files
            .into_iter()
            .map(|file| BatchOutcome::Again(file.file))
            .collect()
    };
    let (key, span) = match batch.pack {
        Some(pack) => {
            let key = pack::pack_key(&pack);
            match repo.sink.get_range(&key, Some(batch.span.clone())).await {
                Ok(span) if span.len() as u64 == batch.span.end - batch.span.start => (key, span),
                _ => return again(batch),
            }
        }
        None => (String::new(), bytes::Bytes::new()),
    };
    let mut outcomes = Vec::with_capacity(batch.files.len());
    let mut jobs = Vec::with_capacity(batch.files.len());
    for file in batch.files {
        match writer.place(&file.file.relative).await {
            Ok((parent, path, _)) => jobs.push((file, parent, path)),
            Err(error) => outcomes.push(BatchOutcome::Done(file.file.relative, Err(error))),
        }
    }
    let names: Vec<String> = jobs
        .iter()
        .map(|(file, _, _)| file.file.relative.clone())
        .collect();
    let repo = repo.clone();
    let tracker = writer.tracker.clone();
    let start = batch.span.start;
    let task = tokio::task::spawn_blocking(move || {
        jobs.into_iter()
            .map(|(file, parent, path)| {
                let mut chunks = Vec::with_capacity(file.blobs.len());
                for blob in &file.blobs {
                    let from = (u64::from(blob.offset) - start) as usize;
                    let stored = &span[from..from + blob.stored_length as usize];
                    match pack::decode_blob(&key, blob, stored, repo.key()) {
                        Ok(chunk) => chunks.push(chunk),
                        Err(_) => return BatchOutcome::Again(file.file),
                    }
                }
                let relative = file.file.relative;
                tracker.set_current(&relative);
                let job = FileJob::new(&parent, path, &relative, &file.file.node);
                let mut chunks = chunks.into_iter();
                let outcome = job.run(|| chunks.next());
                if let Ok(bytes) = outcome {
                    tracker.bytes_done(bytes);
                }
                BatchOutcome::Done(relative, outcome)
            })
            .collect::<Vec<_>>()
    });
    match task.await {
        Ok(done) => outcomes.extend(done),
        // Only a panic ends the task early: each file is reported.
        Err(error) => {
            let reason = error.to_string();
            outcomes.extend(
                names
                    .into_iter()
                    .map(|relative| BatchOutcome::Done(relative, Err(task_failed(reason.clone())))),
            );
        }
    }
    outcomes
}

fn join(relative: &str, name: &str) -> String {
    if relative.is_empty() {
        name.to_string()
    } else {
        format!("{relative}/{name}")
    }
}

/// `dir/` (or nothing for the root), for prefix tests.
fn dir_prefix(relative: &str) -> String {
    if relative.is_empty() {
        String::new()
    } else {
        format!("{relative}/")
    }
}

fn display(relative: &str) -> String {
    if relative.is_empty() {
        "/".into()
    } else {
        relative.into()
    }
}

/// Writes below `base` only, never through a symlink.
struct SafeWriter {
    base: PathBuf,
    /// Relative directories already checked to be real directories.
    checked: Mutex<HashSet<String>>,
    tracker: Arc<Tracker>,
}

impl SafeWriter {
    /// Creates (or checks) the directory `relative` and all its parents.
    async fn directory(&self, relative: &str) -> Result<PathBuf> {
        let mut path = self.base.clone();
        let mut so_far = String::new();
        for component in relative.split('/').filter(|c| !c.is_empty()) {
            crate::format::tree::validate_name(component)?;
            path.push(component);
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(component);
            if self
                .checked
                .lock()
                .map(|set| set.contains(&so_far))
                .unwrap_or(false)
            {
                continue;
            }
            match tokio::fs::symlink_metadata(&path).await {
                Ok(metadata) if metadata.is_dir() => {}
                Ok(_) => return Err(Error::UnsafePath {
                    path: so_far,
                    reason:
                        "exists in the target and is not a directory (a symlink is never followed)",
                }),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    match tokio::fs::create_dir(&path).await {
                        Ok(()) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                            let metadata = tokio::fs::symlink_metadata(&path)
                                .await
                                .map_err(|source| Error::io("cannot inspect", &path, source))?;
                            if !metadata.is_dir() {
                                return Err(Error::UnsafePath {
                                    path: so_far,
                                    reason:
                                        "appeared in the target as something other than a directory",
                                });
                            }
                        }
                        Err(source) => {
                            return Err(Error::io("cannot create directory", &path, source))
                        }
                    }
                }
                Err(source) => return Err(Error::io("cannot inspect", &path, source)),
            }
            if let Ok(mut set) = self.checked.lock() {
                set.insert(so_far.clone());
            }
        }
        Ok(path)
    }

    /// The checked parent directory and the final path of `relative`.
    async fn place(&self, relative: &str) -> Result<(PathBuf, PathBuf, String)> {
        let (parent, name) = match relative.rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => ("", relative),
        };
        crate::format::tree::validate_name(name)?;
        let parent_path = self.directory(parent).await?;
        let path = parent_path.join(name);
        Ok((parent_path, path, name.to_string()))
    }

    async fn file(&self, repo: &Arc<Engine>, relative: &str, node: &Node) -> Result<u64> {
        let (parent, path, _) = self.place(relative).await?;
        self.tracker.set_current(relative);
        let job = FileJob::new(&parent, path, relative, node);
        write_verified(repo, job, node, &self.tracker).await
    }

    async fn symlink(&self, relative: &str, node: &Node) -> Result<()> {
        let (_, path, _) = self.place(relative).await?;
        let target = node.target.clone().unwrap_or_default();
        if let Ok(metadata) = tokio::fs::symlink_metadata(&path).await {
            if metadata.is_dir() {
                return Err(Error::UnsafePath {
                    path: relative.into(),
                    reason: "a directory is in the way of this symlink",
                });
            }
            tokio::fs::remove_file(&path)
                .await
                .map_err(|source| Error::io("cannot replace", &path, source))?;
        }
        tokio::fs::symlink(&target, &path)
            .await
            .map_err(|source| Error::io("cannot create symlink", &path, source))?;
        let mtime = filetime_from_ns(node.mtime_ns);
        let _ = filetime::set_symlink_file_times(&path, mtime, mtime);
        if let (Some(uid), Some(gid)) = (node.uid, node.gid) {
            // Ownership is restored when permitted (as root); otherwise the
            // restoring user owns the file, as with tar and restic.
            let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
        }
        Ok(())
    }

    async fn finish_directory(&self, relative: &str, node: &Node) -> Result<()> {
        let path = self.directory(relative).await?;
        let mode = node.mode;
        let mtime = filetime_from_ns(node.mtime_ns);
        let owner = node.uid.zip(node.gid);
        tokio::task::spawn_blocking(move || {
            if let Some((uid, gid)) = owner {
                let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|source| Error::io("cannot set permissions", &path, source))?;
            filetime::set_file_times(&path, mtime, mtime)
                .map_err(|source| Error::io("cannot set times", &path, source))
        })
        .await
        .map_err(task_failed)?
    }
}

/// The error for a restore task that ended without its outcome (a panic),
/// with `reason`.
fn task_failed(reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::io(
        "restore task failed",
        PathBuf::new(),
        std::io::Error::other(reason),
    )
}

fn filetime_from_ns(ns: i64) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        u32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0),
    )
}

/// Writes a file's chunks, each verified, to a new file at `temporary`,
/// then renames it to `path`.
///
/// Chunks are fetched and decoded ahead, each in a task of its own; one
/// blocking task per file does all the file system work (create, write,
/// permissions, times, rename), so a small file costs one hand-off.
async fn write_verified(
    repo: &Arc<Engine>,
    job: FileJob,
    node: &Node,
    tracker: &Tracker,
) -> Result<u64> {
    // The index knows every chunk's length: a content list that cannot add
    // up to the recorded size (a huge declared size, a missing chunk) is
    // refused before a byte is written.
    let indexed = repo.content_length(&node.content)?;
    if indexed != node.size {
        return Err(Error::corrupt(
            format!("file {:?}", node.name),
            0,
            format!(
                "its chunks hold {indexed} bytes but the recorded size is {}",
                node.size
            ),
        ));
    }
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let writer = tokio::task::spawn_blocking(move || job.run(|| receiver.blocking_recv()));
    let mut fetched = Ok(());
    let mut chunks = futures::stream::iter(node.content.clone())
        .map(|id| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.read_blob(&id).await })
        })
        .buffered(CHUNKS_AHEAD);
    while let Some(joined) = chunks.next().await {
        match joined.unwrap_or_else(|error| Err(task_failed(error))) {
            Ok(data) => {
                let length = data.len() as u64;
                if sender.send(data).await.is_err() {
                    // The writer stopped; its error says why.
                    break;
                }
                tracker.bytes_done(length);
            }
            Err(error) => {
                fetched = Err(error);
                break;
            }
        }
    }
    drop(chunks);
    drop(sender);
    let written = writer.await.unwrap_or_else(|error| Err(task_failed(error)));
    // A damaged chunk is the reason, not the short file it left.
    fetched?;
    written
}

/// The file system side of restoring one file.
struct FileJob {
    temporary: PathBuf,
    path: PathBuf,
    relative: String,
    size: u64,
    mode: u32,
    mtime: filetime::FileTime,
    owner: Option<(u32, u32)>,
}

impl FileJob {
    /// The job of writing `node` to `path` (in the checked directory
    /// `parent`) through a temporary file beside it.
    fn new(parent: &Path, path: PathBuf, relative: &str, node: &Node) -> Self {
        let temporary = parent.join(format!(
            ".restore-{}.tmp",
            hex::encode(crate::crypto::random_bytes::<8>())
        ));
        FileJob {
            temporary,
            path,
            relative: relative.to_string(),
            size: node.size,
            mode: node.mode,
            mtime: filetime_from_ns(node.mtime_ns),
            owner: node.uid.zip(node.gid),
        }
    }

    /// Writes the chunks `next` delivers until it returns `None`; on any
    /// failure (including fewer bytes than the size) removes the temporary
    /// file.
    fn run(self, next: impl FnMut() -> Option<Vec<u8>>) -> Result<u64> {
        let outcome = self.write(next);
        if outcome.is_err() {
            let _ = std::fs::remove_file(&self.temporary);
        }
        outcome
    }

    fn write(&self, mut next: impl FnMut() -> Option<Vec<u8>>) -> Result<u64> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.temporary)
            .map_err(|source| Error::io("cannot create", &self.temporary, source))?;
        let mut written = 0u64;
        while let Some(data) = next() {
            written += data.len() as u64;
            if written > self.size {
                return Err(Error::corrupt(
                    format!("file {:?}", self.relative),
                    written,
                    format!("content is longer than the recorded size {}", self.size),
                ));
            }
            file.write_all(&data)
                .map_err(|source| Error::io("cannot write", &self.temporary, source))?;
        }
        if written != self.size {
            return Err(Error::corrupt(
                format!("file {:?}", self.relative),
                written,
                format!(
                    "content is {written} bytes but the recorded size is {}",
                    self.size
                ),
            ));
        }
        if let Some((uid, gid)) = self.owner {
            let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
        }
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(|source| Error::io("cannot set permissions", &self.temporary, source))?;
        filetime::set_file_handle_times(&file, Some(self.mtime), Some(self.mtime))
            .map_err(|source| Error::io("cannot set times", &self.temporary, source))?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path).map_err(|source| {
            // Checked here rather than before: a directory is seldom in
            // the way, and a look per file costs a system call per file.
            if std::fs::symlink_metadata(&self.path).is_ok_and(|metadata| metadata.is_dir()) {
                Error::UnsafePath {
                    path: self.relative.clone(),
                    reason: "a directory is in the way of this file",
                }
            } else {
                Error::io("cannot move restored file into place", &self.path, source)
            }
        })?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::IndexedPack;

    fn id(n: u32) -> Id {
        Id::digest(&n.to_le_bytes())
    }

    /// A pack `pack` holding blobs `(blob, offset, stored length)`, each
    /// of raw length `stored length`.
    fn pack_of(pack: u32, blobs: &[(u32, u32, u32)]) -> IndexedPack {
        IndexedPack {
            id: id(pack),
            size: 64 << 20,
            blobs: blobs
                .iter()
                .map(|&(blob, offset, length)| BlobEntry {
                    id: id(blob),
                    kind: BlobKind::Data,
                    flags: 0,
                    offset,
                    stored_length: length,
                    raw_length: length,
                })
                .collect(),
        }
    }

    fn file(name: &str, size: u64, content: &[u32]) -> Planned {
        Planned {
            relative: name.into(),
            node: Node {
                name: name.into(),
                kind: NodeKind::File,
                mode: 0o644,
                mtime_ns: 0,
                size,
                uid: None,
                gid: None,
                inode: None,
                ctime_ns: None,
                content: content.iter().map(|&n| id(n)).collect(),
                subtree: None,
                target: None,
            },
        }
    }

    fn names(batch: &Batch) -> Vec<&str> {
        batch
            .files
            .iter()
            .map(|file| file.file.relative.as_str())
            .collect()
    }

    #[test]
    fn small_files_are_batched_by_pack_and_neighbourhood() {
        let mut index = Index::default();
        const K: u32 = 1024;
        index.add_pack(&pack_of(
            1,
            &[
                (10, 0, 4 * K),
                (11, 4 * K, 4 * K),
                (12, 8 * K, 4 * K),
                // Far beyond the gap a batch reads for nothing.
                (13, 8 * 1024 * K, 4 * K),
                // A 2 MiB chunk: its file is too large for a batch.
                (14, 9 * 1024 * K, 2048 * K),
            ],
        ));
        index.add_pack(&pack_of(2, &[(20, 0, 4 * K), (21, 4 * K, 4 * K)]));
        let files = vec![
            // Listed out of pack order: batches follow the packs.
            file("c", 4096, &[12]),
            file("b-and-d", 8192, &[11, 21]),
            file("a", 4096, &[10]),
            file("e", 4096, &[20]),
            file("f", 8192, &[20, 21]),
            file("far", 4096, &[13]),
            file("big", 2 << 20, &[14]),
            file("missing", 4096, &[99]),
            file("wrong-size", 4097, &[10]),
            file("empty", 0, &[]),
            file("twice", 8192, &[10, 10]),
        ];
        let (batches, singles) = plan_batches(&index, files);
        let mut single_names: Vec<&str> = singles.iter().map(|f| f.relative.as_str()).collect();
        single_names.sort_unstable();
        // A file over two packs, a large one, one the index does not know
        // and one whose chunks do not add up to its size go alone.
        assert_eq!(single_names, ["b-and-d", "big", "missing", "wrong-size"]);
        let grouped: Vec<Vec<&str>> = batches.iter().map(names).collect();
        // Empty files need no read: they go together, in a batch of no pack.
        let empty: Vec<&Batch> = batches.iter().filter(|b| b.pack.is_none()).collect();
        assert_eq!(empty.len(), 1, "{grouped:?}");
        assert_eq!(names(empty[0]), ["empty"]);
        // Pack 1: a, twice (the same blob twice) and c read together;
        // `far` on its own.
        let pack1: Vec<&Batch> = batches.iter().filter(|b| b.pack == Some(id(1))).collect();
        assert_eq!(pack1.len(), 2, "{grouped:?}");
        let near = names(pack1[0]);
        assert_eq!(near.len(), 3, "{grouped:?}");
        for name in ["a", "twice", "c"] {
            assert!(near.contains(&name), "{grouped:?}");
        }
        assert_eq!(pack1[0].span, 0..12 * K as u64);
        assert_eq!(names(pack1[1]), ["far"]);
        assert_eq!(pack1[1].span, 8192 * K as u64..8196 * K as u64);
        let pack2: Vec<&Batch> = batches.iter().filter(|b| b.pack == Some(id(2))).collect();
        assert_eq!(pack2.len(), 1, "{grouped:?}");
        assert_eq!(pack2[0].span, 0..8 * K as u64);
        let mut in_pack2 = names(pack2[0]);
        in_pack2.sort_unstable();
        assert_eq!(in_pack2, ["e", "f"]);
    }

    #[test]
    fn a_batch_reads_at_most_its_span_and_files_limit() {
        let mut index = Index::default();
        // 1,000 blobs of 16 KiB back to back: 16,000 KiB of pack.
        let blobs: Vec<(u32, u32, u32)> = (0..1000)
            .map(|n| (100 + n, n * 16 * 1024, 16 * 1024))
            .collect();
        index.add_pack(&pack_of(1, &blobs));
        let files = (0..1000)
            .map(|n| file(&format!("f{n:04}"), 16 * 1024, &[100 + n]))
            .collect();
        let (batches, singles) = plan_batches(&index, files);
        assert!(singles.is_empty());
        let total: usize = batches.iter().map(|batch| batch.files.len()).sum();
        assert_eq!(total, 1000);
        for batch in &batches {
            assert!(batch.span.end - batch.span.start <= BATCH_SPAN_MAX);
            assert!(batch.files.len() <= BATCH_FILES_MAX);
            for file in &batch.files {
                for blob in &file.blobs {
                    assert!(u64::from(blob.offset) >= batch.span.start);
                    assert!(blob_end(blob) <= batch.span.end);
                }
            }
        }
        // 4 MiB spans: four batches for 16,000 KiB.
        assert_eq!(batches.len(), 4);
    }
}
