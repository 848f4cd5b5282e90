//! `backupctl find`: look for files by glob patterns across backups, as
//! `restic find` does.

use std::process::ExitCode;

use backup_core::{Error, FindOptions, LsEntry, NodeKind};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::{out, print_json};
use crate::repository::open;

/// Options of `find`.
#[derive(Args, Debug)]
pub(crate) struct FindArgs {
    #[command(flatten)]
    common: Common,
    /// Glob patterns (`*.log`, `etc/**/*.conf`): matched against each
    /// entry's name, or against its whole path from the backup's root when
    /// the pattern contains `/`.
    #[arg(required = true, value_name = "PATTERN")]
    patterns: Vec<String>,
    /// Only backups of this set (with `--backup latest`: the newest of it).
    #[arg(long)]
    set: Option<String>,
    /// Only this backup: `latest` or a backup id (a unique prefix is
    /// enough); repeat for more. Default: every backup.
    #[arg(long = "backup", value_name = "ID")]
    backups: Vec<String>,
    /// Match regardless of case.
    #[arg(long, short = 'i')]
    ignore_case: bool,
    /// Also show each match's type, permission bits, size and modification
    /// time.
    #[arg(long, short = 'l')]
    long: bool,
}

/// Prints, for each backup with a match, its id, time and set and then the
/// matching paths; or one JSON document.
pub(crate) async fn run(args: FindArgs) -> Result<ExitCode, Error> {
    let FindArgs {
        common,
        patterns,
        set,
        backups,
        ignore_case,
        long,
    } = args;
    let repo = open(&common).await?;
    let chosen = repo.select_backups(&backups, set.as_deref()).await?;
    let options = FindOptions::new(patterns.clone()).with_ignore_case(ignore_case);
    let found = repo.find(&chosen, &options).await?;
    if common.json {
        let backups: Vec<serde_json::Value> = found
            .iter()
            .map(|matches| {
                json!({
                    "id": matches.id.to_hex(),
                    "short_id": matches.id.short(),
                    "set": matches.set,
                    "time": matches.time.to_rfc3339(),
                    "entries": matches.entries,
                })
            })
            .collect();
        print_json(&json!({ "patterns": patterns, "backups": backups }));
        return Ok(ExitCode::SUCCESS);
    }
    for (number, matches) in found.iter().enumerate() {
        if number > 0 {
            out!("");
        }
        out!(
            "Found matching entries in backup {} from {} (set {})",
            matches.id.short(),
            matches.time.format("%Y-%m-%d %H:%M:%S UTC"),
            matches.set
        );
        for entry in &matches.entries {
            if long {
                out!("{}", long_line(entry));
            } else {
                out!("/{}", entry.path);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One match as `ls` shows an entry, with its path from the root.
fn long_line(entry: &LsEntry) -> String {
    let kind = match entry.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::File => '-',
    };
    let link = entry
        .target
        .as_ref()
        .map(|target| format!(" -> {target}"))
        .unwrap_or_default();
    format!(
        "{kind}{:04o} {:>12} {} /{}{link}",
        entry.mode,
        entry.size,
        entry.mtime.format("%Y-%m-%d %H:%M:%S"),
        entry.path
    )
}
