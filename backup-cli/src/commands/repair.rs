//! `backupctl repair`: put a damaged repository right, as restic's `repair`
//! command. `repair index` rebuilds the index from the packs' own headers;
//! `repair backups` writes backups that reference lost data again without
//! it (restic's `repair snapshots`).

use std::process::ExitCode;

use backup_core::{
    Error, RepairBackupsOptions, RepairBackupsReport, RepairIndexOptions, RepairIndexReport,
};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::Common;
use crate::commands::EXIT_PARTIAL;
use crate::output::{out, print_json};
use crate::progress::progress_sink;
use crate::repository::open;

/// Options of `repair`.
#[derive(Args, Debug)]
pub(crate) struct RepairArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    what: RepairWhat,
}

/// What `repair` repairs.
#[derive(Subcommand, Debug)]
enum RepairWhat {
    /// Rebuild the index from the packs: every pack's header is read, new
    /// index objects are written, then the old ones are deleted. For a
    /// damaged or lost index object (which verify reports and prune
    /// refuses). Safe beside running backups; not beside a prune.
    Index {
        /// Read the pack headers and report, write and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write each backup that references lost data (run `repair index`
    /// first) again without it: files whose content is lost are left out,
    /// directories whose listing is lost are stored empty; the new backup
    /// is partially failed, lists what it leaves out and names the
    /// original (fact `repaired_from`).
    Backups {
        /// `latest` or backup ids (prefixes); none: every backup.
        backups: Vec<String>,
        /// Only backups of this set.
        #[arg(long)]
        set: Option<String>,
        /// Forget each original once its repaired backup is written.
        #[arg(long)]
        forget: bool,
        /// Report what would be repaired, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs the repair named.
pub(crate) async fn run(args: RepairArgs) -> Result<ExitCode, Error> {
    let RepairArgs { common, what } = args;
    match what {
        RepairWhat::Index { dry_run } => index(&common, dry_run).await,
        RepairWhat::Backups {
            backups,
            set,
            forget,
            dry_run,
        } => {
            let mut options = RepairBackupsOptions::default()
                .with_backups(backups)
                .with_forget(forget)
                .with_dry_run(dry_run);
            if let Some(set) = set {
                options = options.with_set(set);
            }
            if let Some(progress) = progress_sink(&common) {
                options = options.with_progress(progress);
            }
            let repo = open(&common).await?;
            let report = repo.repair_backups(options).await?;
            if common.json {
                print_json(&json!({ "dry_run": dry_run, "report": report }));
            } else {
                print_backups_report(&report, dry_run);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_backups_report(report: &RepairBackupsReport, dry_run: bool) {
    for backup in &report.repaired {
        let outcome = match (backup.repaired, backup.forgotten) {
            (None, _) => "would be repaired".to_string(),
            (Some(id), true) => format!("repaired as {}, original forgotten", id.short()),
            (Some(id), false) => format!("repaired as {}", id.short()),
        };
        out!(
            "backup {} of set {:?} ({}): {outcome}; {} item(s) left out",
            backup.original.short(),
            backup.set,
            backup.time.to_rfc3339(),
            backup.removed.len()
        );
        for item in &backup.removed {
            out!("  {}: {}", item.path, item.message);
        }
    }
    out!(
        "{} backup(s) reference lost data, {} intact{}",
        report.repaired.len(),
        report.intact.len(),
        if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
}

/// `repair index`: rebuilds the index and prints the report. Exit status 3
/// when some pack's header could not be read (the rest of the index is
/// rebuilt).
async fn index(common: &Common, dry_run: bool) -> Result<ExitCode, Error> {
    let mut options = RepairIndexOptions::default().with_dry_run(dry_run);
    if let Some(progress) = progress_sink(common) {
        options = options.with_progress(progress);
    }
    let repo = open(common).await?;
    let report = repo.repair_index(&options).await?;
    if common.json {
        print_json(&json!({ "dry_run": dry_run, "report": report }));
    } else {
        print_index_report(&report, dry_run);
    }
    for problem in &report.unreadable_packs {
        eprintln!(
            "damaged: {}: {} (left in place)",
            problem.object, problem.message
        );
    }
    if report.is_complete() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "warning: {} pack(s) whose header cannot be read; run `backupctl verify --read-data`",
            report.unreadable_packs.len()
        );
        Ok(ExitCode::from(EXIT_PARTIAL))
    }
}

fn print_index_report(report: &RepairIndexReport, dry_run: bool) {
    out!(
        "{} packs: {} indexed from their headers ({} blobs), {} marked for deletion left out, {} unreadable",
        report.packs,
        report.packs_indexed,
        report.blobs_indexed,
        report.packs_marked_for_deletion,
        report.unreadable_packs.len()
    );
    if dry_run {
        out!(
            "dry run: nothing written or deleted ({} damaged index objects found)",
            report.damaged_index_objects
        );
    } else {
        out!(
            "wrote {} index objects, removed {} old ones ({} damaged)",
            report.index_objects_written,
            report.index_objects_removed,
            report.damaged_index_objects
        );
    }
}
