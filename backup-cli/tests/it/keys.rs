//! `backupctl key list|add|remove|passwd` on local encrypted repositories:
//! which passwords open the repository afterwards, and that its data
//! objects are never touched.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use backup_testkit::backupctl::Out;
use backup_testkit::repo::{packs, repo_objects};
use backup_testkit::tree::{assert_same_tree, generate_tree, TreeSpec};
use serde_json::Value;

use crate::Repo;

const OLD: &str = "old password";
const NEW: &str = "new password";

/// The packs and index objects of the repository at `path`, with sizes.
fn data_objects(path: &Path) -> (BTreeMap<String, u64>, Vec<String>) {
    let indexes = repo_objects(path)
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key.starts_with("index/"))
        .collect();
    (packs(path), indexes)
}

/// The keys `key list --json` shows, as (id, current).
fn keys(repo: &Repo) -> Vec<(String, bool)> {
    let out = repo.run(["key", "list", "--json"]).ok();
    match out.json() {
        Value::Array(keys) => keys
            .iter()
            .map(|key| {
                (
                    key["id"].as_str().unwrap().to_string(),
                    key["current"].as_bool().unwrap(),
                )
            })
            .collect(),
        other => panic!("key list --json is not an array: {other}"),
    }
}

/// Asserts that the run failed with exit status 1 and `expected` in its
/// error.
fn refused(out: Out, expected: &str) {
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains(expected), "{}", out.describe());
}

#[test]
fn passwd_replaces_the_password_and_leaves_the_data_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    generate_tree(&source, &TreeSpec::new(11, 200));
    let path = tmp.path().join("repo");
    let old = Repo::new(path.clone(), Some(OLD));
    old.init();
    old.backup([&source]);
    fs::write(source.join("added.txt"), b"second backup").unwrap();
    old.backup([&source]);
    let before = data_objects(&path);
    assert!(!before.0.is_empty() && !before.1.is_empty());
    let original = keys(&old);
    assert_eq!(original.len(), 1);
    assert!(original[0].1);

    // Never from the command line, and not without one.
    refused(
        old.run(["key", "passwd"]),
        "--new-password-file (or BACKUP_NEW_PASSWORD_FILE) or BACKUP_NEW_PASSWORD",
    );
    assert_eq!(
        old.run(["key", "passwd", "--new-password", NEW]).code,
        Some(2)
    );

    let file = tmp.path().join("new-password");
    fs::write(&file, format!("{NEW}\n")).unwrap();
    let changed = old
        .run([
            "key".as_ref(),
            "passwd".as_ref(),
            "--new-password-file".as_ref(),
            file.as_os_str(),
            "--json".as_ref(),
        ])
        .ok()
        .json();
    assert_eq!(changed["removed"], original[0].0.as_str());
    let added = changed["added"].as_str().unwrap().to_string();

    refused(old.run(["list"]), "wrong password");
    refused(old.run(["key", "list"]), "wrong password");
    let new = Repo::new(path.clone(), Some(NEW));
    assert_eq!(keys(&new), [(added, true)]);
    let backups = new.list();
    assert_eq!(backups.len(), 2);
    let target = tmp.path().join("restored");
    new.restore("latest", &target, &[]).ok();
    assert_same_tree(&source, &target.join("source"));
    assert_eq!(data_objects(&path), before, "packs and indexes unchanged");
    new.run(["verify"]).ok();
}

#[test]
fn add_list_and_remove_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    generate_tree(&source, &TreeSpec::new(12, 50));
    let path = tmp.path().join("repo");
    let first = Repo::new(path.clone(), Some(OLD));
    first.init();
    first.backup([&source]);
    let before = data_objects(&path);

    let added = first
        .clone()
        .env("BACKUP_NEW_PASSWORD", NEW)
        .run(["key", "add", "--json"])
        .ok()
        .json()["added"]
        .as_str()
        .unwrap()
        .to_string();
    let second = Repo::new(path.clone(), Some(NEW));
    assert_eq!(first.list().len(), 1);
    assert_eq!(second.list().len(), 1);

    // Two keys; each password marks its own as current.
    let listed = keys(&first);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let current: Vec<&String> = listed.iter().filter(|k| k.1).map(|k| &k.0).collect();
    assert_eq!(current.len(), 1);
    assert_ne!(current[0], &added);
    let original = current[0].clone();
    assert!(keys(&second).contains(&(added.clone(), true)));
    let text = first.run(["key", "list"]).ok().stdout;
    let marked: Vec<&str> = text.lines().filter(|line| line.starts_with('*')).collect();
    assert_eq!(marked.len(), 1, "{text}");
    assert!(
        marked[0].starts_with(&format!("*{}", &original[..8])),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "a header and two keys: {text}");

    // The key in use stays; the other goes, and its password with it.
    refused(first.run(["key", "remove", &original[..8]]), "opened with");
    refused(first.run(["key", "remove", "ffff0000ffff"]), "no key");
    let removed = first
        .run(["key", "remove", &added[..12], "--json"])
        .ok()
        .json();
    assert_eq!(removed["removed"], added.as_str());
    refused(second.run(["list"]), "wrong password");
    assert_eq!(keys(&first), [(original, true)]);
    assert_eq!(data_objects(&path), before, "packs and indexes unchanged");
}

#[test]
fn an_unencrypted_repository_has_no_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path().join("repo"), None);
    repo.init();
    refused(repo.run(["key", "list"]), "not encrypted");
    refused(
        repo.clone()
            .env("BACKUP_NEW_PASSWORD", NEW)
            .run(["key", "add"]),
        "not encrypted",
    );
}
