//! One scheduled backup, as a job runner performs it: back up, apply the
//! job's retention to its own backup set, and optionally prune.
//!
//! The scheduler leaves what a job does to its [`JobRunner`](super::JobRunner);
//! a runner whose jobs are backups calls [`run_backup_job`] with the
//! repository and snapshotter its job's payload names, and turns an error
//! into a [`JobFailure`] with [`From`] (a backup collision pauses the job).

use std::fmt;

use chrono::Utc;

use super::JobFailure;
use crate::{
    BackupOptions, BackupSummary, Error, ForgetOptions, KeepPolicy, PruneOptions, PruneReport,
    Repository, Result, Snapshotter,
};

/// What [`run_backup_job`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackupJobReport {
    /// The backup written.
    pub backup: BackupSummary,
    /// How many backups of the set the retention forgot; `None` when the
    /// retention policy is empty and was not applied.
    pub forgotten: Option<usize>,
    /// What the prune after the retention did, if one ran.
    pub prune: Option<PruneReport>,
}

impl fmt::Display for BackupJobReport {
    /// One line for a job's status: `backup 1a2b3c4d: 12 files, 4096 bytes
    /// added; forgot 1; pruned 0 bytes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backup {}: {} files, {} bytes added",
            self.backup.id.short(),
            self.backup.manifest.stats.files,
            self.backup.manifest.stats.bytes_added
        )?;
        if let Some(forgotten) = self.forgotten {
            write!(f, "; forgot {forgotten}")?;
        }
        if let Some(prune) = &self.prune {
            write!(f, "; pruned {} bytes", prune.bytes_deleted)?;
        }
        Ok(())
    }
}

/// Backs `snapshotter` up into `repository` with `options`, then, unless
/// `retention` is empty, forgets the backups of the same set (and only of
/// that set) that `retention` does not keep, and then prunes with `prune`
/// if it is given. For a PostgreSQL source (feature `postgres`), the set's
/// archived WAL (`SET/wal`) is then kept as the kept base backups need it
/// ([`WalArchive::apply_retention`](crate::WalArchive::apply_retention)).
///
/// Scheduled backups normally set [`BackupOptions::check_collision`], so
/// that a job stops rather than interleave with another writer of its set.
///
/// # Errors
///
/// The first error of the backup, the retention or the prune; a backup
/// collision is [`Error::Collision`], which [`JobFailure::from`] turns into
/// [`JobFailure::Collision`].
///
/// # Examples
///
/// ```
/// # async fn demo() -> backup_core::Result<()> {
/// use std::sync::Arc;
/// use backup_core::schedule::run_backup_job;
/// use backup_core::{BackupOptions, DirectorySnapshotter, InitOptions, KeepPolicy, MemorySink, Repository};
///
/// let place = tempfile::tempdir().unwrap();
/// std::fs::write(place.path().join("notes.txt"), b"remember the milk").unwrap();
/// let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
/// let source = DirectorySnapshotter::new(vec![place.path().to_path_buf()]);
/// let options = BackupOptions::default().with_set("notes").with_check_collision(true);
/// let keep_one = KeepPolicy { keep_last: Some(1), ..KeepPolicy::default() };
///
/// run_backup_job(&repo, &source, options.clone(), &keep_one, None).await?;
/// let report = run_backup_job(&repo, &source, options, &keep_one, None).await?;
/// assert_eq!(report.forgotten, Some(1));
/// assert!(report.to_string().ends_with("; forgot 1"));
/// assert_eq!(repo.list().await?.len(), 1);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub async fn run_backup_job(
    repository: &Repository,
    snapshotter: &dyn Snapshotter,
    options: BackupOptions,
    retention: &KeepPolicy,
    prune: Option<&PruneOptions>,
) -> Result<BackupJobReport> {
    let set = options.set.clone();
    let forget = ForgetOptions {
        cancellation: options.cancellation.clone(),
        progress: options.progress.clone(),
        ..ForgetOptions::default()
    };
    let backup = repository.backup(snapshotter, options).await?;
    let mut report = BackupJobReport {
        backup,
        forgotten: None,
        prune: None,
    };
    if retention.is_empty() {
        return Ok(report);
    }
    #[allow(unused_mut)]
    let mut decisions = repository
        .forget_matching(retention, Utc::now(), &forget, |backup| {
            backup.manifest.set == set
        })
        .await?;
    // A PostgreSQL base backup set's archived WAL follows the base backups
    // kept.
    #[cfg(feature = "postgres")]
    if snapshotter.kind() == "postgres" {
        decisions.extend(
            crate::WalArchive::new(repository, set.as_str())
                .apply_retention(&forget)
                .await?,
        );
    }
    report.forgotten = Some(
        decisions
            .iter()
            .filter(|(_, decision)| !decision.keep)
            .count(),
    );
    if let Some(prune) = prune {
        report.prune = Some(repository.prune(prune).await?);
    }
    Ok(report)
}

impl From<Error> for JobFailure {
    /// A backup collision becomes [`JobFailure::Collision`] (which pauses
    /// the job), every other error [`JobFailure::Failed`].
    fn from(error: Error) -> JobFailure {
        match error {
            error @ Error::Collision { .. } => JobFailure::collision(error),
            error => JobFailure::failed(error),
        }
    }
}
