//! Retention: which backups to keep.
//!
//! Only the trait is defined so far; the keep-last/hourly/daily/... policies,
//! TTLs and `forget`/`prune` arrive with the lifecycle work. Until then the
//! repository never forgets anything.

use chrono::{DateTime, Utc};

use crate::repository::Backup;

/// Keep or forget, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The backup decided on.
    pub id: crate::Id,
    /// Whether it is kept.
    pub keep: bool,
    /// Why (for example `daily 2026-11-20`, `newest backup`).
    pub reasons: Vec<String>,
}

/// A pure function from (backups, now) to keep/forget decisions.
///
/// # Contract
///
/// * Pure: the same backups and `now` give the same decisions.
/// * One decision per backup given, in the same order.
/// * Never forgets the newest completed backup of a set.
pub trait RetentionPolicy: Send + Sync {
    /// Decides for each backup whether to keep it.
    fn decide(&self, backups: &[Backup], now: DateTime<Utc>) -> Vec<Decision>;
}
