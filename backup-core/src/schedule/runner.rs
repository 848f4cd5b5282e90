//! The job runner that makes scheduled backups: backup (refusing to write
//! over another writer's set), then retention.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use super::{
    JobConfig, JobFailure, JobRunner, JobSpec, RetentionConfig, RunContext, RunOutcome,
    SourceConfig,
};
use crate::retention::{CalendarDuration, KeepPolicy};
use crate::snapshot::{CommandSnapshotter, DirectorySnapshotter, Snapshotter};
use crate::{BackupOptions, Error, PruneOptions, Repository, Result, Sink};

/// Opens the sink for a repository URL or path, as the front end reads it.
pub type SinkOpener =
    Arc<dyn Fn(String) -> futures::future::BoxFuture<'static, Result<Arc<dyn Sink>>> + Send + Sync>;

/// Runs [`JobConfig`] jobs: opens the job's repository, backs its source up
/// with the collision check on, then forgets what the job's retention does
/// not keep (in the job's own set only) and, when configured, prunes.
///
/// A backup collision ([`Error::Collision`]) is reported as
/// [`JobFailure::Collision`], which pauses the job until it is resumed.
pub struct BackupJobRunner {
    open_sink: SinkOpener,
    password: Option<zeroize::Zeroizing<Vec<u8>>>,
    prune: Option<PruneOptions>,
}

impl std::fmt::Debug for BackupJobRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupJobRunner")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("prune", &self.prune)
            .finish_non_exhaustive()
    }
}

impl BackupJobRunner {
    /// A runner opening repositories with `open_sink` and `password`.
    pub fn new(open_sink: SinkOpener, password: Option<Vec<u8>>) -> Self {
        BackupJobRunner {
            open_sink,
            password: password.map(zeroize::Zeroizing::new),
            prune: None,
        }
    }

    /// Also prune after retention, with these options.
    pub fn with_prune(mut self, options: PruneOptions) -> Self {
        self.prune = Some(options);
        self
    }

    async fn run_job(&self, config: &JobConfig) -> Result<String> {
        let sink = (self.open_sink)(config.repository.clone()).await?;
        let repo = Repository::open(
            sink,
            self.password.as_ref().map(|password| password.as_slice()),
        )
        .await?;
        let snapshotter: Box<dyn Snapshotter> = match &config.source {
            SourceConfig::Directory { paths } => Box::new(DirectorySnapshotter::new(paths.clone())),
            SourceConfig::Command { command, file_name } => {
                let snapshotter = CommandSnapshotter::from_command_line(command)?;
                Box::new(match file_name {
                    Some(name) => snapshotter.with_file_name(name.clone()),
                    None => snapshotter,
                })
            }
        };
        let set = config.set_name().to_string();
        let options = BackupOptions {
            set: set.clone(),
            tags: config.tags.clone(),
            writer: config.writer.clone(),
            check_collision: true,
            ..BackupOptions::default()
        };
        let summary = repo.backup(snapshotter.as_ref(), options).await?;
        let mut message = format!(
            "backup {}: {} files, {} bytes added",
            summary.id.short(),
            summary.manifest.stats.files,
            summary.manifest.stats.bytes_added
        );
        let policy = keep_policy(&config.retention);
        if !policy.is_empty() {
            let decisions = repo
                .forget_matching(&policy, Utc::now(), false, |backup| {
                    backup.manifest.set == set
                })
                .await?;
            let forgotten = decisions
                .iter()
                .filter(|(_, decision)| !decision.keep)
                .count();
            message.push_str(&format!("; forgot {forgotten}"));
            if let Some(prune) = &self.prune {
                let report = repo.prune(prune).await?;
                message.push_str(&format!("; pruned {} bytes", report.bytes_deleted));
            }
        }
        Ok(message)
    }
}

/// The [`KeepPolicy`] for a job's retention settings.
pub fn keep_policy(config: &RetentionConfig) -> KeepPolicy {
    let hours = |duration: &super::HumanDuration| CalendarDuration {
        years: 0,
        months: 0,
        days: 0,
        hours: u32::try_from(duration.get().as_secs().div_ceil(3600)).unwrap_or(u32::MAX),
    };
    KeepPolicy {
        keep_last: config.keep_last.map(i64::from),
        keep_hourly: config.keep_hourly.map(i64::from),
        keep_daily: config.keep_daily.map(i64::from),
        keep_weekly: config.keep_weekly.map(i64::from),
        keep_monthly: config.keep_monthly.map(i64::from),
        keep_yearly: config.keep_yearly.map(i64::from),
        keep_within: config.keep_within.as_ref().map(hours),
        ttl: config.ttl.as_ref().map(hours),
        ..KeepPolicy::default()
    }
}

#[async_trait]
impl JobRunner<JobConfig> for BackupJobRunner {
    async fn run(
        &self,
        job: &JobSpec<JobConfig>,
        context: RunContext,
    ) -> std::result::Result<RunOutcome, JobFailure> {
        let outcome = tokio::select! {
            outcome = self.run_job(job.payload()) => outcome,
            // Dropping a backup part way is safe: nothing is recorded, and
            // what was uploaded is reused by the next run.
            () = context.cancelled() => return Err(JobFailure::Failed("cancelled by shutdown".into())),
        };
        match outcome {
            Ok(message) => Ok(RunOutcome {
                message: Some(message),
            }),
            Err(error @ Error::Collision { .. }) => Err(JobFailure::Collision {
                message: error.to_string(),
            }),
            Err(error) => Err(JobFailure::Failed(error.to_string())),
        }
    }
}
