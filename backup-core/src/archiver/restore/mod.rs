//! Restoring a backup's tree to a local directory.
//!
//! Safety rules, in order of importance:
//!
//! 1. Nothing is written outside the target directory. Names come from
//!    validated trees (no `/`, `.`, `..`), and every directory on the way to
//!    a file is checked to be a real directory, not a symlink, before it is
//!    entered; files are created with `O_NOFOLLOW`.
//! 2. No unverified byte is written: each chunk is checked against its id
//!    before it reaches the disk, and a file is written under a temporary
//!    name and renamed into place only once it is complete and its size
//!    matches the tree.
//! 3. A damaged file does not stop the others: it is reported in
//!    [`RestoreSummary::failures`] with its path, kind and reason, and the
//!    summary's status is [`Status::PartiallyFailed`].
//!
//! The parts, in the order a restore runs them: [`select`] compiles the
//! `include` patterns, [`listings`] reads the tree's directory listings
//! (each distinct one once, within limits), [`plan`] walks them for what to
//! restore, [`batch`] restores small files from one range read of a pack
//! each, [`single`] the others file by file, and [`writer`] does the file
//! system side for both (checked directories, `O_NOFOLLOW`, temporary
//! names, renames).

mod batch;
mod listings;
mod plan;
mod select;
mod single;
mod target;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;

use crate::engine::Engine;
use crate::format::tree::Node;
use crate::outcome::{ItemFailure, Status};
use crate::progress::{Phase, Reporter, Tracker};
use crate::{Error, Id, Result};
use batch::{plan_batches, restore_batch, BatchOutcome, BATCHES_IN_FLIGHT};
pub(crate) use listings::Listings;
use plan::Plan;
pub(crate) use select::Selector;
use single::restore_singles;
pub use target::Overwrite;
use target::{delete_others, keep_existing, verify_file, Exclusion, Keep};
use writer::SafeWriter;

/// What to restore.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Glob patterns selecting what to restore; empty restores everything.
    ///
    /// A pattern is matched against the path relative to the backup's root
    /// (`data/logs/app.log`); a pattern without `/` is also matched against
    /// each name alone (`*.log`). A selected directory is restored with all
    /// it contains; the directories leading to a selected item are created.
    pub include: Vec<String>,
    /// Glob patterns (as `include`'s) of what not to restore: a matching
    /// item is left out with all it holds, as restic's `restore --exclude`.
    pub exclude: Vec<String>,
    /// As `exclude`, matching regardless of case (`--iexclude`).
    pub iexclude: Vec<String>,
    /// Which files already in the target are replaced.
    pub overwrite: Overwrite,
    /// Deletes what the target holds in each restored directory that the
    /// backup does not (and the exclude patterns do not name), as restic's
    /// `restore --delete`: the target becomes the backup. Symlinks are
    /// removed, never followed.
    pub delete: bool,
    /// Reads every restored file back and checks it against the backup's
    /// chunk ids, as restic's `restore --verify`.
    pub verify: bool,
    /// Where progress events go.
    pub progress: Option<crate::progress::ProgressSink>,
    /// Cancels the restore: it stops and returns
    /// [`Error::Cancelled`](crate::Error::Cancelled). Files finished stay;
    /// the one being written is left under its temporary name.
    pub cancellation: Option<tokio_util::sync::CancellationToken>,
}

impl RestoreOptions {
    /// Restores only what these glob patterns select.
    pub fn with_include(mut self, include: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.include = include.into_iter().map(Into::into).collect();
        self
    }

    /// Leaves out what these glob patterns select.
    pub fn with_exclude(mut self, exclude: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.exclude = exclude.into_iter().map(Into::into).collect();
        self
    }

    /// Leaves out what these glob patterns select, regardless of case.
    pub fn with_iexclude(mut self, exclude: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.iexclude = exclude.into_iter().map(Into::into).collect();
        self
    }

    /// Which files already in the target are replaced.
    pub fn with_overwrite(mut self, overwrite: Overwrite) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Deletes what the restored directories hold that the backup does not.
    pub fn with_delete(mut self, delete: bool) -> Self {
        self.delete = delete;
        self
    }

    /// Reads the restored files back and checks them.
    pub fn with_verify(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }
}

progress_and_cancellation_setters!(RestoreOptions, "the restore");

