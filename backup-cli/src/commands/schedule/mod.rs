//! `backupctl schedule`: run the backup jobs of a schedule file on their
//! cron schedules until SIGINT or SIGTERM, printing the scheduler's events
//! as JSON lines on stdout.
//!
//! The file's format is [`config`]'s; [`runner`] performs each run.

pub(crate) mod config;
mod runner;

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::schedule::{Scheduler, ShutdownMode};
use backup_core::{Error, PruneOptions};
use clap::Args;
use serde_json::json;

use crate::cli::Common;
use crate::output::out;
use crate::parse::parse_grace;
use crate::password::password;
use config::ScheduleConfig;
use runner::BackupJobRunner;

/// Options of `schedule`.
#[derive(Args, Debug)]
pub(crate) struct ScheduleArgs {
    #[command(flatten)]
    common: Common,
    /// The schedule file (see the README).
    #[arg(long)]
    config: PathBuf,
    /// Prune after each job's retention.
    #[arg(long)]
    prune: bool,
    /// With --prune: grace period of unused data.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    grace: String,
}

/// Runs the scheduler until SIGINT or SIGTERM, then lets running backups
/// finish.
pub(crate) async fn run(args: ScheduleArgs) -> Result<ExitCode, Error> {
    let ScheduleArgs {
        common,
        config,
        prune,
        grace,
    } = args;
    let grace = parse_grace(&grace)?;
    let text = std::fs::read_to_string(&config)
        .map_err(|source| Error::io("cannot read the schedule", &config, source))?;
    let in_file = |error: config::ScheduleFileError| {
        Error::InvalidArgument(format!("{}: {error}", config.display()))
    };
    let jobs = ScheduleConfig::from_toml_str(&text)
        .and_then(|schedule| schedule.job_specs())
        .map_err(in_file)?;
    let mut runner = BackupJobRunner::new(common.store.clone(), password(&common)?);
    if prune {
        runner = runner.with_prune(PruneOptions::default().with_grace(grace));
    }
    let scheduler = Scheduler::builder(runner)
        .jobs(jobs)
        .start()
        .map_err(|error| Error::InvalidArgument(error.to_string()))?;
    let mut events = scheduler.subscribe();
    for status in scheduler.status() {
        if let Ok(line) = serde_json::to_string(
            &json!({ "event": "scheduled", "job": status.name, "next_run": status.next_run }),
        ) {
            out!("{line}");
        }
    }
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| Error::io("cannot listen for SIGTERM", PathBuf::new(), source))?;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    if let Ok(line) = serde_json::to_string(&event) {
                        out!("{line}");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => eprintln!("warning: {missed} scheduler events not shown"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!("stopping: letting running backups finish");
    scheduler.shutdown(ShutdownMode::Finish).await;
    Ok(ExitCode::SUCCESS)
}
