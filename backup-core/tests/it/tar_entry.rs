//! `Entry::Tar`: a tar stream stored as the tree it holds, and the streams
//! that must fail (hostile paths, a cut-off stream).

use std::io::Cursor;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use async_trait::async_trait;
use backup_core::{
    BackupOptions, Entry, Repository, RestoreOptions, Snapshot, Snapshotter, SourceInfo, TarCapture,
};
use backup_testkit::rng::random_bytes;

use crate::stores::local_repo;

struct TarSource {
    bytes: Vec<u8>,
    capture: TarCapture,
}

#[async_trait]
impl Snapshotter for TarSource {
    fn kind(&self) -> &str {
        "tar"
    }

    async fn snapshot(&self) -> backup_core::Result<Snapshot> {
        Ok(Snapshot::new(
            vec![Entry::Tar {
                name: "tree".into(),
                reader: Box::new(Cursor::new(self.bytes.clone())),
                capture: Some(self.capture.clone()),
            }],
            SourceInfo {
                kind: "tar".into(),
                paths: Vec::new(),
            },
        ))
    }
}

fn file_header(path: &[u8], size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    header
}

fn sample(big: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.as_gnu_mut().unwrap().name[..6].copy_from_slice(b"./dir/");
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o750);
    dir.set_mtime(1_600_000_000);
    dir.set_size(0);
    dir.set_cksum();
    builder.append(&dir, std::io::empty()).unwrap();
    builder
        .append(&file_header(b"./dir/small", 5, 0o600), &b"hello"[..])
        .unwrap();
    builder
        .append(&file_header(b"big", big.len() as u64, 0o644), big)
        .unwrap();
    builder
        .append(&file_header(b"implied/deep/file", 3, 0o640), &b"abc"[..])
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder.append_link(&mut link, "dir/link", "small").unwrap();
    builder.into_inner().unwrap()
}

async fn back_up(
    repo: &Repository,
    bytes: Vec<u8>,
    capture: TarCapture,
) -> backup_core::Result<backup_core::BackupSummary> {
    repo.backup(
        &TarSource { bytes, capture },
        BackupOptions::default().with_set("tar"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_stream_is_stored_as_its_tree_and_restores_file_by_file() {
    let big = random_bytes(7, 3 << 20);
    let (dir, repo) = local_repo().await;
    let capture = TarCapture::new(["dir/small", "big"]);
    let summary = back_up(&repo, sample(&big), capture.clone()).await.unwrap();
    assert_eq!(capture.get("dir/small").as_deref(), Some(&b"hello"[..]));
    assert_eq!(capture.get("big").map(|b| b.len()), Some(big.len()));
    assert_eq!(summary.manifest.stats.files, 3);

    let backup = repo.find_backup("latest", Some("tar")).await.unwrap();
    let target = dir.path().join("restored");
    repo.restore(&backup, &target, &RestoreOptions::default())
        .await
        .unwrap();
    let tree = target.join("tree");
    assert_eq!(std::fs::read(tree.join("dir/small")).unwrap(), b"hello");
    assert_eq!(std::fs::read(tree.join("big")).unwrap(), big);
    assert_eq!(
        std::fs::read(tree.join("implied/deep/file")).unwrap(),
        b"abc"
    );
    assert_eq!(
        std::fs::read_link(tree.join("dir/link")).unwrap().to_str(),
        Some("small")
    );
    let small = std::fs::metadata(tree.join("dir/small")).unwrap();
    assert_eq!(small.permissions().mode() & 0o7777, 0o600);
    assert_eq!(small.mtime(), 1_700_000_000);
    let dir_meta = std::fs::metadata(tree.join("dir")).unwrap();
    assert_eq!(dir_meta.permissions().mode() & 0o7777, 0o750);

    // The same stream again stores (almost) nothing new.
    let again = back_up(&repo, sample(&big), TarCapture::default())
        .await
        .unwrap();
    assert!(
        again.manifest.stats.bytes_added < 64 << 10,
        "{} bytes added",
        again.manifest.stats.bytes_added
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_member_paths_and_a_cut_off_stream_fail_the_backup_and_record_nothing() {
    let (_dir, repo) = local_repo().await;
    for path in [&b"../escape"[..], b"/etc/passwd", b"dir/../../up"] {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append(&file_header(path, 2, 0o600), &b"no"[..])
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        let error = back_up(&repo, bytes, TarCapture::default())
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("absolute or leaves the archive"),
            "{}: {error}",
            String::from_utf8_lossy(path)
        );
    }
    let big = random_bytes(8, 2 << 20);
    let mut cut = sample(&big);
    cut.truncate(1 << 20);
    let error = back_up(&repo, cut, TarCapture::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("tar stream"), "{error}");
    assert!(repo.list().await.unwrap().is_empty());
}
