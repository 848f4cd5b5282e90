//! Retention policies: `KeepPolicy` against real restic's `forget`, by hand,
//! and by property over seeded random inputs.
//!
//! The restic vectors (`tests/retention/restic-vectors.json`) are made by
//! `scripts/make-retention-vectors.sh`: real restic (0.16 or later), run
//! with `TZ=UTC`, one host, `forget --dry-run --json --group-by host`. Here
//! every snapshot becomes a completed backup of one set, restic's tag `keep`
//! becomes our tag key `keep` with an empty value and `env=prod` our key
//! `env` with value `prod`; `now` is one day after the newest snapshot (all
//! snapshots were in restic's past too).
//!
//! With the `conformance` feature, every decision made here is also checked
//! with `backup_core::check_policy_contract`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use backup_core::SourceInfo;
use backup_core::{
    Backup, BackupStats, BackupStatus, CalendarDuration, Decision, Id, KeepPolicy, Manifest,
    RetentionPolicy,
};
use backup_testkit::TestRng;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde::Deserialize;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn dur(text: &str) -> CalendarDuration {
    text.parse().unwrap()
}

/// A backup with a unique id derived from `n`.
fn backup(n: u64, set: &str, time: DateTime<Utc>, status: BackupStatus, tags: &[&str]) -> Backup {
    Backup {
        id: Id::digest(&n.to_le_bytes()),
        manifest: Manifest {
            version: 1,
            set: set.to_string(),
            time,
            started: time,
            finished: time,
            writer: "writer".into(),
            hostname: "host".into(),
            source: SourceInfo {
                kind: "directory".into(),
                paths: vec!["/data".into()],
            },
            tags: tags.iter().map(|tag| restic_tag(tag)).collect(),
            root: Vec::new(),
            parent: None,
            facts: BTreeMap::new(),
            stats: BackupStats::default(),
            status,
            errors: Vec::new(),
        },
    }
}

/// A restic tag as one of our `KEY=VALUE` tags: `env=prod` is key `env`
/// with value `prod`, `keep` is key `keep` with the empty value.
fn restic_tag(tag: &str) -> (String, String) {
    match tag.split_once('=') {
        Some((key, value)) => (key.to_string(), value.to_string()),
        None => (tag.to_string(), String::new()),
    }
}

fn completed(n: u64, time: &str) -> Backup {
    backup(n, "s", at(time), BackupStatus::Completed, &[])
}

/// Decides, checking the contract when the feature is on.
fn decide(policy: &KeepPolicy, backups: &[Backup], now: DateTime<Utc>) -> Vec<Decision> {
    #[cfg(feature = "conformance")]
    backup_core::check_policy_contract(policy, backups, now);
    policy.decide(backups, now)
}

/// Input positions of the kept backups.
fn kept(decisions: &[Decision]) -> BTreeSet<usize> {
    decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.keep)
        .map(|(i, _)| i)
        .collect()
}

/// Positions sorted newest first, ties in input order (a stable sort).
fn newest_first(backups: &[Backup]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..backups.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(backups[i].manifest.time));
    order
}

/// Per set, the position of its newest completed backup (the first in input
/// order among equal times).
fn floors(backups: &[Backup]) -> BTreeMap<String, usize> {
    let mut floors: BTreeMap<String, usize> = BTreeMap::new();
    for (i, b) in backups.iter().enumerate() {
        if b.manifest.status != BackupStatus::Completed {
            continue;
        }
        let entry = floors.entry(b.manifest.set.clone()).or_insert(i);
        if b.manifest.time > backups[*entry].manifest.time {
            *entry = i;
        }
    }
    floors
}

// ---------------------------------------------------------------------------
// restic vectors
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct Vectors {
    restic_version: String,
    generated_by: String,
    snapshots: Vec<Snapshot>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Snapshot {
    time: String,
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct Case {
    args: Vec<String>,
    keep: Vec<String>,
}

/// The `KeepPolicy` of restic `forget` arguments.
fn policy_of_restic_args(args: &[String]) -> KeepPolicy {
    let mut policy = KeepPolicy::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} has no value"));
        let count = || -> Option<i64> {
            Some(if value == "unlimited" {
                KeepPolicy::UNLIMITED
            } else {
                value.parse().unwrap()
            })
        };
        let duration = || Some(dur(value));
        match flag.as_str() {
            "--keep-last" => policy.keep_last = count(),
            "--keep-hourly" => policy.keep_hourly = count(),
            "--keep-daily" => policy.keep_daily = count(),
            "--keep-weekly" => policy.keep_weekly = count(),
            "--keep-monthly" => policy.keep_monthly = count(),
            "--keep-yearly" => policy.keep_yearly = count(),
            "--keep-within" => policy.keep_within = duration(),
            "--keep-within-hourly" => policy.keep_within_hourly = duration(),
            "--keep-within-daily" => policy.keep_within_daily = duration(),
            "--keep-within-weekly" => policy.keep_within_weekly = duration(),
            "--keep-within-monthly" => policy.keep_within_monthly = duration(),
            "--keep-within-yearly" => policy.keep_within_yearly = duration(),
            "--keep-tag" => policy
                .keep_tags
                .push(value.split(',').map(str::to_string).collect()),
            other => panic!("unknown restic flag {other}"),
        }
    }
    policy
}

