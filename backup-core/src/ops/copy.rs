//! Copying backups from one repository into another, as `restic copy`
//! does.
//!
//! # Design
//!
//! Two repositories share no chunk ids: each names its chunks under its own
//! id key and cuts them with its own chunker seed (FORMAT.md, "Keyed chunk
//! ids" and "The chunker seed"), so blobs cannot move from one to the other
//! as they are. A copy is therefore a *backup into the destination whose
//! source is a backup of the source repository*. It runs through
//! [`ops::backup`](super::backup), so it keeps every rule of a backup (the
//! in-flight marker, the index read again, every pack and index stored
//! before the manifest, written last), with two parts of its own:
//!
//! * a snapshot ([`StoredSnapshot`]) with no entries, only the source
//!   backup's kind, paths and facts;
//! * an archiver ([`CopyArchiver`]) that walks the source backup's tree
//!   instead of a file system. Each node is kept as it is (name, type,
//!   mode, times, owners, link target); each file's content is read
//!   through a [`FileReader`] (every chunk checked against the source's
//!   index and id) and stored through the destination's own write path
//!   ([`TreeWriter`]): cut by the destination's chunker, named under its
//!   key, deduplicated against what it holds; listings are encoded and
//!   stored again. A copied tree is the one a backup of the same files
//!   into the destination would store, whatever the kind of backup
//!   (directories, streams, tar streams, listed files, records).
//!
//! What a copy records: the source backup's set, time, tags, writer, source
//! (kind and paths), facts and status, with the fact [`COPIED_FROM_FACT`]
//! naming the source backup; its content counters (files, dirs, symlinks,
//! bytes total, unchanged files, skipped) are the source backup's, its write
//! counters (bytes read and added, chunks added, duration) and `started`,
//! `finished` and `hostname` the copy's, as for any backup written. A
//! cluster backup's record names its node backups: the copy names their
//! copies (the node backups are older than their record, and backups are
//! copied oldest first).
//!
//! A backup is copied once: one the destination already holds (a copy of
//! it, the backup it was itself copied from, or a backup of the same set,
//! time, writer and source) is skipped, so copying again reads and stores
//! nothing. The newest earlier copy of the same set is the parent, as in a
//! backup: a file whose chunk list is the one it had in the backup that copy
//! was made from gets the copy's chunks, unread. Only completed backups are
//! copied; a partially failed one is reported and left.
//!
//! The destination's own archiver ([`Repository::with_archiver`]) is not
//! used: the copy stores through the default chunking writer.
//!
//! [`Repository::with_archiver`]: crate::Repository::with_archiver

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::archiver::restore::{RestoreOptions, RestoreSummary};
use crate::archiver::{Archived, Archiver, ChunkArchiver, TreeWriter};
use crate::engine::{tracked, Engine};
use crate::format::manifest::{Backup, BackupStats, BackupStatus, SourceInfo};
use crate::format::tree::{Node, NodeKind};
use crate::ops::backup::{BackupOptions, ParentSelection};
use crate::ops::read_file::{open_node, FileReader};
use crate::progress::{Phase, ProgressSink, Tracker};
use crate::snapshot::{Entry, Snapshot, Snapshotter};
use crate::{Error, Id, Result};

/// The manifest fact of a copied backup naming the backup it was copied
/// from (its id in the source repository, as 64 hex digits).
pub const COPIED_FROM_FACT: &str = "copied_from";

/// The fact of a cluster backup's record that names its node backups.
const CLUSTER_RECORD_FACT: &str = "cluster_record";

/// Files whose content is copied at once (each reads a few chunks ahead).
const FILES_AT_ONCE: usize = 4;
/// Nodes of one directory copied at once.
const NODES_AT_ONCE: usize = 8;

/// Options for [`Repository::copy_to`](crate::Repository::copy_to).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CopyOptions {
    /// The backups to copy: `latest` or id prefixes, as
    /// [`Repository::find_backup`](crate::Repository::find_backup) takes
    /// them; empty copies every backup (of [`CopyOptions::set`] when given).
    pub backups: Vec<String>,
    /// Only backups of this set.
    pub set: Option<String>,
    /// Where progress events go.
    pub progress: Option<ProgressSink>,
    /// Cancels the copy: the backup being copied stops, removes its
    /// in-flight marker and the copy returns [`Error::Cancelled`]; the
    /// backups already copied stay.
    pub cancellation: Option<CancellationToken>,
}

