//! `backupctl diff`: what changed between two backups, as `restic diff`
//! shows it.

use std::process::ExitCode;

use backup_core::{DiffReport, Error, NodeKind};
use clap::Args;

use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::repository::open;

/// Options of `diff`.
#[derive(Args, Debug)]
pub(crate) struct DiffArgs {
    #[command(flatten)]
    common: Common,
    /// The backup compared from: `latest` or a backup id (a unique prefix
    /// is enough).
    from: String,
    /// The backup compared to: `latest` or a backup id.
    to: String,
    /// With `latest`: the newest backup of this set.
    #[arg(long)]
    set: Option<String>,
}

/// Prints one line per path that differs (`+` added, `-` removed, `M`
/// content changed, `U` metadata only, `T` type changed) and the counts,
/// or the report as JSON.
pub(crate) async fn run(args: DiffArgs) -> Result<ExitCode, Error> {
    let DiffArgs {
        common,
        from,
        to,
        set,
    } = args;
    let repo = open(&common).await?;
    let from = repo.find_backup(&from, set.as_deref()).await?;
    let to = repo.find_backup(&to, set.as_deref()).await?;
    let report = repo.diff(&from, &to).await?;
    if common.json {
        let value = serde_json::to_value(&report)
            .map_err(|error| Error::InvalidArgument(format!("encoding the diff: {error}")))?;
        print_json(&value);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form: restic's layout, paths from the root, directories
/// ending in `/`.
fn print_text(report: &DiffReport) {
    out!(
        "comparing backup {} to {}:",
        report.from.short(),
        report.to.short()
    );
    out!("");
    for entry in &report.entries {
        let slash = if entry.kind == NodeKind::Dir { "/" } else { "" };
        out!("{:<5}/{}{slash}", entry.change.symbol(), entry.path);
    }
    if !report.entries.is_empty() {
        out!("");
    }
    let stats = &report.stats;
    out!(
        "Files:       {:>5} new, {:>5} removed, {:>5} changed",
        stats.files_added,
        stats.files_removed,
        stats.files_changed
    );
    out!(
        "Dirs:        {:>5} new, {:>5} removed, {:>5} changed",
        stats.dirs_added,
        stats.dirs_removed,
        stats.dirs_changed
    );
    out!(
        "Others:      {:>5} new, {:>5} removed, {:>5} changed",
        stats.others_added,
        stats.others_removed,
        stats.others_changed
    );
    out!(
        "Data chunks: {:>5} new, {:>5} removed",
        stats.chunks_added,
        stats.chunks_removed
    );
    out!(
        "Tree chunks: {:>5} new, {:>5} removed",
        stats.tree_chunks_added,
        stats.tree_chunks_removed
    );
    out!(
        "  Added:   {}",
        human_bytes(stats.bytes_added.saturating_add(stats.tree_bytes_added))
    );
    out!(
        "  Removed: {}",
        human_bytes(stats.bytes_removed.saturating_add(stats.tree_bytes_removed))
    );
}
