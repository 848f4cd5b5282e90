//! Forget and prune: space is freed, kept backups stay whole, and data a
//! running backup may use is never deleted.

use std::path::Path;
use std::sync::Arc;

use backup_core::{
    Backup, BackupOptions, Decision, DirectorySnapshotter, InitOptions, LocalSink, PruneOptions,
    Repository, RestoreOptions, RetentionPolicy, Sink,
};
use backup_testkit::repo::verify_data;
use backup_testkit::rng::random_bytes;
use backup_testkit::tree::disk_usage;
use chrono::{DateTime, Utc};

/// Keeps the newest `n` backups (a stand-in policy for these tests).
struct KeepNewest(usize);

impl RetentionPolicy for KeepNewest {
    fn decide(&self, backups: &[Backup], _now: DateTime<Utc>) -> Vec<Decision> {
        let cut = backups.len().saturating_sub(self.0);
        backups
            .iter()
            .enumerate()
            .map(|(position, backup)| Decision {
                id: backup.id,
                keep: position >= cut,
                reasons: vec![],
            })
            .collect()
    }
}

/// Each generation replaces most of the data.
fn write_generation(root: &Path, generation: u64) {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("constant.bin"), random_bytes(7, 300_000)).unwrap();
    for index in 0..6u64 {
        std::fs::write(
            root.join(format!("g{generation}-{index}.bin")),
            random_bytes(generation * 100 + index + 1, 1_500_000),
        )
        .unwrap();
    }
}

