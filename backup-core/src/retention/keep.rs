//! [`KeepPolicy`]: restic's `forget` rules, Velero's TTL and the floor,
//! as the [retention module](super) describes them.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::{CalendarDuration, Decision, RetentionPolicy};
use crate::format::manifest::{Backup, BackupStatus};

/// restic's `forget` policy, Velero's TTL and the newest-complete-backup
/// floor.
///
/// The default is the empty policy, which keeps everything.
///
/// # Semantics
///
/// Backups are grouped by [`Manifest::set`](crate::Manifest::set) (restic
/// groups by host and paths by default) and each set is decided on its own,
/// exactly as restic's `ApplyPolicy` (restic 0.16 and later) decides one
/// group:
///
/// 1. The set's backups are sorted newest first; backups with the same time
///    stay in the order they were given (a stable sort, as in restic).
/// 2. A policy without any keep rule and without a TTL keeps every backup
///    ("policy is empty").
/// 3. Otherwise a backup is kept when at least one rule keeps it:
///    * `keep_last`, `keep_hourly`, `keep_daily`, `keep_weekly`,
///      `keep_monthly`, `keep_yearly` (count `n`, or [`KeepPolicy::UNLIMITED`]):
///      walking from the newest backup, a backup is kept when its bucket
///      (every backup its own for `keep_last`; the UTC hour `YYYYMMDDHH`, day
///      `YYYYMMDD`, ISO-8601 week `YYYYWW` (ISO year), month `YYYYMM`, or
///      year `YYYY`) differs from the bucket of the previous backup this rule
///      kept, while the rule has counts left; each such keep uses one count.
///      The oldest backup of the set is also kept while the rule has counts
///      left, even when its bucket was already kept (this keeps the longest
///      history while counts remain; restic 0.16).
///    * `keep_within` `D`: kept when its time is strictly after `latest - D`,
///      where `latest` is the time of the newest backup of the set that is
///      strictly before `now` (when no backup is, every backup is "within").
///      `D` is subtracted calendar-wise: years, months and days first, as
///      Go's `time.AddDate` does it (a day that does not exist rolls over:
///      2022-05-31 minus 3 months is "2022-02-31", that is 2022-03-03), then
///      hours as an exact duration.
///    * `keep_within_hourly` .. `keep_within_yearly` `D`: among the backups
///      within `D` (as for `keep_within`), the newest of each bucket, without
///      a count.
///    * `keep_tags`: kept when the backup has every tag of at least one of
///      the lists. Our tags are `KEY=VALUE` pairs
///      ([`Manifest::tags`](crate::Manifest::tags)) where restic's are plain
///      strings: a filter `key=value` matches a backup whose tag `key` has the
///      value `value` (`key=` matches the empty value), and a filter `key`
///      (without `=`) matches a backup that has the tag `key` with any value.
///      So restic's tag `keep` corresponds to our tag key `keep` with an empty
///      value, and restic's tag `env=prod` to our key `env` with value `prod`.
///      An empty list matches every backup (as in restic).
/// 4. TTL (Velero's): a backup whose `time + ttl <= now` is forgotten even when
///    a rule keeps it (`ttl` is added calendar-wise, like `keep_within`).
/// 5. The floor, always on: the newest backup of each set whose status is
///    [`BackupStatus::Completed`] is never forgotten ("newest complete
///    backup"), whatever the rules and the TTL say. A newer backup that only
///    partially failed does not count as the floor (and is kept only if a
///    rule keeps it). When several completed backups share the newest time,
///    the floor is the first of them in the order given.
///
/// Every decision carries reasons: the rules that keep a backup (restic's
/// texts: `last snapshot`, `daily snapshot`, `oldest daily snapshot`,
/// `within 2m10d`, `daily within 30d`, `has tags [keep]`, ...), or why it is
/// forgotten (`no rule keeps it`, `expired: ttl 720h`).
///
/// # Differences from restic's `forget`
///
/// * Buckets are computed in UTC. restic uses the time zone each snapshot's
///   time was recorded in (the local zone of the machine that made it); run
///   restic with `TZ=UTC` for equal results.
/// * `latest` for the `keep_within*` rules is relative to the `now` given to
///   [`RetentionPolicy::decide`], where restic uses the machine's clock.
/// * The floor: restic may forget every snapshot of a group (for example
///   with only `--keep-tag` rules that match nothing); we always keep the
///   newest completed backup of a set. restic has no backup status.
/// * The TTL is Velero's, not restic's; restic has none.
/// * Tag filters match `KEY=VALUE` tags as described above: a filter `key`
///   also matches a tag `key=anything`, where restic's tag `key` would only
///   match the tag `key`.
/// * Grouping is by backup set only (restic: `--group-by`, default host and
///   paths).
/// * Counts other than positive numbers and [`KeepPolicy::UNLIMITED`] (`-1`)
///   disable their rule ([`KeepPolicy::validate`] reports them); restic 0.16+
///   refuses negative counts on its command line and spells unlimited as
///   `unlimited`. A policy whose only rules are disabled ones is empty and
///   keeps everything, where restic's `ApplyPolicy` would forget everything.
/// * A zero duration (`0d`) disables its rule, as in restic; a zero TTL
///   disables the TTL.
/// * [`CalendarDuration`] parsing refuses a unit given twice (`1d2d`), which
///   restic accepts (the last one wins).
/// * Among backups with the same time, restic's order is the order it lists
///   them from the repository; ours is the order given to `decide`.
///
/// # Examples
///
/// ```
/// use backup_core::{KeepPolicy, RetentionPolicy};
/// let policy = KeepPolicy {
///     keep_daily: Some(7),
///     keep_weekly: Some(4),
///     keep_monthly: Some(KeepPolicy::UNLIMITED),
///     keep_within: Some("2d".parse().unwrap()),
///     ttl: Some("1y".parse().unwrap()),
///     ..KeepPolicy::default()
/// };
/// assert!(!policy.is_empty());
/// assert!(policy.validate().is_ok());
/// let decisions = policy.decide(&[], chrono::Utc::now());
/// assert!(decisions.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepPolicy {
    /// Keep the `n` newest backups (`--keep-last`).
    pub keep_last: Option<i64>,
    /// Keep the newest backup of each of the `n` newest hours that have one
    /// (`--keep-hourly`).
    pub keep_hourly: Option<i64>,
    /// Keep the newest backup of each of the `n` newest days (`--keep-daily`).
    pub keep_daily: Option<i64>,
    /// Keep the newest backup of each of the `n` newest ISO weeks
    /// (`--keep-weekly`).
    pub keep_weekly: Option<i64>,
    /// Keep the newest backup of each of the `n` newest months
    /// (`--keep-monthly`).
    pub keep_monthly: Option<i64>,
    /// Keep the newest backup of each of the `n` newest years
    /// (`--keep-yearly`).
    pub keep_yearly: Option<i64>,
    /// Keep every backup newer than the set's latest backup minus this
    /// (`--keep-within`).
    pub keep_within: Option<CalendarDuration>,
    /// Keep the newest backup of each hour within this duration of the
    /// latest backup (`--keep-within-hourly`).
    pub keep_within_hourly: Option<CalendarDuration>,
    /// Keep the newest backup of each day within this duration
    /// (`--keep-within-daily`).
    pub keep_within_daily: Option<CalendarDuration>,
    /// Keep the newest backup of each ISO week within this duration
    /// (`--keep-within-weekly`).
    pub keep_within_weekly: Option<CalendarDuration>,
    /// Keep the newest backup of each month within this duration
    /// (`--keep-within-monthly`).
    pub keep_within_monthly: Option<CalendarDuration>,
    /// Keep the newest backup of each year within this duration
    /// (`--keep-within-yearly`).
    pub keep_within_yearly: Option<CalendarDuration>,
    /// Keep every backup that has all the tags of at least one of these
    /// lists (`--keep-tag a,b` is the list `["a", "b"]`). A filter
    /// `key=value` needs the tag `key` with that value; a filter `key` needs
    /// the tag `key` with any value.
    pub keep_tags: Vec<Vec<String>>,
    /// Forget every backup whose `time + ttl <= now`, even one a keep rule
    /// keeps (Velero's TTL); the newest complete backup is still kept.
    pub ttl: Option<CalendarDuration>,
}

