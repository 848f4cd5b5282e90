//! The hosted-control-plane seed: back up an etcd member to S3 every two
//! hours, keeping 12 two-hourly and 7 daily backups, with reconciliation
//! paused and the API servers scaled to zero around each snapshot (hooks
//! whose after half runs whatever happens), and export the newest snapshot
//! with a presigned URL for `restoreSnapshotURL`.
//!
//! ```sh
//! export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=eu-west-1
//! export BACKUP_PASSWORD='...'
//! cargo run --example etcd_to_s3 -- https://10.0.0.1:2379 s3://backups/etcd [--once]
//! ```
//!
//! Set `ETCD_CACERT`, `ETCD_CERT` and `ETCD_KEY` for a TLS client port, and
//! `PAUSE_COMMAND` / `RESUME_COMMAND` (command lines, run without a shell)
//! to change the hooks; by default they are kubectl commands.

use std::sync::Arc;
use std::time::Duration;

use backup_core::schedule::{
    run_backup_job, runner_fn, JobFailure, JobSpec, RunContext, RunOutcome, Scheduler, ShutdownMode,
};
use backup_core::{
    BackupOptions, EtcdSnapshotter, EtcdTls, Hook, Hooks, KeepPolicy, OnError, Repository,
};
use backup_sinks::object_store::{ExportTarget, ObjectStoreOptions, ObjectStoreSink};

fn command_hook(variable: &str, default: &[&str]) -> Hook {
    let argv: Vec<String> = match std::env::var(variable) {
        Ok(line) => line.split_whitespace().map(str::to_string).collect(),
        Err(_) => default.iter().map(|word| word.to_string()).collect(),
    };
    Hook::command(argv).with_timeout(Duration::from_secs(120))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .ok_or("usage: etcd_to_s3 ENDPOINT s3://BUCKET/PREFIX [--once]")?;
    let location = args
        .next()
        .ok_or("usage: etcd_to_s3 ENDPOINT s3://BUCKET/PREFIX [--once]")?;
    let once = args.next().as_deref() == Some("--once");
    let password = std::env::var("BACKUP_PASSWORD").map_err(|_| "set BACKUP_PASSWORD")?;

    let options = ObjectStoreOptions::default();
    let sink = Arc::new(ObjectStoreSink::from_url(&location, &options)?);
    let repo = Arc::new(Repository::open(sink, Some(password.as_bytes())).await?);

    let mut etcd = EtcdSnapshotter::new([endpoint]);
    if let Ok(ca) = std::env::var("ETCD_CACERT") {
        etcd = etcd.with_tls(EtcdTls::new(
            Some(ca.into()),
            std::env::var("ETCD_CERT").ok().map(Into::into),
            std::env::var("ETCD_KEY").ok().map(Into::into),
        ));
    }
    // Pause before, resume after: the after hook runs even when the
    // snapshot fails or the run is cancelled.
    let hooks = Hooks::new()
        .before(command_hook(
            "PAUSE_COMMAND",
            &[
                "kubectl",
                "annotate",
                "hostedcluster/hc",
                "--overwrite",
                "pause=true",
            ],
        ))
        .before(command_hook(
            "SCALE_DOWN_COMMAND",
            &["kubectl", "scale", "deploy/kube-apiserver", "--replicas=0"],
        ))
        .after(
            command_hook(
                "SCALE_UP_COMMAND",
                &["kubectl", "scale", "deploy/kube-apiserver", "--replicas=3"],
            )
            .with_on_error(OnError::Continue),
        )
        .after(command_hook(
            "RESUME_COMMAND",
            &[
                "kubectl",
                "annotate",
                "hostedcluster/hc",
                "--overwrite",
                "pause-",
            ],
        ));
    let source = Arc::new(hooks.around(etcd));
    let keep = KeepPolicy {
        keep_last: Some(12),
        keep_daily: Some(7),
        ..KeepPolicy::default()
    };

    if once {
        let summary = repo
            .backup(source.as_ref(), BackupOptions::default().with_set("etcd"))
            .await?;
        println!(
            "backup {} at revision {}",
            summary.id.short(),
            summary.manifest.facts["revision"]
        );
        let latest = repo.find_backup("latest", Some("etcd")).await?;
        let target = ExportTarget::from_url(
            &format!("{}/exports/latest.db", location.trim_end_matches('/')),
            &options,
        )?;
        target
            .write(repo.open_file(&latest, "etcd.db").await?)
            .await?;
        println!(
            "restoreSnapshotURL: {}",
            target.presign_get(Duration::from_secs(3600)).await?
        );
        return Ok(());
    }

    let runner = {
        let repo = Arc::clone(&repo);
        runner_fn(move |job: &JobSpec<()>, context: RunContext| {
            let (repo, source, keep) = (Arc::clone(&repo), Arc::clone(&source), keep.clone());
            let set = job.name().to_owned();
            async move {
                let options = BackupOptions::default()
                    .with_set(set)
                    .with_writer("hosted-control-plane")
                    .with_check_collision(true)
                    .with_cancellation(context.cancellation().clone());
                match run_backup_job(&repo, source.as_ref(), options, &keep, None).await {
                    Ok(report) => Ok(RunOutcome::with_message(report.to_string())),
                    Err(error) => Err(JobFailure::from(error)),
                }
            }
        })
    };
    let scheduler = Scheduler::builder(runner)
        .job(JobSpec::new("etcd", "0 0 */2 * * *", ())?)
        .start()?;
    tokio::signal::ctrl_c().await?;
    scheduler.shutdown(ShutdownMode::Cancel).await;
    Ok(())
}
