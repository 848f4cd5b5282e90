//! The local sink's own tests; the shared conformance suite runs on it in
//! `conformance`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io;
use std::path::Path;

use bytes::Bytes;

use super::direct::{DIRECT_ALIGN, DIRECT_BLOCK, DIRECT_MIN};
use super::write::{write_error, DIRECTORY_IN_THE_WAY};
use super::LocalSink;
use crate::sink::support::TEMP_PREFIX;
use crate::sink::{PutMode, Sink, SinkExt};
use crate::Error;

#[test]
fn storage_full_is_called_out() {
    let error = write_error(
        "writing object",
        Path::new("/repo/x"),
        io::Error::from_raw_os_error(28),
    );
    assert!(
        matches!(error, Error::Io { context, .. } if context == "storage full while writing"),
        "{error:?}"
    );
    let error = write_error(
        "writing object",
        Path::new("/repo/x"),
        io::Error::from(io::ErrorKind::PermissionDenied),
    );
    assert!(matches!(
        error,
        Error::Io {
            context: "writing object",
            ..
        }
    ));
}

/// Every file and directory below `dir`, relative, with `/` separators.
fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                pending.push((entry.path(), format!("{name}/")));
            }
            found.push(name);
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn new_does_not_touch_disk_and_create_does() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a").join("repo");
    let sink = LocalSink::new(&root);
    assert!(!root.exists());
    assert_eq!(sink.root(), root);
    // A missing root lists as empty but is not created by a put.
    assert!(sink.list("").await.unwrap().is_empty());
    let error = sink
        .put("k", "v".into(), PutMode::Overwrite)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(!root.exists());

    let sink = LocalSink::create(&root).unwrap();
    assert!(root.is_dir());
    sink.put("k", "v".into(), PutMode::Overwrite).await.unwrap();
    // Creating again over an existing repository is fine.
    let again = LocalSink::create(&root).unwrap();
    assert_eq!(again.get("k").await.unwrap(), "v");
    assert_eq!(sink.location(), format!("file://{}", root.display()));

    // A root that is a file is refused.
    let file = tmp.path().join("file");
    fs::write(&file, "x").unwrap();
    assert!(LocalSink::create(&file).is_err());
}

#[tokio::test]
async fn prefetch_is_a_hint_that_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A root that does not exist: nothing to read ahead, nothing made.
    let missing = LocalSink::new(tmp.path().join("missing"));
    missing.prefetch("index/").await;
    assert!(!tmp.path().join("missing").exists());

    let sink = LocalSink::create(tmp.path().join("repo")).unwrap();
    for key in ["index/a", "index/b", "manifests/c", "data/0f/d"] {
        sink.put(key, key.as_bytes().to_vec().into(), PutMode::Create)
            .await
            .unwrap();
    }
    let before = walk(sink.root());
    for prefix in [
        "index/",
        "manifests/",
        "data/",
        "",
        "nothing/",
        "../",
        "index/a",
    ] {
        sink.prefetch(prefix).await;
    }
    assert_eq!(walk(sink.root()), before);
    for key in ["index/a", "index/b", "manifests/c", "data/0f/d"] {
        assert_eq!(sink.get(key).await.unwrap(), key.as_bytes());
    }
}

/// A directory on the disk, and one on tmpfs where there is one (which
/// may refuse `O_DIRECT`: the buffered fallback).
fn disk_and_tmpfs() -> Vec<tempfile::TempDir> {
    let mut roots = vec![tempfile::tempdir().unwrap()];
    if Path::new("/dev/shm").is_dir() {
        roots.push(tempfile::tempdir_in("/dev/shm").unwrap());
    }
    roots
}

#[tokio::test]
async fn large_objects_written_directly_read_back_exactly() {
    for tmp in &disk_and_tmpfs() {
        write_and_read_large_objects(tmp.path()).await;
    }
}

async fn write_and_read_large_objects(root: &Path) {
    let sink = LocalSink::create(root).unwrap();
    // Around the direct-write threshold, whole and partial blocks, and
    // an overwrite of a longer object by a shorter one.
    let sizes = [
        DIRECT_MIN - 1,
        DIRECT_MIN,
        DIRECT_MIN + 1,
        DIRECT_BLOCK * 2,
        DIRECT_BLOCK * 2 + 4095,
        DIRECT_BLOCK + DIRECT_ALIGN + 7,
    ];
    for (index, size) in sizes.into_iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + index) as u8).collect();
        sink.put("p/object", Bytes::from(data.clone()), PutMode::Overwrite)
            .await
            .unwrap();
        let back = sink.get("p/object").await.unwrap();
        assert_eq!(back.len(), size);
        assert!(back == data, "content of the {size}-byte object differs");
        let path = root.join("p/object");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);
    }
}