/// A [`KeepPolicy`] setting that cannot be what was meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retention policy: {0}")]
pub struct InvalidPolicy(pub String);

/// The count rules, their restic names and buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Bucket {
    /// The bucket of the backup at `time`, `nr`-th newest of its set.
    fn of(self, time: DateTime<Utc>, nr: usize) -> i64 {
        let year = i64::from(time.year());
        let month = i64::from(time.month());
        let day = i64::from(time.day());
        match self {
            // Every backup its own bucket; usize fits i64 for any real list.
            Bucket::Last => i64::try_from(nr).unwrap_or(i64::MAX),
            Bucket::Hourly => {
                year * 1_000_000 + month * 10_000 + day * 100 + i64::from(time.hour())
            }
            Bucket::Daily => year * 10_000 + month * 100 + day,
            Bucket::Weekly => {
                let week = time.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Bucket::Monthly => year * 100 + month,
            Bucket::Yearly => year,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bucket::Last => "last",
            Bucket::Hourly => "hourly",
            Bucket::Daily => "daily",
            Bucket::Weekly => "weekly",
            Bucket::Monthly => "monthly",
            Bucket::Yearly => "yearly",
        }
    }
}

/// The state of one count rule while walking a set.
struct CountRule {
    bucket: Bucket,
    /// Counts left; `-1` is unlimited.
    count: i64,
    last: Option<i64>,
}

