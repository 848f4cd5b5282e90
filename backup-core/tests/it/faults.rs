//! Storage that fails, stalls and truncates: every backup either completes
//! and verifies or fails with a clear error, and the repository stays valid.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{
    BackupOptions, DirectorySnapshotter, Error, InitOptions, LocalSink, Repository, RestoreOptions,
    RetryPolicy, RetrySink, Sink, Status, VerifyOptions,
};
use backup_testkit::repo::verify_data;
use backup_testkit::rng::random_bytes;
use backup_testkit::tree::{assert_same_contents, copy_tree};
use backup_testkit::{FaultPlan, FaultSink, TestRng};

/// A tree of `files` files of varied sizes; `round` changes some of them.
fn write_tree(root: &Path, files: usize, round: u64) {
    std::fs::create_dir_all(root.join("nested/deeper")).unwrap();
    for index in 0..files {
        let size = [0, 100, 5_000, 300_000, 2_500_000][index % 5];
        let dir = if index % 3 == 0 {
            root.join("nested/deeper")
        } else {
            root.to_path_buf()
        };
        // A fifth of the files change each round.
        let seed = if index % 5 == (round as usize) % 5 {
            round * 1000 + index as u64
        } else {
            index as u64
        } + 1;
        std::fs::write(
            dir.join(format!("file-{index}.bin")),
            random_bytes(seed, size),
        )
        .unwrap();
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 10,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_complete_and_verify_when_one_operation_in_ten_fails() {
    let place = tempfile::tempdir().unwrap();
    let local: Arc<dyn Sink> = Arc::new(LocalSink::create(place.path().join("repo")).unwrap());
    let plan = FaultPlan {
        fail: 0.10,
        fail_after_write: 0.20,
        stall: 0.05,
        stall_for: Duration::from_millis(20),
        truncate_read: 0.05,
        seed: 42,
        ..FaultPlan::default()
    };
    let faulty = Arc::new(FaultSink::new(local.clone(), plan));
    let sink = Arc::new(RetrySink::new(faulty.clone(), fast_retries()));
    let password = Some(b"pw".to_vec());
    let kdf = backup_core::KdfParams::insecure_for_tests();
    Repository::init(sink.clone(), {
        let mut options = InitOptions::default();
        options.password = password.clone();
        options.kdf = kdf;
        options
    })
    .await
    .unwrap();

    let source = place.path().join("source");
    let rounds = 4;
    for round in 0..rounds {
        write_tree(&source, 40, round);
        let repo = Repository::open(sink.clone(), password.as_deref())
            .await
            .unwrap();
        let summary = repo
            .backup(
                &DirectorySnapshotter::new(vec![source.clone()]),
                BackupOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(summary.manifest.stats.files, 40);
        // Restore through the faulty sink too: every byte must be right.
        let target = place.path().join(format!("restored-{round}"));
        let backup = repo.find_backup("latest", None).await.unwrap();
        repo.restore(&backup, &target, &RestoreOptions::default())
            .await
            .unwrap();
        assert_same_contents(&source, &target.join("source"));
    }
    let counts = faulty.counts();
    println!("fault trials: {rounds} backups and restores; {counts:?}");
    assert!(
        counts.failed > 5 && counts.failed_after_write > 0 && counts.truncated > 0,
        "faults were injected: {counts:?}"
    );

    let clean = Repository::open(local, password.as_deref()).await.unwrap();
    let report = verify_data(&clean).await;
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(clean.list().await.unwrap().len(), rounds as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_gone_for_good_fails_clearly_and_leaves_the_repository_valid() {
    let place = tempfile::tempdir().unwrap();
    let local: Arc<dyn Sink> = Arc::new(LocalSink::create(place.path().join("repo")).unwrap());
    let source = place.path().join("source");
    write_tree(&source, 30, 0);
    let repo = Repository::init(local.clone(), InitOptions::default())
        .await
        .unwrap();
    repo.backup(
        &DirectorySnapshotter::new(vec![source.clone()]),
        BackupOptions::default(),
    )
    .await
    .unwrap();

    // Count the operations of one clean backup, then make the storage
    // vanish at points spread over that run.
    write_tree(&source, 30, 99);
    let counting = Arc::new(FaultSink::new(local.clone(), FaultPlan::default()));
    let counted = Repository::open(counting.clone(), None).await.unwrap();
    counted
        .backup(
            &DirectorySnapshotter::new(vec![source.clone()]),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    let operations = counting.counts().operations;
    assert!(operations >= 8, "a backup takes {operations} operations");
    // That backup is the newest now; the failed ones must not replace it.
    let first = counted.find_backup("latest", None).await.unwrap();
    let mut trials = 0;
    for gone_after in (0..operations).step_by(((operations / 8) as usize).max(1)) {
        trials += 1;
        write_tree(&source, 30, gone_after + 100);
        let faulty = Arc::new(FaultSink::new(
            local.clone(),
            FaultPlan {
                gone_after: Some(gone_after),
                ..FaultPlan::default()
            },
        ));
        let sink = Arc::new(RetrySink::new(faulty.clone(), fast_retries()));
        let outcome = match Repository::open(sink, None).await {
            Ok(repo) => repo
                .backup(
                    &DirectorySnapshotter::new(vec![source.clone()]),
                    BackupOptions::default(),
                )
                .await
                .map(|_| ()),
            Err(error) => Err(error),
        };
        let error = outcome.expect_err("the storage is gone: the backup cannot succeed");
        assert!(
            matches!(
                error,
                Error::Sink {
                    temporary: false,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("the storage is gone"),
            "unclear error: {error}"
        );
    }

    let repo = Repository::open(local, None).await.unwrap();
    let report = verify_data(&repo).await;
    assert!(report.is_ok(), "{:?}", report.errors);
    let backups = repo.list().await.unwrap();
    println!("storage vanished at {trials} points of a {operations}-operation backup");
    assert_eq!(
        backups.len(),
        2,
        "only the two complete backups exist ({trials} failed attempts)"
    );
    let target = place.path().join("restored");
    assert_eq!(backups[1].id, first.id);
    repo.restore(&backups[1], &target, &RestoreOptions::default())
        .await
        .unwrap();
    write_tree(&source, 30, 99);
    assert_same_contents(&source, &target.join("source"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_is_named_by_verify_blocks_prune_and_blocks_nothing_else() {
    let place = tempfile::tempdir().unwrap();
    let memory = backup_core::MemorySink::new();
    let sink: Arc<dyn Sink> = Arc::new(memory.clone());
    let source = place.path().join("source");
    write_tree(&source, 20, 0);
    let repo = Repository::init(sink.clone(), InitOptions::default())
        .await
        .unwrap();
    repo.backup(
        &DirectorySnapshotter::new(vec![source.clone()]),
        BackupOptions::default(),
    )
    .await
    .unwrap();
    let index_key = memory
        .keys()
        .into_iter()
        .find(|key| key.starts_with("index/"))
        .unwrap();
    let mut damaged = memory.raw_get(&index_key).unwrap().to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xFF;
    memory.raw_put(index_key.clone(), damaged.into());

    // Opening, restoring and backing up still work: the packs it listed are
    // indexed again from their own headers.
    let repo = Repository::open(sink.clone(), None).await.unwrap();
    let again = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.clone()]),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        again.manifest.stats.bytes_added < 100_000,
        "packs reused: {}",
        again.manifest.stats.bytes_added
    );
    for backup in repo.list().await.unwrap() {
        let target = place.path().join(format!("restored-{}", backup.id.short()));
        repo.restore(&backup, &target, &RestoreOptions::default())
            .await
            .unwrap();
        assert_same_contents(&source, &target.join("source"));
    }
    // Verify names it; prune refuses to decide anything on partial knowledge.
    let report = repo.verify(&VerifyOptions::default()).await.unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|problem| problem.object == index_key),
        "{:?}",
        report.errors
    );
    let error = repo
        .prune(&backup_core::PruneOptions::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&index_key), "{error}");
}

/// Random faults, many times: each trial draws fault rates, a retry budget
/// (sometimes none, so that some backups fail) and a seed. Every backup
/// either completes, restores exactly and verifies, or fails with a storage
/// error naming the operation and key; the repository verifies after every
/// trial, and every backup that completed still restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_never_leave_a_broken_repository() {
    let place = tempfile::tempdir().unwrap();
    let local: Arc<dyn Sink> = Arc::new(LocalSink::create(place.path().join("repo")).unwrap());
    let password = Some(b"pw".to_vec());
    Repository::init(local.clone(), {
        let mut options = InitOptions::default();
        options.password = password.clone();
        options.kdf = backup_core::KdfParams::insecure_for_tests();
        options
    })
    .await
    .unwrap();
    let source = place.path().join("source");
    let mut rng = TestRng::new(0x5EED);
    let mut draw = move |n: u64| rng.below(n);
    let trials = 24;
    let (mut completed, mut failed, mut restore_failed) = (0, 0, 0);
    let mut injected = 0;
    let mut kept: Vec<(backup_core::Id, std::path::PathBuf)> = Vec::new();
    let mut ambiguous: Vec<(backup_core::Id, std::path::PathBuf)> = Vec::new();
    for trial in 0..trials {
        write_tree(&source, 20, trial + 1);
        let snapshot_copy = place.path().join(format!("source-{trial}"));
        copy_tree(&source, &snapshot_copy);
        let plan = FaultPlan {
            fail: draw(30) as f64 / 100.0,
            fail_after_write: draw(30) as f64 / 100.0,
            stall: draw(10) as f64 / 100.0,
            stall_for: Duration::from_millis(draw(30)),
            truncate_read: draw(20) as f64 / 100.0,
            seed: draw(u64::MAX),
            ..FaultPlan::default()
        };
        let retries = [0, 1, 3, 10][draw(4) as usize];
        let faulty = Arc::new(FaultSink::new(local.clone(), plan));
        let sink = Arc::new(RetrySink::new(
            faulty.clone(),
            RetryPolicy {
                max_retries: retries,
                ..fast_retries()
            },
        ));
        let outcome = async {
            let repo = Repository::open(sink.clone(), password.as_deref()).await?;
            let summary = repo
                .backup(
                    &DirectorySnapshotter::new(vec![source.clone()]),
                    BackupOptions::default(),
                )
                .await?;
            Ok::<_, Error>((repo, summary))
        }
        .await;
        match outcome {
            Ok((repo, summary)) => {
                completed += 1;
                kept.push((summary.id, snapshot_copy.clone()));
                // Restore through the faulty storage: exact, or a clear
                // error; never wrong bytes.
                let target = place.path().join(format!("faulty-restore-{trial}"));
                let backup = repo.load_backup(&summary.id).await;
                match backup {
                    Ok(backup) => {
                        match repo
                            .restore(&backup, &target, &RestoreOptions::default())
                            .await
                        {
                            Ok(restored) if restored.status == Status::Completed => {
                                assert_same_contents(&source, &target.join("source"))
                            }
                            Ok(restored) => {
                                restore_failed += 1;
                                assert!(
                                    !restored.failures.is_empty(),
                                    "trial {trial}: {restored:?}"
                                );
                            }
                            Err(error) => {
                                restore_failed += 1;
                                assert!(
                                    matches!(error, Error::Sink { .. }),
                                    "trial {trial}: restore failed with {error:?}"
                                );
                            }
                        }
                    }
                    Err(error) => assert!(matches!(error, Error::Sink { .. }), "{error:?}"),
                }
                let _ = std::fs::remove_dir_all(&target);
            }
            Err(error) => {
                failed += 1;
                let text = error.to_string();
                // A storage error naming the operation and key, or (when
                // every re-read came back truncated) damage naming the
                // object.
                match &error {
                    Error::Sink { key, .. } | Error::Corrupt { key, .. } => {
                        assert!(text.contains(key.as_str()), "trial {trial}: {text}")
                    }
                    other => panic!("trial {trial}: backup failed with {other:?}"),
                }
            }
        }
        injected += faulty.counts().failed + faulty.counts().truncated;

        // After every trial, on clean storage: the repository verifies and
        // every completed backup restores exactly.
        let clean = Repository::open(local.clone(), password.as_deref())
            .await
            .unwrap();
        let report = verify_data(&clean).await;
        assert!(report.is_ok(), "trial {trial}: {:?}", report.errors);
        // A backup reported as failed may still be visible: when the
        // manifest's put was stored but reported as failed on every retry
        // (a timeout after the write), nobody can tell the write happened.
        // Such a backup must be whole: it restores exactly its trial's tree.
        let listed = clean.list().await.unwrap();
        for (id, _) in &kept {
            assert!(
                listed.iter().any(|backup| backup.id == *id),
                "trial {trial}: {id} is listed"
            );
        }
        for backup in listed
            .iter()
            .filter(|backup| !kept.iter().any(|(id, _)| *id == backup.id))
        {
            if !ambiguous.iter().any(|(id, _)| *id == backup.id) {
                let target = place.path().join(format!("ambiguous-restore-{trial}"));
                let restored = clean
                    .restore(backup, &target, &RestoreOptions::default())
                    .await
                    .unwrap();
                assert_eq!(restored.status, Status::Completed, "{restored:?}");
                assert_same_contents(&snapshot_copy, &target.join("source"));
                std::fs::remove_dir_all(&target).unwrap();
                ambiguous.push((backup.id, snapshot_copy.clone()));
            }
        }
        assert_eq!(listed.len(), kept.len() + ambiguous.len());
        if let Some((id, expected)) = kept.first() {
            let target = place.path().join(format!("clean-restore-{trial}"));
            let backup = clean.load_backup(id).await.unwrap();
            clean
                .restore(&backup, &target, &RestoreOptions::default())
                .await
                .unwrap();
            assert_same_contents(expected, &target.join("source"));
            std::fs::remove_dir_all(&target).unwrap();
        }
    }
    println!(
        "random faults: {trials} trials, {completed} backups completed, {failed} failed clearly, \
         {restore_failed} faulty-storage restores failed clearly, {} reported failed but \
         stored whole, {injected} faults injected; the repository verified after every trial",
        ambiguous.len()
    );
    assert!(completed > 0 && failed > 0, "both outcomes were exercised");
}
