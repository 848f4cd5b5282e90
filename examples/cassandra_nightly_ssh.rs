//! The Apigee hybrid seed: on every Cassandra node, a nightly backup of
//! the node to a remote server over SSH, keeping 7 daily and 4 weekly
//! backups, run from cron (or a CronJob) on the node itself. `--once`
//! takes one backup now; `--restore DATA_DIR CASSANDRA_YAML` puts the
//! node's newest backup into a stopped, empty node with its tokens.
//!
//! ```sh
//! export BACKUP_PASSWORD='...' BACKUP_SSH_KEY=/etc/backup/id_ed25519
//! export BACKUP_KNOWN_HOSTS=/etc/backup/known_hosts   # the server's key, checked
//! export CASSANDRA_CLUSTER=apigee-dc1 CASSANDRA_NODE=$(hostname)
//! cargo run --example cassandra_nightly_ssh -- sftp://backup@10.0.0.9/srv/cassandra --once
//! cargo run --example cassandra_nightly_ssh -- sftp://backup@10.0.0.9/srv/cassandra \
//!     --restore /var/lib/cassandra/data /etc/cassandra/cassandra.yaml
//! ```
//!
//! `NODETOOL` (a command line, default `nodetool`) and `CASSANDRA_DATA_DIRS`
//! (colon-separated, default `/var/lib/cassandra/data`) describe the node.
//! Each node's backups are in the set `CLUSTER/NODE`; the repository must
//! exist (`backupctl init`).

use backup_core::schedule::{
    run_backup_job, runner_fn, JobFailure, JobSpec, RunContext, RunOutcome, Scheduler, ShutdownMode,
};
use backup_core::{
    describe_node, BackupOptions, CassandraNode, CassandraRestorer, CassandraSnapshotter,
    KeepPolicy, Repository,
};
use backup_sinks::{open_sink, read_password, StorageOptions};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: cassandra_nightly_ssh REPOSITORY_URL [--once | --restore DATA_DIR YAML]";
    let location = args.next().ok_or(usage)?;
    let mode = args.next();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let cluster = env("CASSANDRA_CLUSTER", "cassandra");
    let name = env("CASSANDRA_NODE", "localhost");
    let set = format!("{cluster}/{name}");

    let options = StorageOptions::from_env();
    let sink = open_sink(&location, &options).await?;
    let password = read_password(
        std::env::var_os("BACKUP_PASSWORD_FILE")
            .as_deref()
            .map(std::path::Path::new),
    )?;
    let repo = Arc::new(Repository::open(sink, password.as_deref()).await?);

    if mode.as_deref() == Some("--restore") {
        let (data_dir, yaml) = (args.next().ok_or(usage)?, args.next().ok_or(usage)?);
        let latest = repo.find_backup("latest", Some(&set)).await?;
        let restorer = CassandraRestorer::new(data_dir).with_yaml(yaml);
        let restored = repo.restore_into(&latest, &restorer).await?;
        println!(
            "restored {} bytes into {}; start the node: its tokens are in its cassandra.yaml",
            restored.bytes,
            restored.target.display()
        );
        return Ok(());
    }

    let node = CassandraNode::new(name)
        .with_nodetool(&env("NODETOOL", "nodetool"))?
        .with_data_dirs(env("CASSANDRA_DATA_DIRS", "/var/lib/cassandra/data").split(':'));
    let source = Arc::new(CassandraSnapshotter::new(node));
    let keep = KeepPolicy {
        keep_daily: Some(7),
        keep_weekly: Some(4),
        ..KeepPolicy::default()
    };
    if mode.as_deref() == Some("--once") {
        let report = run_backup_job(
            &repo,
            source.as_ref(),
            BackupOptions::default().with_set(set.clone()),
            &keep,
            None,
        )
        .await?;
        println!("{report}");
        let latest = repo.find_backup("latest", Some(&set)).await?;
        if let Some(node) = describe_node(&latest.manifest.facts) {
            println!("{node}");
        }
        return Ok(());
    }

    let runner = {
        let repo = Arc::clone(&repo);
        runner_fn(move |_job: &JobSpec<()>, context: RunContext| {
            let (repo, source, keep, set) = (
                Arc::clone(&repo),
                Arc::clone(&source),
                keep.clone(),
                set.clone(),
            );
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
        .job(JobSpec::new("cassandra", "0 0 2 * * *", ())?)
        .start()?;
    tokio::signal::ctrl_c().await?;
    scheduler.shutdown(ShutdownMode::Cancel).await;
    Ok(())
}
