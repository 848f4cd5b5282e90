//! An `Archiver` injected into a `Repository` is the one backups and
//! restores run with: a wrapper around the default archiver that records
//! what it saw, and one that fails, through the public API only.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::{
    Archived, Archiver, BackupOptions, DirectorySnapshotter, Entry, Error, Id, InitOptions,
    MemorySink, Repository, RestoreOptions, RestoreSummary, Result,
};

/// Delegates to the default archiver and records the entry names and the
/// restores it was asked for.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn Archiver>,
    archived: Mutex<Vec<String>>,
    restores: AtomicUsize,
}

#[async_trait]
impl Archiver for Recording {
    async fn archive(&self, entries: Vec<Entry>, parent: Option<&[Id]>) -> Result<Archived> {
        let names = entries.iter().map(|entry| match entry {
            Entry::Path { name, .. } | Entry::Stream { name, .. } => name.clone(),
            _ => String::from("?"),
        });
        self.archived.lock().unwrap().extend(names);
        self.inner.archive(entries, parent).await
    }

    async fn restore(
        &self,
        root: &[Id],
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<RestoreSummary> {
        self.restores.fetch_add(1, Ordering::SeqCst);
        self.inner.restore(root, target, options).await
    }
}

/// Refuses every archive: the backup must fail and record nothing.
#[derive(Debug)]
struct Failing;

#[async_trait]
impl Archiver for Failing {
    async fn archive(&self, _entries: Vec<Entry>, _parent: Option<&[Id]>) -> Result<Archived> {
        Err(Error::InvalidArgument(
            "this archiver stores nothing".into(),
        ))
    }

    async fn restore(
        &self,
        _root: &[Id],
        _target: &Path,
        _options: &RestoreOptions,
    ) -> Result<RestoreSummary> {
        Err(Error::InvalidArgument(
            "this archiver restores nothing".into(),
        ))
    }
}

#[tokio::test]
async fn backups_and_restores_run_through_the_injected_archiver() {
    let place = tempfile::tempdir().unwrap();
    let source = place.path().join("data");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("a.txt"), b"through the wrapper").unwrap();

    let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default())
        .await
        .unwrap();
    let recording = Arc::new(Recording {
        inner: repo.chunk_archiver(),
        archived: Mutex::new(Vec::new()),
        restores: AtomicUsize::new(0),
    });
    let repo = repo.with_archiver(recording.clone());

    let summary = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.clone()]),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(summary.manifest.stats.files, 1);
    assert_eq!(
        *recording.archived.lock().unwrap(),
        vec!["data".to_string()]
    );

    let backup = repo.find_backup("latest", None).await.unwrap();
    let target = place.path().join("restored");
    repo.restore(&backup, &target, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(recording.restores.load(Ordering::SeqCst), 1);
    assert_eq!(
        std::fs::read(target.join("data/a.txt")).unwrap(),
        b"through the wrapper"
    );
}

#[tokio::test]
async fn a_failing_injected_archiver_fails_the_backup_and_records_nothing() {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("a.txt"), b"never stored").unwrap();
    let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default())
        .await
        .unwrap()
        .with_archiver(Arc::new(Failing));

    let outcome = repo
        .backup(
            &DirectorySnapshotter::new(vec![source.path().into()]),
            BackupOptions::default(),
        )
        .await;
    assert!(
        matches!(&outcome, Err(Error::InvalidArgument(message)) if message.contains("stores nothing")),
        "{outcome:?}"
    );
    assert!(repo.list().await.unwrap().is_empty());
}
