//! `Entry::Files`: files listed in advance with their sizes and times,
//! stored as a tree; unchanged ones taken from the parent unread, files
//! marked `reread` read every time, a file whose size is not the listed
//! one and a stream missing a file or holding another refused.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::{
    BackupOptions, Entry, FetchFiles, ListedFile, Repository, Snapshot, Snapshotter, SourceInfo,
};
use backup_testkit::rng::random_bytes;

use crate::stores::local_repo;

/// Lists `files` (relative to `root`) as they are on disk; with `remote`,
/// reads them through a tar stream built from `stream` (the files asked
/// for, unless it says otherwise).
struct Listed {
    root: PathBuf,
    files: Vec<(String, bool)>,
    remote: Option<Arc<Mutex<Vec<String>>>>,
    tamper: Tamper,
}

#[derive(Clone, Copy, PartialEq)]
enum Tamper {
    None,
    /// List every file one byte longer than it is.
    WrongSize,
    /// The stream leaves out the last file asked for.
    MissingMember,
    /// The stream adds a file not asked for.
    ExtraMember,
}

struct TarFetch {
    asked: Arc<Mutex<Vec<String>>>,
    tamper: Tamper,
}

impl FetchFiles for TarFetch {
    fn fetch(self: Box<Self>, sources: Vec<String>) -> std::io::Result<Box<dyn Read + Send>> {
        self.asked.lock().unwrap().extend(sources.iter().cloned());
        let mut builder = tar::Builder::new(Vec::new());
        let mut sources = sources;
        if self.tamper == Tamper::MissingMember {
            sources.pop();
        }
        for source in &sources {
            let name = source.trim_start_matches('/');
            builder.append_path_with_name(source, name)?;
        }
        if self.tamper == Tamper::ExtraMember {
            builder.append_path_with_name(&sources[0], "etc/passwd")?;
        }
        Ok(Box::new(std::io::Cursor::new(builder.into_inner()?)))
    }
}

#[async_trait]
impl Snapshotter for Listed {
    fn kind(&self) -> &str {
        "listed"
    }

    async fn snapshot(&self) -> backup_core::Result<Snapshot> {
        let files = self
            .files
            .iter()
            .map(|(path, reread)| {
                let source = self.root.join(path);
                let meta = std::fs::metadata(&source).unwrap();
                let size = meta.len() + u64::from(self.tamper == Tamper::WrongSize);
                let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
                ListedFile::new(path.clone(), source.display().to_string(), size, mtime)
                    .with_mode(0o640)
                    .reread(*reread)
            })
            .collect();
        Ok(Snapshot::new(
            vec![Entry::Files {
                name: "data".into(),
                files,
                fetch: self.remote.as_ref().map(|asked| {
                    Box::new(TarFetch {
                        asked: asked.clone(),
                        tamper: self.tamper,
                    }) as Box<dyn FetchFiles>
                }),
            }],
            SourceInfo {
                kind: "listed".into(),
                paths: Vec::new(),
            },
        ))
    }
}

fn write_tree(root: &Path) -> Vec<(String, bool)> {
    let mut files = Vec::new();
    for (at, name) in [
        "ks/t-1/nb-1-big-Data.db",
        "ks/t-1/nb-1-big-Statistics.db",
        "ks/t-2/.idx/nb-3-big-Data.db",
    ]
    .iter()
    .enumerate()
    {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, random_bytes(at as u64, 300_000 + at * 1000)).unwrap();
        files.push((name.to_string(), name.contains("Statistics")));
    }
    files
}

async fn back_up(
    repo: &Repository,
    source: &Listed,
) -> backup_core::Result<backup_core::BackupSummary> {
    repo.backup(source, BackupOptions::default().with_set("listed"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_files_are_stored_and_unchanged_ones_not_read_again() {
    for remote in [false, true] {
        let place = tempfile::tempdir().unwrap();
        let files = write_tree(place.path());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let source = Listed {
            root: place.path().to_path_buf(),
            files: files.clone(),
            remote: remote.then(|| asked.clone()),
            tamper: Tamper::None,
        };
        let (_dir, repo) = local_repo().await;
        let first = back_up(&repo, &source).await.unwrap();
        assert_eq!(first.manifest.stats.bytes_read, 903_000);
        let target = tempfile::tempdir().unwrap();
        let backup = repo.load_backup(&first.id).await.unwrap();
        repo.restore(&backup, target.path(), &Default::default())
            .await
            .unwrap();
        for (name, _) in &files {
            assert_eq!(
                std::fs::read(target.path().join("data").join(name)).unwrap(),
                std::fs::read(place.path().join(name)).unwrap(),
                "{name}"
            );
        }
        // Again: only the file marked reread is read.
        asked.lock().unwrap().clear();
        let second = back_up(&repo, &source).await.unwrap();
        assert_eq!(second.manifest.stats.bytes_read, 301_000, "remote {remote}");
        assert_eq!(second.manifest.stats.files_unchanged, 2);
        if remote {
            let asked = asked.lock().unwrap().clone();
            assert_eq!(asked.len(), 1, "{asked:?}");
            assert!(asked[0].ends_with("nb-1-big-Statistics.db"), "{asked:?}");
        }
        // A file rewritten with a new time is read again.
        let data = place.path().join("ks/t-1/nb-1-big-Data.db");
        filetime::set_file_mtime(&data, filetime::FileTime::from_unix_time(1_600_000_000, 0))
            .unwrap();
        let third = back_up(&repo, &source).await.unwrap();
        assert_eq!(third.manifest.stats.bytes_read, 301_000 + 300_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_the_files_do_not_match_fails_the_backup_and_records_nothing() {
    let cases = [
        (
            false,
            Tamper::WrongSize,
            "it changed while it was backed up",
        ),
        (true, Tamper::WrongSize, "it changed while it was backed up"),
        (
            true,
            Tamper::MissingMember,
            "was listed but not in the stream",
        ),
        (true, Tamper::ExtraMember, "which was not asked for"),
    ];
    for (remote, tamper, message) in cases {
        let place = tempfile::tempdir().unwrap();
        let source = Listed {
            root: place.path().to_path_buf(),
            files: write_tree(place.path()),
            remote: remote.then(Default::default),
            tamper,
        };
        let (_dir, repo) = local_repo().await;
        let error = back_up(&repo, &source).await.unwrap_err().to_string();
        assert!(error.contains(message), "{error}");
        assert!(repo.list().await.unwrap().is_empty());
    }
    // A path that climbs out of the entry.
    let place = tempfile::tempdir().unwrap();
    let mut files = write_tree(place.path());
    std::fs::write(place.path().join("../escape-listed"), b"x").ok();
    files.push(("../escape-listed".into(), false));
    let source = Listed {
        root: place.path().to_path_buf(),
        files,
        remote: None,
        tamper: Tamper::None,
    };
    let (_dir, repo) = local_repo().await;
    let error = back_up(&repo, &source).await.unwrap_err().to_string();
    assert!(error.contains("leaves the archive: refused"), "{error}");
    let _ = std::fs::remove_file(place.path().join("../escape-listed"));
}