#[test]
fn matches_restic_forget_on_every_vector() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/retention/restic-vectors.json");
    let vectors: Vectors = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(vectors.generated_by, "scripts/make-retention-vectors.sh");
    let (major, minor) = {
        let mut parts = vectors
            .restic_version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    assert!(
        major > 0 || minor >= 16,
        "vectors from restic {} (need 0.16+ semantics)",
        vectors.restic_version
    );
    assert!(vectors.snapshots.len() >= 100, "too few snapshots");
    assert!(vectors.cases.len() >= 15, "too few cases");

    let backups: Vec<Backup> = vectors
        .snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let tags: Vec<&str> = s.tags.iter().map(String::as_str).collect();
            backup(i as u64, "h", at(&s.time), BackupStatus::Completed, &tags)
        })
        .collect();
    let times: Vec<DateTime<Utc>> = backups.iter().map(|b| b.manifest.time).collect();
    assert_eq!(
        times.iter().collect::<BTreeSet<_>>().len(),
        times.len(),
        "vector snapshot times must be distinct"
    );
    let newest = *times.iter().max().unwrap();
    let now = newest + TimeDelta::days(1);

    let mut mismatches = Vec::new();
    let mut floor_only = Vec::new();
    for case in &vectors.cases {
        let policy = policy_of_restic_args(&case.args);
        assert!(policy.validate().is_ok(), "{:?}", case.args);
        let restic: BTreeSet<DateTime<Utc>> = case.keep.iter().map(|t| at(t)).collect();
        let ours: BTreeSet<DateTime<Utc>> = decide(&policy, &backups, now)
            .iter()
            .zip(&times)
            .filter(|(d, _)| d.keep)
            .map(|(_, t)| *t)
            .collect();
        if ours == restic {
            continue;
        }
        // The one allowed difference: our floor keeps the newest (completed)
        // backup where restic forgets it.
        let mut with_floor = restic.clone();
        with_floor.insert(newest);
        if !restic.contains(&newest) && ours == with_floor {
            floor_only.push(case.args.join(" "));
            continue;
        }
        mismatches.push(format!(
            "{}:\n    restic keeps only {:?}\n    we keep only {:?}",
            case.args.join(" "),
            restic.difference(&ours).collect::<Vec<_>>(),
            ours.difference(&restic).collect::<Vec<_>>()
        ));
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ from restic {} (besides {} floor-only differences):\n{}",
        mismatches.len(),
        vectors.cases.len(),
        vectors.restic_version,
        floor_only.len(),
        mismatches.join("\n")
    );
    // Only tag policies that do not match the newest snapshot can leave it
    // to the floor: every bucket rule keeps the newest snapshot.
    for args in &floor_only {
        assert!(
            args.split(' ').step_by(2).all(|flag| flag == "--keep-tag"),
            "floor-only difference for a policy with non-tag rules: {args}"
        );
    }
    let expected_floor_only = [
        "--keep-tag keep",
        "--keep-tag env=prod",
        "--keep-tag keep,env=prod",
        "--keep-tag keep --keep-tag env=prod",
    ];
    assert_eq!(
        floor_only, expected_floor_only,
        "{} floor-only differences (our newest-complete floor keeps the newest backup restic forgets)",
        floor_only.len()
    );
    eprintln!(
        "{} restic {} cases over {} snapshots: {} equal, {} differ only by the floor",
        vectors.cases.len(),
        vectors.restic_version,
        backups.len(),
        vectors.cases.len() - floor_only.len(),
        floor_only.len()
    );
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

#[test]
fn durations_parse_like_restic() {
    let d = dur("1y2m3d4h");
    assert_eq!((d.years, d.months, d.days, d.hours), (1, 2, 3, 4));
    assert_eq!(
        dur("72h"),
        CalendarDuration {
            hours: 72,
            ..CalendarDuration::ZERO
        }
    );
    assert_eq!(
        dur("30d"),
        CalendarDuration {
            days: 30,
            ..CalendarDuration::ZERO
        }
    );
    assert_eq!(dur("6m").months, 6);
    assert_eq!(
        dur("2m10d"),
        CalendarDuration {
            months: 2,
            days: 10,
            ..CalendarDuration::ZERO
        }
    );
    // Any order; displayed in canonical order without zero units.
    assert_eq!(dur("4h3d1y").to_string(), "1y3d4h");
    assert_eq!(dur("0y1m").to_string(), "1m");
    assert_eq!(dur("1y2m3d4h").to_string(), "1y2m3d4h");
    assert_eq!(dur("0d"), CalendarDuration::ZERO);
    assert!(dur("0d").is_zero());
    assert_eq!(CalendarDuration::ZERO.to_string(), "0h");
    assert_eq!(
        dur(&CalendarDuration::ZERO.to_string()),
        CalendarDuration::ZERO
    );
    assert_eq!(dur("4294967295h").hours, u32::MAX);

    for bad in [
        "",
        "5",
        "d",
        "1x",
        "1d2d",
        "-1d",
        "1.5d",
        " 1d",
        "1d ",
        "1D",
        "4294967296h",
        "1w",
        "d1",
    ] {
        let error = bad.parse::<CalendarDuration>().unwrap_err();
        assert_eq!(error.input, bad);
        assert!(error.to_string().contains("invalid duration"), "{error}");
    }
}

