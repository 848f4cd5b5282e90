//! The restore operation: one backup, or several backup sets at once.

use std::path::Path;
use std::sync::Arc;

use crate::archiver::restore::{RestoreOptions, RestoreSummary};
use crate::archiver::{Archiver, ChunkArchiver};
use crate::engine::{validate_set_name, Engine};
use crate::format::manifest::Backup;
use crate::{Id, Result};

/// What [`Repository::restore_sets`](crate::Repository::restore_sets) did
/// for one set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SetRestore {
    /// The backup set.
    pub set: String,
    /// The backup restored, or `None` when the set was skipped.
    pub backup: Option<Id>,
    /// What was restored.
    pub summary: Option<RestoreSummary>,
}

/// Restores `backup` under `target` with `archiver` (the default archiver
/// when `None`); see [`Repository::restore`](crate::Repository::restore).
pub(crate) async fn run(
    engine: &Arc<Engine>,
    archiver: Option<&Arc<dyn Archiver>>,
    backup: &Backup,
    target: &Path,
    options: &RestoreOptions,
) -> Result<RestoreSummary> {
    let default;
    let archiver: &dyn Archiver = match archiver {
        Some(archiver) => archiver.as_ref(),
        None => {
            default = ChunkArchiver::new(engine.clone());
            &default
        }
    };
    crate::engine::cancellable(
        options.cancellation.as_ref(),
        "restore",
        archiver.restore(&backup.manifest.root, target, options),
    )
    .await
}

/// Resolves every selection (`latest`, an id prefix, or `skip`) before
/// writing anything, then restores each set into `target/<set>`; see
/// [`Repository::restore_sets`](crate::Repository::restore_sets).
pub(crate) async fn run_sets(
    engine: &Arc<Engine>,
    archiver: Option<&Arc<dyn Archiver>>,
    selections: &[(String, String)],
    target: &Path,
    options: &RestoreOptions,
) -> Result<Vec<SetRestore>> {
    let mut chosen = Vec::new();
    for (set, selector) in selections {
        validate_set_name(set)?;
        let backup = match selector.as_str() {
            "skip" => None,
            selector => Some(engine.find_backup(selector, Some(set)).await?),
        };
        chosen.push((set.clone(), backup));
    }
    let mut results = Vec::new();
    for (set, backup) in chosen {
        let summary = match &backup {
            Some(backup) => {
                let place = target.join(set.replace('/', "_"));
                Some(run(engine, archiver, backup, &place, options).await?)
            }
            None => None,
        };
        results.push(SetRestore {
            set,
            backup: backup.map(|b| b.id),
            summary,
        });
    }
    Ok(results)
}
