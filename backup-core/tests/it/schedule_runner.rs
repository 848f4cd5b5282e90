//! The scheduled-backup runner against a real repository: backups,
//! retention in the job's own set, and a collision that pauses the job.

use std::sync::Arc;

use backup_core::schedule::{
    BackupJobRunner, JobFailure, JobRunner, ManualClock, RunContext, RunTrigger, ScheduleConfig,
    SinkOpener,
};
use backup_core::{InitOptions, LocalSink, Repository, Sink};

fn config(repo: &std::path::Path, source: &std::path::Path, writer: &str) -> ScheduleConfig {
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
    let opener: SinkOpener = {
        let sink = sink.clone();
        Arc::new(move |_location: String| {
            let sink = sink.clone();
            Box::pin(async move { Ok(sink) })
        })
    };
    let runner = BackupJobRunner::new(opener, None);
    let clock: Arc<dyn backup_core::schedule::Clock> =
        Arc::new(ManualClock::new(chrono::Utc::now()));
    let context = || RunContext::new("files", RunTrigger::Manual, clock.clone());

    let jobs = config(&repo_dir, &source, "cluster-a").job_specs().unwrap();
    let (files, other) = (&jobs[0], &jobs[1]);
    runner.run(other, context()).await.unwrap();
    for round in 0..4 {
        std::fs::write(source.join("data.txt"), format!("round {round}")).unwrap();
        let outcome = runner.run(files, context()).await.unwrap();
        assert!(outcome.message.unwrap().contains("backup"));
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
}
