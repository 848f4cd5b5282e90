//! Freeing the space of data no backup references, safely.
//!
//! Deletion is two-phase. **Mark**: prune writes new index objects that no
//! longer list the doomed packs (packs no backup uses, and packs mostly
//! unused, whose used blobs are first copied into new packs), supersedes
//! the old index objects, and records the doomed packs in a deletion mark
//! `pending/<id>`. Backups that start after that never deduplicate against
//! doomed data. **Delete**: a later prune (or the same one, with a zero
//! grace period) deletes the packs of a mark older than the grace period,
//! but only when no live backup started before the mark (see
//! [`crate::engine::inflight`]), and only after checking every manifest again: a pack
//! that a backup finished since then references is put back in the index
//! instead.
//!
//! A crash at any step leaves a valid repository: new indexes are written
//! before the object that supersedes the old ones, the mark after both, and
//! packs are deleted last.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use tokio_util::sync::CancellationToken;

use crate::engine::inflight::list_markers;
use crate::engine::marks::{list_marks, DeletionMark, PENDING_PREFIX};
use crate::engine::{list_ids, list_packs, Engine, INDEX_PREFIX};
use crate::format::envelope::{self, ObjectKind};
use crate::format::index::{IndexFile, IndexedPack};
use crate::format::pack::{self, PackBuilder};
use crate::format::tree::NodeKind;
use crate::progress::{Phase, ProgressSink, Tracker};
use crate::sink::{PutMode, SinkExt};
use crate::{Error, Id, Result};

/// Allowance for clock differences between the hosts writing a repository.
const CLOCK_SKEW_SECONDS: i64 = 5 * 60;
/// Packs listed per index object written by prune.
const PACKS_PER_INDEX: usize = 1000;

/// How [`Repository::prune`](crate::Repository::prune) works.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PruneOptions {
    /// How long marked packs are kept before deletion (default 1 hour).
    pub grace: Duration,
    /// A pack whose unused share of bytes is at least this is repacked
    /// (default 0.3).
    pub repack_unused_share: f64,
    /// Only report what would be done.
    pub dry_run: bool,
    /// Cancels the prune: it stops where it is (which is as safe as a
    /// killed prune: the next one goes on) and returns
    /// [`Error::Cancelled`](crate::Error::Cancelled).
    pub cancellation: Option<CancellationToken>,
    /// Where progress events go: the packs repacked count as `files`, their
    /// bytes as `bytes`; `current` names the step.
    pub progress: Option<ProgressSink>,
}

impl PruneOptions {
    /// Sets how long marked packs are kept before deletion.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Repacks a pack whose unused share of bytes is at least `share`.
    pub fn with_repack_unused_share(mut self, share: f64) -> Self {
        self.repack_unused_share = share;
        self
    }

    /// Only reports what would be done.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

progress_and_cancellation_setters!(PruneOptions, "the prune");

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            grace: Duration::hours(1),
            repack_unused_share: 0.3,
            dry_run: false,
            cancellation: None,
            progress: None,
        }
    }
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Packs in the repository before the prune.
    pub packs_before: u64,
    /// Bytes of packs before the prune.
    pub bytes_before: u64,
    /// Packs no backup uses, marked for deletion now.
    pub packs_marked: u64,
    /// Partly used packs whose used blobs were copied to new packs.
    pub packs_repacked: u64,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Packs deleted (from marks past their grace period).
    pub packs_deleted: u64,
    /// Bytes freed by deleting packs.
    pub bytes_deleted: u64,
    /// Marked packs put back because a backup references them now.
    pub packs_rescued: u64,
    /// Marks still within their grace period.
    pub marks_waiting: u64,
    /// Marks past the grace period kept because a backup that started
    /// before them is still running.
    pub marks_postponed: u64,
}

/// Prunes, then reloads the engine's index; see
/// [`Repository::prune`](crate::Repository::prune)(crate::Repository::prune).
pub(crate) async fn run(engine: &Engine, options: &PruneOptions) -> Result<PruneReport> {
    let token = options.cancellation.as_ref();
    let report = crate::engine::tracked(
        "prune",
        options.progress.clone(),
        token,
        |_| Phase::Completed,
        |tracker| async move { prune(engine, options, &tracker).await },
    )
    .await;
    // Cancelled or not, the index is reloaded: the prune may have
    // rewritten part of it.
    let index = engine.load_index().await?;
    if let Ok(mut slot) = engine.index.write() {
        *slot = index;
    }
    report
}

