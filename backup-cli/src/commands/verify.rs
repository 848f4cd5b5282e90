//! `backupctl verify`: check the repository for damage.

use std::process::ExitCode;

use backup_core::{Error, VerifyOptions};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::progress::progress_sink;
use crate::repository::open;

/// Options of `verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    common: Common,
    /// Also download and check all data.
    #[arg(long)]
    read_data: bool,
    /// Check only this share of the data, e.g. 10%.
    #[arg(long, value_name = "PERCENT")]
    read_data_subset: Option<String>,
}

/// Verifies and prints what was checked; every problem goes to stderr and
/// makes the exit status a failure.
pub(crate) async fn run(args: VerifyArgs) -> Result<ExitCode, Error> {
    let VerifyArgs {
        common,
        read_data,
        read_data_subset,
    } = args;
    let share = read_data_subset
        .map(|text| {
            text.trim_end_matches('%')
                .parse::<f64>()
                .ok()
                .filter(|p| *p > 0.0 && *p <= 100.0)
                .map(|p| p / 100.0)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "--read-data-subset {text:?}: give a percentage like 10%"
                    ))
                })
        })
        .transpose()?;
    let repo = open(&common).await?;
    let report = repo
        .verify(&{
            let mut options = VerifyOptions::default();
            options.read_data = read_data || share.is_some();
            options.read_data_share = share;
            options.progress = progress_sink(&common);
            options
        })
        .await?;
    let gaps = wal_gaps(&repo).await?;
    if common.json {
        let gaps: Vec<_> = gaps
            .iter()
            .map(|(set, gap)| json!({ "set": set, "gap": gap }))
            .collect();
        print_json(&json!({
            "ok": report.is_ok() && gaps.is_empty(),
            "report": report,
            "wal_gaps": gaps,
        }));
    } else {
        out!(
            "checked {} backups, {} indexes, {} packs ({} read, {}), {} blobs",
            report.backups,
            report.indexes,
            report.packs,
            report.packs_read,
            human_bytes(report.bytes_read),
            report.blobs_checked
        );
        for warning in &report.warnings {
            out!("note: {warning}");
        }
    }
    for problem in &report.errors {
        eprintln!("damaged: {}: {}", problem.object, problem.message);
    }
    for (set, gap) in &gaps {
        eprintln!(
            "WAL gap in set {set}: {} segment(s) missing, {} to {}: no point-in-time restore \
             reaches past it from an earlier base backup",
            gap.segments, gap.first, gap.last
        );
    }
    if !gaps.is_empty() {
        eprintln!("error: {} gap(s) in the archived WAL", gaps.len());
        return Ok(ExitCode::FAILURE);
    }
    if report.is_ok() {
        if !common.json {
            out!("no errors found");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {} problem(s) found", report.errors.len());
        Ok(ExitCode::FAILURE)
    }
}

/// The gaps in every set's archived WAL, by the base backups' set.
async fn wal_gaps(
    repo: &backup_core::Repository,
) -> Result<Vec<(String, backup_core::WalGap)>, Error> {
    let mut base_sets: Vec<String> = repo
        .list()
        .await?
        .into_iter()
        .filter(|backup| backup.manifest.source.kind == backup_core::WAL_KIND)
        .filter_map(|backup| backup.manifest.set.strip_suffix("/wal").map(str::to_string))
        .collect();
    base_sets.sort();
    base_sets.dedup();
    let mut gaps = Vec::new();
    for set in base_sets {
        for gap in backup_core::WalArchive::new(repo, &set).gaps().await? {
            gaps.push((set.clone(), gap));
        }
    }
    Ok(gaps)
}
