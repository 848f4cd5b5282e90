//! The forget operation: applying a retention policy to the manifests.

use chrono::{DateTime, Utc};

use crate::engine::{Engine, MANIFEST_PREFIX};
use crate::format::manifest::Backup;
use crate::retention::{Decision, RetentionPolicy};
use crate::{Error, Result};

/// Why a backup the policy would forget is kept by the engine.
const ENGINE_FLOOR_REASON: &str = "newest complete backup (kept whatever the policy says)";

/// Decides on the backups `filter` selects with `policy` and, unless
/// `dry_run`, deletes the manifests it does not keep; see
/// [`Repository::forget`](crate::Repository::forget).
pub(crate) async fn run(
    engine: &Engine,
    policy: &dyn RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
    filter: impl Fn(&Backup) -> bool,
) -> Result<Vec<(Backup, Decision)>> {
    let backups: Vec<Backup> = engine
        .list()
        .await?
        .into_iter()
        .filter(|backup| filter(backup))
        .collect();
    let mut decisions = policy.decide(&backups, now);
    let aligned = decisions.len() == backups.len()
        && decisions
            .iter()
            .zip(&backups)
            .all(|(decision, backup)| decision.id == backup.id);
    if !aligned {
        return Err(Error::InvalidArgument(
            "the retention policy did not return one decision per backup, in order".into(),
        ));
    }
    // The floor holds for every policy, not only for those that keep it:
    // a faulty policy must not delete the newest complete backup of a set.
    for position in crate::retention::floors(&backups).into_values() {
        let decision = &mut decisions[position];
        if !decision.keep {
            tracing::warn!(
                backup = %decision.id,
                "the retention policy would forget the newest complete backup of its set: kept"
            );
            decision.keep = true;
            decision.reasons = vec![ENGINE_FLOOR_REASON.to_string()];
        }
    }
    if !dry_run {
        for decision in decisions.iter().filter(|decision| !decision.keep) {
            engine
                .sink
                .delete(&format!("{MANIFEST_PREFIX}{}", decision.id))
                .await?;
        }
    }
    Ok(backups.into_iter().zip(decisions).collect())
}