backup_selection_setters!(CopyOptions, "the copy");
progress_and_cancellation_setters!(CopyOptions, "the copy");

/// One source backup and the destination backup that holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CopiedBackup {
    /// The backup's set.
    pub set: String,
    /// The time the backup represents.
    pub time: DateTime<Utc>,
    /// Its id in the source repository.
    pub source: Id,
    /// Its id in the destination.
    pub destination: Id,
}

/// What [`Repository::copy_to`](crate::Repository::copy_to) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CopyReport {
    /// The backups copied, oldest first.
    pub copied: Vec<CopiedBackup>,
    /// The backups the destination already held, not copied again.
    pub skipped: Vec<CopiedBackup>,
    /// The backups not copied because they did not complete
    /// ([`BackupStatus::PartiallyFailed`]).
    pub not_completed: Vec<Id>,
    /// Bytes of file content read from the source (files the destination
    /// already holds from an earlier copy are not read).
    pub bytes_read: u64,
    /// Bytes of new packs stored in the destination.
    pub bytes_uploaded: u64,
}

/// Copies the selected backups of `source` into `destination`; see
/// [`Repository::copy_to`](crate::Repository::copy_to).
pub(crate) async fn run(
    source: &Arc<Engine>,
    destination: &Arc<Engine>,
    options: CopyOptions,
) -> Result<CopyReport> {
    if source.config.id == destination.config.id {
        return Err(Error::InvalidArgument(format!(
            "{} and {} are the same repository: a backup is copied into another one",
            source.sink.location(),
            destination.sink.location()
        )));
    }
    let token = options.cancellation.clone();
    tracked(
        "copy",
        options.progress.clone(),
        token.as_ref(),
        |_| Phase::Completed,
        |tracker| copy_selected(source, destination, options, tracker),
    )
    .await
}

async fn copy_selected(
    source: &Arc<Engine>,
    destination: &Arc<Engine>,
    options: CopyOptions,
    tracker: Arc<Tracker>,
) -> Result<CopyReport> {
    let sources = source.list().await?;
    let chosen = source
        .select_backups(&options.backups, options.set.as_deref())
        .await?;
    let mut held = destination.list().await?;
    let mut report = CopyReport::default();
    let mut wanted = Vec::new();
    for backup in chosen {
        if backup.manifest.status != BackupStatus::Completed {
            report.not_completed.push(backup.id);
        } else if let Some(copy) = held.iter().find(|copy| same_backup(&backup, copy)) {
            report.skipped.push(copied(&backup, copy.id));
        } else {
            wanted.push(backup);
        }
    }
    tracker.set_totals(
        wanted.iter().map(|b| b.manifest.stats.files).sum(),
        wanted.iter().map(|b| b.manifest.stats.bytes_total).sum(),
    );
    let sources: HashMap<Id, Backup> = sources.into_iter().map(|b| (b.id, b)).collect();
    for backup in wanted {
        let earlier = earlier_copy(&backup, &held, &sources);
        let copy_of = copies(&held);
        let archiver: Arc<dyn Archiver> = Arc::new(CopyArchiver {
            source: source.clone(),
            destination: destination.clone(),
            root: backup.manifest.root.clone(),
            stats: backup.manifest.stats.clone(),
            earlier: earlier.map(|(from, _)| from.manifest.root.clone()),
            tracker: tracker.clone(),
        });
        let mut facts = backup.manifest.facts.clone();
        facts.insert(COPIED_FROM_FACT.into(), backup.id.to_hex().into());
        name_copies(&mut facts, &copy_of);
        let snapshot = StoredSnapshot {
            source: backup.manifest.source.clone(),
            facts,
        };
        let mut backup_options = stored_backup_options(&backup).with_parent(match earlier {
            Some((_, copy)) => ParentSelection::Id(copy.id),
            None => ParentSelection::None,
        });
        if let Some(token) = &options.cancellation {
            backup_options = backup_options.with_cancellation(token.clone());
        }
        let summary =
            crate::ops::backup::run(destination, Some(&archiver), &snapshot, backup_options)
                .await?;
        report.bytes_read += summary.manifest.stats.bytes_read;
        report.bytes_uploaded += summary.manifest.stats.bytes_added;
        report.copied.push(copied(&backup, summary.id));
        held.push(Backup {
            id: summary.id,
            manifest: summary.manifest,
        });
    }
    Ok(report)
}