#[test]
fn durations_apply_calendar_wise() {
    // Like Go's AddDate: missing days roll over into the next month.
    assert_eq!(
        dur("1m").after(at("2021-01-31T10:00:00Z")),
        Some(at("2021-03-03T10:00:00Z"))
    );
    assert_eq!(
        dur("3m").before(at("2022-05-31T12:00:00Z")),
        Some(at("2022-03-03T12:00:00Z"))
    );
    assert_eq!(
        dur("6m").before(at("2022-05-31T12:00:00Z")),
        Some(at("2021-12-01T12:00:00Z"))
    );
    assert_eq!(
        dur("1y").before(at("2024-02-29T00:00:00Z")),
        Some(at("2023-03-01T00:00:00Z"))
    );
    // Days are calendar days, hours exact hours, applied after the date.
    assert_eq!(
        dur("1d").after(at("2021-03-27T12:00:00Z")),
        Some(at("2021-03-28T12:00:00Z"))
    );
    assert_eq!(
        dur("36h").after(at("2021-12-31T12:00:00Z")),
        Some(at("2022-01-02T00:00:00Z"))
    );
    assert_eq!(
        dur("1m1h").before(at("2021-03-01T00:30:00Z")),
        Some(at("2021-01-31T23:30:00Z"))
    );
    for text in ["1y2m3d4h", "13m", "400d", "1000h"] {
        let d = dur(text);
        let t = at("2020-06-15T06:07:08Z");
        assert!(
            d.after(t).unwrap() > t && d.before(t).unwrap() < t,
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// By hand
// ---------------------------------------------------------------------------

#[test]
fn empty_policy_keeps_everything() {
    let backups = vec![
        completed(1, "2021-01-01T00:00:00Z"),
        backup(
            2,
            "s",
            at("2021-01-02T00:00:00Z"),
            BackupStatus::PartiallyFailed,
            &[],
        ),
    ];
    let policy = KeepPolicy::default();
    assert!(policy.is_empty());
    let decisions = decide(&policy, &backups, at("2030-01-01T00:00:00Z"));
    assert!(decisions.iter().all(|d| d.keep));
    assert_eq!(
        decisions[0].reasons,
        ["policy is empty", "newest complete backup"]
    );
    assert_eq!(decisions[1].reasons, ["policy is empty"]);
    assert!(decide(&policy, &[], Utc::now()).is_empty());

    // Zero durations and zero counts are no rules.
    let zeros = KeepPolicy {
        keep_last: Some(0),
        keep_within: Some(CalendarDuration::ZERO),
        keep_within_daily: Some(CalendarDuration::ZERO),
        ttl: Some(CalendarDuration::ZERO),
        ..KeepPolicy::default()
    };
    assert!(zeros.is_empty());
    assert!(decide(&zeros, &backups, at("2030-01-01T00:00:00Z"))
        .iter()
        .all(|d| d.keep));
    for policy in [
        KeepPolicy {
            keep_last: Some(-1),
            ..KeepPolicy::default()
        },
        KeepPolicy {
            keep_tags: vec![vec![]],
            ..KeepPolicy::default()
        },
        KeepPolicy {
            ttl: Some(dur("1h")),
            ..KeepPolicy::default()
        },
        KeepPolicy {
            keep_within_yearly: Some(dur("1h")),
            ..KeepPolicy::default()
        },
    ] {
        assert!(!policy.is_empty(), "{policy:?}");
    }
}

#[test]
fn ttl_forgets_expired_backups_even_when_a_rule_keeps_them() {
    let backups = vec![
        completed(1, "2021-01-01T00:00:00Z"),
        completed(2, "2021-01-20T00:00:00Z"),
        completed(3, "2021-01-30T00:00:00Z"),
        completed(4, "2021-01-31T00:00:00Z"),
    ];
    let policy = KeepPolicy {
        keep_last: Some(100),
        ttl: Some(dur("720h")),
        ..KeepPolicy::default()
    };
    // 2021-01-01 + 720h = 2021-01-31T00:00: expired exactly at now.
    let now = at("2021-01-31T00:00:00Z");
    let decisions = decide(&policy, &backups, now);
    assert_eq!(kept(&decisions), BTreeSet::from([1, 2, 3]));
    assert_eq!(
        decisions[0].reasons,
        ["expired: ttl 720h", "overrides: last snapshot"]
    );
    assert_eq!(decisions[1].reasons, ["last snapshot"]);
    assert_eq!(
        decisions[3].reasons,
        ["last snapshot", "newest complete backup"]
    );
    // One second earlier it has not expired.
    let decisions = decide(&policy, &backups, now - TimeDelta::seconds(1));
    assert!(decisions.iter().all(|d| d.keep));

    // Everything expired: the newest complete backup stays.
    let decisions = decide(&policy, &backups, at("2022-01-01T00:00:00Z"));
    assert_eq!(kept(&decisions), BTreeSet::from([3]));
    assert_eq!(
        decisions[3].reasons,
        ["newest complete backup", "overrides: expired: ttl 720h"]
    );
    assert_eq!(
        decisions[2].reasons,
        ["expired: ttl 720h", "overrides: last snapshot"]
    );

    // A TTL alone keeps what has not expired; months are calendar months.
    let ttl_only = KeepPolicy {
        ttl: Some(dur("1m")),
        ..KeepPolicy::default()
    };
    let decisions = decide(&ttl_only, &backups, at("2021-02-19T00:00:00Z"));
    assert_eq!(kept(&decisions), BTreeSet::from([1, 2, 3]));
    assert_eq!(decisions[1].reasons, ["not expired: ttl 1m"]);
    assert_eq!(decisions[0].reasons, ["expired: ttl 1m"]);
    // 2021-01-31 + 1 month = "2021-02-31" = 2021-03-03.
    let decisions = decide(&ttl_only, &backups, at("2021-03-02T23:59:59Z"));
    assert_eq!(kept(&decisions), BTreeSet::from([3]));
    assert_eq!(decisions[2].reasons, ["expired: ttl 1m"]);
    assert_eq!(
        decisions[3].reasons,
        ["not expired: ttl 1m", "newest complete backup"]
    );
}

#[test]
fn newest_completed_backup_is_the_floor() {
    let tags_nothing = KeepPolicy {
        keep_tags: vec![vec!["no-such-tag".into()]],
        ..KeepPolicy::default()
    };
    let now = at("2022-01-01T00:00:00Z");

    // A rule that keeps nothing: the floor keeps the newest completed one.
    let backups = vec![
        completed(1, "2021-01-01T00:00:00Z"),
        completed(2, "2021-01-03T00:00:00Z"),
        completed(3, "2021-01-02T00:00:00Z"),
    ];
    let decisions = decide(&tags_nothing, &backups, now);
    assert_eq!(kept(&decisions), BTreeSet::from([1]));
    assert_eq!(decisions[1].reasons, ["newest complete backup"]);
    assert_eq!(decisions[0].reasons, ["no rule keeps it"]);

    // A newer partially failed backup is not the floor.
    let backups = vec![
        completed(1, "2021-01-01T00:00:00Z"),
        completed(2, "2021-01-02T00:00:00Z"),
        backup(
            3,
            "s",
            at("2021-01-03T00:00:00Z"),
            BackupStatus::PartiallyFailed,
            &[],
        ),
    ];
    let decisions = decide(&tags_nothing, &backups, now);
    assert_eq!(kept(&decisions), BTreeSet::from([1]));
    assert_eq!(decisions[2].reasons, ["no rule keeps it"]);
    // keep-last 1 keeps the partially failed one; the floor keeps the
    // completed one as well.
    let last_one = KeepPolicy {
        keep_last: Some(1),
        ..KeepPolicy::default()
    };
    let decisions = decide(&last_one, &backups, now);
    assert_eq!(kept(&decisions), BTreeSet::from([1, 2]));
    assert_eq!(decisions[2].reasons, ["last snapshot"]);
    assert_eq!(decisions[1].reasons, ["newest complete backup"]);

    // No completed backup at all: no floor.
    let failed = vec![
        backup(
            1,
            "s",
            at("2021-01-01T00:00:00Z"),
            BackupStatus::PartiallyFailed,
            &[],
        ),
        backup(
            2,
            "s",
            at("2021-01-02T00:00:00Z"),
            BackupStatus::PartiallyFailed,
            &[],
        ),
    ];
    assert!(kept(&decide(&tags_nothing, &failed, now)).is_empty());

    // Equal times: the first given is the floor (and keep-last's choice).
    let ties = vec![
        completed(1, "2021-01-01T00:00:00Z"),
        completed(2, "2021-01-05T00:00:00Z"),
        completed(3, "2021-01-05T00:00:00Z"),
    ];
    assert_eq!(
        kept(&decide(&tags_nothing, &ties, now)),
        BTreeSet::from([1])
    );
    assert_eq!(kept(&decide(&last_one, &ties, now)), BTreeSet::from([1]));
}

#[test]
fn sets_are_decided_separately() {
    let backups = vec![
        backup(
            1,
            "db",
            at("2021-01-01T00:00:00Z"),
            BackupStatus::Completed,
            &[],
        ),
        backup(
            2,
            "files",
            at("2021-01-02T00:00:00Z"),
            BackupStatus::Completed,
            &[],
        ),
        backup(
            3,
            "db",
            at("2021-01-03T00:00:00Z"),
            BackupStatus::Completed,
            &[],
        ),
        backup(
            4,
            "files",
            at("2021-06-01T00:00:00Z"),
            BackupStatus::Completed,
            &[],
        ),
        backup(
            5,
            "db",
            at("2021-01-02T12:00:00Z"),
            BackupStatus::Completed,
            &[],
        ),
        backup(
            6,
            "files",
            at("2021-05-31T01:00:00Z"),
            BackupStatus::Completed,
            &[],
        ),
    ];
    let now = at("2022-01-01T00:00:00Z");
    let last_one = KeepPolicy {
        keep_last: Some(1),
        ..KeepPolicy::default()
    };
    let decisions = decide(&last_one, &backups, now);
    assert_eq!(kept(&decisions), BTreeSet::from([2, 3]));
    assert_eq!(
        decisions.iter().map(|d| d.id).collect::<Vec<_>>(),
        backups.iter().map(|b| b.id).collect::<Vec<_>>()
    );

    // keep-within is relative to each set's own newest backup.
    let within = KeepPolicy {
        keep_within: Some(dur("1d")),
        ..KeepPolicy::default()
    };
    let decisions = decide(&within, &backups, now);
    assert_eq!(kept(&decisions), BTreeSet::from([2, 3, 4, 5]));
    assert_eq!(
        decisions[3].reasons,
        ["within 1d", "newest complete backup"]
    );
    assert_eq!(decisions[1].reasons, ["no rule keeps it"]);

    // Counts are per set.
    let daily = KeepPolicy {
        keep_daily: Some(2),
        ..KeepPolicy::default()
    };
    assert_eq!(
        kept(&decide(&daily, &backups, now)),
        BTreeSet::from([2, 3, 4, 5])
    );
}

#[test]
fn keep_within_ignores_future_backups_when_finding_the_latest() {
    let backups = vec![
        completed(1, "2021-01-01T00:00:00Z"),
        completed(2, "2021-01-09T00:00:00Z"),
        completed(3, "2021-01-10T00:00:00Z"),
        completed(4, "2021-03-01T00:00:00Z"), // in the future of `now`
    ];
    let policy = KeepPolicy {
        keep_within: Some(dur("2d")),
        ..KeepPolicy::default()
    };
    // latest = 2021-01-10 (the newest before now): 01-09 and 01-10 within;
    // the future backup is after the threshold too.
    let now = at("2021-01-15T00:00:00Z");
    assert_eq!(
        kept(&decide(&policy, &backups, now)),
        BTreeSet::from([1, 2, 3])
    );
    // All in the future: every backup is within (restic starts from Go's
    // zero time then).
    let now = at("2020-01-01T00:00:00Z");
    assert_eq!(
        kept(&decide(&policy, &backups, now)),
        BTreeSet::from([0, 1, 2, 3])
    );
    // A backup exactly at `now` is not before it.
    let now = at("2021-03-01T00:00:00Z");
    assert_eq!(
        kept(&decide(&policy, &backups, now)),
        BTreeSet::from([1, 2, 3])
    );
}

#[test]
fn reasons_name_the_rules() {
    let tags_keep = ["keep"];
    let backups = vec![
        backup(
            1,
            "s",
            at("2021-03-01T10:00:00Z"),
            BackupStatus::Completed,
            &tags_keep,
        ),
        backup(
            2,
            "s",
            at("2021-03-01T11:00:00Z"),
            BackupStatus::Completed,
            &["env=prod"],
        ),
        completed(3, "2021-03-02T10:00:00Z"),
        completed(4, "2021-03-03T10:00:00Z"),
        completed(5, "2021-03-03T11:00:00Z"),
    ];
    let now = at("2021-03-04T00:00:00Z");
    let policy = KeepPolicy {
        keep_daily: Some(5),
        keep_within: Some(dur("1d")),
        keep_within_hourly: Some(dur("12h")),
        keep_tags: vec![
            vec!["keep".into()],
            vec!["env".into(), "keep".into()],
            vec!["env=prod".into()],
        ],
        ..KeepPolicy::default()
    };
    let decisions = decide(&policy, &backups, now);
    let reasons: Vec<Vec<&str>> = decisions
        .iter()
        .map(|d| d.reasons.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        reasons[4],
        [
            "within 1d",
            "daily snapshot",
            "hourly within 12h",
            "newest complete backup"
        ]
    );
    assert_eq!(reasons[3], ["within 1d", "hourly within 12h"]);
    assert_eq!(reasons[2], ["daily snapshot"]);
    assert_eq!(reasons[1], ["has tags [env=prod]", "daily snapshot"]);
    // The oldest backup while the daily rule has counts left.
    assert_eq!(reasons[0], ["has tags [keep]", "oldest daily snapshot"]);

    let policy = KeepPolicy {
        keep_last: Some(1),
        keep_weekly: Some(1),
        keep_monthly: Some(KeepPolicy::UNLIMITED),
        keep_within_daily: Some(dur("1d")),
        ..KeepPolicy::default()
    };
    let decisions = decide(&policy, &backups, now);
    assert_eq!(
        decisions[4].reasons,
        [
            "last snapshot",
            "weekly snapshot",
            "monthly snapshot",
            "daily within 1d",
            "newest complete backup"
        ]
    );
    assert_eq!(decisions[0].reasons, ["oldest monthly snapshot"]);
    assert_eq!(decisions[1].reasons, ["no rule keeps it"]);
}

#[test]
fn tag_filters_match_key_value_tags() {
    let backups = vec![
        backup(
            1,
            "s",
            at("2021-01-01T00:00:00Z"),
            BackupStatus::Completed,
            &["env=prod"],
        ),
        backup(
            2,
            "s",
            at("2021-01-02T00:00:00Z"),
            BackupStatus::Completed,
            &["env=dev", "keep"],
        ),
        backup(
            3,
            "s",
            at("2021-01-03T00:00:00Z"),
            BackupStatus::Completed,
            &["keep=forever"],
        ),
        backup(
            4,
            "s",
            at("2021-01-04T00:00:00Z"),
            BackupStatus::Completed,
            &[],
        ),
        backup(
            5,
            "s",
            at("2021-01-05T00:00:00Z"),
            BackupStatus::Completed,
            &[],
        ),
    ];
    let now = at("2022-01-01T00:00:00Z");
    let with_tags = |lists: &[&[&str]]| {
        let policy = KeepPolicy {
            keep_tags: lists
                .iter()
                .map(|l| l.iter().map(|t| t.to_string()).collect())
                .collect(),
            ..KeepPolicy::default()
        };
        let mut set = kept(&decide(&policy, &backups, now));
        set.remove(&4); // the floor
        set
    };
    assert_eq!(with_tags(&[&["env=prod"]]), BTreeSet::from([0]));
    assert_eq!(with_tags(&[&["env"]]), BTreeSet::from([0, 1]));
    assert_eq!(with_tags(&[&["keep"]]), BTreeSet::from([1, 2]));
    assert_eq!(with_tags(&[&["keep="]]), BTreeSet::from([1]));
    assert_eq!(with_tags(&[&["keep=forever"]]), BTreeSet::from([2]));
    assert_eq!(with_tags(&[&["env", "keep"]]), BTreeSet::from([1]));
    assert_eq!(
        with_tags(&[&["env=prod"], &["keep=forever"]]),
        BTreeSet::from([0, 2])
    );
    assert_eq!(with_tags(&[&["env=staging"]]), BTreeSet::new());
    // An empty list matches everything, as in restic.
    assert_eq!(with_tags(&[&[]]), BTreeSet::from([0, 1, 2, 3]));
}

#[test]
fn weekly_buckets_use_iso_weeks() {
    // 2020-12-28 .. 2021-01-03 is ISO week 2020-W53; 2019-12-30 is 2020-W01.
    let backups = vec![
        completed(1, "2019-12-29T12:00:00Z"),
        completed(2, "2019-12-30T12:00:00Z"),
        completed(3, "2020-01-05T12:00:00Z"),
        completed(4, "2020-12-28T12:00:00Z"),
        completed(5, "2021-01-03T12:00:00Z"),
        completed(6, "2021-01-04T12:00:00Z"),
    ];
    let now = at("2022-01-01T00:00:00Z");
    let weekly = KeepPolicy {
        keep_weekly: Some(KeepPolicy::UNLIMITED),
        ..KeepPolicy::default()
    };
    assert_eq!(
        kept(&decide(&weekly, &backups, now)),
        BTreeSet::from([0, 2, 4, 5])
    );
    let yearly = KeepPolicy {
        keep_yearly: Some(KeepPolicy::UNLIMITED),
        ..KeepPolicy::default()
    };
    assert_eq!(
        kept(&decide(&yearly, &backups, now)),
        BTreeSet::from([0, 1, 3, 5])
    );
}

// ---------------------------------------------------------------------------
// Properties over seeded random inputs
// ---------------------------------------------------------------------------

const CASES: u64 = 3000;

fn random_backups(rng: &mut TestRng, unique_times: bool) -> Vec<Backup> {
    let base = Utc.with_ymd_and_hms(2019, 1, 1, 0, 0, 0).unwrap();
    let count = rng.below(40);
    let mut used = BTreeSet::new();
    let mut backups: Vec<Backup> = Vec::new();
    for i in 0..count {
        // Mostly spread over four years; sometimes close to an earlier
        // backup (same hour or day), sometimes at the same time.
        let mut time = match (backups.len(), rng.below(6)) {
            (n, 0) if n > 0 => {
                let other = &backups[rng.below(n as u64) as usize];
                other.manifest.time + TimeDelta::seconds(rng.below(7200) as i64 - 3600)
            }
            (n, 1) if n > 0 && !unique_times => backups[rng.below(n as u64) as usize].manifest.time,
            _ => base + TimeDelta::seconds(rng.below(4 * 366 * 86400) as i64),
        };
        if unique_times {
            while !used.insert(time) {
                time += TimeDelta::seconds(1);
            }
        }
        let set = ["a", "b", "c"][rng.below(3) as usize];
        let status = if rng.one_in(5) {
            BackupStatus::PartiallyFailed
        } else {
            BackupStatus::Completed
        };
        let mut tags = Vec::new();
        for tag in ["keep", "env=prod", "env=dev"] {
            if rng.one_in(4) {
                tags.push(tag);
            }
        }
        backups.push(backup(rng.next_u64() ^ i, set, time, status, &tags));
    }
    backups
}

fn random_count(rng: &mut TestRng) -> Option<i64> {
    match rng.below(8) {
        0 => Some(KeepPolicy::UNLIMITED),
        1 => Some(0),
        _ => Some(1 + rng.below(12) as i64),
    }
}

fn random_duration(rng: &mut TestRng) -> CalendarDuration {
    let mut d = CalendarDuration::ZERO;
    match rng.below(5) {
        0 => d.years = rng.below(3) as u32,
        1 => d.months = rng.below(24) as u32,
        2 => d.days = rng.below(400) as u32,
        3 => d.hours = rng.below(2000) as u32,
        _ => {
            d.years = rng.below(2) as u32;
            d.months = rng.below(12) as u32;
            d.days = rng.below(31) as u32;
            d.hours = rng.below(24) as u32;
        }
    }
    d
}

fn random_tags(rng: &mut TestRng) -> Vec<String> {
    let all = ["keep", "env=prod", "env", "env=dev", "keep="];
    (0..1 + rng.below(2))
        .map(|_| all[rng.below(all.len() as u64) as usize].to_string())
        .collect()
}

/// Number of rule kinds `add_random_rule` knows.
const RULES: u64 = 13;

/// Sets rule `which` (if it is not set yet) to a random value.
fn add_rule(rng: &mut TestRng, policy: &mut KeepPolicy, which: u64) {
    match which {
        0 => policy.keep_last = policy.keep_last.or_else(|| random_count(rng)),
        1 => policy.keep_hourly = policy.keep_hourly.or_else(|| random_count(rng)),
        2 => policy.keep_daily = policy.keep_daily.or_else(|| random_count(rng)),
        3 => policy.keep_weekly = policy.keep_weekly.or_else(|| random_count(rng)),
        4 => policy.keep_monthly = policy.keep_monthly.or_else(|| random_count(rng)),
        5 => policy.keep_yearly = policy.keep_yearly.or_else(|| random_count(rng)),
        6 => policy.keep_within = policy.keep_within.or_else(|| Some(random_duration(rng))),
        7 => {
            policy.keep_within_hourly = policy
                .keep_within_hourly
                .or_else(|| Some(random_duration(rng)))
        }
        8 => {
            policy.keep_within_daily = policy
                .keep_within_daily
                .or_else(|| Some(random_duration(rng)))
        }
        9 => {
            policy.keep_within_weekly = policy
                .keep_within_weekly
                .or_else(|| Some(random_duration(rng)))
        }
        10 => {
            policy.keep_within_monthly = policy
                .keep_within_monthly
                .or_else(|| Some(random_duration(rng)))
        }
        11 => {
            policy.keep_within_yearly = policy
                .keep_within_yearly
                .or_else(|| Some(random_duration(rng)))
        }
        _ => policy.keep_tags.push(random_tags(rng)),
    }
}

fn random_policy(rng: &mut TestRng) -> KeepPolicy {
    let mut policy = KeepPolicy::default();
    for _ in 0..rng.below(4) {
        let which = rng.below(RULES);
        add_rule(rng, &mut policy, which);
    }
    if rng.one_in(3) {
        policy.ttl = Some(random_duration(rng));
    }
    policy
}

fn random_now(rng: &mut TestRng) -> DateTime<Utc> {
    // Mostly after every backup, sometimes among them.
    let base = Utc.with_ymd_and_hms(2019, 1, 1, 0, 0, 0).unwrap();
    base + TimeDelta::seconds(rng.below(5 * 366 * 86400) as i64)
}

#[test]
fn property_contract_holds() {
    let mut rng = TestRng::new(0x0123_4567_89ab_cdef);
    for case in 0..CASES {
        let backups = random_backups(&mut rng, false);
        let policy = random_policy(&mut rng);
        let now = random_now(&mut rng);
        let first = decide(&policy, &backups, now);
        // Pure: again, and on a copy, the same.
        assert_eq!(first, policy.decide(&backups, now), "case {case}");
        assert_eq!(
            first,
            policy.clone().decide(&backups.clone(), now),
            "case {case}"
        );
        // One decision per backup, in order, each with a reason.
        assert_eq!(first.len(), backups.len(), "case {case}");
        for (d, b) in first.iter().zip(&backups) {
            assert_eq!(d.id, b.id, "case {case}");
            assert!(!d.reasons.is_empty(), "case {case}");
            assert_eq!(
                d.keep,
                !d.reasons[0].starts_with("no rule") && !d.reasons[0].starts_with("expired"),
                "case {case}: {:?}",
                d.reasons
            );
        }
        // The floor.
        for (set, i) in floors(&backups) {
            assert!(
                first[i].keep,
                "case {case}: newest complete backup of {set} forgotten: {policy:?}"
            );
            assert!(
                first[i]
                    .reasons
                    .iter()
                    .any(|r| r == "newest complete backup"),
                "case {case}"
            );
        }
    }
}

#[test]
fn property_decisions_do_not_depend_on_input_order() {
    let mut rng = TestRng::new(0xfeed_f00d_dead_beef);
    for case in 0..CASES {
        let backups = random_backups(&mut rng, true);
        let policy = random_policy(&mut rng);
        let now = random_now(&mut rng);
        let decisions = decide(&policy, &backups, now);
        let mut shuffled: Vec<(Backup, Decision)> =
            backups.iter().cloned().zip(decisions).collect();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (backups, expected): (Vec<Backup>, Vec<Decision>) = shuffled.into_iter().unzip();
        assert_eq!(
            decide(&policy, &backups, now),
            expected,
            "case {case}: {policy:?}"
        );
    }
}

#[test]
fn property_keep_last_keeps_exactly_the_newest() {
    let mut rng = TestRng::new(0x5eed_5eed_5eed_5eed);
    for case in 0..CASES {
        let backups = random_backups(&mut rng, false);
        let now = random_now(&mut rng);
        let mut per_set: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for i in newest_first(&backups) {
            per_set
                .entry(backups[i].manifest.set.as_str())
                .or_default()
                .push(i);
        }
        let n = 1 + rng.below(10) as usize;
        let policy = KeepPolicy {
            keep_last: Some(n as i64),
            ..KeepPolicy::default()
        };
        let mut expected: BTreeSet<usize> = per_set
            .values()
            .flat_map(|order| order.iter().take(n).copied())
            .collect();
        expected.extend(floors(&backups).into_values());
        assert_eq!(
            kept(&decide(&policy, &backups, now)),
            expected,
            "case {case}, n {n}"
        );
        // When every set has at least n backups and they all completed,
        // exactly n per set.
        if per_set.values().all(|order| order.len() >= n)
            && backups
                .iter()
                .all(|b| b.manifest.status == BackupStatus::Completed)
        {
            assert_eq!(expected.len(), n * per_set.len(), "case {case}");
        }
        let all = KeepPolicy {
            keep_last: Some(KeepPolicy::UNLIMITED),
            ..KeepPolicy::default()
        };
        assert_eq!(
            kept(&decide(&all, &backups, now)).len(),
            backups.len(),
            "case {case}"
        );
    }
}

/// Whether `policy` has a rule that keeps backups (a ttl only forgets).
fn has_keep_rules(policy: &KeepPolicy) -> bool {
    let mut without_ttl = policy.clone();
    without_ttl.ttl = None;
    !without_ttl.is_empty()
}

#[test]
fn property_adding_a_rule_forgets_nothing_kept_before() {
    let mut rng = TestRng::new(0xabcd_ef01_2345_6789);
    let mut checked = 0;
    for case in 0..CASES {
        let backups = random_backups(&mut rng, false);
        let now = random_now(&mut rng);
        let base = random_policy(&mut rng);
        if !has_keep_rules(&base) {
            // From the empty policy (keep everything) any rule forgets.
            continue;
        }
        let mut extended = base.clone();
        let which = rng.below(RULES);
        add_rule(&mut rng, &mut extended, which);
        let before = kept(&decide(&base, &backups, now));
        let after = kept(&decide(&extended, &backups, now));
        assert!(
            before.is_subset(&after),
            "case {case}: {base:?} then {extended:?}: forgot {:?}",
            before.difference(&after).collect::<Vec<_>>()
        );
        checked += 1;
    }
    assert!(checked > CASES / 2, "only {checked} cases had keep rules");
}

#[test]
fn property_ttl_never_keeps_an_expired_backup_but_the_floor() {
    let mut rng = TestRng::new(0x1357_9bdf_2468_ace0);
    for case in 0..CASES {
        let backups = random_backups(&mut rng, false);
        let now = random_now(&mut rng);
        let mut policy = random_policy(&mut rng);
        let ttl = random_duration(&mut rng);
        policy.ttl = Some(ttl);
        let floors: BTreeSet<usize> = floors(&backups).into_values().collect();
        let decisions = decide(&policy, &backups, now);
        for (i, (d, b)) in decisions.iter().zip(&backups).enumerate() {
            let expired = !ttl.is_zero() && ttl.after(b.manifest.time).is_some_and(|t| t <= now);
            if expired && !floors.contains(&i) {
                assert!(!d.keep, "case {case}: expired backup kept: {:?}", d.reasons);
                assert!(d.reasons[0].starts_with("expired: ttl "), "case {case}");
            }
            if !expired && !has_keep_rules(&policy) {
                assert!(d.keep, "case {case}: only a ttl, not expired, forgotten");
            }
        }
    }
}

/// An independent model of one bucket rule with an unlimited count: the
/// newest backup of each bucket (chrono's own formatting) plus the oldest.
#[test]
fn property_unlimited_buckets_keep_the_newest_of_each_bucket() {
    let mut rng = TestRng::new(0x0f0f_0f0f_f0f0_f0f0);
    let formats = ["%Y%m%d%H", "%Y%m%d", "%G%V", "%Y%m", "%Y"];
    for case in 0..CASES {
        let backups: Vec<Backup> = random_backups(&mut rng, false)
            .into_iter()
            .map(|mut b| {
                b.manifest.set = "s".into();
                b
            })
            .collect();
        let now = random_now(&mut rng);
        let which = rng.below(5) as usize;
        let mut policy = KeepPolicy::default();
        let unlimited = Some(KeepPolicy::UNLIMITED);
        match which {
            0 => policy.keep_hourly = unlimited,
            1 => policy.keep_daily = unlimited,
            2 => policy.keep_weekly = unlimited,
            3 => policy.keep_monthly = unlimited,
            _ => policy.keep_yearly = unlimited,
        }
        let order = newest_first(&backups);
        let mut seen = BTreeSet::new();
        let mut expected: BTreeSet<usize> = order
            .iter()
            .copied()
            .filter(|&i| seen.insert(backups[i].manifest.time.format(formats[which]).to_string()))
            .collect();
        expected.extend(order.last());
        expected.extend(floors(&backups).into_values());
        assert_eq!(
            kept(&decide(&policy, &backups, now)),
            expected,
            "case {case}, {}",
            formats[which]
        );
        // The same rule limited to n buckets keeps the n newest of those
        // (plus the oldest backup while counts are left, and the floor).
        let n = 1 + rng.below(6) as usize;
        let mut limited = KeepPolicy::default();
        let count = Some(n as i64);
        match which {
            0 => limited.keep_hourly = count,
            1 => limited.keep_daily = count,
            2 => limited.keep_weekly = count,
            3 => limited.keep_monthly = count,
            _ => limited.keep_yearly = count,
        }
        let mut seen = BTreeSet::new();
        let newest_of_buckets: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| seen.insert(backups[i].manifest.time.format(formats[which]).to_string()))
            .collect();
        let mut expected: BTreeSet<usize> = newest_of_buckets.iter().take(n).copied().collect();
        if newest_of_buckets.len() < n {
            expected.extend(order.last());
        }
        expected.extend(floors(&backups).into_values());
        assert_eq!(
            kept(&decide(&limited, &backups, now)),
            expected,
            "case {case}, {} n={n}",
            formats[which]
        );
    }
}
