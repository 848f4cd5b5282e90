//! `backupctl stats`: what backups restore to, or the distinct data they
//! keep in the repository, as `restic stats` shows it.

use std::process::ExitCode;

use backup_core::{Error, StatsMode, StatsReport};
use clap::{Args, ValueEnum};

use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::repository::open;

/// Options of `stats`.
#[derive(Args, Debug)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    common: Common,
    /// The backups counted: `latest` or backup ids (a unique prefix is
    /// enough). Default: every backup (of `--set`).
    #[arg(value_name = "BACKUP")]
    backups: Vec<String>,
    /// Only backups of this set (with `latest`: the newest of it).
    #[arg(long)]
    set: Option<String>,
    /// What to count.
    #[arg(long, value_enum, default_value_t = Mode::RestoreSize)]
    mode: Mode,
}

/// What `stats` counts.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The files and bytes a restore of the backups writes.
    RestoreSize,
    /// The distinct chunks the backups reference, uncompressed and as
    /// stored, and what deduplication and compression save.
    RawData,
}

/// Prints the counts, as text or as one JSON document.
pub(crate) async fn run(args: StatsArgs) -> Result<ExitCode, Error> {
    let StatsArgs {
        common,
        backups,
        set,
        mode,
    } = args;
    let repo = open(&common).await?;
    let chosen = repo.select_backups(&backups, set.as_deref()).await?;
    let library_mode = match mode {
        Mode::RestoreSize => StatsMode::RestoreSize,
        Mode::RawData => StatsMode::RawData,
    };
    let report = repo.stats(&chosen, library_mode).await?;
    if common.json {
        print_json(&json_of(&report, mode)?);
    } else {
        print_text(&report, mode);
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as JSON, with the mode and the ratios.
fn json_of(report: &StatsReport, mode: Mode) -> Result<serde_json::Value, Error> {
    let mut value = serde_json::to_value(report)
        .map_err(|error| Error::InvalidArgument(format!("encoding the stats: {error}")))?;
    if let Some(object) = value.as_object_mut() {
        let name = match mode {
            Mode::RestoreSize => "restore-size",
            Mode::RawData => "raw-data",
        };
        object.insert("mode".into(), name.into());
        if mode == Mode::RawData {
            object.insert(
                "deduplication_ratio".into(),
                report.deduplication_ratio().into(),
            );
            object.insert(
                "compression_ratio".into(),
                report.compression_ratio().into(),
            );
            object.insert("space_saving".into(), report.space_saving().into());
        }
    }
    Ok(value)
}

/// The text form, in restic's layout.
fn print_text(report: &StatsReport, mode: Mode) {
    let sized = |bytes: u64| format!("{} ({bytes} bytes)", human_bytes(bytes));
    match mode {
        Mode::RestoreSize => {
            out!("Stats in restore-size mode:");
            out!("  Backups processed:  {}", report.backups);
            out!("   Total file count:  {}", report.files);
            out!("        Directories:  {}", report.dirs);
            out!("           Symlinks:  {}", report.symlinks);
            out!("         Total size:  {}", sized(report.restore_size));
        }
        Mode::RawData => {
            let raw = report.raw_data.unwrap_or_default();
            out!("Stats in raw-data mode:");
            out!("      Backups processed:  {}", report.backups);
            out!(
                "       Total chunk count:  {} ({} data, {} tree)",
                raw.chunks(),
                raw.data_chunks,
                raw.tree_chunks
            );
            out!(
                "Total uncompressed size:  {}",
                sized(raw.uncompressed_size())
            );
            out!("       Total stored size:  {}", sized(raw.stored_size));
            out!("            Restore size:  {}", sized(report.restore_size));
            if let Some(ratio) = report.deduplication_ratio() {
                out!("     Deduplication ratio:  {ratio:.2}x");
            }
            if let Some(ratio) = report.compression_ratio() {
                out!("       Compression ratio:  {ratio:.2}x");
            }
            // Tiny files take more in packs than they hold: no saving to show.
            if let Some(saving) = report.space_saving().filter(|saving| *saving >= 0.0) {
                out!("            Space saving:  {:.2}%", saving * 100.0);
            }
        }
    }
}
