//! The runner of the schedule file's jobs: open the job's repository, build
//! its snapshotter, and hand both to the library's scheduled backup with the
//! job's set, tags, writer and retention.

use async_trait::async_trait;
use backup_core::schedule::{
    run_backup_job, BackupJobReport, JobFailure, JobRunner, JobSpec, RunContext, RunOutcome,
};
use backup_core::{BackupOptions, CancellationToken, Error, PruneOptions, Repository};
use zeroize::Zeroizing;

use super::config::JobConfig;
use crate::cli::StoreArgs;
use crate::repository::open_sink;

/// Runs [`JobConfig`] jobs: backs the job's source up into its repository
/// with the collision check on, then forgets what the job's retention does
/// not keep (in the job's own set only) and, with `--prune`, prunes.
///
/// A backup collision is reported as [`JobFailure::Collision`], which
/// pauses the job until it is resumed.
pub(crate) struct BackupJobRunner {
    store: StoreArgs,
    password: Option<Zeroizing<Vec<u8>>>,
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
    /// A runner opening repositories with the storage options `store` and
    /// `password`.
    pub(crate) fn new(store: StoreArgs, password: Option<Zeroizing<Vec<u8>>>) -> Self {
        BackupJobRunner {
            store,
            password,
            prune: None,
        }
    }

    /// Also prune after retention, with these options.
    pub(crate) fn with_prune(mut self, options: PruneOptions) -> Self {
        self.prune = Some(options);
        self
    }

    async fn run_job(
        &self,
        config: &JobConfig,
        cancellation: CancellationToken,
    ) -> Result<BackupJobReport, Error> {
        let sink = open_sink(&config.repository, &self.store).await?;
        let repo = Repository::open(
            sink,
            self.password.as_ref().map(|password| password.as_slice()),
        )
        .await?;
        let snapshotter = config.source.snapshotter(&config.hooks)?;
        let options = {
            let mut options = BackupOptions::default();
            options.set = config.set_name().to_string();
            options.tags = config.tags.clone();
            options.writer = config.writer.clone();
            options.check_collision = true;
            options.with_cancellation(cancellation.clone())
        };
        let prune = self
            .prune
            .clone()
            .map(|prune| prune.with_cancellation(cancellation));
        run_backup_job(
            &repo,
            snapshotter.as_ref(),
            options,
            &config.retention.keep_policy(),
            prune.as_ref(),
        )
        .await
    }
}