fn copied(backup: &Backup, destination: Id) -> CopiedBackup {
    CopiedBackup {
        set: backup.manifest.set.clone(),
        time: backup.manifest.time,
        source: backup.id,
        destination,
    }
}

/// The backup a copied backup was copied from, by its fact.
fn copied_from(backup: &Backup) -> Option<Id> {
    backup
        .manifest
        .facts
        .get(COPIED_FROM_FACT)?
        .as_str()?
        .parse()
        .ok()
}

/// Whether `held`, a destination backup, holds the source backup `backup`:
/// it is its copy, or the backup it was copied from, or a copy of the same
/// backup, or has the same set, time, writer and source.
fn same_backup(backup: &Backup, held: &Backup) -> bool {
    let (ours, theirs) = (copied_from(backup), copied_from(held));
    theirs == Some(backup.id)
        || ours == Some(held.id)
        || (ours.is_some() && ours == theirs)
        || (backup.manifest.set == held.manifest.set
            && backup.manifest.time == held.manifest.time
            && backup.manifest.writer == held.manifest.writer
            && backup.manifest.source == held.manifest.source)
}

/// The newest copy in `held` of a backup of the same set as `backup`, not
/// newer than it, whose original is still in the source: the original and
/// the copy.
fn earlier_copy<'a>(
    backup: &Backup,
    held: &'a [Backup],
    sources: &'a HashMap<Id, Backup>,
) -> Option<(&'a Backup, &'a Backup)> {
    held.iter()
        .filter(|copy| {
            copy.manifest.set == backup.manifest.set && copy.manifest.time <= backup.manifest.time
        })
        .filter_map(|copy| Some((sources.get(&copied_from(copy)?)?, copy)))
        .max_by(|(_, a), (_, b)| a.manifest.time.cmp(&b.manifest.time).then(a.id.cmp(&b.id)))
}

/// Source backup id to destination backup id, for every copy in `held`.
fn copies(held: &[Backup]) -> HashMap<Id, Id> {
    held.iter()
        .filter_map(|copy| Some((copied_from(copy)?, copy.id)))
        .collect()
}

/// Makes a cluster backup's record name the copies of its node backups
/// (a node backup not copied keeps its source id).
fn name_copies(facts: &mut BTreeMap<String, serde_json::Value>, copy_of: &HashMap<Id, Id>) {
    let Some(nodes) = facts
        .get_mut(CLUSTER_RECORD_FACT)
        .and_then(|record| record.get_mut("nodes"))
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for node in nodes {
        let Some(backup) = node.get_mut("backup") else {
            continue;
        };
        let copy = backup
            .as_str()
            .and_then(|id| id.parse::<Id>().ok())
            .and_then(|id| copy_of.get(&id));
        match copy {
            Some(copy) => *backup = copy.to_hex().into(),
            None => {
                tracing::warn!(node = %backup, "a node backup of the cluster record is not copied")
            }
        }
    }
}

/// The snapshot of a backup written again from a stored one (a copy, a
/// repaired backup): no entries (its archiver reads the stored tree), the
/// stored backup's kind, paths and facts.
pub(crate) struct StoredSnapshot {
    pub(crate) source: SourceInfo,
    pub(crate) facts: BTreeMap<String, serde_json::Value>,
}

