//! The snapshotter conformance suite: checks that a [`Snapshotter`] keeps
//! the [contract](Snapshotter#contract), against a real source.
//!
//! A source's test implements [`SnapshotterFixture`] (a working
//! snapshotter, failing ones with the store's message each must give, the
//! facts its manifests must hold, how to see temporary snapshots left
//! behind, and how to check that a stored view is consistent) and calls
//! [`run_snapshotter_suite`]. Each check panics with a message naming it.
//!
//! The checks:
//! * a backup succeeds; its manifest names the snapshotter's kind and
//!   holds every expected fact; the stored view passes the fixture's
//!   consistency check; nothing is left behind; verify is clean;
//! * each failing source fails the backup with the store's own message, and
//!   leaves the repository as it was (nothing new listed, verify clean) and
//!   nothing behind;
//! * a before hook that fails stops the backup the same way, and the after
//!   hook still runs; after a stored backup the after hook runs too;
//! * a backup whose future is dropped once the snapshot is taken leaves
//!   nothing behind and nothing listed, and its after hook runs.

// Panicking with the check's name is how the suite reports.
#![allow(clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Hook, HookPoint, Hooks, Snapshot, Snapshotter};
use crate::format::manifest::Backup;
use crate::repository::{InitOptions, Repository};
use crate::sink::MemorySink;
use crate::{BackupOptions, Id, VerifyOptions};

/// A failing source for the suite: a name for messages, the snapshotter,
/// and text its error must contain (the store's own message).
pub struct FailingSource {
    /// What fails: `server down`, `wrong password`.
    pub case: String,
    /// The snapshotter of the failing source.
    pub snapshotter: Box<dyn Snapshotter>,
    /// Text the backup's error must contain.
    pub message: String,
}

/// What the suite needs to know of a source.
#[async_trait]
pub trait SnapshotterFixture: Send + Sync {
    /// A snapshotter of the working source.
    fn working(&self) -> Box<dyn Snapshotter>;

    /// Snapshotters of failing sources (server down, wrong credentials, a
    /// command exiting non-zero).
    fn failing(&self) -> Vec<FailingSource>;

    /// Facts every manifest of this source holds.
    fn expected_facts(&self) -> Vec<&'static str>;

    /// Temporary snapshots, processes or files the snapshotter left on the
    /// source: empty when it cleaned up.
    async fn leftovers(&self) -> Vec<String>;

    /// Checks that `backup` holds one consistent view of the source
    /// (restoring it as a user would); `Err` says what is wrong.
    async fn check_consistent(&self, repo: &Repository, backup: &Backup) -> Result<(), String>;
}

async fn memory_repo() -> Repository {
    Repository::init(Arc::new(MemorySink::new()), InitOptions::default())
        .await
        .expect("creating an in-memory repository")
}

async fn listed(repo: &Repository) -> Vec<Id> {
    repo.list()
        .await
        .expect("listing backups")
        .into_iter()
        .map(|backup| backup.id)
        .collect()
}

async fn assert_clean(check: &str, fixture: &dyn SnapshotterFixture, repo: &Repository) {
    // Clean-up may run on a thread of its own (a dropped backup): give it a
    // moment before judging.
    let mut left = fixture.leftovers().await;
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = fixture.leftovers().await;
    }
    assert!(
        left.is_empty(),
        "{check}: the snapshotter left {left:?} behind"
    );
    let report = repo
        .verify(&VerifyOptions::default().with_read_data(true))
        .await
        .expect("verify runs");
    assert!(report.is_ok(), "{check}: verify found {:?}", report.errors);
}

