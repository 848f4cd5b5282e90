//! Repairing backups that reference lost data, as `restic repair
//! snapshots` does.
//!
//! A backup whose tree references a chunk no index holds (its pack was
//! lost; `repair index` has dropped it from the index) cannot be restored
//! whole. Repairing writes, for each such backup, a new backup of the same
//! set, time, tags, writer, source and facts whose tree leaves out what is
//! lost: a file with a missing content chunk is left out, a directory
//! whose listing cannot be read is stored empty. Everything else keeps its
//! chunks, so nothing is read but listings and nothing new is stored but
//! the listings that changed. The new backup is `partially_failed`, lists
//! each item left out in its `errors` (kind `corrupt`) and names the
//! original in the fact [`REPAIRED_FROM_FACT`]. With
//! [`RepairBackupsOptions::forget`] the original is forgotten once its
//! repaired backup is written; otherwise both stay, as restic keeps them
//! unless told `--forget`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::archiver::restore::{RestoreOptions, RestoreSummary};
use crate::archiver::{Archived, Archiver, ChunkArchiver, TreeWriter};
use crate::engine::{tracked, Engine, MANIFEST_PREFIX};
use crate::format::manifest::{Backup, BackupStats};
use crate::format::tree::NodeKind;
use crate::ops::copy::{stored_backup_options, stored_counters, StoredSnapshot};
use crate::outcome::{FailureKind, ItemFailure};
use crate::progress::{Phase, ProgressSink, Tracker};
use crate::snapshot::Entry;
use crate::{Error, Id, Result};

/// The manifest fact of a repaired backup naming the backup it was
/// repaired from (its id, as 64 hex digits).
pub const REPAIRED_FROM_FACT: &str = "repaired_from";

/// Options for [`Repository::repair_backups`](crate::Repository::repair_backups).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RepairBackupsOptions {
    /// The backups to check and repair: `latest` or id prefixes; empty
    /// checks every backup (of [`RepairBackupsOptions::set`] when given).
    pub backups: Vec<String>,
    /// Only backups of this set.
    pub set: Option<String>,
    /// Forget each original once its repaired backup is written.
    pub forget: bool,
    /// Only report what would be repaired: write and forget nothing.
    pub dry_run: bool,
    /// Where progress events go.
    pub progress: Option<ProgressSink>,
    /// Cancels the repair between two backups (a repaired backup being
    /// written is not recorded).
    pub cancellation: Option<tokio_util::sync::CancellationToken>,
}

impl RepairBackupsOptions {
    /// Forgets each original once it is repaired.
    pub fn with_forget(mut self, forget: bool) -> Self {
        self.forget = forget;
        self
    }

    /// Reports only, writing nothing.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

backup_selection_setters!(RepairBackupsOptions, "the repair");
progress_and_cancellation_setters!(RepairBackupsOptions, "the repair");

/// One backup that references lost data, and its repair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RepairedBackup {
    /// The damaged backup.
    pub original: Id,
    /// Its set.
    pub set: String,
    /// The time it represents.
    pub time: DateTime<Utc>,
    /// The repaired backup (none in a dry run).
    pub repaired: Option<Id>,
    /// What the repaired backup leaves out, with why.
    pub removed: Vec<ItemFailure>,
    /// Whether the original was forgotten.
    pub forgotten: bool,
}

/// What [`Repository::repair_backups`](crate::Repository::repair_backups) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RepairBackupsReport {
    /// The backups that reference lost data, oldest first.
    pub repaired: Vec<RepairedBackup>,
    /// The backups checked and found whole.
    pub intact: Vec<Id>,
}

/// Checks and repairs the selected backups; see the [module](self).
pub(crate) async fn run(
    engine: &Arc<Engine>,
    options: RepairBackupsOptions,
) -> Result<RepairBackupsReport> {
    let token = options.cancellation.clone();
    tracked(
        "repair",
        options.progress.clone(),
        token.as_ref(),
        |_| Phase::Completed,
        |tracker| repair_selected(engine, options, tracker),
    )
    .await
}

async fn repair_selected(
    engine: &Arc<Engine>,
    options: RepairBackupsOptions,
    tracker: Arc<Tracker>,
) -> Result<RepairBackupsReport> {
    let chosen = engine
        .select_backups(&options.backups, options.set.as_deref())
        .await?;
    tracker.set_totals(chosen.len() as u64, 0);
    let mut report = RepairBackupsReport::default();
    for backup in chosen {
        tracker.set_current(backup.id.short());
        let removed = Rebuild::lost(engine, &backup).await?;
        if removed.is_empty() {
            report.intact.push(backup.id);
            tracker.file_done();
            continue;
        }
        let mut repaired = RepairedBackup {
            original: backup.id,
            set: backup.manifest.set.clone(),
            time: backup.manifest.time,
            repaired: None,
            removed,
            forgotten: false,
        };
        if !options.dry_run {
            if let Some(token) = &options.cancellation {
                if token.is_cancelled() {
                    return Err(Error::Cancelled {
                        operation: "repair",
                    });
                }
            }
            repaired.repaired = Some(write_repaired(engine, &backup, &tracker).await?);
            if options.forget {
                engine
                    .sink
                    .delete(&format!("{MANIFEST_PREFIX}{}", backup.id))
                    .await?;
                repaired.forgotten = true;
            }
        }
        report.repaired.push(repaired);
        tracker.file_done();
    }
    Ok(report)
}

