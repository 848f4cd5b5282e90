//! `repair_index`: the index rebuilt from the packs' own headers after an
//! index object is damaged or lost, after which prune and verify pass and
//! every backup restores; a repair stopped at any step leaves a readable
//! index.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::{
    BackupOptions, DirectorySnapshotter, Error, InitOptions, KdfParams, LocalSink, PruneOptions,
    RepairIndexOptions, Repository, RestoreOptions, VerifyOptions,
};
use backup_testkit::repo::{flip_byte, packs, repo_objects, verify_data};
use backup_testkit::tree::{assert_same_tree, copy_tree, generate_tree, TreeSpec};
use backup_testkit::{FaultPlan, FaultSink};

const PASSWORD: &[u8] = b"repair";

/// An encrypted local repository with one backup of each of three trees;
/// returns the repository's directory, the handle and the trees.
async fn three_backups(place: &Path) -> (PathBuf, Repository, Vec<PathBuf>) {
    let dir = place.join("repo");
    let options = InitOptions::default()
        .with_password(PASSWORD)
        .with_kdf(KdfParams::insecure_for_tests());
    let repo = Repository::init(Arc::new(LocalSink::create(&dir).unwrap()), options)
        .await
        .unwrap();
    let mut sources = Vec::new();
    for seed in 1..=3u64 {
        let source = place.join(format!("source{seed}"));
        generate_tree(&source, &TreeSpec::new(seed, 25));
        repo.backup(
            &DirectorySnapshotter::new(vec![source.clone()]),
            BackupOptions::default(),
        )
        .await
        .unwrap();
        sources.push(source);
    }
    (dir, repo, sources)
}

/// The index objects on disk, largest first.
fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u64, PathBuf)> = repo_objects(dir)
        .into_iter()
        .filter(|(key, _)| key.starts_with("index/"))
        .map(|(_, path)| (std::fs::metadata(&path).unwrap().len(), path))
        .collect();
    files.sort_by(|a, b| b.cmp(a));
    files.into_iter().map(|(_, path)| path).collect()
}

