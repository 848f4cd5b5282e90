//! `backupctl copy`: copy backups from another repository (`--from-repo`)
//! into this one (`--repo`), as `restic copy` does.
//!
//! The two repositories have their own passwords and keys, and may be on
//! any two kinds of storage; the source's remote options are the same
//! `--endpoint`, `--region`… as the destination's. Each file is read from
//! the source and stored through the destination's chunker and keys, so it
//! deduplicates against what the destination holds; a backup the
//! destination already holds is skipped.

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{CopiedBackup, CopyOptions, Error, Repository};
use clap::Args;

use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::password::from_password;
use crate::progress::progress_sink;
use crate::repository::{open, open_sink};

/// Options of `copy`.
#[derive(Args, Debug)]
pub(crate) struct CopyArgs {
    #[command(flatten)]
    common: Common,
    /// The repository to copy from: a path or URL, as --repo.
    #[arg(long, env = "BACKUP_FROM_REPO", value_name = "LOCATION")]
    from_repo: String,
    /// File holding the source repository's password (else
    /// BACKUP_FROM_PASSWORD is used).
    #[arg(long, env = "BACKUP_FROM_PASSWORD_FILE", value_name = "FILE")]
    from_password_file: Option<PathBuf>,
    /// The backups to copy: `latest` or backup ids (a unique prefix is
    /// enough); none copies every backup (of --set).
    backups: Vec<String>,
    /// Only backups of this set (with `latest`: its newest completed one).
    #[arg(long)]
    set: Option<String>,
}

/// Copies the backups and prints what was copied and skipped.
pub(crate) async fn run(args: CopyArgs) -> Result<ExitCode, Error> {
    let CopyArgs {
        common,
        from_repo,
        from_password_file,
        backups,
        set,
    } = args;
    let source_sink = open_sink(&from_repo, &common.store).await?;
    let source_password = from_password(from_password_file.as_deref())?;
    let source = Repository::open(source_sink, source_password.as_ref().map(|p| p.as_slice()))
        .await
        .map_err(|error| in_source(&from_repo, error))?;
    let destination = open(&common).await?;
    let mut options = CopyOptions::default().with_backups(backups);
    if let Some(set) = set {
        options = options.with_set(set);
    }
    if let Some(progress) = progress_sink(&common) {
        options = options.with_progress(progress);
    }
    let report = source.copy_to(&destination, options).await?;
    if common.json {
        let value = serde_json::to_value(&report)
            .map_err(|error| Error::InvalidArgument(format!("encoding the report: {error}")))?;
        print_json(&value);
        return Ok(ExitCode::SUCCESS);
    }
    let line = |what: &str, backup: &CopiedBackup| {
        out!(
            "{what} {} ({}, {}) as {}",
            backup.source.short(),
            backup.set,
            backup.time.format("%Y-%m-%d %H:%M:%S UTC"),
            backup.destination.short()
        );
    };
    for backup in &report.copied {
        line("copied ", backup);
    }
    for backup in &report.skipped {
        line("skipped", backup);
    }
    for id in &report.not_completed {
        out!("not completed, not copied: {}", id.short());
    }
    out!(
        "{} copied, {} already in the destination, {} not completed; {} read, {} uploaded",
        report.copied.len(),
        report.skipped.len(),
        report.not_completed.len(),
        human_bytes(report.bytes_read),
        human_bytes(report.bytes_uploaded)
    );
    Ok(ExitCode::SUCCESS)
}

/// Says which repository a password error is about: both have one.
fn in_source(location: &str, error: Error) -> Error {
    match error {
        Error::PasswordRequired => Error::InvalidArgument(format!(
            "the source repository {location} is encrypted: give its password with \
             --from-password-file or BACKUP_FROM_PASSWORD"
        )),
        Error::WrongPassword => Error::InvalidArgument(format!(
            "wrong password for the source repository {location} (--from-password-file or \
             BACKUP_FROM_PASSWORD)"
        )),
        other => other,
    }
}
