//! A tokio service that backs up its own data on a schedule, beside its
//! real work: progress and status go to the service through a channel, and
//! on SIGTERM (or Ctrl-C) a running backup is cancelled cleanly (it records
//! nothing, releases its snapshot, removes its in-flight marker) before the
//! service exits.
//!
//! ```text
//! cargo run --example embedded_service                  # until SIGTERM / Ctrl-C
//! cargo run --example embedded_service -- 25            # stop itself after 25 s
//! ```
//!
//! The repository and the data are under `./backup-service-demo/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backup_core::schedule::{
    run_backup_job, runner_fn, JobFailure, JobSpec, RunContext, RunOutcome, Scheduler,
    SchedulerEvent, ShutdownMode,
};
use backup_core::{
    BackupOptions, DirectorySnapshotter, Error, InitOptions, KeepPolicy, LocalSink, Phase,
    ProgressSink, Repository,
};
use tokio::sync::mpsc;

/// What the backup side tells the rest of the service: the figures an
/// operator would copy into a resource's status.
#[derive(Debug)]
enum BackupStatus {
    /// A backup is running, this far.
    Running { percent: Option<f64>, files: u64 },
    /// The scheduler's report of a finished, failed or cancelled run.
    Event(SchedulerEvent),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stop_after = std::env::args()
        .nth(1)
        .map(|seconds| seconds.parse::<u64>().map(Duration::from_secs))
        .transpose()?;
    let place = PathBuf::from("backup-service-demo");
    let data = place.join("data");
    std::fs::create_dir_all(&data)?;
    let sink = Arc::new(LocalSink::create(place.join("repo"))?);
    let repo = match Repository::open(sink.clone(), None).await {
        Ok(repo) => repo,
        Err(Error::NoRepository { .. }) => Repository::init(sink, InitOptions::default()).await?,
        Err(error) => return Err(error.into()),
    };
    let repo = Arc::new(repo);

    // The backup job: every 10 seconds, keep the last 5.
    let (status, mut statuses) = mpsc::unbounded_channel::<BackupStatus>();
    let runner = {
        let (repo, status) = (Arc::clone(&repo), status.clone());
        runner_fn(move |job: &JobSpec<PathBuf>, context: RunContext| {
            let (repo, status, path) = (Arc::clone(&repo), status.clone(), job.payload().clone());
            let set = job.name().to_owned();
            async move {
                let progress = ProgressSink::new(move |event| {
                    if event.phase == Phase::Running {
                        let _ = status.send(BackupStatus::Running {
                            percent: event.percent,
                            files: event.files_done,
                        });
                    }
                });
                let options = BackupOptions::default()
                    .with_set(set)
                    // A name that stays from one run (and one pod) to the next.
                    .with_writer("embedded-service")
                    .with_check_collision(true)
                    .with_progress(progress)
                    .with_cancellation(context.cancellation().clone());
                let keep = KeepPolicy {
                    keep_last: Some(5),
                    ..KeepPolicy::default()
                };
                let source = DirectorySnapshotter::new(vec![path]);
                match run_backup_job(&repo, &source, options, &keep, None).await {
                    Ok(report) => Ok(RunOutcome::with_message(report.to_string())),
                    Err(error) => Err(JobFailure::from(error)),
                }
            }
        })
    };
    let scheduler = Scheduler::builder(runner)
        .job(JobSpec::new(
            "service-data",
            "*/10 * * * * *",
            data.clone(),
        )?)
        .start()?;
    let mut events = scheduler.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            let _ = status.send(BackupStatus::Event(event));
        }
    });

    // The service's own work, which the backups never hold up.
    let mut work = tokio::time::interval(Duration::from_secs(1));
    let mut written = 0u64;
    let stop = shutdown_signal(stop_after);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = work.tick() => {
                written += 1;
                std::fs::write(data.join(format!("record-{}", written % 20)), written.to_string())?;
            }
            Some(update) = statuses.recv() => match update {
                BackupStatus::Running { percent, files } => {
                    println!("backup running: {files} files, {percent:?}%");
                }
                BackupStatus::Event(event) => println!("backup event: {event:?}"),
            },
            stopped = &mut stop => {
                stopped.map_err(|error| error.to_string())?;
                break;
            }
        }
    }

    // Cancel a running backup and wait until it has cleaned up.
    println!("shutting down: cancelling a running backup");
    scheduler.shutdown(ShutdownMode::Cancel).await;
    println!("{} backups in the repository", repo.list().await?.len());
    Ok(())
}

/// SIGTERM (what Kubernetes sends a pod), Ctrl-C, or the time limit.
async fn shutdown_signal(
    limit: Option<Duration>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let limit = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        () = limit => {}
    }
    Ok(())
}