/// The state of one within-bucket rule while walking a set.
struct WithinRule {
    bucket: Bucket,
    within: CalendarDuration,
    last: Option<i64>,
}

/// An effective count: positive, or unlimited.
fn active_count(count: Option<i64>) -> Option<i64> {
    count.filter(|&n| n > 0 || n == KeepPolicy::UNLIMITED)
}

/// An effective duration: non-zero.
fn active_duration(duration: Option<CalendarDuration>) -> Option<CalendarDuration> {
    duration.filter(|d| !d.is_zero())
}

/// Whether the tag filter matches `tags` (see [`KeepPolicy::keep_tags`]).
fn tag_matches(filter: &str, tags: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((key, value)) => tags.get(key).is_some_and(|have| have == value),
        None => tags.contains_key(filter),
    }
}

const FLOOR_REASON: &str = "newest complete backup";
const NO_RULE_REASON: &str = "no rule keeps it";
const EXPIRED_PREFIX: &str = "expired: ";

impl KeepPolicy {
    /// The count that keeps every bucket (restic's `unlimited`).
    pub const UNLIMITED: i64 = -1;

    fn counts(&self) -> [(Bucket, Option<i64>); 6] {
        [
            (Bucket::Last, self.keep_last),
            (Bucket::Hourly, self.keep_hourly),
            (Bucket::Daily, self.keep_daily),
            (Bucket::Weekly, self.keep_weekly),
            (Bucket::Monthly, self.keep_monthly),
            (Bucket::Yearly, self.keep_yearly),
        ]
    }

    fn withins(&self) -> [(Bucket, Option<CalendarDuration>); 5] {
        [
            (Bucket::Hourly, self.keep_within_hourly),
            (Bucket::Daily, self.keep_within_daily),
            (Bucket::Weekly, self.keep_within_weekly),
            (Bucket::Monthly, self.keep_within_monthly),
            (Bucket::Yearly, self.keep_within_yearly),
        ]
    }

    /// Whether any keep rule is in effect (a positive or unlimited count, a
    /// non-zero duration, a tag list).
    pub(crate) fn has_keep_rules(&self) -> bool {
        self.counts()
            .iter()
            .any(|(_, n)| active_count(*n).is_some())
            || active_duration(self.keep_within).is_some()
            || self
                .withins()
                .iter()
                .any(|(_, d)| active_duration(*d).is_some())
            || !self.keep_tags.is_empty()
    }

    /// Whether the policy keeps everything: no keep rule in effect and no
    /// (non-zero) TTL.
    pub fn is_empty(&self) -> bool {
        !self.has_keep_rules() && active_duration(self.ttl).is_none()
    }