/// Writes the repaired backup of `backup`; returns its id.
async fn write_repaired(
    engine: &Arc<Engine>,
    backup: &Backup,
    tracker: &Arc<Tracker>,
) -> Result<Id> {
    let mut facts = backup.manifest.facts.clone();
    facts.insert(REPAIRED_FROM_FACT.into(), backup.id.to_hex().into());
    let snapshot = StoredSnapshot {
        source: backup.manifest.source.clone(),
        facts,
    };
    let archiver: Arc<dyn Archiver> = Arc::new(RepairArchiver {
        engine: engine.clone(),
        root: backup.manifest.root.clone(),
        stats: backup.manifest.stats.clone(),
        errors: backup.manifest.errors.clone(),
        tracker: tracker.clone(),
    });
    let summary = crate::ops::backup::run(
        engine,
        Some(&archiver),
        &snapshot,
        stored_backup_options(backup),
    )
    .await?;
    Ok(summary.id)
}

/// The walk over a backup's tree that leaves out what is lost, storing the
/// changed listings through `writer` (none: only find what is lost).
struct Rebuild<'a> {
    engine: &'a Arc<Engine>,
    writer: Option<&'a TreeWriter>,
    removed: Mutex<Vec<ItemFailure>>,
}

impl Rebuild<'_> {
    /// What the repaired backup of `backup` leaves out.
    async fn lost(engine: &Arc<Engine>, backup: &Backup) -> Result<Vec<ItemFailure>> {
        let walk = Rebuild {
            engine,
            writer: None,
            removed: Mutex::new(Vec::new()),
        };
        walk.dir(String::new(), backup.manifest.root.clone())
            .await?;
        Ok(walk.into_removed())
    }

    fn into_removed(self) -> Vec<ItemFailure> {
        let mut removed = self.removed.into_inner().unwrap_or_default();
        removed.sort_by(|a, b| a.path.cmp(&b.path));
        removed
    }

    fn remove(&self, path: &str, message: String) {
        if let Ok(mut removed) = self.removed.lock() {
            removed.push(ItemFailure::new(
                if path.is_empty() {
                    "/".into()
                } else {
                    path.to_string()
                },
                FailureKind::Corrupt,
                message,
            ));
        }
    }

    /// The directory listed by `ids` at `path`, without what is lost;
    /// returns its listing's ids (the original ones when only looking).
    fn dir(&self, path: String, ids: Vec<Id>) -> BoxFuture<'_, Result<Vec<Id>>> {
        Box::pin(async move {
            let nodes = match self.engine.load_tree(&path, &ids).await {
                Ok(nodes) => nodes,
                Err(error @ Error::Corrupt { .. }) => {
                    self.remove(
                        &path,
                        format!("directory listing lost, stored empty: {error}"),
                    );
                    return match self.writer {
                        Some(writer) => writer.store_tree(Vec::new()).await,
                        None => Ok(ids),
                    };
                }
                Err(error) => return Err(error),
            };
            let mut kept = Vec::with_capacity(nodes.len());
            for mut node in nodes {
                let child = if path.is_empty() {
                    node.name.clone()
                } else {
                    format!("{path}/{}", node.name)
                };
                match node.kind {
                    NodeKind::Dir => {
                        let subtree = node.subtree.take().unwrap_or_default();
                        node.subtree = Some(self.dir(child, subtree).await?);
                    }
                    NodeKind::File => {
                        let missing = node
                            .content
                            .iter()
                            .filter(|id| !self.engine.index_contains(id))
                            .count();
                        if missing > 0 {
                            self.remove(
                                &child,
                                format!(
                                    "{missing} of its {} content chunks are lost: left out",
                                    node.content.len()
                                ),
                            );
                            continue;
                        }
                    }
                    NodeKind::Symlink => {}
                }
                kept.push(node);
            }
            match self.writer {
                Some(writer) => writer.store_tree(kept).await,
                None => Ok(ids),
            }
        })
    }
}

/// Writes a backup's tree again without what is lost; see the
/// [module](self).
#[derive(Debug)]
struct RepairArchiver {
    engine: Arc<Engine>,
    root: Vec<Id>,
    stats: BackupStats,
    /// The damaged backup's own errors, kept.
    errors: Vec<ItemFailure>,
    tracker: Arc<Tracker>,
}

#[async_trait]
impl Archiver for RepairArchiver {
    async fn archive(&self, entries: Vec<Entry>, _parent: Option<&[Id]>) -> Result<Archived> {
        if !entries.is_empty() {
            return Err(Error::InvalidArgument(
                "a repair stores the damaged backup's tree, not snapshot entries".into(),
            ));
        }
        let writer = TreeWriter::new(self.engine.clone(), self.tracker.clone());
        let walk = Rebuild {
            engine: &self.engine,
            writer: Some(&writer),
            removed: Mutex::new(Vec::new()),
        };
        let root = walk.dir(String::new(), self.root.clone()).await;
        let removed = walk.into_removed();
        let mut archived = writer.finish(root).await?;
        archived.stats = stored_counters(&archived.stats, &self.stats);
        archived.errors = self.errors.iter().cloned().chain(removed).collect();
        Ok(archived)
    }

    async fn restore(
        &self,
        root: &[Id],
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<RestoreSummary> {
        ChunkArchiver::new(self.engine.clone())
            .restore(root, target, options)
            .await
    }
}
