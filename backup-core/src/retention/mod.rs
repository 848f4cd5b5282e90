//! Retention: which backups to keep.
//!
//! A [`RetentionPolicy`] is a pure function from a list of backups and the
//! current time to one keep-or-forget [`Decision`] per backup. The one
//! implementation here, [`KeepPolicy`], is restic's `forget` policy
//! (`--keep-last`, `--keep-hourly`, ..., `--keep-within`,
//! `--keep-within-daily`, ..., `--keep-tag`) plus Velero's TTL and a floor
//! that is always on.

#[cfg(any(test, feature = "conformance"))]
mod contract;
mod keep;

use chrono::{DateTime, Utc};

pub use crate::duration::CalendarDuration;
use crate::format::manifest::Backup;
#[cfg(doc)]
use crate::format::manifest::BackupStatus;
#[cfg(any(test, feature = "conformance"))]
pub use contract::check_policy_contract;
pub use keep::{InvalidPolicy, KeepPolicy};

/// Keep or forget, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The backup decided on.
    pub id: crate::Id,
    /// Whether it is kept.
    pub keep: bool,
    /// Why it is kept or forgotten, for people (for example `daily snapshot`,
    /// `newest complete backup`, `no rule keeps it`, `expired: ttl 720h`).
    /// Never empty for decisions made by [`KeepPolicy`].
    pub reasons: Vec<String>,
}

/// A pure function from (backups, now) to keep/forget decisions.
///
/// # Contract
///
/// * Pure: the same backups and `now` give the same decisions; nothing but
///   the arguments is read (not the clock, not the repository).
/// * One decision per backup given, in the same order, with the backup's id.
/// * Never forgets the newest backup of a set (grouped by
///   [`Manifest::set`](crate::Manifest::set)) whose status is
///   [`BackupStatus::Completed`]; when several completed backups share the
///   newest time, the first of them in the order given. A backup that only
///   partially failed is not such a floor.
/// * Every decision has at least one reason.
///
/// [`KeepPolicy`] also decides, for every option restic's `forget` shares
/// with it, exactly as restic (0.16 and later) does run with `TZ=UTC`;
/// the differences are listed in [`KeepPolicy`]'s documentation.
/// `check_policy_contract` (with the `conformance` feature) checks the
/// contract for any implementation.
pub trait RetentionPolicy: Send + Sync {
    /// Decides for each backup whether to keep it.
    fn decide(&self, backups: &[Backup], now: DateTime<Utc>) -> Vec<Decision>;
}

/// The position in `backups` of each set's floor: its newest backup whose
/// status is [`BackupStatus::Completed`], the first of them in the order
/// given when several share the newest time. The engine keeps these
/// whatever a policy decides ([`RetentionPolicy`]'s contract).
pub(crate) fn floors(backups: &[Backup]) -> std::collections::BTreeMap<&str, usize> {
    let mut floors: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (position, backup) in backups.iter().enumerate() {
        if backup.manifest.status != crate::format::manifest::BackupStatus::Completed {
            continue;
        }
        let floor = floors
            .entry(backup.manifest.set.as_str())
            .or_insert(position);
        if backup.manifest.time > backups[*floor].manifest.time {
            *floor = position;
        }
    }
    floors
}

/// Backups to decide on, for the tests of this module's parts.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use crate::format::manifest::{Backup, BackupStats, BackupStatus, Manifest, SourceInfo};
    use crate::Id;

    /// The time written in RFC 3339 `text`.
    pub(crate) fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Backup `n` of `set`, made at `time`, with `status`.
    pub(super) fn backup(n: u32, set: &str, time: DateTime<Utc>, status: BackupStatus) -> Backup {
        Backup {
            id: Id::digest(&n.to_le_bytes()),
            manifest: Manifest {
                version: 1,
                set: set.into(),
                time,
                started: time,
                finished: time,
                writer: "w".into(),
                hostname: "h".into(),
                source: SourceInfo {
                    kind: "directory".into(),
                    paths: Vec::new(),
                },
                tags: BTreeMap::new(),
                root: Vec::new(),
                parent: None,
                facts: BTreeMap::new(),
                stats: BackupStats::default(),
                status,
                errors: Vec::new(),
            },
        }
    }
}