    /// Reports settings that are surely mistakes: a count below
    /// [`KeepPolicy::UNLIMITED`] (`-1`), or an empty tag filter (`""`).
    /// [`decide`](RetentionPolicy::decide) ignores such counts, and an empty
    /// filter matches only a tag with an empty key. (An empty *list* of
    /// filters is valid: it matches every backup, as in restic.)
    ///
    /// # Errors
    ///
    /// [`InvalidPolicy`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        for (bucket, count) in self.counts() {
            if let Some(n) = count.filter(|&n| n < KeepPolicy::UNLIMITED) {
                return Err(InvalidPolicy(format!(
                    "keep_{} is {n}: a count is positive, 0 (off) or -1 (unlimited)",
                    bucket.name()
                )));
            }
        }
        if self
            .keep_tags
            .iter()
            .flatten()
            .any(|filter| filter.is_empty())
        {
            return Err(InvalidPolicy("keep_tags holds an empty tag filter".into()));
        }
        Ok(())
    }

    /// Decides one set, given newest first. Returns (keep, reasons) in that
    /// order.
    fn decide_set(&self, set: &[&Backup], now: DateTime<Utc>) -> Vec<(bool, Vec<String>)> {
        let ttl = active_duration(self.ttl);
        let has_keep_rules = self.has_keep_rules();
        let mut out: Vec<(bool, Vec<String>)> = if has_keep_rules {
            self.apply_keep_rules(set, now)
        } else if let Some(ttl) = ttl {
            // Only a TTL: keep what has not expired (decided below).
            set.iter()
                .map(|_| (true, vec![format!("not expired: ttl {ttl}")]))
                .collect()
        } else {
            set.iter()
                .map(|_| (true, vec!["policy is empty".to_string()]))
                .collect()
        };

        if let Some(ttl) = ttl {
            for ((keep, reasons), backup) in out.iter_mut().zip(set) {
                // Out of range means it never expires.
                let expired = ttl
                    .after(backup.manifest.time)
                    .is_some_and(|expiry| expiry <= now);
                if expired {
                    // Name the keep rules the expiry overrides.
                    let overridden: Vec<String> = if *keep && has_keep_rules {
                        reasons.iter().map(|r| format!("overrides: {r}")).collect()
                    } else {
                        Vec::new()
                    };
                    *keep = false;
                    *reasons = vec![format!("{EXPIRED_PREFIX}ttl {ttl}")];
                    reasons.extend(overridden);
                }
            }
        }

        let floor = set
            .iter()
            .position(|backup| backup.manifest.status == BackupStatus::Completed);
        if let Some((keep, reasons)) = floor.and_then(|i| out.get_mut(i)) {
            if *keep {
                reasons.push(FLOOR_REASON.to_string());
            } else {
                // Forgotten because no rule keeps it, or expired: name the
                // expiry it overrides.
                let expired = reasons
                    .iter()
                    .find(|r| r.starts_with(EXPIRED_PREFIX))
                    .map(|r| format!("overrides: {r}"));
                *keep = true;
                *reasons = vec![FLOOR_REASON.to_string()];
                reasons.extend(expired);
            }
        }
        out
    }

    /// restic's `ApplyPolicy` on one set, newest first.
    fn apply_keep_rules(&self, set: &[&Backup], now: DateTime<Utc>) -> Vec<(bool, Vec<String>)> {
        let mut counts: Vec<CountRule> = self
            .counts()
            .into_iter()
            .filter_map(|(bucket, count)| {
                active_count(count).map(|count| CountRule {
                    bucket,
                    count,
                    last: None,
                })
            })
            .collect();
        let mut withins: Vec<WithinRule> = self
            .withins()
            .into_iter()
            .filter_map(|(bucket, within)| {
                active_duration(within).map(|within| WithinRule {
                    bucket,
                    within,
                    last: None,
                })
            })
            .collect();
        let keep_within = active_duration(self.keep_within);

        // The newest backup that is not in the future. When there is none
        // restic starts from Go's zero time (year 1), which makes every
        // backup "within": so does `None` here, as does a threshold out of
        // range.
        let latest = set
            .iter()
            .map(|backup| backup.manifest.time)
            .filter(|time| *time < now)
            .max();
        let is_within = |duration: CalendarDuration, time: DateTime<Utc>| {
            latest
                .and_then(|latest| duration.before(latest))
                .is_none_or(|threshold| time > threshold)
        };

        let oldest = set.len().saturating_sub(1);
        let mut out = Vec::with_capacity(set.len());
        for (nr, backup) in set.iter().enumerate() {
            let time = backup.manifest.time;
            let mut reasons = Vec::new();

            for list in &self.keep_tags {
                if list
                    .iter()
                    .all(|filter| tag_matches(filter, &backup.manifest.tags))
                {
                    reasons.push(format!("has tags [{}]", list.join(" ")));
                }
            }

            if let Some(within) = keep_within {
                if is_within(within, time) {
                    reasons.push(format!("within {within}"));
                }
            }

            for rule in &mut counts {
                let value = rule.bucket.of(time, nr);
                let new_bucket = rule.last != Some(value);
                if new_bucket || nr == oldest {
                    rule.last = Some(value);
                    if rule.count > 0 {
                        rule.count -= 1;
                    }
                    let oldest_prefix = if new_bucket { "" } else { "oldest " };
                    reasons.push(format!("{oldest_prefix}{} snapshot", rule.bucket.name()));
                }
            }
            // A rule whose counts are used up is done.
            counts.retain(|rule| rule.count != 0);

            for rule in &mut withins {
                if is_within(rule.within, time) {
                    let value = rule.bucket.of(time, nr);
                    if rule.last != Some(value) {
                        rule.last = Some(value);
                        reasons.push(format!("{} within {}", rule.bucket.name(), rule.within));
                    }
                }
            }

            if reasons.is_empty() {
                out.push((false, vec![NO_RULE_REASON.to_string()]));
            } else {
                out.push((true, reasons));
            }
        }
        out
    }
}

