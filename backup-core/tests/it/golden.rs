//! Golden repositories: this build must read, restore and verify exactly
//! what earlier builds wrote (format version 1), and must refuse a newer
//! format version with a version error. The repositories and the script
//! that made them are in `tests/golden/`; they are never regenerated.
use backup_testkit::repo::verify_data;
use backup_testkit::tree::copy_tree;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::{Error, LocalSink, Repository, RestoreOptions};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A private copy of golden repository `name` inside `place`.
fn copy_golden(name: &str, place: &Path) -> PathBuf {
    let copy = place.join(name);
    copy_tree(&golden_dir().join(name), &copy);
    copy
}

fn password(name: &str) -> Option<Vec<u8>> {
    (name == "v1-encrypted").then(|| {
        let mut bytes = std::fs::read(golden_dir().join("v1-encrypted.password")).unwrap();
        // As backupctl reads a password file: a trailing newline is not part of it.
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        bytes
    })
}

fn expected() -> Value {
    let text = std::fs::read_to_string(golden_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every path below `root`, relative to it, `/`-separated.
fn walk(root: &Path, relative: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(root.join(relative)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let child = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            walk(root, &child, out);
        }
        out.push(child);
    }
}

/// Checks one restored path against its expected.json entry.
fn check_path(restored: &Path, relative: &str, want: &Value) {
    let path = restored.join(relative);
    let meta = std::fs::symlink_metadata(&path)
        .unwrap_or_else(|error| panic!("{relative}: not restored: {error}"));
    let kind = want["type"].as_str().unwrap();
    let actual_kind = if meta.file_type().is_symlink() {
        "symlink"
    } else if meta.is_dir() {
        "dir"
    } else if meta.is_file() {
        "file"
    } else {
        "other"
    };
    assert_eq!(actual_kind, kind, "{relative}: type");
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    assert_eq!(
        mtime_ns,
        i128::from(want["mtime_ns"].as_i64().unwrap()),
        "{relative}: mtime"
    );
    match kind {
        "symlink" => {
            let target = std::fs::read_link(&path).unwrap();
            assert_eq!(
                target.to_str().unwrap(),
                want["target"].as_str().unwrap(),
                "{relative}: target"
            );
        }
        "file" | "dir" => {
            let mode = u64::from(meta.permissions().mode() & 0o7777);
            assert_eq!(mode, want["mode"].as_u64().unwrap(), "{relative}: mode");
            if kind == "file" {
                assert_eq!(
                    meta.len(),
                    want["size"].as_u64().unwrap(),
                    "{relative}: size"
                );
                let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                assert_eq!(
                    digest,
                    want["sha256"].as_str().unwrap(),
                    "{relative}: content"
                );
            }
        }
        other => panic!("{relative}: unexpected type {other} in expected.json"),
    }
}

/// Opens, lists, restores and verifies golden repository `name`.
async fn restore_and_check(name: &str) {
    let place = tempfile::tempdir().unwrap();
    let copy = copy_golden(name, place.path());
    let password = password(name);
    let repo = Repository::open(Arc::new(LocalSink::new(&copy)), password.as_deref())
        .await
        .unwrap();
    let expected = expected();

    let backups = repo.list().await.unwrap();
    assert_eq!(backups.len(), 1, "{name}: exactly one backup");
    let backup = &backups[0];
    assert_eq!(backup.manifest.set, expected["set"].as_str().unwrap());
    assert_eq!(
        backup
            .manifest
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        expected["time"].as_str().unwrap()
    );

    let restored = place.path().join("restored");
    repo.restore(backup, &restored, &RestoreOptions::default())
        .await
        .unwrap();
    let paths: BTreeMap<String, Value> = expected["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, entry)| (path.clone(), entry.clone()))
        .collect();
    for (relative, want) in &paths {
        check_path(&restored, relative, want);
    }
    let mut found = Vec::new();
    walk(&restored, "", &mut found);
    found.sort();
    assert_eq!(
        found,
        paths.keys().cloned().collect::<Vec<_>>(),
        "{name}: restored paths"
    );

    let report = verify_data(&repo).await;
    assert!(report.is_ok(), "{name}: {:?}", report.errors);
    assert_eq!(report.backups, 1);
    assert!(report.packs_read > 0);
}

#[tokio::test]
async fn golden_plain_restores_exactly() {
    restore_and_check("v1-plain").await;
}

#[tokio::test]
async fn golden_encrypted_restores_exactly() {
    restore_and_check("v1-encrypted").await;
}

#[tokio::test]
async fn golden_encrypted_refuses_a_wrong_password() {
    let place = tempfile::tempdir().unwrap();
    let copy = copy_golden("v1-encrypted", place.path());
    let sink = Arc::new(LocalSink::new(&copy));
    let error = Repository::open(sink.clone(), Some(b"not-the-password"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::WrongPassword), "{error}");
    let error = Repository::open(sink, None).await.unwrap_err();
    assert!(matches!(error, Error::PasswordRequired), "{error}");
}

#[tokio::test]
async fn config_of_a_future_version_is_a_version_error() {
    let place = tempfile::tempdir().unwrap();
    let copy = copy_golden("v1-plain", place.path());
    let config_path = copy.join("config");
    let config = std::fs::read(&config_path).unwrap();
    // Version byte 2, and a valid checksum, so that only the version is wrong.
    let mut future = config[..config.len() - 32].to_vec();
    assert_eq!(&future[..5], b"BKUP\x01");
    future[4] = 2;
    let checksum = Sha256::digest(&future);
    future.extend_from_slice(&checksum);
    std::fs::write(&config_path, &future).unwrap();

    let error = Repository::open(Arc::new(LocalSink::new(&copy)), None)
        .await
        .unwrap_err();
    match error {
        Error::UnsupportedVersion {
            ref key,
            found,
            min_supported,
            max_supported,
        } => {
            assert_eq!(key, "config");
            assert_eq!(found, 2);
            assert_eq!((min_supported, max_supported), (1, 1));
        }
        other => panic!("expected a version error, got {other}"),
    }
    assert!(error_text_mentions_version(&copy).await);
}

/// The error a user sees names the version and what this build reads.
async fn error_text_mentions_version(repo: &Path) -> bool {
    let error = Repository::open(Arc::new(LocalSink::new(repo)), None)
        .await
        .unwrap_err()
        .to_string();
    error.contains("version 2") && error.contains("reads versions 1 to 1")
}
