//! The backup operation: snapshot, archive, manifest last.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::archiver::{Archiver, ChunkArchiver};
use crate::engine::inflight::InflightGuard;
use crate::engine::*;
use crate::format::envelope::ObjectKind;
use crate::format::manifest::{Backup, BackupStatus, Manifest};
use crate::outcome::{ItemFailure, Status};
use crate::progress::{Phase, ProgressSink, Reporter, Tracker};
use crate::snapshot::Snapshotter;
use crate::{Error, Id, Result};
use tokio_util::sync::CancellationToken;

/// Which earlier backup to compare files against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParentSelection {
    /// The newest completed backup of the same set.
    #[default]
    Latest,
    /// Read every file again.
    None,
    /// This backup.
    Id(Id),
}

/// Options for [`Repository::backup`](crate::Repository::backup).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackupOptions {
    /// Name of the backup set.
    pub set: String,
    /// Tags recorded in the manifest.
    pub tags: BTreeMap<String, String>,
    /// The time the backup represents (default: now).
    pub time: Option<DateTime<Utc>>,
    /// Writer identity, recorded on the backup and compared by the
    /// collision check; see [`BackupOptions::with_writer`] for the default.
    pub writer: Option<String>,
    /// The parent used to skip unchanged files.
    pub parent: ParentSelection,
    /// Refuse to write when the newest backup of the set was written by
    /// another writer ([`Error::Collision`]); scheduled backups set this.
    pub check_collision: bool,
    /// Where progress events go.
    pub progress: Option<ProgressSink>,
    /// Cancels the backup: it stops, releases the snapshot, removes its
    /// in-flight marker and returns [`Error::Cancelled`].
    pub cancellation: Option<CancellationToken>,
}

impl BackupOptions {
    /// Names the backup set (default `default`).
    pub fn with_set(mut self, set: impl Into<String>) -> Self {
        self.set = set.into();
        self
    }

    /// Sets the tags recorded in the manifest.
    pub fn with_tags(mut self, tags: BTreeMap<String, String>) -> Self {
        self.tags = tags;
        self
    }

    /// Adds a tag recorded in the manifest.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the time the backup represents (default: when it starts).
    pub fn with_time(mut self, time: DateTime<Utc>) -> Self {
        self.time = Some(time);
        self
    }

    /// Sets the writer identity: a name that stays the same from one run to
    /// the next of whoever writes this set (for example the cluster's name or
    /// id), recorded on the backup and compared by the collision check. The
    /// host is recorded beside it, whatever the writer.
    ///
    /// Without one, the writer is the `BACKUP_WRITER` environment variable
    /// when set, else the host name, except in Kubernetes (the
    /// `KUBERNETES_SERVICE_HOST` variable is set): there the host name is the
    /// pod's, new on every run of a CronJob, so a backup that checks for
    /// collisions fails with [`Error::InvalidArgument`] until a writer is
    /// given. In a CronJob, set `BACKUP_WRITER` in the pod's environment
    /// (for example to the cluster's name); an operator passes the id of the
    /// resource it backs up with this method.
    pub fn with_writer(mut self, writer: impl Into<String>) -> Self {
        self.writer = Some(writer.into());
        self
    }

    /// Chooses the earlier backup whose unchanged files are not read again.
    pub fn with_parent(mut self, parent: ParentSelection) -> Self {
        self.parent = parent;
        self
    }

    /// Refuses to write when the newest backup of the set was written by another writer.
    pub fn with_check_collision(mut self, check: bool) -> Self {
        self.check_collision = check;
        self
    }
}

progress_and_cancellation_setters!(BackupOptions, "the backup");

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            set: "default".into(),
            tags: BTreeMap::new(),
            time: None,
            writer: None,
            parent: ParentSelection::Latest,
            check_collision: false,
            progress: None,
            cancellation: None,
        }
    }
}

