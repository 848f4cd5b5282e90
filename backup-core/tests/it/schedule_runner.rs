//! The scheduled backup against a real repository: backups, retention in
//! the job's own set only, a prune after it, and a collision that becomes a
//! failure pausing the job.

use std::sync::Arc;

use backup_core::schedule::{run_backup_job, JobFailure};
use backup_core::{
    BackupOptions, DirectorySnapshotter, Error, InitOptions, KeepPolicy, LocalSink, PruneOptions,
    Repository, Sink,
};

fn options(set: &str, writer: &str) -> BackupOptions {
    BackupOptions::default()
        .with_set(set)
        .with_writer(writer)
        .with_check_collision(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backs_up_applies_retention_per_set_and_reports_collisions() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::create(place.path().join("repo")).unwrap());
    let repo = Repository::init(sink.clone(), InitOptions::default())
        .await
        .unwrap();
    let snapshotter = DirectorySnapshotter::new(vec![source.clone()]);
    let keep_two = KeepPolicy {
        keep_last: Some(2),
        ..KeepPolicy::default()
    };

    let report = run_backup_job(
        &repo,
        &snapshotter,
        options("other", "cluster-a"),
        &KeepPolicy::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(report.forgotten, None, "an empty policy is not applied");
    assert_eq!(
        report.to_string(),
        format!(
            "backup {}: 0 files, {} bytes added",
            report.backup.id.short(),
            report.backup.manifest.stats.bytes_added
        )
    );
    for round in 0..4 {
        std::fs::write(source.join("data.txt"), format!("round {round}")).unwrap();
        let report = run_backup_job(
            &repo,
            &snapshotter,
            options("files", "cluster-a"),
            &keep_two,
            None,
        )
        .await
        .unwrap();
        assert_eq!(report.backup.manifest.stats.files, 1);
        assert_eq!(report.forgotten, Some(if round < 2 { 0 } else { 1 }));
        assert!(report.prune.is_none());
    }
    let backups = repo.list().await.unwrap();
    let in_set = |set: &str| backups.iter().filter(|b| b.manifest.set == set).count();
    assert_eq!(
        in_set("files"),
        2,
        "keep_last = 2 applied after each backup"
    );
    assert_eq!(in_set("other"), 1, "retention never touches another set");

    // A prune runs after the retention, and is reported.
    std::fs::write(source.join("data.txt"), "round 4").unwrap();
    let prune = PruneOptions::default().with_grace(chrono::Duration::zero());
    let report = run_backup_job(
        &repo,
        &snapshotter,
        options("files", "cluster-a"),
        &keep_two,
        Some(&prune),
    )
    .await
    .unwrap();
    let pruned = report.prune.as_ref().unwrap();
    assert!(
        report.to_string().ends_with(&format!(
            "; forgot 1; pruned {} bytes",
            pruned.bytes_deleted
        )),
        "{report}"
    );

    // Another writer on the same set: a collision naming both, nothing written.
    let error = run_backup_job(
        &repo,
        &snapshotter,
        options("files", "cluster-b"),
        &keep_two,
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Collision { .. }), "{error}");
    match JobFailure::from(error) {
        JobFailure::Collision { message } => {
            assert!(
                message.contains("cluster-a") && message.contains("cluster-b"),
                "{message}"
            );
        }
        other => panic!("expected a collision, got {other:?}"),
    }
    assert_eq!(repo.list().await.unwrap().len(), 3);
}

#[test]
fn errors_other_than_a_collision_are_plain_failures() {
    let failure = JobFailure::from(Error::NoRepository {
        location: "/nowhere".into(),
    });
    assert!(!failure.is_collision());
    assert!(failure.message().contains("/nowhere"), "{failure}");
}
