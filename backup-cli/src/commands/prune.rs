//! `backupctl prune`: free the space of data no backup uses.

use std::process::ExitCode;

use backup_core::{Error, PruneOptions};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::{print_json, print_prune};
use crate::parse::{parse_grace, parse_percent};
use crate::progress::progress_sink;
use crate::repository::open;

/// Options of `prune`.
#[derive(Args, Debug)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    common: Common,
    /// How long unused data is kept before deletion (0s: at once, still
    /// never while a backup that may use it runs).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    grace: String,
    /// Repack packs with at least this share unused, e.g. 30%.
    #[arg(long, default_value = "30%", value_name = "PERCENT")]
    repack_unused: String,
    /// Show what would be done, change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Prunes (two-phase: mark, then delete after the grace period) and prints
/// the report.
pub(crate) async fn run(args: PruneArgs) -> Result<ExitCode, Error> {
    let PruneArgs {
        common,
        grace,
        repack_unused,
        dry_run,
    } = args;
    let options = PruneOptions::default()
        .with_grace(parse_grace(&grace)?)
        .with_repack_unused_share(parse_percent(&repack_unused, "repack-unused")?)
        .with_dry_run(dry_run);
    let options = match progress_sink(&common) {
        Some(progress) => options.with_progress(progress),
        None => options,
    };
    let repo = open(&common).await?;
    let report = repo.prune(&options).await?;
    if common.json {
        print_json(&json!({ "dry_run": dry_run, "report": report }));
    } else {
        print_prune(&report);
    }
    Ok(ExitCode::SUCCESS)
}