/// The counters of a backup written again from a stored one: its content
/// counters (files, dirs, symlinks, bytes total, unchanged, skipped) the
/// stored backup's, its write counters (bytes read and added, chunks
/// added) those of this writing.
pub(crate) fn stored_counters(written: &BackupStats, stored: &BackupStats) -> BackupStats {
    BackupStats {
        bytes_read: written.bytes_read,
        bytes_added: written.bytes_added,
        chunks_added: written.chunks_added,
        ..stored.clone()
    }
}

/// The options of a backup written again from the stored `backup`: its
/// set, tags, time and writer, no parent.
pub(crate) fn stored_backup_options(backup: &Backup) -> BackupOptions {
    BackupOptions::default()
        .with_set(backup.manifest.set.clone())
        .with_tags(backup.manifest.tags.clone())
        .with_time(backup.manifest.time)
        .with_writer(backup.manifest.writer.clone())
        .with_parent(ParentSelection::None)
}

#[async_trait]
impl Snapshotter for StoredSnapshot {
    fn kind(&self) -> &str {
        &self.source.kind
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let mut snapshot = Snapshot::new(Vec::new(), self.source.clone());
        snapshot.facts = self.facts.clone();
        Ok(snapshot)
    }
}

/// Stores a source backup's tree into the destination; see the
/// [module](self).
#[derive(Debug)]
struct CopyArchiver {
    source: Arc<Engine>,
    destination: Arc<Engine>,
    /// The source backup's root.
    root: Vec<Id>,
    /// The source backup's counters.
    stats: BackupStats,
    /// The root of the source backup the parent (in the destination) was
    /// copied from.
    earlier: Option<Vec<Id>>,
    tracker: Arc<Tracker>,
}

#[async_trait]
impl Archiver for CopyArchiver {
    async fn archive(&self, entries: Vec<Entry>, parent: Option<&[Id]>) -> Result<Archived> {
        if !entries.is_empty() {
            return Err(Error::InvalidArgument(
                "a copy stores the source backup's tree, not snapshot entries".into(),
            ));
        }
        let copier = TreeCopier {
            source: self.source.clone(),
            destination: self.destination.clone(),
            writer: TreeWriter::new(self.destination.clone(), self.tracker.clone()),
            tracker: self.tracker.clone(),
            files: Semaphore::new(FILES_AT_ONCE),
        };
        let earlier = match (&self.earlier, parent) {
            (Some(source), Some(copy)) => Some(Earlier {
                source: source.clone(),
                copy: copy.to_vec(),
            }),
            _ => None,
        };
        let root = copier
            .copy_dir(String::new(), self.root.clone(), earlier)
            .await;
        let mut archived = copier.writer.finish(root).await?;
        archived.stats = stored_counters(&archived.stats, &self.stats);
        Ok(archived)
    }

    async fn restore(
        &self,
        root: &[Id],
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<RestoreSummary> {
        ChunkArchiver::new(self.destination.clone())
            .restore(root, target, options)
            .await
    }
}

/// One directory in the source backup the parent copy was made from, and
/// in that copy.
struct Earlier {
    source: Vec<Id>,
    copy: Vec<Id>,
}

/// The walk over a source backup's tree, storing into the destination.
struct TreeCopier {
    source: Arc<Engine>,
    destination: Arc<Engine>,
    writer: TreeWriter,
    tracker: Arc<Tracker>,
    files: Semaphore,
}

impl TreeCopier {
    /// Copies the directory listed by `ids` (at `path`), its children
    /// first; returns its listing's ids in the destination.
    fn copy_dir(
        &self,
        path: String,
        ids: Vec<Id>,
        earlier: Option<Earlier>,
    ) -> BoxFuture<'_, Result<Vec<Id>>> {
        Box::pin(async move {
            let nodes = self.source.load_tree(&path, &ids).await?;
            let (before, copied) = match &earlier {
                Some(earlier) => (
                    by_name(&self.source, &path, &earlier.source).await,
                    by_name(&self.destination, &path, &earlier.copy).await,
                ),
                None => (HashMap::new(), HashMap::new()),
            };
            let nodes: Vec<Node> = futures::stream::iter(nodes)
                .map(|node| {
                    let (before, copied) = (before.get(&node.name), copied.get(&node.name));
                    self.copy_node(&path, node, before, copied)
                })
                .buffered(NODES_AT_ONCE)
                .try_collect()
                .await?;
            self.writer.store_tree(nodes).await
        })
    }