/// Opens the repository anew and restores every backup, comparing each
/// with its tree.
async fn assert_restores(dir: &Path, sources: &[PathBuf], place: &Path) {
    let repo = Repository::open(Arc::new(LocalSink::new(dir)), Some(PASSWORD))
        .await
        .unwrap();
    let backups = repo.list().await.unwrap();
    assert_eq!(backups.len(), sources.len());
    for (backup, source) in backups.iter().zip(sources) {
        let target = place.join(format!("restored-{}", backup.id.short()));
        let summary = repo
            .restore(backup, &target, &RestoreOptions::default())
            .await
            .unwrap();
        assert!(summary.failures.is_empty(), "{:?}", summary.failures);
        assert_same_tree(source, &target.join(source.file_name().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_object_is_rebuilt_from_the_packs() {
    let place = tempfile::tempdir().unwrap();
    let (dir, _, sources) = three_backups(place.path()).await;
    let packs_before = packs(&dir);
    let indexes = index_files(&dir);
    assert!(indexes.len() >= 3, "one index object per backup at least");
    let victim = &indexes[0];
    let length = std::fs::metadata(victim).unwrap().len() as usize;
    for position in [length / 2, length / 2 + 1, length / 2 + 7] {
        flip_byte(victim, position);
    }

    let repo = Repository::open(Arc::new(LocalSink::new(&dir)), Some(PASSWORD))
        .await
        .unwrap();
    let report = verify_data(&repo).await;
    assert!(
        report
            .errors
            .iter()
            .any(|problem| victim.ends_with(&problem.object)),
        "verify names the damaged index object: {:?}",
        report.errors
    );
    let prune = repo
        .prune(&PruneOptions::default().with_grace(chrono::Duration::zero()))
        .await;
    assert!(
        matches!(prune, Err(Error::Corrupt { .. })),
        "prune refuses to decide on a damaged index: {prune:?}"
    );

    let repaired = repo
        .repair_index(&RepairIndexOptions::default())
        .await
        .unwrap();
    assert!(repaired.is_complete(), "{repaired:?}");
    assert_eq!(repaired.damaged_index_objects, 1);
    assert_eq!(repaired.packs, packs_before.len() as u64);
    assert_eq!(repaired.packs_indexed, packs_before.len() as u64);
    assert_eq!(repaired.index_objects_removed, indexes.len() as u64);
    assert!(!victim.exists(), "the damaged object is gone");
    assert_eq!(
        index_files(&dir).len() as u64,
        repaired.index_objects_written
    );

    assert_eq!(packs(&dir), packs_before, "no pack was touched");
    let report = verify_data(&repo).await;
    assert!(report.is_ok(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let pruned = repo
        .prune(&PruneOptions::default().with_grace(chrono::Duration::zero()))
        .await
        .unwrap();
    assert_eq!(pruned.packs_marked, 0, "every pack is in use: {pruned:?}");
    assert!(verify_data(&repo).await.is_ok());
    assert_restores(&dir, &sources, place.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_index_is_rebuilt_and_a_damaged_pack_is_reported_and_left() {
    let place = tempfile::tempdir().unwrap();
    let (dir, repo, sources) = three_backups(place.path()).await;
    for index in index_files(&dir) {
        std::fs::remove_file(index).unwrap();
    }
    let dry = repo
        .repair_index(&RepairIndexOptions::default().with_dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.index_objects_written, 0);
    assert!(index_files(&dir).is_empty(), "a dry run writes nothing");
    let repaired = repo
        .repair_index(&RepairIndexOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (repaired.packs_indexed, repaired.blobs_indexed),
        (dry.packs_indexed, dry.blobs_indexed)
    );
    assert_eq!(repaired.index_objects_removed, 0);
    assert!(verify_data(&repo).await.is_ok());
    assert_restores(&dir, &sources, place.path()).await;

    // A pack whose header is damaged: reported, left in place, and its
    // blobs stay where the index located them.
    let (key, size) = packs(&dir).into_iter().next().unwrap();
    let pack_path = dir.join(&key);
    flip_byte(&pack_path, size as usize - 20);
    let repaired = repo
        .repair_index(&RepairIndexOptions::default())
        .await
        .unwrap();
    assert_eq!(repaired.unreadable_packs.len(), 1, "{repaired:?}");
    assert_eq!(repaired.unreadable_packs[0].object, key);
    assert!(!repaired.is_complete());
    assert!(pack_path.exists(), "a damaged pack is never deleted");
    assert_eq!(repaired.packs_indexed + 1, repaired.packs);
    let report = verify_data(&repo).await;
    assert!(
        report.errors.iter().any(|problem| problem.object == key),
        "{:?}",
        report.errors
    );
    assert!(
        report.errors.iter().all(|problem| problem.object == key),
        "only the damaged pack is reported, its blobs still indexed: {:?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_marked_for_deletion_stay_out_of_the_rebuilt_index() {
    let place = tempfile::tempdir().unwrap();
    let (dir, repo, sources) = three_backups(place.path()).await;
    // Forget the first backup and mark what only it used.
    let first = repo.list().await.unwrap()[0].id;
    repo.sink()
        .delete(&format!("manifests/{first}"))
        .await
        .unwrap();
    let marked = repo.prune(&PruneOptions::default()).await.unwrap();
    let in_mark = marked.packs_marked + marked.packs_repacked;
    assert!(marked.packs_marked > 0, "{marked:?}");

    let repaired = repo
        .repair_index(&RepairIndexOptions::default())
        .await
        .unwrap();
    assert_eq!(repaired.packs_marked_for_deletion, in_mark);
    assert_eq!(repaired.packs_indexed + in_mark, repaired.packs);
    assert!(verify_data(&repo).await.is_ok());
    // The mark's packs go once its grace period is over, as before.
    let pruned = repo
        .prune(&PruneOptions::default().with_grace(chrono::Duration::zero()))
        .await
        .unwrap();
    assert_eq!(pruned.packs_deleted, in_mark, "{pruned:?}");
    assert_eq!(pruned.packs_rescued, 0, "{pruned:?}");
    assert!(verify_data(&repo).await.is_ok());
    assert_restores(&dir, &sources[1..], place.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_stopped_at_any_step_leaves_a_readable_index() {
    let place = tempfile::tempdir().unwrap();
    let (dir, _, _) = three_backups(place.path()).await;
    for step in 0.. {
        let copy = place.path().join(format!("copy-{step}"));
        copy_tree(&dir, &copy);
        let faulty = Arc::new(FaultSink::new(
            Arc::new(LocalSink::new(&copy)),
            FaultPlan::default(),
        ));
        let repo = Repository::open(faulty.clone(), Some(PASSWORD))
            .await
            .unwrap();
        // The storage goes away after `step` more operations: as if the
        // process were killed there.
        faulty.set_plan(FaultPlan {
            gone_after: Some(faulty.counts().operations + step),
            ..FaultPlan::default()
        });
        let finished = repo
            .repair_index(&RepairIndexOptions::default())
            .await
            .is_ok();
        let reopened = Repository::open(Arc::new(LocalSink::new(&copy)), Some(PASSWORD))
            .await
            .unwrap();
        let report = reopened.verify(&VerifyOptions::default()).await.unwrap();
        assert!(
            report.is_ok() && report.warnings.is_empty(),
            "stopped after {step} operations: {:?} {:?}",
            report.errors,
            report.warnings
        );
        if finished {
            assert_eq!(
                index_files(&copy).len(),
                2,
                "the new index and the superseding object"
            );
            break;
        }
        assert!(step < 200, "the repair never finished");
    }
}
