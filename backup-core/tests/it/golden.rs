//! Golden repositories: this build must read, restore and verify exactly
//! what earlier builds wrote (format version 1: `v1-*` of manifest version
//! 1, `v1-m2-*` of manifest version 2, with hard links and extended
//! attributes), and must refuse a newer format or manifest version with a
//! version error. The repositories and the scripts that made them are in
//! `tests/golden/`; they are never regenerated.
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

/// The password of golden repository `name`: the content of
/// `<name>.password` beside it, for the encrypted ones.
fn password(name: &str) -> Option<Vec<u8>> {
    let file = golden_dir().join(format!("{name}.password"));
    file.exists().then(|| {
        let mut bytes = std::fs::read(&file).unwrap();
        // As backupctl reads a password file: a trailing newline is not part of it.
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        bytes
    })
}

/// Whether golden repository `name` holds a backup of manifest version 2
/// (made by `make-golden-m2.sh`, described by `expected-m2.json`).
fn is_manifest_version_2(name: &str) -> bool {
    name.starts_with("v1-m2-")
}

/// What a restore of golden repository `name` must produce.
fn expected(name: &str) -> Value {
    let file = if is_manifest_version_2(name) {
        "expected-m2.json"
    } else {
        "expected.json"
    };
    let text = std::fs::read_to_string(golden_dir().join(file)).unwrap();
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

/// For every restored regular file among `paths` (relative to
/// `restored`), the sorted paths of all names of its inode among them.
fn link_groups(restored: &Path, paths: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut by_inode: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for relative in paths {
        let meta = std::fs::symlink_metadata(restored.join(relative)).unwrap();
        if meta.is_file() {
            by_inode
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(relative.clone());
        }
    }
    let mut groups = BTreeMap::new();
    for mut group in by_inode.into_values() {
        group.sort();
        for relative in &group {
            groups.insert(relative.clone(), group.clone());
        }
    }
    groups
}

/// The extended attributes of `path` (not followed if a symlink), each
/// value in lowercase hex, as expected-m2.json lists them.
fn xattrs_of(path: &Path) -> BTreeMap<String, String> {
    xattr::list(path)
        .unwrap()
        .map(|name| {
            let value = xattr::get(path, &name).unwrap().unwrap_or_default();
            (name.into_string().unwrap(), hex::encode(value))
        })
        .collect()
}

/// Checks one restored path against its expected.json (or
/// expected-m2.json) entry; `groups` is what [`link_groups`] found.
fn check_path(
    restored: &Path,
    relative: &str,
    want: &Value,
    groups: &BTreeMap<String, Vec<String>>,
) {
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
    // Listed in expected-m2.json only (null where not checked).
    if let Some(links) = want["links"].as_u64() {
        assert_eq!(meta.nlink(), links, "{relative}: link count");
    }
    if let Some(group) = want["link_group"].as_array() {
        let group: Vec<&str> = group.iter().map(|path| path.as_str().unwrap()).collect();
        assert_eq!(groups[relative], group, "{relative}: names of its file");
    }
    if let Some(xattrs) = want["xattrs"].as_object() {
        let xattrs: BTreeMap<String, String> = xattrs
            .iter()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(xattrs_of(&path), xattrs, "{relative}: extended attributes");
    }
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
    let expected = expected(name);

    let backups = repo.list().await.unwrap();
    assert_eq!(backups.len(), 1, "{name}: exactly one backup");
    let backup = &backups[0];
    let version = if is_manifest_version_2(name) { 2 } else { 1 };
    assert_eq!(backup.manifest.version, version, "{name}: manifest version");
    assert_eq!(backup.manifest.set, expected["set"].as_str().unwrap());
    assert_eq!(
        backup
            .manifest
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        expected["time"].as_str().unwrap()
    );

    let restored = place.join("restored");
    let summary = repo
        .restore(backup, &restored, &RestoreOptions::default())
        .await
        .unwrap();
    // An extended attribute the target refused would be a failure here.
    assert!(
        summary.failures.is_empty(),
        "{name}: {:?}",
        summary.failures
    );
    assert_eq!(summary.status, Status::Completed, "{name}");
    let paths: BTreeMap<String, Value> = expected["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, entry)| (path.clone(), entry.clone()))
        .collect();
    let mut found = Vec::new();
    walk(&restored, "", &mut found);
    found.sort();
    let groups = link_groups(&restored, &found);
    for (relative, want) in &paths {
        check_path(&restored, relative, want, &groups);
    }
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
/// `prefix` + its SHA-256, as writers name index objects, manifests and
/// marks; returns the key.
async fn put_named(sink: &LocalSink, prefix: &str, kind: ObjectKind, payload: &[u8]) -> String {
    let object = envelope::seal(kind, payload, false, None);
    let key = format!("{prefix}{}", hex::encode(Sha256::digest(&object)));
    sink.put(&key, object.into(), PutMode::Create)
        .await
        .unwrap();
    key
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
async fn golden_manifest_version_2_plain_restores_exactly() {
    restore_and_check("v1-m2-plain").await;
}

#[tokio::test]
async fn golden_manifest_version_2_encrypted_restores_exactly() {
    restore_and_check("v1-m2-encrypted").await;
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

/// FORMAT.md, "Versions" and "Reading a repository", step 4: a manifest
/// of a schema version this build does not read (3, beside the golden
/// one of version 2) fails the listing with a version error naming it,
/// never a damage error and never by leaving it out.
#[tokio::test]
async fn manifest_of_a_future_version_is_a_version_error() {
    let place = tempfile::tempdir().unwrap();
    let copy = copy_golden("v1-m2-plain", place.path());
    let sink = LocalSink::new(&copy);
    let keys = sink.list_keys("manifests/").await.unwrap();
    let [golden] = keys.as_slice() else {
        panic!("expected one manifest, found {keys:?}");
    };
    // In an unencrypted repository a manifest is a plain envelope: open it,
    // change only the version, and store it under its new name.
    let json = envelope::open(
        golden,
        &sink.get(golden).await.unwrap(),
        ObjectKind::Manifest,
        None,
    )
    .unwrap();
    let mut manifest: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(manifest["version"], 2);
    manifest["version"] = 3.into();
    let payload = serde_json::to_vec(&manifest).unwrap();
    let future = put_named(&sink, "manifests/", ObjectKind::Manifest, &payload).await;

    let repo = Repository::open(Arc::new(LocalSink::new(&copy)), None)
        .await
        .unwrap();
    let error = repo.list().await.unwrap_err();
    match error {
        Error::UnsupportedVersion {
            ref key,
            found,
            min_supported,
            max_supported,
        } => {
            assert_eq!(key, &future);
            assert_eq!(found, 3);
            assert_eq!((min_supported, max_supported), (1, 2));
        }
        ref other => panic!("expected a version error, got {other}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("version 3") && text.contains("reads versions 1 to 2"),
        "{text}"
    );
    // "latest" cannot be chosen without it, and asked for by id it is the
    // same error.
    let error = repo.find_backup("latest", None).await.unwrap_err();
    assert!(
        matches!(error, Error::UnsupportedVersion { found: 3, .. }),
        "{error}"
    );
    let id: Id = future["manifests/".len()..].parse().unwrap();
    let error = repo.load_backup(&id).await.unwrap_err();
    assert!(
        matches!(error, Error::UnsupportedVersion { found: 3, .. }),
        "{error}"
    );
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