/// Every blob (tree and data) some backup uses, and the index used to find
/// them. Manifests are listed *before* the index is loaded: a backup writes
/// its index before its manifest, so every listed backup's blobs are in it.
/// The index also becomes the repository's shared one, through which trees
/// are read.
async fn references(shared: &Engine) -> Result<(crate::format::index::Index, HashSet<Id>)> {
    let backups = shared.list_checked(true).await?;
    let index = shared.load_index_checked(true).await?;
    if let Ok(mut slot) = shared.index.write() {
        *slot = index.clone();
    }
    let mut used = HashSet::new();
    let mut trees_seen: HashSet<Vec<Id>> = HashSet::new();
    for backup in backups {
        let mut stack = vec![("/".to_string(), backup.manifest.root.clone())];
        while let Some((path, ids)) = stack.pop() {
            if !trees_seen.insert(ids.clone()) {
                continue;
            }
            used.extend(ids.iter().copied());
            for node in shared.load_tree(&path, &ids).await? {
                match node.kind {
                    NodeKind::Dir => stack.push((
                        format!("{path}{}/", node.name),
                        node.subtree.unwrap_or_default(),
                    )),
                    NodeKind::File => used.extend(node.content),
                    NodeKind::Symlink => {}
                }
            }
        }
    }
    Ok((index, used))
}