#[async_trait]
impl JobRunner<JobConfig> for BackupJobRunner {
    async fn run(
        &self,
        job: &JobSpec<JobConfig>,
        context: RunContext,
    ) -> Result<RunOutcome, JobFailure> {
        // On shutdown the backup stops: it records nothing, removes its
        // in-flight marker, and what it uploaded is reused by the next run.
        let report = self
            .run_job(job.payload(), context.cancellation().clone())
            .await?;
        Ok(RunOutcome::with_message(report.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use backup_core::schedule::{
        Clock, JobFailure, JobRunner, ManualClock, RunContext, RunTrigger,
    };
    use backup_core::{InitOptions, LocalSink, PruneOptions, Repository, Sink};
    use zeroize::Zeroizing;

    use super::BackupJobRunner;
    use crate::cli::StoreArgs;
    use crate::commands::schedule::config::ScheduleConfig;

    /// Two jobs on one repository, `files` keeping 2 backups and `other`
    /// keeping everything, both written by `writer`.
    fn config(repo: &Path, source: &Path, writer: &str) -> ScheduleConfig {
        ScheduleConfig::from_toml_str(&format!(
            "[[job]]\nname = \"files\"\ncron = \"0 */2 * * *\"\nrepository = \"{}\"\nwriter = \"{writer}\"\n\
             source = {{ type = \"directory\", paths = [\"{}\"] }}\nretention = {{ keep_last = 2 }}\n\n\
             [[job]]\nname = \"other\"\ncron = \"0 */2 * * *\"\nrepository = \"{}\"\nwriter = \"{writer}\"\n\
             source = {{ type = \"directory\", paths = [\"{}\"] }}\n",
            repo.display(),
            source.display(),
            repo.display(),
            source.display()
        ))
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runner_backs_up_applies_retention_per_set_and_reports_collisions() {
        let place = tempfile::tempdir().unwrap();
        let repo_dir = place.path().join("repo");
        let source = place.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        let sink: Arc<dyn Sink> = Arc::new(LocalSink::create(&repo_dir).unwrap());
        Repository::init(sink.clone(), InitOptions::default())
            .await
            .unwrap();
        let runner = BackupJobRunner::new(StoreArgs::default(), None);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(chrono::Utc::now()));
        let context = || RunContext::new("files", RunTrigger::Manual, clock.clone());

        let jobs = config(&repo_dir, &source, "cluster-a").job_specs().unwrap();
        let (files, other) = (&jobs[0], &jobs[1]);
        let outcome = runner.run(other, context()).await.unwrap();
        let message = outcome.message.unwrap();
        assert!(message.starts_with("backup "), "{message}");
        assert!(
            !message.contains("forgot"),
            "no retention, nothing forgotten: {message}"
        );
        for round in 0..4 {
            std::fs::write(source.join("data.txt"), format!("round {round}")).unwrap();
            let outcome = runner.run(files, context()).await.unwrap();
            let message = outcome.message.unwrap();
            let forgot = if round < 2 {
                "; forgot 0"
            } else {
                "; forgot 1"
            };
            assert!(message.ends_with(forgot), "round {round}: {message}");
        }
        let repo = Repository::open(sink.clone(), None).await.unwrap();
        let backups = repo.list().await.unwrap();
        let in_set = |set: &str| backups.iter().filter(|b| b.manifest.set == set).count();
        assert_eq!(
            in_set("files"),
            2,
            "keep_last = 2 applied after each success"
        );
        assert_eq!(
            in_set("other"),
            1,
            "retention never touches another job's set"
        );
        assert!(backups
            .iter()
            .all(|backup| backup.manifest.writer == "cluster-a"));

        // Another writer on the same set: a collision naming both, nothing written.
        let jobs_b = config(&repo_dir, &source, "cluster-b").job_specs().unwrap();
        let failure = runner.run(&jobs_b[0], context()).await.unwrap_err();
        match failure {
            JobFailure::Collision { message } => {
                assert!(
                    message.contains("cluster-a") && message.contains("cluster-b"),
                    "{message}"
                );
            }
            other => panic!("expected a collision, got {other:?}"),
        }
        assert_eq!(repo.list().await.unwrap().len(), 3);

        // With --prune, the prune's result follows the retention's.
        let runner = runner.with_prune(PruneOptions::default());
        std::fs::write(source.join("data.txt"), "round 4").unwrap();
        let message = runner.run(files, context()).await.unwrap().message.unwrap();
        assert!(message.contains("; forgot 1; pruned "), "{message}");
    }

    #[tokio::test]
    async fn a_missing_repository_is_a_failure_not_a_collision() {
        let place = tempfile::tempdir().unwrap();
        let source = place.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        let runner = BackupJobRunner::new(StoreArgs::default(), None);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(chrono::Utc::now()));
        let jobs = config(&place.path().join("nowhere"), &source, "cluster-a")
            .job_specs()
            .unwrap();
        let failure = runner
            .run(
                &jobs[0],
                RunContext::new("files", RunTrigger::Manual, clock),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&failure, JobFailure::Failed(message) if message.contains("no repository found")),
            "{failure:?}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        const PASSWORD: &str = "hunter2-very-secret-passphrase";
        let runner = BackupJobRunner::new(
            StoreArgs::default(),
            Some(Zeroizing::new(PASSWORD.as_bytes().to_vec())),
        );
        let shown = format!("{runner:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        let bytes = format!("{:?}", PASSWORD.as_bytes());
        assert!(!shown.contains(&bytes[1..20]), "{shown}");
    }
}
