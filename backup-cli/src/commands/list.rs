//! `backupctl list`: list backups.

use std::process::ExitCode;

use backup_core::{Backup, Error};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::repository::open;

/// Options of `list`.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    common: Common,
    /// Only backups of this set.
    #[arg(long)]
    set: Option<String>,
}

/// Prints the repository's backups, oldest first: a table, or a JSON array.
pub(crate) async fn run(args: ListArgs) -> Result<ExitCode, Error> {
    let ListArgs { common, set } = args;
    let repo = open(&common).await?;
    let backups: Vec<Backup> = repo
        .list()
        .await?
        .into_iter()
        .filter(|b| set.as_deref().is_none_or(|s| b.manifest.set == s))
        .collect();
    if common.json {
        print_json(&serde_json::Value::Array(
            backups.iter().map(backup_json).collect(),
        ));
    } else {
        out!(
            "{:<10} {:<26} {:<20} {:<16} {:>8} {:>12}  status",
            "id",
            "time",
            "set",
            "writer",
            "files",
            "size"
        );
        for backup in &backups {
            let m = &backup.manifest;
            out!(
                "{:<10} {:<26} {:<20} {:<16} {:>8} {:>12}  {}",
                backup.id.short(),
                m.time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                m.set,
                m.writer,
                m.stats.files,
                human_bytes(m.stats.bytes_total),
                serde_json::to_value(m.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            );
        }
        out!("{} backup(s)", backups.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// One backup in `list --json`.
fn backup_json(backup: &Backup) -> serde_json::Value {
    let manifest = &backup.manifest;
    json!({
        "id": backup.id.to_hex(),
        "short_id": backup.id.short(),
        "set": manifest.set,
        "time": manifest.time.to_rfc3339(),
        "writer": manifest.writer,
        "hostname": manifest.hostname,
        "source": manifest.source,
        "tags": manifest.tags,
        "status": manifest.status,
        "stats": manifest.stats,
        "facts": manifest.facts,
        "errors": manifest.errors,
    })
}