/// What [`Repository::backup`](crate::Repository::backup) reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackupSummary {
    /// The new backup's id.
    pub id: Id,
    /// [`Status::Completed`], or [`Status::PartiallyFailed`] when some
    /// items could not be read (they are in `failures`; the backup holds
    /// everything else). A backup that fails is an error, and no backup.
    pub status: Status,
    /// The items not backed up, with the kind of failure (the manifest
    /// records their paths and messages).
    pub failures: Vec<ItemFailure>,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Runs a backup with `archiver` (the repository's default archiver when
/// `None`); see [`Repository::backup`](crate::Repository::backup).
pub(crate) async fn run(
    engine: &Arc<Engine>,
    archiver: Option<&Arc<dyn Archiver>>,
    snapshotter: &dyn Snapshotter,
    options: BackupOptions,
) -> Result<BackupSummary> {
    validate_set_name(&options.set)?;
    let writer = writer_identity(options.writer.as_deref(), options.check_collision, |name| {
        std::env::var(name).ok()
    })?;
    // Announce the backup before reading the index, so that a prune
    // running meanwhile never deletes data this backup deduplicates
    // against (see `crate::prune`).
    let inflight = InflightGuard::register(engine, &writer).await?;
    let tracker = Tracker::new("backup");
    let reporter = Reporter::start(tracker.clone(), options.progress.clone());
    let outcome = backup_registered(engine, archiver, snapshotter, options, writer, tracker).await;
    inflight.release().await;
    reporter.finish(match &outcome {
        Ok(summary) if summary.manifest.status == BackupStatus::Completed => Phase::Completed,
        Ok(_) => Phase::PartiallyFailed,
        Err(_) => Phase::Failed,
    });
    outcome
}

async fn backup_registered(
    engine: &Arc<Engine>,
    archiver: Option<&Arc<dyn Archiver>>,
    snapshotter: &dyn Snapshotter,
    options: BackupOptions,
    writer: String,
    tracker: Arc<Tracker>,
) -> Result<BackupSummary> {
    let started = Utc::now();
    let clock = std::time::Instant::now();
    let token = options.cancellation.clone();
    let parent = cancellable(token.as_ref(), "backup", async {
        // The index loaded on open may be older than the in-flight marker:
        // read what was written since.
        engine.refresh_index().await?;
        engine.index_unindexed_packs().await?;
        let newest = engine.newest(Some(&options.set)).await?;
        if options.check_collision {
            check_collision(&options.set, &writer, newest.as_ref())?;
        }
        Ok(match &options.parent {
            ParentSelection::None => None,
            ParentSelection::Id(id) => Some(engine.load_backup(id).await?),
            ParentSelection::Latest => newest,
        })
    })
    .await?;
    let mut snapshot = cancellable(token.as_ref(), "backup", snapshotter.snapshot()).await?;
    let finisher = snapshot.take_finisher();
    let entries = std::mem::take(&mut snapshot.entries);
    let mut paths = Vec::new();
    let (mut listed_files, mut listed_bytes, mut sized) = (0u64, 0u64, 0usize);
    for entry in &entries {
        match entry {
            crate::snapshot::Entry::Path {
                path, selection, ..
            } => {
                paths.push((path.clone(), selection.clone()));
                sized += 1;
            }
            crate::snapshot::Entry::Files { files, .. } => {
                listed_files += files.len() as u64;
                listed_bytes += files.iter().map(|file| file.size).sum::<u64>();
                sized += 1;
            }
            crate::snapshot::Entry::Stream { .. } | crate::snapshot::Entry::Tar { .. } => {}
        }
    }
    // Streams have no size known in advance; trees are counted beside
    // the backup, so that it starts at once; listed files are known.
    let scanner = (options.progress.is_some() && sized == entries.len()).then(|| {
        let tracker = tracker.clone();
        tokio::spawn(async move {
            let (files, bytes) = crate::progress::scan_totals(paths).await;
            tracker.set_totals(files + listed_files, bytes + listed_bytes);
        })
    });
    let parent_root = parent.as_ref().map(|p| p.manifest.root.as_slice());
    let default;
    let archiver: &dyn Archiver = match archiver {
        Some(archiver) => archiver.as_ref(),
        None => {
            default = ChunkArchiver::new(engine.clone()).with_tracker(tracker);
            &default
        }
    };
    // Cancelled or not, the snapshot is released.
    let archived = cancellable(
        token.as_ref(),
        "backup",
        archiver.archive(entries, parent_root),
    )
    .await;
    let mut facts = snapshot.facts;
    let finished_facts = match finisher {
        Some(finisher) => finisher.finish(archived.is_ok()).await,
        None => Ok(BTreeMap::new()),
    };
    if let Some(scanner) = scanner {
        scanner.abort();
    }
    let archived = archived?;
    facts.extend(finished_facts?);
    if token.as_ref().is_some_and(CancellationToken::is_cancelled) {
        return Err(Error::Cancelled {
            operation: "backup",
        });
    }
    if options.check_collision {
        // Another writer may have finished while this one ran.
        check_collision(
            &options.set,
            &writer,
            engine.newest(Some(&options.set)).await?.as_ref(),
        )?;
    }
    let mut stats = archived.stats;
    stats.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let manifest = Manifest {
        version: archived.manifest_version,
        set: options.set,
        time: options.time.unwrap_or(started),
        started,
        finished: Utc::now(),
        writer,
        hostname: hostname(),
        source: snapshot.source,
        tags: options.tags,
        root: archived.root,
        parent: parent.map(|p| p.id),
        facts,
        stats,
        status: if archived.errors.is_empty() {
            BackupStatus::Completed
        } else {
            BackupStatus::PartiallyFailed
        },
        errors: archived.errors.clone(),
    };
    let json = serde_json::to_vec(&manifest)
        .map_err(|error| Error::InvalidArgument(format!("encoding manifest: {error}")))?;
    let id = engine
        .put_named(MANIFEST_PREFIX, ObjectKind::Manifest, &json)
        .await?;
    Ok(BackupSummary {
        id,
        status: match manifest.status {
            BackupStatus::Completed => Status::Completed,
            BackupStatus::PartiallyFailed => Status::PartiallyFailed,
        },
        failures: archived.errors,
        manifest,
    })
}

/// The environment variable naming the writer when options do not.
pub(crate) const WRITER_VARIABLE: &str = "BACKUP_WRITER";

/// The writer identity: `given`, else the `BACKUP_WRITER` variable of
/// `environment`, else the host name, which is not stable in Kubernetes: a
/// collision check there needs one of the others.
fn writer_identity(
    given: Option<&str>,
    check_collision: bool,
    environment: impl Fn(&str) -> Option<String>,
) -> Result<String> {
    let named = |text: String| {
        let text = text.trim().to_string();
        (!text.is_empty()).then_some(text)
    };
    if let Some(writer) = given.map(str::to_string).and_then(named) {
        return Ok(writer);
    }
    if let Some(writer) = environment(WRITER_VARIABLE).and_then(named) {
        return Ok(writer);
    }
    if check_collision && environment("KUBERNETES_SERVICE_HOST").is_some() {
        return Err(Error::InvalidArgument(format!(
            "the collision check needs a stable writer id, and in Kubernetes the host name is \
             the pod's, new on every run: set {WRITER_VARIABLE} (for example to the cluster's \
             name) or give the writer in the backup options"
        )));
    }
    Ok(hostname())
}

/// Fails with [`Error::Collision`] when the newest backup of the set was
/// written by someone else.
fn check_collision(set: &str, writer: &str, newest: Option<&Backup>) -> Result<()> {
    match newest {
        Some(backup) if backup.manifest.writer != writer => Err(Error::Collision {
            set: set.to_string(),
            writer: writer.to_string(),
            other_writer: backup.manifest.writer.clone(),
            backup: backup.id.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn the_writer_is_given_then_from_the_environment_then_the_host() {
        let k8s = [("KUBERNETES_SERVICE_HOST", "10.0.0.1")];
        let k8s_named = [
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("BACKUP_WRITER", "prod-eu"),
        ];
        assert_eq!(
            writer_identity(Some("given"), true, environment(&k8s_named)).unwrap(),
            "given"
        );
        assert_eq!(
            writer_identity(None, true, environment(&k8s_named)).unwrap(),
            "prod-eu"
        );
        assert_eq!(
            writer_identity(Some(" "), true, environment(&k8s_named)).unwrap(),
            "prod-eu"
        );
        assert_eq!(
            writer_identity(None, true, environment(&[])).unwrap(),
            hostname()
        );
        // In Kubernetes the host name is only a default without collision checks.
        assert_eq!(
            writer_identity(None, false, environment(&k8s)).unwrap(),
            hostname()
        );
        let message = writer_identity(None, true, environment(&k8s))
            .unwrap_err()
            .to_string();
        assert!(message.contains("BACKUP_WRITER"), "{message}");
    }
}