    /// Copies one node of the directory at `parent`; `before` and `copied`
    /// are the node of the same name in the earlier source backup and in
    /// its copy.
    async fn copy_node(
        &self,
        parent: &str,
        mut node: Node,
        before: Option<&Node>,
        copied: Option<&Node>,
    ) -> Result<Node> {
        let path = if parent.is_empty() {
            node.name.clone()
        } else {
            format!("{parent}/{}", node.name)
        };
        match node.kind {
            NodeKind::Dir => {
                let earlier = match (before, copied) {
                    (Some(before), Some(copied))
                        if before.kind == NodeKind::Dir && copied.kind == NodeKind::Dir =>
                    {
                        Some(Earlier {
                            source: before.subtree.clone().unwrap_or_default(),
                            copy: copied.subtree.clone().unwrap_or_default(),
                        })
                    }
                    _ => None,
                };
                let ids = node.subtree.take().unwrap_or_default();
                node.subtree = Some(self.copy_dir(path, ids, earlier).await?);
            }
            NodeKind::File => {
                node.content = self.copy_content(&path, &node, before, copied).await?
            }
            NodeKind::Symlink => {}
        }
        Ok(node)
    }

    /// The content of the file `node` at `path`, stored in the destination:
    /// the earlier copy's chunks when the file has the chunks it had in
    /// the earlier source backup, else read and stored.
    async fn copy_content(
        &self,
        path: &str,
        node: &Node,
        before: Option<&Node>,
        copied: Option<&Node>,
    ) -> Result<Vec<Id>> {
        if let (Some(before), Some(copied)) = (before, copied) {
            if before.kind == NodeKind::File
                && before.content == node.content
                && copied.kind == NodeKind::File
                && copied.size == node.size
                && copied
                    .content
                    .iter()
                    .all(|id| self.destination.index_contains(id))
            {
                self.tracker.bytes_done(node.size);
                self.tracker.file_done();
                return Ok(copied.content.clone());
            }
        }
        let _slot = self
            .files
            .acquire()
            .await
            .map_err(|_| Error::Cancelled { operation: "copy" })?;
        self.tracker.set_current(path);
        let failure = Arc::new(Mutex::new(None));
        let reader = BlockingReader {
            file: open_node(&self.source, node.clone(), path)?,
            chunk: Cursor::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
            failure: failure.clone(),
        };
        let stored = self.writer.store_file(path, Box::new(reader)).await;
        // A source chunk that failed its check is reported as itself, not
        // as the read error the chunker saw.
        let source_error = failure.lock().ok().and_then(|mut slot| slot.take());
        let (content, _) = match (stored, source_error) {
            (Ok(stored), None) => stored,
            (Ok(_), Some(error)) | (Err(_), Some(error)) | (Err(error), None) => return Err(error),
        };
        self.tracker.file_done();
        Ok(content)
    }
}

/// A listing by name; an unreadable one is empty (its files are then read
/// from the source).
async fn by_name(engine: &Engine, path: &str, ids: &[Id]) -> HashMap<String, Node> {
    match engine.load_tree(path, ids).await {
        Ok(nodes) => nodes
            .into_iter()
            .map(|node| (node.name.clone(), node))
            .collect(),
        Err(error) => {
            tracing::warn!(%error, path, "earlier listing unreadable; its files are read again");
            HashMap::new()
        }
    }
}

/// A stored file as a blocking reader, for the destination's chunker (which
/// reads on a blocking thread): each chunk is awaited on the runtime.
struct BlockingReader {
    file: FileReader,
    chunk: Cursor<Vec<u8>>,
    runtime: tokio::runtime::Handle,
    /// The source's error, when reading failed.
    failure: Arc<Mutex<Option<Error>>>,
}