impl RetentionPolicy for KeepPolicy {
    fn decide(&self, backups: &[Backup], now: DateTime<Utc>) -> Vec<Decision> {
        // Each set's members as (input position, backup), in input order.
        let mut sets: BTreeMap<&str, Vec<(usize, &Backup)>> = BTreeMap::new();
        for (position, backup) in backups.iter().enumerate() {
            sets.entry(backup.manifest.set.as_str())
                .or_default()
                .push((position, backup));
        }
        let mut decisions: Vec<Decision> = backups
            .iter()
            .map(|backup| Decision {
                id: backup.id,
                keep: true,
                reasons: Vec::new(),
            })
            .collect();
        for mut members in sets.into_values() {
            // Newest first; stable, so equal times keep the input order.
            members.sort_by_key(|(_, backup)| std::cmp::Reverse(backup.manifest.time));
            let set: Vec<&Backup> = members.iter().map(|(_, backup)| *backup).collect();
            let outcome = self.decide_set(&set, now);
            for ((position, _), (keep, reasons)) in members.iter().zip(outcome) {
                if let Some(decision) = decisions.get_mut(*position) {
                    decision.keep = keep;
                    decision.reasons = reasons;
                }
            }
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::check_policy_contract;
    use crate::retention::fixtures::backup;
    use chrono::{TimeDelta, TimeZone};

    #[test]
    fn contract_holds_for_keep_policy_on_random_inputs() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let base = Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap();
        for case in 0..500 {
            let n = next() % 20;
            let backups: Vec<Backup> = (0..n)
                .map(|i| {
                    let time = base + TimeDelta::hours((next() % 20_000) as i64);
                    let set = ["a", "b"][(next() % 2) as usize];
                    let status = if next() % 4 == 0 {
                        BackupStatus::PartiallyFailed
                    } else {
                        BackupStatus::Completed
                    };
                    backup(case * 100 + i as u32, set, time, status)
                })
                .collect();
            let policy = KeepPolicy {
                keep_last: (next() % 2 == 0).then(|| (next() % 4) as i64),
                keep_daily: (next() % 2 == 0).then(|| (next() % 4) as i64 - 1),
                keep_within_weekly: (next() % 3 == 0).then(|| CalendarDuration {
                    days: (next() % 400) as u32,
                    ..CalendarDuration::ZERO
                }),
                ttl: (next() % 3 == 0).then(|| CalendarDuration {
                    days: (next() % 900) as u32,
                    ..CalendarDuration::ZERO
                }),
                ..KeepPolicy::default()
            };
            let now = base + TimeDelta::hours((next() % 25_000) as i64);
            check_policy_contract(&policy, &backups, now);
        }
    }

    #[test]
    fn validate_reports_bad_counts_and_filters() {
        assert!(KeepPolicy::default().validate().is_ok());
        let bad = KeepPolicy {
            keep_weekly: Some(-2),
            ..KeepPolicy::default()
        };
        assert!(bad.validate().unwrap_err().0.contains("keep_weekly is -2"));
        // A disabled count is no rule: the policy is empty.
        assert!(bad.is_empty());
        let bad = KeepPolicy {
            keep_tags: vec![vec![String::new()]],
            ..KeepPolicy::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn policy_round_trips_through_json() {
        let policy = KeepPolicy {
            keep_daily: Some(7),
            keep_within: Some("1y2m".parse().unwrap()),
            keep_tags: vec![vec!["keep".into()]],
            ttl: Some("720h".parse().unwrap()),
            ..KeepPolicy::default()
        };
        let text = serde_json::to_string(&policy).unwrap();
        assert!(text.contains(r#""keep_within":"1y2m""#), "{text}");
        assert_eq!(serde_json::from_str::<KeepPolicy>(&text).unwrap(), policy);
        assert_eq!(
            serde_json::from_str::<KeepPolicy>("{}").unwrap(),
            KeepPolicy::default()
        );
        assert!(serde_json::from_str::<KeepPolicy>(r#"{"ttl":"5x"}"#).is_err());
        assert!(serde_json::from_str::<KeepPolicy>(r#"{"keep_everything":1}"#).is_err());
    }
}