/// What a restore did: its status, counters, and the items it could not
/// restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RestoreSummary {
    /// [`Status::Completed`] when everything selected was restored,
    /// [`Status::PartiallyFailed`] when some items failed (they are in
    /// `failures`; everything else was restored), [`Status::Failed`] when
    /// every item failed.
    pub status: Status,
    /// The items not restored, sorted by path.
    pub failures: Vec<ItemFailure>,
    /// Files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Files and symlinks already in the target and left as they were
    /// ([`RestoreOptions::overwrite`]).
    pub skipped: u64,
    /// Entries deleted from the target ([`RestoreOptions::delete`]).
    pub deleted: u64,
    /// Files read back and found equal to the backup
    /// ([`RestoreOptions::verify`]).
    pub verified: u64,
}

impl Default for RestoreSummary {
    fn default() -> Self {
        RestoreSummary {
            status: Status::Completed,
            failures: Vec::new(),
            files: 0,
            dirs: 0,
            symlinks: 0,
            bytes: 0,
            skipped: 0,
            deleted: 0,
            verified: 0,
        }
    }
}

/// Restores the tree `root` below `target`; see the module documentation
/// for the rules it keeps.
pub(crate) async fn restore(
    repo: Arc<Engine>,
    root: &[Id],
    target: &Path,
    options: &RestoreOptions,
) -> Result<RestoreSummary> {
    let selector = Selector::new(&options.include)?;
    let exclusion = Exclusion::new(&options.exclude, &options.iexclude)?;
    tokio::fs::create_dir_all(target)
        .await
        .map_err(|source| Error::io("cannot create the restore target", target, source))?;
    let base = tokio::fs::canonicalize(target)
        .await
        .map_err(|source| Error::io("cannot open the restore target", target, source))?;

    let listings = Listings::read(&repo, root, Some(&selector)).await?;
    let mut plan = Plan::walk(&listings, root, &selector, &exclusion);
    if !selector.selects_everything() && plan.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no file in the backup matches {:?}",
            options.include
        )));
    }

    let skipped = keep_existing(&base, &mut plan.files, options.overwrite).await
        + keep_existing(&base, &mut plan.symlinks, options.overwrite).await;
    let mut summary = RestoreSummary {
        skipped,
        ..RestoreSummary::default()
    };

    let tracker = Tracker::new("restore");
    tracker.set_totals(
        (plan.files.len() + plan.links.len()) as u64,
        plan.files
            .iter()
            .fold(0u64, |total, file| total.saturating_add(file.node.size)),
    );
    let reporter = Reporter::start(tracker.clone(), options.progress.clone());
    let writer = Arc::new(SafeWriter::new(base.clone(), tracker));
    let mut failures = Vec::new();
    for failure in plan.failures {
        fail(&mut failures, &writer, failure);
    }

    // Parents before children: the plan was built depth first from the root.
    plan.dirs.sort_by(|a, b| a.relative.cmp(&b.relative));
    for dir in &plan.dirs {
        match writer.directory(&dir.relative).await {
            Ok(_) => summary.dirs += 1,
            Err(error) => fail(
                &mut failures,
                &writer,
                ItemFailure::of(display(&dir.relative), &error),
            ),
        }
    }

    // What `verify` reads back: each file's node, by path.
    let nodes: std::collections::HashMap<String, Node> = if options.verify {
        plan.files
            .iter()
            .map(|file| (file.relative.clone(), file.node.clone()))
            .collect()
    } else {
        std::collections::HashMap::new()
    };
    let (batches, singles) = match repo.index.read() {
        Ok(index) => plan_batches(&index, plan.files),
        Err(_) => (Vec::new(), plan.files),
    };
    let batched = futures::stream::iter(batches)
        .map(|batch| restore_batch(&repo, &writer, batch))
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .collect::<Vec<_>>();
    let (batched, mut results) = futures::join!(batched, restore_singles(&repo, &writer, singles));
    let mut again = Vec::new();
    for outcome in batched.into_iter().flatten() {
        match outcome {
            BatchOutcome::Done(relative, outcome) => results.push((relative, outcome)),
            BatchOutcome::Again(file) => again.push(file),
        }
    }
    // A blob of a batch that failed its check, or a batch whose read failed,
    // gets the single-file path: it reads again and reports the reason.
    results.extend(restore_singles(&repo, &writer, again).await);
    let mut restored = std::collections::HashSet::new();
    if options.verify {
        let checks: Vec<(String, Result<u64>)> = {
            let repo = repo.clone();
            let base = base.clone();
            let items: Vec<(String, Node)> = results
                .iter()
                .filter(|(_, outcome)| outcome.is_ok())
                .filter_map(|(relative, _)| Some((relative.clone(), nodes.get(relative)?.clone())))
                .collect();
            tokio::task::spawn_blocking(move || {
                items
                    .into_iter()
                    .map(|(relative, node)| {
                        let checked = verify_file(&repo, &base.join(&relative), &relative, &node);
                        (relative, checked.map(|()| node.size))
                    })
                    .collect()
            })
            .await
            .map_err(task_failed)?
        };
        let mut failed: std::collections::HashMap<String, Error> = checks
            .into_iter()
            .filter_map(|(relative, checked)| checked.err().map(|error| (relative, error)))
            .collect();
        for (relative, outcome) in &mut results {
            if let Some(error) = failed.remove(relative.as_str()) {
                *outcome = Err(error);
            } else if outcome.is_ok() {
                summary.verified += 1;
            }
        }
    }
    for (relative, outcome) in results {
        match outcome {
            Ok(bytes) => {
                writer.tracker.file_done();
                summary.files += 1;
                summary.bytes += bytes;
                restored.insert(relative);
            }
            Err(error) => fail(
                &mut failures,
                &writer,
                ItemFailure::of(display(&relative), &error),
            ),
        }
    }

    // Hard links, once the file they link to is in place (and before the
    // directories' times are set: a new name changes its directory's).
    for (link, first) in &plan.links {
        let outcome = if restored.contains(first) {
            writer.hard_link(first, &link.relative).await
        } else {
            Err(Error::InvalidArgument(format!(
                "not restored: it is a hard link of {first:?}, which was not restored"
            )))
        };
        match outcome {
            Ok(()) => {
                writer.tracker.file_done();
                summary.files += 1;
            }
            Err(error) => fail(
                &mut failures,
                &writer,
                ItemFailure::of(display(&link.relative), &error),
            ),
        }
    }

    for link in &plan.symlinks {
        match writer.symlink(&link.relative, &link.node).await {
            Ok(()) => summary.symlinks += 1,
            Err(error) => fail(
                &mut failures,
                &writer,
                ItemFailure::of(display(&link.relative), &error),
            ),
        }
    }

    if options.delete {
        let mut restored_dirs: Vec<(String, Vec<Id>)> = plan
            .dirs
            .iter()
            .map(|dir| {
                (
                    dir.relative.clone(),
                    dir.node.subtree.clone().unwrap_or_default(),
                )
            })
            .collect();
        if selector.selects_everything() {
            restored_dirs.push((String::new(), root.to_vec()));
        }
        for (relative, ids) in restored_dirs {
            let Ok(nodes) = listings.get(&ids) else {
                continue;
            };
            let keep = Keep {
                names: nodes.iter().map(|node| node.name.as_str()).collect(),
                excluded: &exclusion,
            };
            let deleted = match writer.directory(&relative).await {
                Ok(dir) => delete_others(&dir, &relative, &keep),
                Err(error) => Err(error),
            };
            match deleted {
                Ok(count) => summary.deleted += count,
                Err(error) => fail(
                    &mut failures,
                    &writer,
                    ItemFailure::of(display(&relative), &error),
                ),
            }
        }
    }

    // Directory modes and times last, deepest first, so that writing the
    // children neither fails on a read-only directory nor bumps its mtime.
    for dir in plan.dirs.iter().rev() {
        if let Err(error) = writer.finish_directory(&dir.relative, &dir.node).await {
            fail(
                &mut failures,
                &writer,
                ItemFailure::of(display(&dir.relative), &error),
            );
        }
    }

    let notes = writer
        .notes
        .lock()
        .map(|mut notes| std::mem::take(&mut *notes))
        .unwrap_or_default();
    for note in notes {
        fail(&mut failures, &writer, note);
    }
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    summary.status = Status::from_counts(
        summary.files + summary.dirs + summary.symlinks,
        failures.len(),
    );
    summary.failures = failures;
    reporter.finish(match summary.status {
        Status::Completed => Phase::Completed,
        Status::PartiallyFailed => Phase::PartiallyFailed,
        Status::Failed => Phase::Failed,
    });
    Ok(summary)
}

/// Records `failure` and reports it as a progress event.
fn fail(failures: &mut Vec<ItemFailure>, writer: &SafeWriter, failure: ItemFailure) {
    writer.tracker.item_failed(&failure);
    failures.push(failure);
}

fn join(relative: &str, name: &str) -> String {
    if relative.is_empty() {
        name.to_string()
    } else {
        format!("{relative}/{name}")
    }
}

/// `dir/` (or nothing for the root), for prefix tests.
fn dir_prefix(relative: &str) -> String {
    if relative.is_empty() {
        String::new()
    } else {
        format!("{relative}/")
    }
}

fn display(relative: &str) -> String {
    if relative.is_empty() {
        "/".into()
    } else {
        relative.into()
    }
}

/// The error for a restore task that ended without its outcome (a panic),
/// with `reason`.
fn task_failed(reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::io(
        "restore task failed",
        PathBuf::new(),
        std::io::Error::other(reason),
    )
}