async fn prune(shared: &Engine, options: &PruneOptions, tracker: &Tracker) -> Result<PruneReport> {
    let sink = shared.sink.as_ref();
    let mut report = PruneReport::default();
    let now = Utc::now();
    tracker.set_current("reading what the backups use");

    // Order matters: in-flight markers are read before the manifests, so a
    // backup whose marker is gone has its manifest seen below.
    let inflight = list_markers(shared).await?;
    let (marks, unreadable_marks) = list_marks(shared).await?;
    let old_index_ids = list_ids(sink, INDEX_PREFIX).await?;
    let (index, referenced) = references(shared).await?;
    let stored = list_packs(sink).await?;
    report.packs_before = stored.len() as u64;
    report.bytes_before = stored.values().sum();
    let busy_since = |marked_at: DateTime<Utc>| {
        inflight.iter().any(|marker| {
            marker.is_live(now)
                && marker.started < marked_at + Duration::seconds(CLOCK_SKEW_SECONDS)
        })
    };

    // A mark that cannot be read dooms packs no index lists any more (it
    // was written after the index that dropped them); those packs are found
    // again below as unindexed, so the damaged mark itself can go.
    for key in unreadable_marks {
        tracing::warn!(%key, "removing an unreadable deletion mark");
        if !options.dry_run {
            sink.delete(&key).await?;
        }
    }

    // Phase 2: marks past their grace period. Only the packs of marks still
    // pending afterwards stay out of phase 1; packs a mark kept or rescued
    // are ordinary packs again, and deleted ones are gone.
    let mut already_marked: HashSet<Id> = HashSet::new();
    let mut deleted_now: HashSet<Id> = HashSet::new();
    for (key, mark) in &marks {
        if mark.marked_at + options.grace > now {
            report.marks_waiting += 1;
            already_marked.extend(mark.packs.iter().copied());
        } else if busy_since(mark.marked_at) {
            report.marks_postponed += 1;
            already_marked.extend(mark.packs.iter().copied());
        } else {
            let deleted = delete_marked(
                shared,
                key,
                mark,
                &stored,
                &referenced,
                &index,
                options.dry_run,
                &mut report,
            )
            .await?;
            deleted_now.extend(deleted);
        }
    }
    // Deleted packs are out of consideration, as if never stored.
    already_marked.extend(deleted_now.iter().copied());

    // Phase 1: find unused and mostly unused packs.
    let mut pack_blobs: HashMap<Id, Vec<pack::BlobEntry>> = HashMap::new();
    for (_, location) in index.iter() {
        pack_blobs
            .entry(location.pack)
            .or_default()
            .push(location.entry);
    }
    let mut doomed: Vec<Id> = Vec::new();
    let mut repack: Vec<Id> = Vec::new();
    for (pack_id, size) in &stored {
        if already_marked.contains(pack_id) {
            continue;
        }
        let Some(blobs) = pack_blobs.get(pack_id) else {
            if !index.packs().contains_key(pack_id) {
                // Stored but indexed nowhere: left by an interrupted backup.
                doomed.push(*pack_id);
            }
            continue;
        };
        let used: u64 = blobs
            .iter()
            .filter(|blob| referenced.contains(&blob.id))
            .map(|blob| u64::from(blob.stored_length))
            .sum();
        if used == 0 {
            doomed.push(*pack_id);
        } else if (1.0 - used as f64 / (*size).max(1) as f64) >= options.repack_unused_share {
            repack.push(*pack_id);
        }
    }
    // Indexed packs whose blobs all live elsewhere (duplicates) are unused too.
    for pack_id in index.packs().keys() {
        if stored.contains_key(pack_id)
            && !pack_blobs.contains_key(pack_id)
            && !already_marked.contains(pack_id)
            && !doomed.contains(pack_id)
        {
            doomed.push(*pack_id);
        }
    }
    report.packs_marked = doomed.len() as u64;
    report.packs_repacked = repack.len() as u64;
    tracker.set_totals(
        repack.len() as u64,
        repack.iter().filter_map(|id| stored.get(id)).sum::<u64>(),
    );
    if options.dry_run || (doomed.is_empty() && repack.is_empty()) {
        return Ok(report);
    }

    // Copy the used blobs of mostly unused packs into new packs.
    let mut new_packs = Vec::new();
    let mut builder = PackBuilder::default();
    for pack_id in &repack {
        let key = pack::pack_key(pack_id);
        tracker.set_current(format!("repacking {key}"));
        let bytes = sink.get(&key).await?;
        tracker.file_done();
        tracker.bytes_done(bytes.len() as u64);
        for entry in pack::read_header(&key, &bytes, shared.key())? {
            let chosen = index.get(&entry.id).is_some_and(|location| {
                location.pack == *pack_id && location.entry.offset == entry.offset
            });
            if !chosen || !referenced.contains(&entry.id) {
                continue;
            }
            let start = entry.offset as usize;
            let stored_bytes = bytes
                .get(start..start + entry.stored_length as usize)
                .unwrap_or_default();
            // Never copy damage into a new pack.
            pack::decode_blob(&key, &entry, stored_bytes, shared.key())?;
            builder.add(
                entry.id,
                entry.kind,
                entry.flags,
                entry.raw_length,
                stored_bytes,
            );
            if builder.len() >= shared.config.pack_size as usize {
                new_packs.push(upload_pack(shared, std::mem::take(&mut builder)).await?);
            }
        }
    }
    if !builder.is_empty() {
        new_packs.push(upload_pack(shared, builder).await?);
    }
    report.packs_written = new_packs.len() as u64;

    // New indexes: every live pack, then one object superseding the old.
    let gone: HashSet<Id> = doomed.iter().chain(repack.iter()).copied().collect();
    let mut live: Vec<IndexedPack> = pack_blobs
        .into_iter()
        .filter(|(id, _)| !gone.contains(id) && !already_marked.contains(id))
        .map(|(id, mut blobs)| {
            blobs.sort_by_key(|blob| blob.offset);
            IndexedPack {
                id,
                size: index.packs().get(&id).copied().unwrap_or(0),
                blobs,
            }
        })
        .collect();
    live.extend(new_packs);
    for packs in live.chunks(PACKS_PER_INDEX) {
        let file = IndexFile {
            supersedes: vec![IndexFile::uniqueness_marker()],
            packs: packs.to_vec(),
        };
        shared
            .put_named(INDEX_PREFIX, ObjectKind::Index, &file.encode())
            .await?;
    }
    let superseding = IndexFile {
        supersedes: old_index_ids
            .iter()
            .copied()
            .chain([IndexFile::uniqueness_marker()])
            .collect(),
        packs: Vec::new(),
    };
    shared
        .put_named(INDEX_PREFIX, ObjectKind::Index, &superseding.encode())
        .await?;

    // The mark, then the old index objects can go.
    let mark = DeletionMark {
        marked_at: Utc::now(),
        packs: gone.into_iter().collect(),
    };
    let json = serde_json::to_vec(&mark)
        .map_err(|error| Error::InvalidArgument(format!("encoding deletion mark: {error}")))?;
    let object = envelope::seal(ObjectKind::DeletionMark, &json, true, shared.key());
    let mark_key = format!("{PENDING_PREFIX}{}", Id::digest(&object));
    sink.put(&mark_key, Bytes::from(object), PutMode::Create)
        .await?;
    futures::stream::iter(old_index_ids)
        .map(|id| async move { sink.delete(&format!("{INDEX_PREFIX}{id}")).await })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;

    if options.grace <= Duration::zero() {
        // As in phase 2: markers first, then a fresh reference check that
        // sees every backup finished since the mark.
        let inflight_now = list_markers(shared).await?;
        let now = Utc::now();
        let busy = inflight_now.iter().any(|marker| {
            marker.is_live(now)
                && marker.started < mark.marked_at + Duration::seconds(CLOCK_SKEW_SECONDS)
        });
        if busy {
            report.marks_postponed += 1;
        } else {
            let (index, referenced) = references(shared).await?;
            delete_marked(
                shared,
                &mark_key,
                &mark,
                &stored,
                &referenced,
                &index,
                false,
                &mut report,
            )
            .await?;
        }
    } else {
        report.marks_waiting += 1;
    }
    Ok(report)
}