impl Read for BlockingReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let read = self.chunk.read(out)?;
            if read > 0 || out.is_empty() {
                return Ok(read);
            }
            match self.runtime.block_on(self.file.next_chunk()) {
                Ok(Some(chunk)) => self.chunk = Cursor::new(chunk),
                Ok(None) => return Ok(0),
                Err(error) => {
                    let message = error.to_string();
                    if let Ok(mut slot) = self.failure.lock() {
                        *slot = Some(error);
                    }
                    return Err(std::io::Error::other(message));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::{Manifest, MANIFEST_VERSION};

    fn backup(byte: u8, set: &str, copied_from: Option<Id>) -> Backup {
        let time = DateTime::from_timestamp(1_700_000_000 + i64::from(byte), 0).unwrap();
        let mut facts = BTreeMap::new();
        if let Some(id) = copied_from {
            facts.insert(COPIED_FROM_FACT.to_string(), id.to_hex().into());
        }
        Backup {
            id: Id([byte; 32]),
            manifest: Manifest {
                version: MANIFEST_VERSION,
                set: set.into(),
                time,
                started: time,
                finished: time,
                writer: "host".into(),
                hostname: "host".into(),
                source: SourceInfo {
                    kind: "directory".into(),
                    paths: vec!["/srv".into()],
                },
                tags: BTreeMap::new(),
                root: Vec::new(),
                parent: None,
                facts,
                stats: BackupStats::default(),
                status: BackupStatus::Completed,
                errors: Vec::new(),
            },
        }
    }

    #[test]
    fn a_backup_is_held_by_its_copy_its_original_or_a_backup_alike() {
        let original = backup(1, "a", None);
        let copy = backup(2, "a", Some(original.id));
        let mut other = backup(3, "a", None);
        assert!(same_backup(&original, &copy));
        // Copying the copy back finds the original.
        assert!(same_backup(&copy, &original));
        // A copy of the copy, elsewhere, holds the copy's original too.
        let copy_of_copy = backup(4, "a", Some(original.id));
        assert!(same_backup(&copy, &copy_of_copy));
        assert!(!same_backup(&original, &other));
        other.manifest.time = original.manifest.time;
        assert!(same_backup(&original, &other));
        other.manifest.set = "b".into();
        assert!(!same_backup(&original, &other));
    }

    #[test]
    fn the_parent_is_the_newest_earlier_copy_of_the_set_whose_original_is_there() {
        let originals: HashMap<Id, Backup> = [backup(1, "a", None), backup(3, "a", None)]
            .into_iter()
            .map(|b| (b.id, b))
            .collect();
        let held = [
            backup(2, "a", Some(Id([1; 32]))),
            backup(4, "a", Some(Id([3; 32]))),
            backup(5, "a", Some(Id([9; 32]))),
            backup(6, "b", Some(Id([1; 32]))),
            backup(7, "a", None),
        ];
        let later = backup(8, "a", None);
        let (from, copy) = earlier_copy(&later, &held, &originals).unwrap();
        assert_eq!((from.id, copy.id), (Id([3; 32]), Id([4; 32])));
        let earlier = backup(3, "a", None);
        let (from, copy) = earlier_copy(&earlier, &held, &originals).unwrap();
        assert_eq!((from.id, copy.id), (Id([1; 32]), Id([2; 32])));
        assert!(earlier_copy(&backup(1, "a", None), &held, &originals).is_none());
    }

    #[test]
    fn a_cluster_record_names_the_copies_of_its_node_backups() {
        let (copied, left) = (Id([1; 32]), Id([2; 32]));
        let mut facts = BTreeMap::from([(
            CLUSTER_RECORD_FACT.to_string(),
            serde_json::json!({
                "id": "c1",
                "nodes": [{"node": "n1", "backup": copied.to_hex()}, {"node": "n2", "backup": left.to_hex()}],
            }),
        )]);
        let copy_of = HashMap::from([(copied, Id([7; 32]))]);
        name_copies(&mut facts, &copy_of);
        let nodes = &facts[CLUSTER_RECORD_FACT]["nodes"];
        assert_eq!(nodes[0]["backup"], Id([7; 32]).to_hex().as_str());
        assert_eq!(nodes[1]["backup"], left.to_hex().as_str());
    }
}
