//! `backupctl ls`: list the files of a backup.

use std::process::ExitCode;

use backup_core::{Error, NodeKind};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::{out, print_json};
use crate::repository::open;

/// Options of `ls`.
#[derive(Args, Debug)]
pub(crate) struct LsArgs {
    #[command(flatten)]
    common: Common,
    /// `latest` or a backup id (a unique prefix is enough).
    backup: String,
    /// With `latest`: the newest backup of this set.
    #[arg(long)]
    set: Option<String>,
}

/// Prints one line per entry, as `ls -l` would, or the entries as JSON.
pub(crate) async fn run(args: LsArgs) -> Result<ExitCode, Error> {
    let LsArgs {
        common,
        backup,
        set,
    } = args;
    let repo = open(&common).await?;
    let backup = repo.find_backup(&backup, set.as_deref()).await?;
    let entries = repo.ls(&backup).await?;
    if common.json {
        print_json(&json!({ "id": backup.id.to_hex(), "entries": entries }));
    } else {
        for entry in entries {
            let kind = match entry.kind {
                NodeKind::Dir => 'd',
                NodeKind::Symlink => 'l',
                NodeKind::File => '-',
            };
            let link = entry.target.map(|t| format!(" -> {t}")).unwrap_or_default();
            out!(
                "{kind}{:04o} {:>12} {} {}{link}",
                entry.mode,
                entry.size,
                entry.mtime.format("%Y-%m-%d %H:%M:%S"),
                entry.path
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