#[tokio::test]
async fn staged_objects_are_whole_on_commit_and_nothing_when_dropped() {
    for tmp in &disk_and_tmpfs() {
        let root = tmp.path();
        let sink = LocalSink::create(root).unwrap();
        // Pieces that end inside a block, exactly on one, and span
        // several; a shorter object then replaces a longer one.
        let plans: [&[usize]; 4] = [
            &[],
            &[7],
            &[
                DIRECT_BLOCK - 1,
                1,
                DIRECT_BLOCK,
                3 * DIRECT_BLOCK + 5,
                4096,
            ],
            &[DIRECT_BLOCK + DIRECT_ALIGN + 7],
        ];
        for (index, pieces) in plans.into_iter().enumerate() {
            let mut staged = sink.stage().unwrap().unwrap();
            let mut expected = Vec::new();
            for (number, &size) in pieces.iter().enumerate() {
                let piece: Vec<u8> = (0..size).map(|i| (i * 7 + number + index) as u8).collect();
                staged.append(&piece).unwrap();
                expected.extend_from_slice(&piece);
            }
            // Invisible until committed: the listing shows the
            // previous object only.
            let before = sink.list("").await.unwrap();
            assert_eq!(before.len(), usize::from(index > 0), "{before:?}");
            staged.commit("data/ab/object").unwrap();
            let back = sink.get("data/ab/object").await.unwrap();
            assert_eq!(back.len(), expected.len());
            assert!(back == expected, "staged object {index} differs");
            let listed = sink.list("").await.unwrap();
            assert_eq!(listed.len(), 1, "{listed:?}");
            assert_eq!(listed[0].size, expected.len() as u64);
        }
        // Dropped uncommitted: no object, no temporary file.
        let mut staged = sink.stage().unwrap().unwrap();
        staged.append(&vec![1u8; DIRECT_BLOCK + 1]).unwrap();
        drop(staged);
        let names: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["data"], "{}", root.display());
        // A key a local sink cannot store is refused at commit.
        let staged = sink.stage().unwrap().unwrap();
        assert!(staged.commit("../escape").is_err());
        assert!(!root.parent().unwrap().join("escape").exists());
    }
}

#[tokio::test]
async fn puts_leave_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = LocalSink::create(tmp.path()).unwrap();
    let puts = (0..16).map(|i| {
        let sink = &sink;
        async move {
            let key = format!("d/{}", i % 4);
            sink.put(
                &key,
                Bytes::from(vec![i as u8; 1000 + i]),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
            // Create-only puts that win and lose, which remove their
            // temporary files on both paths.
            let _ = sink
                .put(&format!("c/{}", i % 2), "x".into(), PutMode::Create)
                .await;
            // Listing while others write never shows temporary files.
            for object in sink.list("").await.unwrap() {
                assert!(!object.key.contains(TEMP_PREFIX), "{object:?}");
            }
        }
    });
    futures::future::join_all(puts).await;
    assert_eq!(
        walk(tmp.path()),
        ["c", "c/0", "c/1", "d", "d/0", "d/1", "d/2", "d/3"]
    );

    // A temporary file left by a crash stays hidden.
    let stray = tmp
        .path()
        .join("d")
        .join(format!("{TEMP_PREFIX}{:032x}", 7));
    fs::write(&stray, "partial").unwrap();
    let keys = sink.list_keys("d/").await.unwrap();
    assert_eq!(keys, ["d/0", "d/1", "d/2", "d/3"]);
    // Keys that would be hidden like it are refused.
    let hidden = format!("d/{TEMP_PREFIX}{:032x}", 8);
    let error = sink
        .put(&hidden, "x".into(), PutMode::Overwrite)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    // Similar names that are not temporary names are ordinary keys.
    sink.put("d/.tmp-notes", "x".into(), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(sink.list("d/.tmp").await.unwrap().len(), 1);
}

#[tokio::test]
async fn file_in_the_way_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = LocalSink::create(tmp.path()).unwrap();
    sink.put("a", "file".into(), PutMode::Overwrite)
        .await
        .unwrap();
    for mode in [PutMode::Overwrite, PutMode::Create] {
        for key in ["a/b", "a/b/c"] {
            let error = sink.put(key, "x".into(), mode).await.unwrap_err();
            assert!(matches!(error, Error::Io { .. }), "{key}: {error:?}");
        }
    }
    // Keys below an object do not exist.
    assert!(matches!(sink.get("a/b").await, Err(Error::NotFound { .. })));
    assert!(matches!(
        sink.head("a/b").await,
        Err(Error::NotFound { .. })
    ));
    sink.delete("a/b").await.unwrap();
    assert_eq!(sink.get("a").await.unwrap(), "file");

    // A directory where the object should go.
    sink.put("d/x", "x".into(), PutMode::Overwrite)
        .await
        .unwrap();
    for mode in [PutMode::Overwrite, PutMode::Create] {
        let error = sink.put("d", "x".into(), mode).await.unwrap_err();
        assert!(
            matches!(
                error,
                Error::Io {
                    context: DIRECTORY_IN_THE_WAY,
                    ..
                }
            ),
            "{error:?}"
        );
    }
    assert!(matches!(sink.get("d").await, Err(Error::NotFound { .. })));
    assert!(matches!(sink.head("d").await, Err(Error::NotFound { .. })));
    sink.delete("d").await.unwrap();
    assert_eq!(sink.get("d/x").await.unwrap(), "x");
    // The failed puts cleaned up their temporary files.
    assert_eq!(walk(tmp.path()), ["a", "d", "d/x"]);
}

#[tokio::test]
async fn keys_stay_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let sink = LocalSink::create(&root).unwrap();
    for key in ["../x", "a/../../x", "/x", "./x"] {
        assert!(sink.put(key, "x".into(), PutMode::Overwrite).await.is_err());
    }
    assert!(sink.list("../").await.unwrap().is_empty());
    assert_eq!(walk(tmp.path()), ["repo"]);
}