async fn backup_generations(repo: &Repository, source: &Path, generations: u64) -> Vec<Backup> {
    for generation in 0..generations {
        write_generation(source, generation);
        repo.backup(
            &DirectorySnapshotter::new(vec![source.to_path_buf()]),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    }
    repo.list().await.unwrap()
}

async fn assert_restores(repo: &Repository, backups: &[Backup], place: &Path, source: &Path) {
    for backup in backups {
        let target = place.join(format!("restore-{}", backup.id.short()));
        repo.restore(backup, &target, &RestoreOptions::default())
            .await
            .unwrap();
        let entries = std::fs::read_dir(target.join("source")).unwrap().count();
        assert_eq!(entries, 7, "backup {} restores whole", backup.id.short());
    }
    let _ = source;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_then_prune_shrinks_and_keeps_what_is_kept() {
    let place = tempfile::tempdir().unwrap();
    let repo_dir = place.path().join("repo");
    let sink = Arc::new(LocalSink::create(&repo_dir).unwrap());
    let repo = Repository::init(sink, InitOptions::default())
        .await
        .unwrap();
    let source = place.path().join("source");
    let all = backup_generations(&repo, &source, 5).await;
    // Pack size is 16 MiB: make small packs visible by forcing a repack of
    // the shared pack as well as deleting whole ones.
    let before = disk_usage(&repo_dir);

    let decisions = repo
        .forget(
            &KeepNewest(2),
            Utc::now(),
            &backup_core::ForgetOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(decisions.iter().filter(|(_, d)| !d.keep).count(), 3);
    let report = repo
        .prune(&PruneOptions::default().with_grace(chrono::Duration::zero()))
        .await
        .unwrap();
    let after = disk_usage(&repo_dir);
    println!("prune: {report:?}; repository {before} -> {after} bytes");
    assert!(report.packs_deleted > 0, "{report:?}");
    assert!(
        after < before * 6 / 10,
        "the repository shrank from {before} to {after}"
    );

    let verify = verify_data(&repo).await;
    assert!(verify.is_ok(), "{:?}", verify.errors);
    assert!(verify.warnings.is_empty(), "{:?}", verify.warnings);
    let kept = repo.list().await.unwrap();
    assert_eq!(
        kept.iter().map(|b| b.id).collect::<Vec<_>>(),
        all[3..].iter().map(|b| b.id).collect::<Vec<_>>()
    );
    assert_restores(&repo, &kept, place.path(), &source).await;

    // A later backup still deduplicates against what survived.
    write_generation(&source, 4);
    let again = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.clone()]),
            BackupOptions::default().with_parent(backup_core::ParentSelection::None),
        )
        .await
        .unwrap();
    assert!(
        again.manifest.stats.bytes_added < 100_000,
        "dedup after prune: {}",
        again.manifest.stats.bytes_added
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_for_the_grace_period_and_for_running_backups() {
    let place = tempfile::tempdir().unwrap();
    let repo_dir = place.path().join("repo");
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::create(&repo_dir).unwrap());
    let repo = Repository::init(sink.clone(), InitOptions::default())
        .await
        .unwrap();
    let source = place.path().join("source");
    backup_generations(&repo, &source, 3).await;
    repo.forget(
        &KeepNewest(1),
        Utc::now(),
        &backup_core::ForgetOptions::default(),
    )
    .await
    .unwrap();

    // Default grace: marked, nothing deleted yet.
    let first = repo.prune(&PruneOptions::default()).await.unwrap();
    assert!(
        first.packs_marked > 0 && first.packs_deleted == 0 && first.marks_waiting == 1,
        "{first:?}"
    );
    assert!(verify_data(&repo).await.is_ok());

    // A backup that started before the mark is still running (its marker
    // is live): past the grace period, deletion is postponed.
    let marker = backup_core::internals::inflight::InflightMarker {
        started: Utc::now() - chrono::Duration::hours(2),
        heartbeat: Utc::now(),
        writer: "other".into(),
        hostname: "elsewhere".into(),
        pid: 1,
    };
    let object = backup_core::internals::envelope::seal(
        backup_core::internals::ObjectKind::Inflight,
        &serde_json::to_vec(&marker).unwrap(),
        false,
        None,
    );
    sink.put(
        "inflight/0000000000000000000000000000000000000000000000000000000000000001",
        object.into(),
        backup_core::PutMode::Create,
    )
    .await
    .unwrap();
    let postponed = repo
        .prune(&PruneOptions::default().with_grace(chrono::Duration::zero()))
        .await
        .unwrap();
    assert!(
        postponed.marks_postponed >= 1 && postponed.packs_deleted == 0,
        "{postponed:?}"
    );

    // Once it is gone, the packs go.
    sink.delete("inflight/0000000000000000000000000000000000000000000000000000000000000001")
        .await
        .unwrap();
    let done = repo
        .prune(&PruneOptions::default().with_grace(chrono::Duration::zero()))
        .await
        .unwrap();
    assert!(done.packs_deleted > 0, "{done:?}");
    let verify = verify_data(&repo).await;
    assert!(verify.is_ok(), "{:?}", verify.errors);
    let kept = repo.list().await.unwrap();
    assert_restores(&repo, &kept, place.path(), &source).await;
}

/// A faulty policy: forgets every backup it is given.
struct ForgetEverything;

impl RetentionPolicy for ForgetEverything {
    fn decide(&self, backups: &[Backup], _now: DateTime<Utc>) -> Vec<Decision> {
        backups
            .iter()
            .map(|backup| Decision {
                id: backup.id,
                keep: false,
                reasons: vec!["forget everything".into()],
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_forgets_everything_leaves_the_newest_complete_backup_of_each_set() {
    let place = tempfile::tempdir().unwrap();
    let sink = Arc::new(LocalSink::create(place.path().join("repo")).unwrap());
    let repo = Repository::init(sink, InitOptions::default())
        .await
        .unwrap();
    let source = place.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let mut newest = std::collections::BTreeMap::new();
    for round in 0..3u64 {
        for set in ["db", "logs"] {
            std::fs::write(source.join("file"), random_bytes(round, 1000)).unwrap();
            let summary = repo
                .backup(
                    &DirectorySnapshotter::new(vec![source.clone()]),
                    BackupOptions::default().with_set(set),
                )
                .await
                .unwrap();
            newest.insert(set.to_string(), summary.id);
        }
    }
    let decisions = repo
        .forget(
            &ForgetEverything,
            Utc::now(),
            &backup_core::ForgetOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(decisions.len(), 6);
    for (backup, decision) in &decisions {
        let is_newest = newest[&backup.manifest.set] == backup.id;
        assert_eq!(decision.keep, is_newest, "{backup:?}: {decision:?}");
        if is_newest {
            assert!(
                decision.reasons[0].contains("newest complete backup"),
                "{decision:?}"
            );
        }
    }
    let mut left: Vec<_> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    left.sort();
    let mut expected: Vec<_> = newest.into_values().collect();
    expected.sort();
    assert_eq!(left, expected);
}
