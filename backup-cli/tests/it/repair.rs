//! `backupctl repair index` on local repositories whose index is damaged
//! or lost: verify and prune complain before it, pass after it, and every
//! backup restores byte for byte.

use std::fs;
use std::path::{Path, PathBuf};

use backup_testkit::backupctl::num;
use backup_testkit::repo::{packs, repo_objects};
use backup_testkit::tree::{assert_same_tree, generate_tree, TreeSpec};

use crate::Repo;

/// An encrypted repository with one backup of each of three trees; the
/// trees, in the order of the backups.
fn three_backups(place: &Path) -> (Repo, Vec<PathBuf>) {
    let repo = Repo::new(place.join("repo"), Some("repair"));
    repo.init();
    let mut sources = Vec::new();
    for seed in 1..=3u64 {
        let source = place.join(format!("source{seed}"));
        generate_tree(&source, &TreeSpec::new(seed + 20, 60));
        repo.backup([&source]);
        sources.push(source);
    }
    (repo, sources)
}

/// The index objects on disk, largest first.
fn index_files(repo: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u64, PathBuf)> = repo_objects(repo)
        .into_iter()
        .filter(|(key, _)| key.starts_with("index/"))
        .map(|(_, path)| (fs::metadata(&path).unwrap().len(), path))
        .collect();
    files.sort_by(|a, b| b.cmp(a));
    files.into_iter().map(|(_, path)| path).collect()
}

/// Restores every backup by id and compares it with its tree.
fn assert_restores(repo: &Repo, sources: &[PathBuf], place: &Path) {
    let backups = repo.list();
    assert_eq!(backups.len(), sources.len());
    for (backup, source) in backups.iter().zip(sources) {
        let id = backup["id"].as_str().unwrap();
        let target = place.join(format!("restored-{}", &id[..8]));
        repo.restore(id, &target, &[]).ok();
        assert_same_tree(source, &target.join(source.file_name().unwrap()));
    }
}

#[test]
fn repair_index_rebuilds_a_damaged_index_object() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sources) = three_backups(tmp.path());
    let packs_before = packs(&repo.path);
    let indexes = index_files(&repo.path);
    assert!(indexes.len() >= 3, "{indexes:?}");
    let victim = &indexes[0];
    let mut bytes = fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8].copy_from_slice(b"DAMAGED!");
    fs::write(victim, bytes).unwrap();
    let victim_key = format!("index/{}", victim.file_name().unwrap().to_str().unwrap());

    let verify = repo.run(["verify", "--read-data"]).fails();
    assert!(verify.stderr.contains(&victim_key), "{}", verify.describe());
    let prune = repo.run(["prune", "--grace", "0s"]).fails();
    assert!(prune.stderr.contains("corrupt"), "{}", prune.describe());

    let out = repo.run(["repair", "index", "--json"]).ok();
    let report = &out.json()["report"];
    assert_eq!(num(report, "damaged_index_objects"), 1, "{report}");
    assert_eq!(num(report, "packs_indexed"), packs_before.len() as u64);
    assert_eq!(
        num(report, "index_objects_removed"),
        indexes.len() as u64,
        "{report}"
    );
    assert_eq!(report["unreadable_packs"], serde_json::json!([]));
    assert!(!victim.exists());
    assert_eq!(packs(&repo.path), packs_before, "no pack touched");

    repo.run(["prune", "--grace", "0s"]).ok();
    repo.run(["verify", "--read-data"]).ok();
    assert_restores(&repo, &sources, tmp.path());
}

#[test]
fn repair_index_brings_back_a_deleted_index_object() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sources) = three_backups(tmp.path());
    let indexes = index_files(&repo.path);
    fs::remove_file(&indexes[0]).unwrap();
    let verify = repo.run(["verify"]).fails();
    assert!(
        verify.stderr.contains("in no index"),
        "{}",
        verify.describe()
    );

    let text = repo.run(["repair", "index"]).ok().stdout;
    assert!(
        text.contains(&format!(
            "{} packs: {} indexed",
            packs(&repo.path).len(),
            packs(&repo.path).len()
        )),
        "{text}"
    );
    repo.run(["verify", "--read-data"]).ok();
    assert_restores(&repo, &sources, tmp.path());
    repo.run(["prune", "--grace", "0s"]).ok();
    assert_restores(&repo, &sources, &tmp.path().join("after-prune"));
}

#[test]
fn repair_backups_writes_a_backup_whose_pack_is_lost_again_without_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path().join("repo"), Some("repair"));
    repo.init();
    let source = tmp.path().join("source");
    generate_tree(&source, &TreeSpec::new(41, 40));
    repo.backup([&source]);
    let before = packs(&repo.path);
    fs::write(
        source.join("big.bin"),
        backup_testkit::rng::random_bytes(5, 3 << 20),
    )
    .unwrap();
    let damaged = repo.backup([&source])["id"].as_str().unwrap().to_owned();
    // The new data pack (the largest new one) is lost.
    let (victim, _) = packs(&repo.path)
        .into_iter()
        .filter(|(key, _)| !before.contains_key(key))
        .max_by_key(|(_, size)| *size)
        .unwrap();
    fs::remove_file(repo.path.join(&victim)).unwrap();
    repo.run(["repair", "index"]).ok();

    let dry = repo
        .run(["repair", "backups", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(
        dry["report"]["repaired"].as_array().unwrap().len(),
        1,
        "{dry}"
    );
    assert_eq!(repo.list().len(), 2);
    let done = repo
        .run(["repair", "backups", "--forget", "--json"])
        .ok()
        .json();
    let repaired = &done["report"]["repaired"][0];
    assert_eq!(repaired["original"], damaged.as_str(), "{done}");
    let removed = repaired["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{done}");
    assert!(removed[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("source/big.bin"));
    let verify = repo.run(["verify", "--read-data"]);
    assert_eq!(verify.code, Some(0), "{}", verify.describe());
    let target = tmp.path().join("restored");
    // (Not `latest`: that is the newest *completed* backup, and a repaired
    // one is partially failed.)
    repo.restore(repaired["repaired"].as_str().unwrap(), &target, &[])
        .ok();
    // The source as the repaired backup holds it: without big.bin, the
    // directory's time as it was.
    let time = filetime::FileTime::from_last_modification_time(&fs::metadata(&source).unwrap());
    fs::remove_file(source.join("big.bin")).unwrap();
    filetime::set_file_mtime(&source, time).unwrap();
    assert_same_tree(&source, &target.join("source"));
}