/// A hook that counts its after runs.
fn counting_after() -> (Hook, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let hook = Hook::callback(move |point| {
        let seen = seen.clone();
        Box::pin(async move {
            if matches!(point, HookPoint::After { .. }) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    });
    (hook, count)
}

async fn wait_for(count: &AtomicUsize, wanted: usize) -> bool {
    for _ in 0..100 {
        if count.load(Ordering::SeqCst) >= wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Signals when the inner snapshot has been taken.
struct Signalling {
    inner: Box<dyn Snapshotter>,
    taken: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Snapshotter for Signalling {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    async fn snapshot(&self) -> crate::Result<Snapshot> {
        let snapshot = self.inner.snapshot().await?;
        self.taken.notify_one();
        Ok(snapshot)
    }
}

/// Runs every check of the suite against `fixture`'s source.
///
/// # Panics
///
/// With the name of the first check that fails and why.
pub async fn run_snapshotter_suite(fixture: &dyn SnapshotterFixture) {
    let repo = memory_repo().await;

    // A stored view.
    let working = fixture.working();
    let kind = working.kind().to_string();
    let summary = repo
        .backup(working.as_ref(), BackupOptions::default())
        .await
        .unwrap_or_else(|error| panic!("backup of a working {kind} source failed: {error}"));
    let manifest = &summary.manifest;
    assert_eq!(
        manifest.source.kind, kind,
        "the manifest names the snapshotter's kind"
    );
    for fact in fixture.expected_facts() {
        let value = manifest.facts.get(fact);
        assert!(
            value.is_some_and(|value| !value.is_null()),
            "the manifest of a {kind} backup lacks the fact {fact:?} (it has {:?})",
            manifest.facts.keys().collect::<Vec<_>>()
        );
    }
    let backup = repo
        .load_backup(&summary.id)
        .await
        .expect("loading the backup");
    if let Err(why) = fixture.check_consistent(&repo, &backup).await {
        panic!("the stored {kind} view is not consistent: {why}");
    }
    assert_clean("after a stored backup", fixture, &repo).await;
    let before = listed(&repo).await;

    // Failing sources.
    for failing in fixture.failing() {
        let outcome = repo
            .backup(failing.snapshotter.as_ref(), BackupOptions::default())
            .await;
        match outcome {
            Ok(summary) => panic!("{}: the backup succeeded ({})", failing.case, summary.id),
            Err(error) => {
                let text = error.to_string();
                assert!(
                    text.contains(&failing.message),
                    "{}: the error should carry {:?}, and is: {text}",
                    failing.case,
                    failing.message
                );
            }
        }
        assert_eq!(
            listed(&repo).await,
            before,
            "{}: a backup was listed",
            failing.case
        );
        assert_clean(&failing.case, fixture, &repo).await;
    }

    // A failing before hook; the after hook still runs.
    let (after, count) = counting_after();
    let hooked = Hooks::new()
        .before(Hook::command(["false"]))
        .after(after.clone())
        .around(fixture.working());
    let error = repo
        .backup(&hooked, BackupOptions::default())
        .await
        .expect_err("a failing before hook fails the backup");
    assert!(
        error.to_string().contains("before hook"),
        "the error names the hook: {error}"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the after hook ran after the failed before hook"
    );
    assert_eq!(
        listed(&repo).await,
        before,
        "a failing before hook: a backup was listed"
    );
    assert_clean("a failing before hook", fixture, &repo).await;

    // A stored backup runs the after hook.
    let (after, count) = counting_after();
    let hooked = Hooks::new().after(after).around(fixture.working());
    let stored = repo
        .backup(&hooked, BackupOptions::default())
        .await
        .unwrap_or_else(|error| panic!("a backup with hooks failed: {error}"));
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the after hook ran after the stored backup"
    );
    let before = listed(&repo).await;
    assert!(before.contains(&stored.id));

    // A backup dropped once its snapshot is taken.
    let (after, count) = counting_after();
    let taken = Arc::new(tokio::sync::Notify::new());
    let signalling = Hooks::new().after(after).around(Signalling {
        inner: fixture.working(),
        taken: taken.clone(),
    });
    let backup = repo.backup(&signalling, BackupOptions::default());
    tokio::select! {
        outcome = backup => {
            // Too quick to drop mid-way: still a valid run.
            let _ = outcome;
        }
        () = taken.notified() => {}
    }
    assert!(
        wait_for(&count, 1).await,
        "the after hook ran after the backup was dropped"
    );
    let now = listed(&repo).await;
    assert!(
        now.len() <= before.len() + 1 && before.iter().all(|id| now.contains(id)),
        "a dropped backup changed the listing"
    );
    assert_clean("a dropped backup", fixture, &repo).await;
}
