//! Rebuilding the index from the packs themselves (restic's `repair
//! index`).
//!
//! Every pack's header lists all its blobs (FORMAT.md, "Packs"), so the
//! index can always be written anew from the packs alone. The repair lists
//! the index objects, then the packs, reads each pack's header (two ranged
//! reads, as the reader does for a pack in no index), writes new index
//! objects covering every blob found, then one index object superseding
//! the old ones, and only then deletes the old ones. A crash or a
//! cancellation at any point leaves a readable index: before the
//! superseding object, old and new objects list the same blobs twice, which
//! readers accept (FORMAT.md, "Indexes": any listed location may be used);
//! after it, readers ignore the old objects until they are deleted.
//!
//! What it leaves alone:
//!
//! * **Packs whose header cannot be read** are reported, never deleted. Where
//!   a readable index object listed blobs in such a pack, those entries are
//!   kept, so that what was restorable stays restorable (and `verify
//!   --read-data` goes on naming the pack). A pack in no index is what prune
//!   takes for the leftover of an interrupted backup.
//! * **Packs named in deletion marks** stay out of the new index, as prune
//!   left them (readers read their headers; prune deletes them or puts them
//!   back), unless an index object lists them again (a backup reused them
//!   before the mark existed): then they stay listed, as prune expects.
//!
//! Beside a running backup the repair is safe without waiting for it (no
//! in-flight marker is consulted, since nothing is deleted that a backup
//! needs): the index objects are listed *before* the packs, and an index
//! object only lists packs stored before it was written, so every pack an
//! old (deleted) index object listed was in the pack listing and is in the
//! new index; index objects written after the listing are neither
//! superseded nor deleted; and no pack is deleted. Do not run it beside a
//! prune: like two prunes at once, the two could each rewrite the index
//! from a view the other has changed.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::marks::list_marks;
use crate::engine::{list_ids, list_packs, poisoned, Engine, INDEX_PREFIX, METADATA_CONCURRENCY};
use crate::format::envelope::ObjectKind;
use crate::format::index::{IndexFile, IndexedPack};
use crate::format::pack::{self, BlobEntry};
use crate::ops::verify::Problem;
use crate::progress::{Phase, ProgressSink, Tracker};
use crate::{Error, Id, Result};

/// Packs listed per index object written by the repair (as by prune).
const PACKS_PER_INDEX: usize = 1000;

/// How [`Repository::repair_index`](crate::Repository::repair_index) works.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RepairIndexOptions {
    /// Only report what would be done: read the pack headers, write and
    /// delete nothing.
    pub dry_run: bool,
    /// Cancels the repair where it is, which is as safe as a crash (see the
    /// [`Repository::repair_index`](crate::Repository::repair_index) docs);
    /// the result is [`Error::Cancelled`].
    pub cancellation: Option<CancellationToken>,
    /// Where progress events go: the pack headers read count as `files`.
    pub progress: Option<ProgressSink>,
}

impl RepairIndexOptions {
    /// Only reports what would be done, writing and deleting nothing.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

progress_and_cancellation_setters!(RepairIndexOptions, "the repair");

/// What a repair of the index did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RepairIndexReport {
    /// Packs stored in the repository.
    pub packs: u64,
    /// Packs listed in the new index from their own headers.
    pub packs_indexed: u64,
    /// Blob entries the new index lists.
    pub blobs_indexed: u64,
    /// Packs named in deletion marks and left out of the new index.
    pub packs_marked_for_deletion: u64,
    /// Packs whose header cannot be read: left in place, not deleted, and
    /// listed with the blobs a readable old index object located in them,
    /// if any. The repair still succeeds.
    pub unreadable_packs: Vec<Problem>,
    /// Old index objects that could not be read (replaced all the same).
    pub damaged_index_objects: u64,
    /// New index objects written (the superseding one included).
    pub index_objects_written: u64,
    /// Old index objects deleted.
    pub index_objects_removed: u64,
}

impl RepairIndexReport {
    /// Whether every pack's header could be read.
    pub fn is_complete(&self) -> bool {
        self.unreadable_packs.is_empty()
    }
}

/// Rebuilds the index, then reloads the engine's; see
/// [`Repository::repair_index`](crate::Repository::repair_index).
pub(crate) async fn run(
    engine: &Engine,
    options: &RepairIndexOptions,
) -> Result<RepairIndexReport> {
    let report = crate::engine::tracked(
        "repair index",
        options.progress.clone(),
        options.cancellation.as_ref(),
        |report: &RepairIndexReport| {
            if report.is_complete() {
                Phase::Completed
            } else {
                Phase::PartiallyFailed
            }
        },
        |tracker| async move { repair(engine, options, &tracker).await },
    )
    .await;
    // Cancelled or not, the index may have been rewritten.
    let index = engine.load_index().await?;
    *engine.index.write().map_err(|_| poisoned())? = index;
    report
}

