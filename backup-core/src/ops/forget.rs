//! The forget operation: applying a retention policy to the manifests.

use chrono::{DateTime, Utc};

use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, MANIFEST_PREFIX};
use crate::format::manifest::Backup;
use crate::progress::{Phase, ProgressSink, Tracker};
use crate::retention::{Decision, RetentionPolicy};
use crate::{Error, Result};

/// How [`Repository::forget`](crate::Repository::forget) works.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ForgetOptions {
    /// Only decide: delete nothing.
    pub dry_run: bool,
    /// Where progress events go: the manifests deleted count as `files`.
    pub progress: Option<ProgressSink>,
    /// Cancels the forget between two deletions; what was deleted stays
    /// deleted, and the result is [`Error::Cancelled`].
    pub cancellation: Option<CancellationToken>,
}

impl ForgetOptions {
    /// Only decides, deleting nothing.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

progress_and_cancellation_setters!(ForgetOptions, "the forget");

/// Why a backup the policy would forget is kept by the engine.
const ENGINE_FLOOR_REASON: &str = "newest complete backup (kept whatever the policy says)";

/// Decides on the backups `filter` selects with `policy` and, unless a dry
/// run, deletes the manifests it does not keep; see
/// [`Repository::forget`](crate::Repository::forget).
pub(crate) async fn run(
    engine: &Engine,
    policy: &dyn RetentionPolicy,
    now: DateTime<Utc>,
    options: &ForgetOptions,
    filter: impl Fn(&Backup) -> bool,
) -> Result<Vec<(Backup, Decision)>> {
    crate::engine::tracked(
        "forget",
        options.progress.clone(),
        options.cancellation.as_ref(),
        |_| Phase::Completed,
        |tracker| async move {
            forget(engine, policy, now, options.dry_run, filter, &tracker).await
        },
    )
    .await
}

async fn forget(
    engine: &Engine,
    policy: &dyn RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
    filter: impl Fn(&Backup) -> bool,
    tracker: &Tracker,
) -> Result<Vec<(Backup, Decision)>> {
    let all = engine.list().await?;
    let backups: Vec<Backup> = all
        .iter()
        .filter(|backup| filter(backup))
        .cloned()
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
    // A node backup that a kept cluster backup's group record lists stays
    // as long as the record does, whatever its own set's rules say: the
    // cluster backup must remain restorable.
    let forgotten: std::collections::HashSet<crate::Id> = decisions
        .iter()
        .filter(|decision| !decision.keep)
        .map(|decision| decision.id)
        .collect();
    let mut referenced: std::collections::HashMap<crate::Id, String> = Default::default();
    for record in all.iter().filter(|backup| !forgotten.contains(&backup.id)) {
        for (node, cluster_backup) in cluster_members(record) {
            referenced.insert(node, cluster_backup);
        }
    }
    for decision in decisions.iter_mut().filter(|decision| !decision.keep) {
        if let Some(cluster_backup) = referenced.get(&decision.id) {
            decision.keep = true;
            decision.reasons = vec![format!("part of the kept cluster backup {cluster_backup}")];
        }
    }
    if !dry_run {
        let forgotten = decisions.iter().filter(|decision| !decision.keep).count();
        tracker.set_totals(forgotten as u64, 0);
        for decision in decisions.iter().filter(|decision| !decision.keep) {
            let key = format!("{MANIFEST_PREFIX}{}", decision.id);
            tracker.set_current(key.clone());
            engine.sink.delete(&key).await?;
            tracker.file_done();
        }
    }
    Ok(backups.into_iter().zip(decisions).collect())
}

/// The node backups a cluster backup's group record lists (its
/// `cluster_record` fact), with the cluster backup's id.
fn cluster_members(record: &Backup) -> Vec<(crate::Id, String)> {
    let Some(value) = record.manifest.facts.get("cluster_record") else {
        return Vec::new();
    };
    let id = value
        .get("id")
        .and_then(|id| id.as_str())
        .unwrap_or_default()
        .to_string();
    value
        .get("nodes")
        .and_then(|nodes| nodes.as_array())
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|node| serde_json::from_value(node.get("backup")?.clone()).ok())
                .map(|backup| (backup, id.clone()))
                .collect()
        })
        .unwrap_or_default()
}
