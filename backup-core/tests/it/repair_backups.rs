//! `Repository::repair_backups`, as `restic repair snapshots`: a backup
//! whose data pack is lost is written again without the files it held, the
//! rest restoring byte for byte; a directory whose listing is lost comes
//! back empty.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use backup_core::internals::pack::BlobKind;
use backup_core::{
    BackupOptions, BackupStatus, DirectorySnapshotter, InitOptions, LocalSink,
    RepairBackupsOptions, RepairIndexOptions, Repository, RestoreOptions, VerifyOptions,
    REPAIRED_FROM_FACT,
};
use backup_testkit::rng::random_bytes;

async fn back_up(repo: &Repository, source: &Path) -> backup_core::Backup {
    let summary = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.to_path_buf()]),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    repo.load_backup(&summary.id).await.unwrap()
}

/// The packs whose blobs are all of `kind`, as object keys.
async fn packs_of(repo: &Repository, kind: BlobKind) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (id, _) in repo.packs().await.unwrap() {
        let blobs = repo.pack_blobs(&id).await.unwrap();
        if blobs.iter().all(|blob| blob.kind == kind) {
            keys.insert(format!("data/{}/{}", &id.to_hex()[..2], id.to_hex()));
        }
    }
    keys
}

fn paths(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.insert(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_a_lost_pack_is_repaired_without_its_files_and_the_rest_restores() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    fs::create_dir_all(source.join("docs")).unwrap();
    fs::write(source.join("docs/kept.txt"), random_bytes(1, 5000)).unwrap();
    fs::write(source.join("first.bin"), random_bytes(2, 300_000)).unwrap();
    let store = place.path().join("repo");
    fs::create_dir(&store).unwrap();
    let sink = Arc::new(LocalSink::new(&store));
    let repo = Repository::init(sink.clone(), InitOptions::default())
        .await
        .unwrap();
    back_up(&repo, &source).await;
    let data_before = packs_of(&repo, BlobKind::Data).await;

    // The second backup's new file lands in a data pack of its own: lose it.
    fs::write(source.join("docs/lost.bin"), random_bytes(3, 400_000)).unwrap();
    let damaged = back_up(&repo, &source).await;
    let lost: Vec<String> = packs_of(&repo, BlobKind::Data)
        .await
        .difference(&data_before)
        .cloned()
        .collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    fs::remove_file(store.join(&lost[0])).unwrap();
    let repo = Repository::open(sink.clone(), None).await.unwrap();
    let report = repo
        .repair_index(&RepairIndexOptions::default())
        .await
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
    let repo = Repository::open(sink.clone(), None).await.unwrap();

    // A dry run reports and writes nothing.
    let dry = repo
        .repair_backups(RepairBackupsOptions::default().with_dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.repaired.len(), 1, "{dry:?}");
    assert_eq!(dry.intact.len(), 1);
    assert!(dry.repaired[0].repaired.is_none());
    assert_eq!(repo.list().await.unwrap().len(), 2);

    let done = repo
        .repair_backups(RepairBackupsOptions::default().with_forget(true))
        .await
        .unwrap();
    let repaired = &done.repaired[0];
    assert_eq!(repaired.original, damaged.id);
    assert!(repaired.forgotten);
    let removed: Vec<&str> = repaired
        .removed
        .iter()
        .map(|item| item.path.as_str())
        .collect();
    assert_eq!(removed, ["data/docs/lost.bin"]);
    let backups = repo.list().await.unwrap();
    assert_eq!(backups.len(), 2);
    assert!(backups.iter().all(|backup| backup.id != damaged.id));
    let new = repo.load_backup(&repaired.repaired.unwrap()).await.unwrap();
    assert_eq!(new.manifest.status, BackupStatus::PartiallyFailed);
    assert_eq!(new.manifest.time, damaged.manifest.time);
    assert_eq!(new.manifest.set, damaged.manifest.set);
    assert_eq!(
        new.manifest.facts[REPAIRED_FROM_FACT],
        damaged.id.to_hex().as_str()
    );
    assert_eq!(new.manifest.errors.len(), 1);
    // Nothing but listings was stored again.
    assert_eq!(new.manifest.stats.bytes_read, 0);

    let target = place.path().join("restored");
    let summary = repo
        .restore(&new, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(summary.failures.is_empty(), "{summary:?}");
    assert_eq!(
        paths(&target),
        BTreeSet::from(
            ["data", "data/docs", "data/docs/kept.txt", "data/first.bin"].map(String::from)
        )
    );
    assert_eq!(
        fs::read(target.join("data/first.bin")).unwrap(),
        fs::read(source.join("first.bin")).unwrap()
    );
    let verify = repo
        .verify(&VerifyOptions::default().with_read_data(true))
        .await
        .unwrap();
    assert!(verify.is_ok(), "{verify:?}");
    // Repairing again finds nothing to repair.
    let again = repo
        .repair_backups(RepairBackupsOptions::default())
        .await
        .unwrap();
    assert!(again.repaired.is_empty(), "{again:?}");
}
