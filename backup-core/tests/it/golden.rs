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

use backup_core::internals::envelope::{self, ObjectKind};
use backup_core::internals::index::IndexFile;
use backup_core::internals::marks::DeletionMark;
use backup_core::internals::pack::BlobKind;
use backup_core::{
    Error, FailureKind, Id, LocalSink, PutMode, Repository, RestoreOptions, Sink, SinkExt, Status,
    VerifyReport,
};
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
    let report = restore_and_check_copy(name, &copy, place.path()).await;
    assert!(report.is_ok(), "{name}: {:?}", report.errors);
}

/// Opens, lists and restores `copy` of golden repository `name` (perhaps
/// changed), checks the restored tree, and returns what verify found.
async fn restore_and_check_copy(name: &str, copy: &Path, place: &Path) -> VerifyReport {
    let password = password(name);
    let repo = Repository::open(Arc::new(LocalSink::new(copy)), password.as_deref())
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

    let restored = place.join("restored");
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
    assert_eq!(report.backups, 1);
    assert!(report.packs_read > 0);
    report
}

/// Stores `payload` in an unencrypted envelope of `kind` under
/// `prefix` + its SHA-256, as writers name index objects and marks.
async fn put_named(sink: &LocalSink, prefix: &str, kind: ObjectKind, payload: &[u8]) {
    let object = envelope::seal(kind, payload, false, None);
    let key = format!("{prefix}{}", hex::encode(Sha256::digest(&object)));
    sink.put(&key, object.into(), PutMode::Create)
        .await
        .unwrap();
}

/// Supersedes the golden repository's index objects with an empty one: as
/// after a prune that dropped every pack from the index.
async fn drop_every_pack_from_the_index(sink: &LocalSink) -> Vec<Id> {
    let mut old = Vec::new();
    for key in sink.list_keys("index/").await.unwrap() {
        old.push(key["index/".len()..].parse::<Id>().unwrap());
    }
    assert!(!old.is_empty());
    let empty = IndexFile {
        supersedes: old,
        packs: Vec::new(),
    };
    put_named(sink, "index/", ObjectKind::Index, &empty.encode()).await;
    let mut packs = Vec::new();
    for key in sink.list_keys("data/").await.unwrap() {
        packs.push(key.rsplit('/').next().unwrap().parse::<Id>().unwrap());
    }
    packs
}

/// FORMAT.md, "Reading a repository", step 3: a backup whose packs a prune
/// marked (it was still being written when the prune looked) restores
/// through the deletion mark alone.
#[tokio::test]
async fn a_backup_whose_packs_are_only_in_a_deletion_mark_restores() {
    let place = tempfile::tempdir().unwrap();
    let copy = copy_golden("v1-plain", place.path());
    let sink = LocalSink::new(&copy);
    let packs = drop_every_pack_from_the_index(&sink).await;
    let mark = DeletionMark {
        marked_at: chrono::Utc::now(),
        packs,
    };
    let json = serde_json::to_vec(&mark).unwrap();
    put_named(&sink, "pending/", ObjectKind::DeletionMark, &json).await;
    let report = restore_and_check_copy("v1-plain", &copy, place.path()).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}

/// A deletion mark that cannot be read may have named any pack in no
/// index: readers take all of them as doomed, so the backup still
/// restores, and verify names the mark.
#[tokio::test]
async fn a_damaged_deletion_mark_leaves_every_unindexed_pack_readable() {
    let place = tempfile::tempdir().unwrap();
    let copy = copy_golden("v1-plain", place.path());
    let sink = LocalSink::new(&copy);
    drop_every_pack_from_the_index(&sink).await;
    put_named(&sink, "pending/", ObjectKind::DeletionMark, b"{not json").await;
    let report = restore_and_check_copy("v1-plain", &copy, place.path()).await;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].object.starts_with("pending/"));
    assert!(report.errors[0].message.contains("deletion mark"));
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

/// FORMAT.md, "Reading a repository", step 6: the kind the index gives a
/// chunk must be the kind its reference expects. In an unencrypted
/// repository nothing else notices a tree chunk indexed as data.
#[tokio::test]
async fn a_tree_chunk_indexed_as_data_is_damage() {
    let place = tempfile::tempdir().unwrap();
    let copy = copy_golden("v1-plain", place.path());
    let sink = LocalSink::new(&copy);
    let mut old = Vec::new();
    let mut packs = Vec::new();
    for key in sink.list_keys("index/").await.unwrap() {
        old.push(key["index/".len()..].parse::<Id>().unwrap());
        let payload = envelope::open(
            &key,
            &sink.get(&key).await.unwrap(),
            ObjectKind::Index,
            None,
        )
        .unwrap();
        packs.extend(IndexFile::decode(&key, &payload).unwrap().packs);
    }
    let mut flipped = 0;
    for blob in packs.iter_mut().flat_map(|pack| pack.blobs.iter_mut()) {
        if blob.kind == BlobKind::Tree {
            blob.kind = BlobKind::Data;
            flipped += 1;
        }
    }
    assert!(flipped > 0);
    let relabelled = IndexFile {
        supersedes: old,
        packs,
    };
    put_named(&sink, "index/", ObjectKind::Index, &relabelled.encode()).await;

    let repo = Repository::open(Arc::new(LocalSink::new(&copy)), None)
        .await
        .unwrap();
    let backup = repo.find_backup("latest", None).await.unwrap();
    let summary = repo
        .restore(
            &backup,
            &place.path().join("restored"),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(summary.status, Status::Failed);
    assert_eq!(summary.files, 0);
    let failure = &summary.failures[0];
    assert_eq!(failure.kind, FailureKind::Corrupt);
    assert!(failure.message.contains("is a data chunk"), "{failure:?}");
}
