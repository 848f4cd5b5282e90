//! Retention: which backups to keep.
//!
//! A [`RetentionPolicy`] is a pure function from a list of backups and the
//! current time to one keep-or-forget [`Decision`] per backup. The one
//! implementation here, [`KeepPolicy`], is restic's `forget` policy
//! (`--keep-last`, `--keep-hourly`, ..., `--keep-within`,
//! `--keep-within-daily`, ..., `--keep-tag`) plus Velero's TTL and a floor
//! that is always on.
//!
//! # Semantics
//!
//! Backups are grouped by [`Manifest::set`](crate::Manifest::set) (restic
//! groups by host and paths by default) and each set is decided on its own,
//! exactly as restic's `ApplyPolicy` (restic 0.16 and later) decides one
//! group:
//!
//! 1. The set's backups are sorted newest first; backups with the same time
//!    stay in the order they were given (a stable sort, as in restic).
//! 2. A policy without any keep rule and without a TTL keeps every backup
//!    ("policy is empty").
//! 3. Otherwise a backup is kept when at least one rule keeps it:
//!    * `keep_last`, `keep_hourly`, `keep_daily`, `keep_weekly`,
//!      `keep_monthly`, `keep_yearly` (count `n`, or [`KeepPolicy::UNLIMITED`]):
//!      walking from the newest backup, a backup is kept when its bucket
//!      (every backup its own for `keep_last`; the UTC hour `YYYYMMDDHH`, day
//!      `YYYYMMDD`, ISO-8601 week `YYYYWW` (ISO year), month `YYYYMM`, or
//!      year `YYYY`) differs from the bucket of the previous backup this rule
//!      kept, while the rule has counts left; each such keep uses one count.
//!      The oldest backup of the set is also kept while the rule has counts
//!      left, even when its bucket was already kept (this keeps the longest
//!      history while counts remain; restic 0.16).
//!    * `keep_within` `D`: kept when its time is strictly after `latest - D`,
//!      where `latest` is the time of the newest backup of the set that is
//!      strictly before `now` (when no backup is, every backup is "within").
//!      `D` is subtracted calendar-wise: years, months and days first, as
//!      Go's `time.AddDate` does it (a day that does not exist rolls over:
//!      2022-05-31 minus 3 months is "2022-02-31", that is 2022-03-03), then
//!      hours as an exact duration.
//!    * `keep_within_hourly` .. `keep_within_yearly` `D`: among the backups
//!      within `D` (as for `keep_within`), the newest of each bucket, without
//!      a count.
//!    * `keep_tags`: kept when the backup has every tag of at least one of
//!      the lists. Our tags are `KEY=VALUE` pairs
//!      ([`Manifest::tags`](crate::Manifest::tags)) where restic's are plain
//!      strings: a filter `key=value` matches a backup whose tag `key` has the
//!      value `value` (`key=` matches the empty value), and a filter `key`
//!      (without `=`) matches a backup that has the tag `key` with any value.
//!      So restic's tag `keep` corresponds to our tag key `keep` with an empty
//!      value, and restic's tag `env=prod` to our key `env` with value `prod`.
//!      An empty list matches every backup (as in restic).
//! 4. TTL (Velero's): a backup whose `time + ttl <= now` is forgotten even when
//!    a rule keeps it (`ttl` is added calendar-wise, like `keep_within`).
//! 5. The floor, always on: the newest backup of each set whose status is
//!    [`BackupStatus::Completed`] is never forgotten ("newest complete
//!    backup"), whatever the rules and the TTL say. A newer backup that only
//!    partially failed does not count as the floor (and is kept only if a
//!    rule keeps it). When several completed backups share the newest time,
//!    the floor is the first of them in the order given.
//!
//! Every decision carries reasons: the rules that keep a backup (restic's
//! texts: `last snapshot`, `daily snapshot`, `oldest daily snapshot`,
//! `within 2m10d`, `daily within 30d`, `has tags [keep]`, ...), or why it is
//! forgotten (`no rule keeps it`, `expired: ttl 720h`).
//!
//! # Differences from restic's `forget`
//!
//! * Buckets are computed in UTC. restic uses the time zone each snapshot's
//!   time was recorded in (the local zone of the machine that made it); run
//!   restic with `TZ=UTC` for equal results.
//! * `latest` for the `keep_within*` rules is relative to the `now` given to
//!   [`RetentionPolicy::decide`], where restic uses the machine's clock.
//! * The floor: restic may forget every snapshot of a group (for example
//!   with only `--keep-tag` rules that match nothing); we always keep the
//!   newest completed backup of a set. restic has no backup status.
//! * The TTL is Velero's, not restic's; restic has none.
//! * Tag filters match `KEY=VALUE` tags as described above: a filter `key`
//!   also matches a tag `key=anything`, where restic's tag `key` would only
//!   match the tag `key`.
//! * Grouping is by backup set only (restic: `--group-by`, default host and
//!   paths).
//! * Counts other than positive numbers and [`KeepPolicy::UNLIMITED`] (`-1`)
//!   disable their rule ([`KeepPolicy::validate`] reports them); restic 0.16+
//!   refuses negative counts on its command line and spells unlimited as
//!   `unlimited`. A policy whose only rules are disabled ones is empty and
//!   keeps everything, where restic's `ApplyPolicy` would forget everything.
//! * A zero duration (`0d`) disables its rule, as in restic; a zero TTL
//!   disables the TTL.
//! * [`CalendarDuration`] parsing refuses a unit given twice (`1d2d`), which
//!   restic accepts (the last one wins).
//! * Among backups with the same time, restic's order is the order it lists
//!   them from the repository; ours is the order given to `decide`.

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
/// the differences are listed in the [module documentation](self).
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