async fn upload_pack(shared: &Engine, builder: PackBuilder) -> Result<IndexedPack> {
    let (id, bytes, blobs) = builder.finish(shared.key());
    let size = bytes.len() as u64;
    shared
        .sink
        .put(&pack::pack_key(&id), Bytes::from(bytes), PutMode::Overwrite)
        .await?;
    Ok(IndexedPack { id, size, blobs })
}

/// Deletes a mark's packs, putting back in the index any that holds a blob
/// a backup uses now and no live pack has (`index` is the current index,
/// which no longer lists the mark's packs).
#[allow(clippy::too_many_arguments)]
async fn delete_marked(
    shared: &Engine,
    key: &str,
    mark: &DeletionMark,
    stored: &HashMap<Id, u64>,
    referenced: &HashSet<Id>,
    index: &crate::format::index::Index,
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<Vec<Id>> {
    let mut rescued = Vec::new();
    let mut deletable = Vec::new();
    for pack_id in &mark.packs {
        let Some(size) = stored.get(pack_id) else {
            continue;
        };
        // An index lists it again (a backup indexed it as left over by an
        // interrupted run before the mark existed): it is back in use.
        if index.is_listed(pack_id) {
            tracing::info!(pack = %pack_id.short(), "marked pack is indexed again; kept");
            continue;
        }
        match shared.read_pack_header(pack_id, *size).await {
            Ok(blobs)
                if blobs.iter().any(|blob| {
                    referenced.contains(&blob.id)
                        && index
                            .get(&blob.id)
                            .is_none_or(|location| mark.packs.contains(&location.pack))
                }) =>
            {
                rescued.push(IndexedPack {
                    id: *pack_id,
                    size: *size,
                    blobs,
                });
            }
            // Unused, or damaged beyond reading its header: nothing refers
            // to it through an index, so it can go.
            _ => deletable.push((*pack_id, *size)),
        }
    }
    tracing::info!(mark = key, rescued = ?rescued.iter().map(|p| p.id.short()).collect::<Vec<_>>(), deleted = ?deletable.iter().map(|(id, _)| id.short()).collect::<Vec<_>>(), "deletion phase");
    report.packs_rescued += rescued.len() as u64;
    report.packs_deleted += deletable.len() as u64;
    report.bytes_deleted += deletable.iter().map(|(_, size)| size).sum::<u64>();
    let deleted: Vec<Id> = deletable.iter().map(|(id, _)| *id).collect();
    if dry_run {
        return Ok(deleted);
    }
    if !rescued.is_empty() {
        let file = IndexFile {
            supersedes: vec![IndexFile::uniqueness_marker()],
            packs: rescued,
        };
        shared
            .put_named(INDEX_PREFIX, ObjectKind::Index, &file.encode())
            .await?;
    }
    for (pack_id, _) in deletable {
        shared.sink.delete(&pack::pack_key(&pack_id)).await?;
    }
    shared.sink.delete(key).await?;
    Ok(deleted)
}
