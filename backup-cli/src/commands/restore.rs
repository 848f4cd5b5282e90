//! `backupctl restore`: restore one backup, or several sets at once with
//! `--select`.

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{Error, RestoreOptions, Status};
use clap::Args;
use serde_json::json;

use super::EXIT_PARTIAL;
use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::progress::progress_sink;
use crate::repository::open;

/// Options of `restore`.
#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    common: Common,
    /// `latest` (newest completed backup) or a backup id (a unique
    /// prefix is enough).
    #[arg(required_unless_present = "select", conflicts_with = "select")]
    backup: Option<String>,
    /// Restore several sets, each into TARGET/SET: SET=latest,
    /// SET=<backup id> or SET=skip (repeatable).
    #[arg(long, value_name = "SET=SELECTOR")]
    select: Vec<String>,
    /// With `latest`: the newest backup of this set.
    #[arg(long)]
    set: Option<String>,
    /// Directory to restore into (created if missing).
    #[arg(long)]
    target: PathBuf,
    /// Restore only what matches this glob (repeatable).
    #[arg(long = "include", value_name = "GLOB")]
    include: Vec<String>,
}

/// Restores what the arguments select and prints what was restored.
pub(crate) async fn run(mut args: RestoreArgs) -> Result<ExitCode, Error> {
    match args.backup.take() {
        Some(backup) => restore_one(args, &backup).await,
        None => restore_sets(args).await,
    }
}

/// `restore --select SET=SELECTOR ...`: each set into `TARGET/SET`.
async fn restore_sets(args: RestoreArgs) -> Result<ExitCode, Error> {
    let RestoreArgs {
        common,
        select,
        target,
        include,
        ..
    } = args;
    let selections = select
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(set, selector)| (set.to_string(), selector.to_string()))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("--select {item:?} is not SET=SELECTOR"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let repo = open(&common).await?;
    let options = {
        let mut options = RestoreOptions::default();
        options.include = include;
        options.progress = progress_sink(&common);
        options
    };
    let results = repo.restore_sets(&selections, &target, &options).await?;
    if common.json {
        print_json(&json!({ "target": target, "sets": results }));
    } else {
        for result in &results {
            match (&result.backup, &result.summary) {
                (Some(id), Some(summary)) => out!(
                    "set {}: restored backup {} to {}: {} files, {}",
                    result.set,
                    id.short(),
                    target.join(&result.set).display(),
                    summary.files,
                    human_bytes(summary.bytes)
                ),
                _ => out!("set {}: skipped", result.set),
            }
        }
    }
    let failures: Vec<_> = results
        .iter()
        .filter_map(|result| Some((&result.set, result.summary.as_ref()?)))
        .flat_map(|(set, summary)| summary.failures.iter().map(move |failure| (set, failure)))
        .collect();
    for (set, failure) in &failures {
        eprintln!(
            "error: set {set}: not restored: {}: {}",
            failure.path, failure.message
        );
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} item(s) could not be restored; everything else was",
            failures.len()
        );
        Ok(ExitCode::from(EXIT_PARTIAL))
    }
}

/// `restore BACKUP`: one backup into the target; exits with
/// [`EXIT_PARTIAL`] when some items could not be restored.
async fn restore_one(args: RestoreArgs, backup: &str) -> Result<ExitCode, Error> {
    let RestoreArgs {
        common,
        set,
        target,
        include,
        ..
    } = args;
    let repo = open(&common).await?;
    let backup = repo.find_backup(backup, set.as_deref()).await?;
    let options = {
        let mut options = RestoreOptions::default();
        options.include = include;
        options.progress = progress_sink(&common);
        options
    };
    let summary = repo.restore(&backup, &target, &options).await?;
    if common.json {
        print_json(&json!({ "id": backup.id.to_hex(), "target": target, "summary": summary }));
    }
    for failure in &summary.failures {
        eprintln!("error: not restored: {}: {}", failure.path, failure.message);
    }
    if summary.status == Status::Completed {
        if !common.json {
            out!(
                "restored backup {} to {}: {} files, {} dirs, {} symlinks, {}",
                backup.id.short(),
                target.display(),
                summary.files,
                summary.dirs,
                summary.symlinks,
                human_bytes(summary.bytes)
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} item(s) could not be restored; everything else was",
            summary.failures.len()
        );
        Ok(ExitCode::from(EXIT_PARTIAL))
    }
}