async fn repair(
    engine: &Engine,
    options: &RepairIndexOptions,
    tracker: &Tracker,
) -> Result<RepairIndexReport> {
    let sink = engine.sink.as_ref();
    let mut report = RepairIndexReport::default();
    tracker.set_current("listing the index and the packs");

    // Order matters: the index objects before the packs, so that every pack
    // an old object lists is in the pack listing (see the module docs).
    let (marks, unreadable_marks) = list_marks(engine).await?;
    for key in &unreadable_marks {
        tracing::warn!(%key, "unreadable deletion mark: the packs it names cannot be told apart and are indexed");
    }
    let doomed: HashSet<Id> = marks.into_iter().flat_map(|(_, mark)| mark.packs).collect();
    let old_index_ids = list_ids(sink, INDEX_PREFIX).await?;
    report.damaged_index_objects = count_damaged(engine, &old_index_ids).await?;
    let mut stored: Vec<(Id, u64)> = list_packs(sink).await?.into_iter().collect();
    stored.sort();
    report.packs = stored.len() as u64;

    let to_read: Vec<(Id, u64)> = {
        let index = engine.index.read().map_err(|_| poisoned())?;
        stored
            .into_iter()
            .filter(|(id, _)| !doomed.contains(id) || index.is_listed(id))
            .collect()
    };
    report.packs_marked_for_deletion = report.packs - to_read.len() as u64;
    tracker.set_totals(to_read.len() as u64, 0);
    tracker.set_current("reading the pack headers");

    let headers: Vec<(Id, u64, Result<Vec<BlobEntry>>)> = futures::stream::iter(to_read)
        .map(|(id, size)| async move {
            let header = engine.read_pack_header(&id, size).await;
            tracker.file_done();
            (id, size, header)
        })
        .buffer_unordered(METADATA_CONCURRENCY)
        .collect()
        .await;
    let mut packs: Vec<IndexedPack> = Vec::new();
    let mut unreadable: Vec<(Id, u64)> = Vec::new();
    for (id, size, header) in headers {
        match header {
            Ok(blobs) => packs.push(IndexedPack { id, size, blobs }),
            // Deleted by a prune since the listing: it needs no entry.
            Err(Error::NotFound { .. }) => {}
            Err(error @ Error::Corrupt { .. }) => {
                tracing::warn!(%error, "pack header unreadable; the pack is left in place");
                report.unreadable_packs.push(Problem {
                    object: pack::pack_key(&id),
                    message: error.to_string(),
                });
                unreadable.push((id, size));
            }
            // Anything else (storage) stops the repair before it writes:
            // a pack left out for a passing failure would lose its entries.
            Err(error) => return Err(error),
        }
    }
    report.packs_indexed = packs.len() as u64;
    packs.extend(kept_entries(engine, &unreadable)?);
    packs.sort_by_key(|pack| pack.id);
    report
        .unreadable_packs
        .sort_by(|a, b| a.object.cmp(&b.object));
    report.blobs_indexed = packs.iter().map(|pack| pack.blobs.len() as u64).sum();
    if options.dry_run {
        return Ok(report);
    }

    tracker.set_current("writing the new index");
    for chunk in packs.chunks(PACKS_PER_INDEX) {
        let file = IndexFile {
            supersedes: vec![IndexFile::uniqueness_marker()],
            packs: chunk.to_vec(),
        };
        engine
            .put_named(INDEX_PREFIX, ObjectKind::Index, &file.encode())
            .await?;
        report.index_objects_written += 1;
    }
    if old_index_ids.is_empty() {
        return Ok(report);
    }
    // A damaged object's own supersedes list is unknown; superseding it
    // and deleting it makes that moot.
    let superseding = IndexFile {
        supersedes: old_index_ids
            .iter()
            .copied()
            .chain([IndexFile::uniqueness_marker()])
            .collect(),
        packs: Vec::new(),
    };
    engine
        .put_named(INDEX_PREFIX, ObjectKind::Index, &superseding.encode())
        .await?;
    report.index_objects_written += 1;

    tracker.set_current("deleting the old index");
    futures::stream::iter(&old_index_ids)
        .map(|id| async move { sink.delete(&format!("{INDEX_PREFIX}{id}")).await })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    report.index_objects_removed = old_index_ids.len() as u64;
    Ok(report)
}

/// How many of the index objects `ids` are damaged (gone ones are not).
async fn count_damaged(engine: &Engine, ids: &[Id]) -> Result<u64> {
    let master = engine.key();
    let damaged: Vec<bool> = futures::stream::iter(ids)
        .map(|id| async move {
            let key = format!("{INDEX_PREFIX}{id}");
            let decoded = match engine.get_named(&key, id).await {
                Ok(bytes) => {
                    crate::format::envelope::open_named(&key, &bytes, ObjectKind::Index, master)
                        .and_then(|payload| IndexFile::decode(&key, &payload))
                }
                Err(error) => Err(error),
            };
            match decoded {
                Ok(_) | Err(Error::NotFound { .. }) => Ok(false),
                Err(Error::Corrupt { .. }) => Ok(true),
                Err(error) => Err(error),
            }
        })
        .buffer_unordered(METADATA_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(damaged.into_iter().filter(|damaged| *damaged).count() as u64)
}

/// For packs whose header cannot be read, the blobs the loaded index
/// locates in them (from readable index objects), so that they stay
/// readable; packs it locates nothing in are left out.
fn kept_entries(engine: &Engine, unreadable: &[(Id, u64)]) -> Result<Vec<IndexedPack>> {
    if unreadable.is_empty() {
        return Ok(Vec::new());
    }
    let sizes: HashMap<Id, u64> = unreadable.iter().copied().collect();
    let mut blobs: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    let index = engine.index.read().map_err(|_| poisoned())?;
    for (_, location) in index.iter() {
        if sizes.contains_key(&location.pack)
            && index.packs().get(&location.pack) == sizes.get(&location.pack)
        {
            blobs.entry(location.pack).or_default().push(location.entry);
        }
    }
    Ok(blobs
        .into_iter()
        .map(|(id, mut blobs)| {
            blobs.sort_by_key(|blob| blob.offset);
            IndexedPack {
                id,
                size: sizes.get(&id).copied().unwrap_or(0),
                blobs,
            }
        })
        .collect())
}
