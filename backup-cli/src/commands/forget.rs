//! `backupctl forget`: forget the backups a retention policy does not keep,
//! then optionally prune.

use std::process::ExitCode;

use backup_core::{CalendarDuration, Error, ForgetOptions, KeepPolicy, PruneOptions};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::{out, print_json, print_prune};
use crate::parse::{parse_calendar, parse_grace, parse_keep_count};
use crate::progress::progress_sink;
use crate::repository::open;

/// Options of `forget`.
#[derive(Args, Debug)]
pub(crate) struct ForgetArgs {
    #[command(flatten)]
    common: Common,
    /// Only backups of this set.
    #[arg(long)]
    set: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Show the decisions, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Prune after forgetting.
    #[arg(long)]
    prune: bool,
    /// With --prune: how long unused data is kept before deletion.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    grace: String,
}

/// restic's `forget` keep options, plus a time-to-live.
#[derive(Args, Debug, Clone, Default)]
struct PolicyArgs {
    /// Keep the newest N backups (unlimited or -1: all).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_keep_count)]
    keep_last: Option<i64>,
    /// Keep the newest backup of each of the last N hours (unlimited or
    /// -1: of every one).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_keep_count)]
    keep_hourly: Option<i64>,
    /// Keep the newest backup of each of the last N days (unlimited or
    /// -1: of every one).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_keep_count)]
    keep_daily: Option<i64>,
    /// Keep the newest backup of each of the last N weeks (unlimited or
    /// -1: of every one).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_keep_count)]
    keep_weekly: Option<i64>,
    /// Keep the newest backup of each of the last N months (unlimited or
    /// -1: of every one).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_keep_count)]
    keep_monthly: Option<i64>,
    /// Keep the newest backup of each of the last N years (unlimited or
    /// -1: of every one).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_keep_count)]
    keep_yearly: Option<i64>,
    /// Keep every backup within this duration of the newest (e.g. 1y2m3d4h).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep hourly backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_hourly: Option<String>,
    /// Keep daily backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_daily: Option<String>,
    /// Keep weekly backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_weekly: Option<String>,
    /// Keep monthly backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_monthly: Option<String>,
    /// Keep yearly backups within this duration of the newest.
    #[arg(long, value_name = "DURATION")]
    keep_within_yearly: Option<String>,
    /// Keep backups with all of these tags (KEY or KEY=VALUE, comma-separated; repeatable).
    #[arg(long = "keep-tag", value_name = "TAGS")]
    keep_tags: Vec<String>,
    /// Forget backups older than this, whatever else keeps them (Velero's TTL);
    /// the newest complete backup of a set is always kept.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
}

impl PolicyArgs {
    /// The policy the options describe; an error if it is invalid or keeps
    /// everything.
    fn to_policy(&self) -> Result<KeepPolicy, Error> {
        let calendar =
            |text: &Option<String>, flag: &str| -> Result<Option<CalendarDuration>, Error> {
                text.as_deref()
                    .map(|text| parse_calendar(text, flag))
                    .transpose()
            };
        let policy = KeepPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: calendar(&self.keep_within, "keep-within")?,
            keep_within_hourly: calendar(&self.keep_within_hourly, "keep-within-hourly")?,
            keep_within_daily: calendar(&self.keep_within_daily, "keep-within-daily")?,
            keep_within_weekly: calendar(&self.keep_within_weekly, "keep-within-weekly")?,
            keep_within_monthly: calendar(&self.keep_within_monthly, "keep-within-monthly")?,
            keep_within_yearly: calendar(&self.keep_within_yearly, "keep-within-yearly")?,
            keep_tags: self
                .keep_tags
                .iter()
                .map(|list| {
                    list.split(',')
                        .map(|tag| tag.trim().to_string())
                        .filter(|tag| !tag.is_empty())
                        .collect()
                })
                .collect(),
            ttl: calendar(&self.ttl, "ttl")?,
        };
        policy
            .validate()
            .map_err(|error| Error::InvalidArgument(error.to_string()))?;
        if policy.is_empty() {
            return Err(Error::InvalidArgument(
                "no retention rule given (--keep-last, --keep-daily, --keep-within, --ttl, ...): nothing would be forgotten".into(),
            ));
        }
        Ok(policy)
    }
}

/// Applies the policy per set, prints each decision with its reasons, and
/// prunes when asked.
pub(crate) async fn run(args: ForgetArgs) -> Result<ExitCode, Error> {
    let ForgetArgs {
        common,
        set,
        policy,
        dry_run,
        prune,
        grace,
    } = args;
    let policy = policy.to_policy()?;
    let grace = parse_grace(&grace)?;
    let repo = open(&common).await?;
    let forget_options = {
        let options = ForgetOptions::default().with_dry_run(dry_run);
        match progress_sink(&common) {
            Some(progress) => options.with_progress(progress),
            None => options,
        }
    };
    // Archived WAL is not kept by the policy but by what the base backups
    // kept need (below).
    let mut decisions = repo
        .forget_matching(&policy, chrono::Utc::now(), &forget_options, |backup| {
            backup.manifest.source.kind != backup_core::WAL_KIND
                && set.as_deref().is_none_or(|set| backup.manifest.set == set)
        })
        .await?;
    let mut base_sets: Vec<String> = decisions
        .iter()
        .filter(|(backup, _)| backup.manifest.source.kind == "postgres")
        .map(|(backup, _)| backup.manifest.set.clone())
        .collect();
    base_sets.sort();
    base_sets.dedup();
    for base_set in base_sets {
        decisions.extend(
            backup_core::WalArchive::new(&repo, base_set)
                .apply_retention(&forget_options)
                .await?,
        );
    }
    let report = if prune && !dry_run {
        Some(
            repo.prune(&PruneOptions::default().with_grace(grace))
                .await?,
        )
    } else {
        None
    };
    if common.json {
        let items: Vec<_> = decisions
            .iter()
            .map(|(backup, decision)| {
                json!({
                    "id": backup.id.to_hex(),
                    "short_id": backup.id.short(),
                    "set": backup.manifest.set,
                    "time": backup.manifest.time.to_rfc3339(),
                    "keep": decision.keep,
                    "reasons": decision.reasons,
                })
            })
            .collect();
        print_json(&json!({ "dry_run": dry_run, "decisions": items, "prune": report }));
    } else {
        for (backup, decision) in &decisions {
            out!(
                "{} {:<10} {:<26} {:<20} {}",
                if decision.keep { "keep  " } else { "forget" },
                backup.id.short(),
                backup
                    .manifest
                    .time
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string(),
                backup.manifest.set,
                decision.reasons.join(", ")
            );
        }
        let forgotten = decisions
            .iter()
            .filter(|(_, decision)| !decision.keep)
            .count();
        out!(
            "{} of {} backup(s) {}",
            forgotten,
            decisions.len(),
            if dry_run {
                "would be forgotten (dry run)"
            } else {
                "forgotten"
            }
        );
        if let Some(report) = &report {
            print_prune(report);
        }
    }
    Ok(ExitCode::SUCCESS)
}
