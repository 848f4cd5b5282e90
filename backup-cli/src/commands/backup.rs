//! `backupctl backup`: back up paths, or the output of a command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{
    BackupOptions, BackupStatus, CommandSnapshotter, DirectorySnapshotter, Error, ParentSelection,
    Snapshotter,
};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::json;

use super::EXIT_PARTIAL;
use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::progress::progress_sink;
use crate::repository::open;

/// Options of `backup`.
#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    common: Common,
    /// Backup set name.
    #[arg(long, default_value = "default")]
    set: String,
    /// Tag to record, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// Record the backup as taken at this time (RFC 3339).
    #[arg(long)]
    time: Option<String>,
    /// Writer identity recorded in the manifest (default: host name).
    #[arg(long, env = "BACKUP_WRITER")]
    writer: Option<String>,
    /// Read every file again instead of skipping unchanged ones.
    #[arg(long)]
    force: bool,
    /// Stop with a collision error if the newest backup of the set was
    /// written by another writer (for scheduled backups, as a CronJob).
    #[arg(long)]
    check_collision: bool,
    /// Back up the standard output of this command line.
    #[arg(long, value_name = "COMMAND", conflicts_with = "paths")]
    stdin_from_command: Option<String>,
    /// File name for the command's output in the backup.
    #[arg(long, default_value = "stdin", requires = "stdin_from_command")]
    stdin_filename: String,
    /// Files and directories to back up.
    paths: Vec<PathBuf>,
}

/// Backs up and prints the new backup's summary; exits with
/// [`EXIT_PARTIAL`] when some files could not be read.
pub(crate) async fn run(args: BackupArgs) -> Result<ExitCode, Error> {
    let BackupArgs {
        common,
        set,
        tags,
        time,
        writer,
        force,
        check_collision,
        stdin_from_command,
        stdin_filename,
        paths,
    } = args;
    let snapshotter: Box<dyn Snapshotter> = match stdin_from_command {
        Some(line) => {
            Box::new(CommandSnapshotter::from_command_line(&line)?.with_file_name(stdin_filename))
        }
        None if paths.is_empty() => {
            return Err(Error::InvalidArgument(
                "nothing to back up: give paths or --stdin-from-command".into(),
            ))
        }
        None => Box::new(DirectorySnapshotter::new(paths)),
    };
    let time = time
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|error| Error::InvalidArgument(format!("--time {text:?}: {error}")))
        })
        .transpose()?;
    let repo = open(&common).await?;
    let options = {
        let mut options = BackupOptions::default();
        options.set = set;
        options.tags = parse_tags(&tags)?;
        options.time = time;
        options.writer = writer;
        options.parent = if force {
            ParentSelection::None
        } else {
            ParentSelection::Latest
        };
        options.progress = progress_sink(&common);
        options.check_collision = check_collision;
        options
    };
    let summary = repo.backup(snapshotter.as_ref(), options).await?;
    let manifest = &summary.manifest;
    let stats = &manifest.stats;
    if common.json {
        print_json(&json!({
            "id": summary.id.to_hex(),
            "short_id": summary.id.short(),
            "set": manifest.set,
            "time": manifest.time.to_rfc3339(),
            "writer": manifest.writer,
            "hostname": manifest.hostname,
            "status": manifest.status,
            "files": stats.files,
            "dirs": stats.dirs,
            "files_unchanged": stats.files_unchanged,
            "bytes_total": stats.bytes_total,
            "bytes_read": stats.bytes_read,
            "bytes_added": stats.bytes_added,
            "duration_seconds": stats.duration_ms as f64 / 1000.0,
            "errors": summary.failures,
        }));
    } else {
        out!(
            "backup {} of set {:?}: {} files ({} unchanged), {} dirs, {} read, {} added, in {:.2}s",
            summary.id.short(),
            manifest.set,
            stats.files,
            stats.files_unchanged,
            stats.dirs,
            human_bytes(stats.bytes_read),
            human_bytes(stats.bytes_added),
            stats.duration_ms as f64 / 1000.0
        );
        for error in &manifest.errors {
            eprintln!("warning: not backed up: {}: {}", error.path, error.message);
        }
    }
    Ok(if manifest.status == BackupStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}

/// `--tag KEY=VALUE` options as a map (a later tag of the same key wins).
fn parse_tags(tags: &[String]) -> Result<BTreeMap<String, String>, Error> {
    tags.iter()
        .map(|tag| {
            tag.split_once('=')
                .filter(|(key, _)| !key.is_empty())
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| Error::InvalidArgument(format!("tag {tag:?} is not KEY=VALUE")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_tags;

    #[test]
    fn tags_are_key_value_pairs_with_a_non_empty_key() {
        let tags = parse_tags(&["env=prod".into(), "note=a=b".into(), "empty=".into()]).unwrap();
        assert_eq!(tags["env"], "prod");
        assert_eq!(tags["note"], "a=b");
        assert_eq!(tags["empty"], "");
        for bad in ["novalue", "=value"] {
            let message = parse_tags(&[bad.into()]).unwrap_err().to_string();
            assert!(message.contains("is not KEY=VALUE"), "{message}");
        }
    }
}
