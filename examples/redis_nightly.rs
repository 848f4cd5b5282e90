//! The 3scale seed: back up a Redis server to a local volume every night
//! at 02:30, keeping 7 daily and 4 weekly backups; `--once` takes one
//! backup now, and `--restore DIR` puts the newest one into a stopped
//! server's data directory.
//!
//! ```sh
//! cargo run --example redis_nightly -- redis://127.0.0.1:6379/ /mnt/backups/redis --once
//! cargo run --example redis_nightly -- redis://127.0.0.1:6379/ /mnt/backups/redis --restore /var/lib/redis
//! ```
//!
//! The password comes from `REDISCLI_AUTH`, as for redis-cli. The
//! repository is created unencrypted on first use (a volume of the same
//! cluster); set `BACKUP_PASSWORD` to encrypt it.

use std::sync::Arc;

use backup_core::schedule::{
    run_backup_job, runner_fn, JobFailure, JobSpec, RunContext, RunOutcome, Scheduler, ShutdownMode,
};
use backup_core::{
    BackupOptions, Error, InitOptions, KeepPolicy, LocalSink, RedisRestorer, RedisSnapshotter,
    Repository,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: redis_nightly REDIS_URL REPOSITORY_DIR [--once | --restore DATA_DIR]";
    let url = args.next().ok_or(usage)?;
    let place = args.next().ok_or(usage)?;
    let mode = args.next();
    let password = std::env::var("BACKUP_PASSWORD").ok();

    let sink = Arc::new(LocalSink::create(&place)?);
    let repo = match Repository::open(sink.clone(), password.as_deref().map(str::as_bytes)).await {
        Ok(repo) => repo,
        Err(Error::NoRepository { .. }) => {
            let options = match &password {
                Some(password) => InitOptions::default().with_password(password.as_bytes()),
                // No password: an unencrypted repository.
                None => InitOptions::default(),
            };
            Repository::init(sink, options).await?
        }
        Err(error) => return Err(error.into()),
    };
    let repo = Arc::new(repo);
    let mut source = RedisSnapshotter::new(url);
    if let Ok(secret) = std::env::var("REDISCLI_AUTH") {
        source = source.with_password(None, secret);
    }
    let source = Arc::new(source);

    match mode.as_deref() {
        Some("--once") => {
            let summary = repo
                .backup(source.as_ref(), BackupOptions::default().with_set("redis"))
                .await?;
            println!(
                "backup {}: {:?}",
                summary.id.short(),
                summary.manifest.facts
            );
            return Ok(());
        }
        Some("--restore") => {
            let data_dir = args.next().ok_or(usage)?;
            let latest = repo.find_backup("latest", Some("redis")).await?;
            let restored = repo
                .restore_into(&latest, &RedisRestorer::new(data_dir))
                .await?;
            println!(
                "restored {} bytes to {}",
                restored.bytes,
                restored.target.display()
            );
            return Ok(());
        }
        _ => {}
    }

    let keep = KeepPolicy {
        keep_daily: Some(7),
        keep_weekly: Some(4),
        ..KeepPolicy::default()
    };
    let runner = {
        let repo = Arc::clone(&repo);
        runner_fn(move |job: &JobSpec<()>, context: RunContext| {
            let (repo, source, keep) = (Arc::clone(&repo), Arc::clone(&source), keep.clone());
            let set = job.name().to_owned();
            async move {
                let options = BackupOptions::default()
                    .with_set(set)
                    .with_cancellation(context.cancellation().clone());
                match run_backup_job(&repo, source.as_ref(), options, &keep, None).await {
                    Ok(report) => Ok(RunOutcome::with_message(report.to_string())),
                    Err(error) => Err(JobFailure::from(error)),
                }
            }
        })
    };
    let scheduler = Scheduler::builder(runner)
        .job(JobSpec::new("redis", "0 30 2 * * *", ())?)
        .start()?;
    tokio::signal::ctrl_c().await?;
    scheduler.shutdown(ShutdownMode::Cancel).await;
    Ok(())
}
