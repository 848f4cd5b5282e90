//! The public facade: an open [`Repository`] and the operations on it.

use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::archiver::restore::{RestoreOptions, RestoreSummary};
use crate::archiver::{Archiver, ChunkArchiver};
use crate::chunker::Chunker;
use crate::crypto::{KdfParams, MasterKey};
use crate::engine::*;
use crate::format::config::{RepoConfig, CONFIG_KEY, KEYS_PREFIX};
use crate::format::index::Index;
use crate::format::manifest::Backup;
#[cfg(feature = "internals")]
use crate::format::pack::{self, BlobKind};
use crate::ops::backup::{BackupOptions, BackupSummary};
use crate::ops::copy::{CopyOptions, CopyReport};
use crate::ops::diff::DiffReport;
use crate::ops::find::{FindMatches, FindOptions};
use crate::ops::forget::ForgetOptions;
use crate::ops::keys::{KeyInfo, OpenedKey};
use crate::ops::ls::LsEntry;
use crate::ops::prune::{PruneOptions, PruneReport};
use crate::ops::repair_backups::{RepairBackupsOptions, RepairBackupsReport};
use crate::ops::repair_index::{RepairIndexOptions, RepairIndexReport};
use crate::ops::restore::SetRestore;
use crate::ops::stats::{StatsMode, StatsReport};
use crate::ops::verify::{VerifyOptions, VerifyReport};
use crate::retention::{Decision, RetentionPolicy};
use crate::sink::{PutMode, Sink, SinkExt};
use crate::snapshot::Snapshotter;
use crate::{Error, Id, Result};

/// Options for [`Repository::init`].
///
/// [`Repository::init`] takes the options by value and zeroizes the
/// password once the key file is written; `Debug` never shows it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct InitOptions {
    /// Encrypt with this password; `None` creates an unencrypted repository.
    pub password: Option<Vec<u8>>,
    /// Key derivation costs (default: 64 MiB, 3 passes, 4 lanes).
    pub kdf: KdfParams,
}

impl InitOptions {
    /// Encrypts with `password` (the default is an unencrypted repository).
    pub fn with_password(mut self, password: impl Into<Vec<u8>>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the key derivation costs.
    pub fn with_kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }
}

impl std::fmt::Debug for InitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOptions")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("kdf", &self.kdf)
            .finish()
    }
}

/// An open repository.
///
/// # Examples
///
/// ```
/// # async fn demo() -> backup_core::Result<()> {
/// use std::sync::Arc;
/// use backup_core::{BackupOptions, MemorySink, Repository, InitOptions};
/// use backup_core::DirectorySnapshotter;
///
/// let source = tempfile::tempdir().unwrap();
/// std::fs::write(source.path().join("hello.txt"), b"hello").unwrap();
/// let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
/// let summary = repo
///     .backup(&DirectorySnapshotter::new(vec![source.path().into()]), BackupOptions::default())
///     .await?;
/// assert_eq!(summary.manifest.stats.files, 1);
/// let target = tempfile::tempdir().unwrap();
/// let backup = repo.find_backup("latest", None).await?;
/// repo.restore(&backup, target.path(), &Default::default()).await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Repository {
    engine: Arc<Engine>,
    /// The archiver backups and restores run with; `None` is the default
    /// chunking archiver ([`chunk_archiver`](Repository::chunk_archiver)), made for each operation.
    archiver: Option<Arc<dyn Archiver>>,
    /// The key file this handle was opened with (encrypted repositories).
    opened_key: Option<Arc<OpenedKey>>,
}

impl Repository {
    /// Creates a repository in an empty sink.
    ///
    /// # Errors
    ///
    /// [`Error::RepositoryExists`] when the sink already holds one.
    pub async fn init(sink: Arc<dyn Sink>, options: InitOptions) -> Result<Repository> {
        if sink.exists(CONFIG_KEY).await? {
            return Err(Error::RepositoryExists {
                location: sink.location(),
            });
        }
        let config = RepoConfig::new(options.password.is_some());
        let config_object = config.to_object()?;
        let password = zeroize::Zeroizing::new(options.password);
        let key = match password.as_ref() {
            Some(password) => {
                let master = MasterKey::generate();
                let id = crate::engine::keys::write_key_file(
                    sink.as_ref(),
                    &master,
                    password,
                    options.kdf,
                    &config_object,
                )
                .await?;
                let opened = OpenedKey::new(format!("{KEYS_PREFIX}{id}"), config_object.clone());
                Some((master, opened))
            }
            None => None,
        };
        // The config is written last: it is what makes the repository exist.
        sink.put(CONFIG_KEY, Bytes::from(config_object), PutMode::Create)
            .await
            .map_err(|error| match error {
                Error::AlreadyExists { .. } => Error::RepositoryExists {
                    location: sink.location(),
                },
                other => other,
            })?;
        Repository::from_parts(sink, config, key, Index::default())
    }

    /// Opens the repository in `sink`, with `password` if it is encrypted.
    ///
    /// # Errors
    ///
    /// [`Error::NoRepository`], [`Error::PasswordRequired`],
    /// [`Error::WrongPassword`], [`Error::UnsupportedVersion`], or
    /// [`Error::Corrupt`] for a damaged config, key or index.
    pub async fn open(sink: Arc<dyn Sink>, password: Option<&[u8]>) -> Result<Repository> {
        // Read again when the check fails, like every other object: a
        // broken transfer is not a damaged config.
        let checked = get_checked(sink.as_ref(), CONFIG_KEY, |bytes| {
            RepoConfig::from_object(bytes).map(|config| (config, bytes.to_vec()))
        })
        .await;
        let (config, config_object) = match checked {
            Ok(pair) => pair,
            Err(Error::NotFound { .. }) => {
                return Err(Error::NoRepository {
                    location: sink.location(),
                })
            }
            Err(other) => return Err(other),
        };
        let key = match (config.encryption.is_some(), password) {
            (true, Some(password)) => {
                warm_while_deriving(&sink);
                let (file, master) = open_key(sink.as_ref(), password, &config_object).await?;
                Some((master, OpenedKey::new(file, config_object)))
            }
            (true, None) => return Err(Error::PasswordRequired),
            (false, None) => None,
            // Whoever can write to the storage could replace an encrypted
            // repository with an unencrypted one; a caller that expects
            // encryption must not silently write plaintext into it.
            (false, Some(_)) => {
                return Err(Error::NotEncrypted {
                    location: sink.location(),
                })
            }
        };
        let repo = Repository::from_parts(sink, config, key, Index::default())?;
        let index = repo.engine.load_index().await?;
        if let Ok(mut slot) = repo.engine.index.write() {
            *slot = index;
        }
        Ok(repo)
    }

    fn from_parts(
        sink: Arc<dyn Sink>,
        config: RepoConfig,
        key: Option<(MasterKey, OpenedKey)>,
        index: Index,
    ) -> Result<Repository> {
        let (key, opened_key) = key
            .map(|(master, opened)| (master, Arc::new(opened)))
            .unzip();
        let seed = key.as_ref().map(MasterKey::chunker_seed).unwrap_or(0);
        let chunker = Chunker::new(config.chunker, seed)?;
        let tree_chunker = Chunker::new(config.tree_chunker, seed)?;
        Ok(Repository {
            archiver: None,
            opened_key,
            engine: Arc::new(Engine {
                sink,
                config,
                key,
                index: RwLock::new(index),
                chunker,
                tree_chunker,
                windows: ReadWindows::default(),
            }),
        })
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The same repository, with backups and restores run by `archiver`
    /// instead of the default, [`chunk_archiver`](Repository::chunk_archiver).
    ///
    /// An archiver that wraps the default one (to filter or count entries,
    /// say) gets it from [`Repository::chunk_archiver`]. Progress events of
    /// the archive phase are then the archiver's to report: the ones
    /// [`BackupOptions::progress`] receives cover the phases around it.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> backup_core::Result<()> {
    /// use std::sync::Arc;
    /// use backup_core::{Archiver, BackupOptions, DirectorySnapshotter, InitOptions, MemorySink, Repository};
    ///
    /// let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
    /// let default: Arc<dyn Archiver> = repo.chunk_archiver();
    /// let repo = repo.with_archiver(default);
    /// let source = tempfile::tempdir().unwrap();
    /// let summary = repo
    ///     .backup(&DirectorySnapshotter::new(vec![source.path().into()]), BackupOptions::default())
    ///     .await?;
    /// assert_eq!(summary.manifest.stats.dirs, 1);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn with_archiver(mut self, archiver: Arc<dyn Archiver>) -> Repository {
        self.archiver = Some(archiver);
        self
    }

    /// The default archiver over this repository: content-defined chunking,
    /// dedup, compression, encryption and packs.
    pub fn chunk_archiver(&self) -> Arc<dyn Archiver> {
        Arc::new(ChunkArchiver::new(self.engine.clone()))
    }

    /// The repository's config object.
    #[cfg(feature = "internals")]
    pub fn config(&self) -> &RepoConfig {
        &self.engine.config
    }

    /// The repository's id, chosen at random when it was created.
    pub fn id(&self) -> Id {
        self.engine.config.id
    }

    /// The format version the repository was written with.
    pub fn format_version(&self) -> u32 {
        self.engine.config.version
    }

    /// Whether the repository is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.engine.key.is_some()
    }

    /// The sink the repository lives in.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.engine.sink
    }

    /// Takes a snapshot and stores it as a new backup.
    ///
    /// The backup becomes visible only when its manifest is written, after
    /// every pack and index it needs. If anything fails, nothing is listed,
    /// and the packs already uploaded are reused by the next backup.
    ///
    /// # Errors
    ///
    /// Snapshot, storage or encoding errors. Files that cannot be read are
    /// not errors: they are recorded in the manifest, whose status becomes
    /// [`BackupStatus::PartiallyFailed`](crate::BackupStatus::PartiallyFailed).
    pub async fn backup(
        &self,
        snapshotter: &dyn Snapshotter,
        options: BackupOptions,
    ) -> Result<BackupSummary> {
        crate::ops::backup::run(&self.engine, self.archiver.as_ref(), snapshotter, options).await
    }

    /// Copies backups of this repository into `destination` (another
    /// repository, with its own password and keys, on any sink), as `restic
    /// copy` does: each file is read here and stored through the
    /// destination's own chunker and keys, so it deduplicates against what
    /// the destination holds. Each copy keeps the backup's set, time, tags,
    /// writer, source and facts, and records the backup it was copied from
    /// in the fact [`COPIED_FROM_FACT`](crate::COPIED_FROM_FACT). A backup
    /// the destination already holds is skipped, so copying again stores
    /// nothing; only completed backups are copied. Backups are copied
    /// oldest first, each one visible once its manifest is written.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> backup_core::Result<()> {
    /// use std::sync::Arc;
    /// use backup_core::{BackupOptions, CopyOptions, DirectorySnapshotter, InitOptions, MemorySink, Repository};
    ///
    /// let source = tempfile::tempdir().unwrap();
    /// std::fs::write(source.path().join("hello.txt"), b"hello").unwrap();
    /// let here = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
    /// let there = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
    /// here.backup(&DirectorySnapshotter::new(vec![source.path().into()]), BackupOptions::default())
    ///     .await?;
    /// let report = here.copy_to(&there, CopyOptions::default()).await?;
    /// assert_eq!(report.copied.len(), 1);
    /// let again = here.copy_to(&there, CopyOptions::default()).await?;
    /// assert_eq!((again.copied.len(), again.skipped.len(), again.bytes_uploaded), (0, 1, 0));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `destination` is this repository;
    /// [`Error::BackupNotFound`] for a selector that names no backup;
    /// storage and corruption errors of either repository (a backup whose
    /// copy fails is not recorded; the ones copied before it stay).
    pub async fn copy_to(
        &self,
        destination: &Repository,
        options: CopyOptions,
    ) -> Result<CopyReport> {
        crate::ops::copy::run(&self.engine, &destination.engine, options).await
    }

    /// Applies a retention policy: deletes the manifests it does not keep
    /// (unless [`ForgetOptions::dry_run`]). Returns every backup with its
    /// decision. The newest completed backup of each set is kept whatever
    /// the policy says. The data of forgotten backups is freed by
    /// [`Repository::prune`].
    ///
    /// # Errors
    ///
    /// Storage errors; [`Error::Corrupt`] for a damaged manifest.
    pub async fn forget(
        &self,
        policy: &dyn RetentionPolicy,
        now: DateTime<Utc>,
        options: &ForgetOptions,
    ) -> Result<Vec<(Backup, Decision)>> {
        crate::ops::forget::run(&self.engine, policy, now, options, |_| true).await
    }

    /// [`Repository::forget`] over the backups `filter` selects (a set, a
    /// host); the others are neither decided on nor touched.
    ///
    /// # Errors
    ///
    /// As [`Repository::forget`].
    pub async fn forget_matching(
        &self,
        policy: &dyn RetentionPolicy,
        now: DateTime<Utc>,
        options: &ForgetOptions,
        filter: impl Fn(&Backup) -> bool,
    ) -> Result<Vec<(Backup, Decision)>> {
        crate::ops::forget::run(&self.engine, policy, now, options, filter).await
    }

    /// Frees the space of data no backup references: packs no backup uses
    /// are marked, then deleted after the grace period; packs mostly unused
    /// are repacked. A backup running meanwhile is never broken.
    ///
    /// # Errors
    ///
    /// Storage errors, or [`Error::Corrupt`] when a backup's metadata cannot
    /// be read (prune never deletes anything while unsure what is used).
    pub async fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        crate::ops::prune::run(&self.engine, options).await
    }

    /// Reads one manifest.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] when missing, [`Error::Corrupt`] when damaged.
    pub async fn load_backup(&self, id: &Id) -> Result<Backup> {
        self.engine.load_backup(id).await
    }

    /// Lists every backup, oldest first (by the time it represents). A
    /// damaged manifest is skipped with a warning (verify names it), so that
    /// it hides no other backup.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn list(&self) -> Result<Vec<Backup>> {
        self.engine.list().await
    }

    /// The newest backup, of `set` when given, whatever its status: what a
    /// backup compares against for unchanged files and for collisions.
    /// "latest", as [`find_backup`](Repository::find_backup) and a restore
    /// take it, is the newest *completed* one (FORMAT.md, "Manifests").
    ///
    /// # Errors
    ///
    /// As [`Repository::list`].
    pub async fn newest(&self, set: Option<&str>) -> Result<Option<Backup>> {
        self.engine.newest(set).await
    }

    /// The backups `selectors` name (`latest` or unique id prefixes, as
    /// [`find_backup`](Repository::find_backup) takes them), or with no
    /// selector every backup (of `set` when given); each once, oldest
    /// first: what `find`, `stats` and `copy` take as their backups.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] or [`Error::AmbiguousBackup`] for the
    /// first selector that names no single backup;
    /// [`Error::InvalidArgument`] for an invalid set name.
    pub async fn select_backups(
        &self,
        selectors: &[String],
        set: Option<&str>,
    ) -> Result<Vec<Backup>> {
        self.engine.select_backups(selectors, set).await
    }

    /// Finds a backup by `latest` (the newest *completed* backup, of `set`
    /// when given, as Velero restores `latest`) or by a unique prefix of its
    /// id.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] or [`Error::AmbiguousBackup`].
    pub async fn find_backup(&self, selector: &str, set: Option<&str>) -> Result<Backup> {
        self.engine.find_backup(selector, set).await
    }

    /// Restores several backup sets at once, each into `target/<set>`: each
    /// set names `latest`, a backup id (prefix), or `skip` (as a Velero
    /// restore of several schedules does). All selections are resolved
    /// before anything is written, so a bad one restores nothing.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] for a selection that matches nothing (or a
    /// backup of another set); restore errors as [`Repository::restore`].
    pub async fn restore_sets(
        &self,
        selections: &[(String, String)],
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<Vec<SetRestore>> {
        crate::ops::restore::run_sets(
            &self.engine,
            self.archiver.as_ref(),
            selections,
            target,
            options,
        )
        .await
    }

    /// Lists every file, directory and symlink of a backup, depth first.
    ///
    /// # Errors
    ///
    /// Storage or corruption errors.
    pub async fn ls(&self, backup: &Backup) -> Result<Vec<LsEntry>> {
        crate::ops::ls::run(&self.engine, backup).await
    }

    /// Compares two backups, as `restic diff` does: the paths added,
    /// removed, changed in content, in metadata only (permission bits,
    /// owner, modification time) or in type between `from` and `to`, and
    /// the chunks only one of them references. Directories whose listings
    /// are equal on both sides are not read, so comparing two large
    /// backups that differ in a few places is quick.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> backup_core::Result<()> {
    /// use std::sync::Arc;
    /// use backup_core::{BackupOptions, DiffChange, DirectorySnapshotter, InitOptions, MemorySink, Repository};
    ///
    /// let source = tempfile::tempdir().unwrap();
    /// let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
    /// let snapshotter = DirectorySnapshotter::new(vec![source.path().into()]);
    /// let before = repo.backup(&snapshotter, BackupOptions::default()).await?;
    /// std::fs::write(source.path().join("new.txt"), b"hello").unwrap();
    /// let after = repo.backup(&snapshotter, BackupOptions::default()).await?;
    /// let (before, after) = (repo.load_backup(&before.id).await?, repo.load_backup(&after.id).await?);
    /// let report = repo.diff(&before, &after).await?;
    /// let added: Vec<_> = report.entries.iter().filter(|e| e.change == DiffChange::Added).collect();
    /// assert_eq!(added.len(), 1);
    /// assert!(added[0].path.ends_with("/new.txt"));
    /// assert_eq!((report.stats.files_added, report.stats.bytes_added), (1, 5));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Storage or corruption errors.
    pub async fn diff(&self, from: &Backup, to: &Backup) -> Result<DiffReport> {
        crate::ops::diff::run(&self.engine, from, to).await
    }

    /// Finds the entries of `backups` whose name (or, for a pattern with
    /// `/`, whose path) matches one of the glob patterns of `options`, as
    /// `restic find` does. Returns one [`FindMatches`] per backup with a
    /// match, in the order of `backups`.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> backup_core::Result<()> {
    /// use std::sync::Arc;
    /// use backup_core::{BackupOptions, DirectorySnapshotter, FindOptions, InitOptions, MemorySink, Repository};
    ///
    /// let source = tempfile::tempdir().unwrap();
    /// std::fs::write(source.path().join("server.log"), b"started").unwrap();
    /// std::fs::write(source.path().join("notes.txt"), b"milk").unwrap();
    /// let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
    /// repo.backup(&DirectorySnapshotter::new(vec![source.path().into()]), BackupOptions::default())
    ///     .await?;
    /// let found = repo.find(&repo.list().await?, &FindOptions::new(["*.LOG"]).with_ignore_case(true)).await?;
    /// assert_eq!(found.len(), 1);
    /// assert_eq!(found[0].entries.len(), 1);
    /// assert!(found[0].entries[0].path.ends_with("/server.log"));
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for no pattern or an invalid one; storage
    /// or corruption errors.
    pub async fn find(
        &self,
        backups: &[Backup],
        options: &FindOptions,
    ) -> Result<Vec<FindMatches>> {
        crate::ops::find::run(&self.engine, backups, options).await
    }

    /// Counts what `backups` hold, as `restic stats` does: the files and
    /// bytes they restore to, and with [`StatsMode::RawData`] the distinct
    /// chunks they reference, uncompressed and as stored in packs (see
    /// [`StatsReport`] for an example). Each distinct directory listing is
    /// read once for all of them.
    ///
    /// # Errors
    ///
    /// Storage or corruption errors.
    pub async fn stats(&self, backups: &[Backup], mode: StatsMode) -> Result<StatsReport> {
        crate::ops::stats::run(&self.engine, backups, mode).await
    }

    /// Opens one stored file of a backup (`path` relative to its root,
    /// `/`-separated) for reading, chunk by chunk, each chunk checked.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the backup has no such path,
    /// [`Error::InvalidArgument`] when it is not a regular file, storage and
    /// corruption errors.
    pub async fn open_file(&self, backup: &Backup, path: &str) -> Result<crate::FileReader> {
        crate::ops::read_file::open(&self.engine, backup, path).await
    }

    /// Puts a backup back into a store with `restorer`, after checking
    /// that the backup was made by a snapshotter of the restorer's kind.
    ///
    /// # Errors
    ///
    /// [`Error::RestoreRefused`] for a backup of another kind, and whatever
    /// the restorer refuses or fails with (see [`Restorer`](crate::Restorer)).
    pub async fn restore_into(
        &self,
        backup: &Backup,
        restorer: &dyn crate::Restorer,
    ) -> Result<crate::StoreRestore> {
        crate::snapshot::check_kind(backup, restorer.kind(), restorer.kind())?;
        restorer.restore(self, backup).await
    }

    /// Restores a backup (or the parts selected by `options`) under `target`.
    ///
    /// Never writes outside `target`. Files whose data is damaged or missing
    /// are not written; the others are, and each one that failed is listed
    /// in [`RestoreSummary::failures`](crate::RestoreSummary::failures), whose
    /// [`status`](crate::RestoreSummary::status) is then
    /// [`Status::PartiallyFailed`](crate::Status::PartiallyFailed).
    ///
    /// # Errors
    ///
    /// Storage or corruption errors for the directory metadata, and
    /// [`Error::Cancelled`] when the options' cancellation token fires.
    pub async fn restore(
        &self,
        backup: &Backup,
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<RestoreSummary> {
        crate::ops::restore::run(
            &self.engine,
            self.archiver.as_ref(),
            backup,
            target,
            options,
        )
        .await
    }

    /// Checks the repository's structure and, optionally, its data.
    ///
    /// # Errors
    ///
    /// Only for failures to run the check (an unreachable sink); damage found
    /// is reported in the returned [`VerifyReport`].
    pub async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        crate::ops::verify::run(&self.engine, options).await
    }

    /// The key files of an encrypted repository, oldest first: each one's
    /// id, when and on which host it was added, its Argon2id costs, and
    /// whether it is the key this handle was opened with (restic's `key
    /// list`). A damaged key file is left out with a warning (verify names
    /// it).
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> backup_core::Result<()> {
    /// use std::sync::Arc;
    /// use backup_core::{InitOptions, KdfParams, MemorySink, Repository};
    ///
    /// let sink = Arc::new(MemorySink::new());
    /// let options = InitOptions::default()
    ///     .with_password("first")
    ///     .with_kdf(KdfParams::insecure_for_tests());
    /// let repo = Repository::init(sink.clone(), options).await?;
    /// let added = repo.add_key(b"second").await?;
    /// let keys = repo.keys().await?;
    /// assert_eq!(keys.len(), 2);
    /// assert!(keys.iter().any(|key| key.id == added && !key.current));
    ///
    /// // Either password opens the repository; the key opened with is current.
    /// let second = Repository::open(sink.clone(), Some(b"second")).await?;
    /// assert!(second.keys().await?.iter().any(|key| key.id == added && key.current));
    /// let first = second.keys().await?.into_iter().find(|key| !key.current).unwrap();
    /// assert_eq!(second.remove_key(&first.id.to_hex()[..8]).await?, first.id);
    /// assert!(Repository::open(sink, Some(b"first")).await.is_err());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an unencrypted repository; storage
    /// errors.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>> {
        crate::ops::keys::list(&self.engine, self.opened_key.as_deref()).await
    }

    /// Adds a key file wrapping the repository's master key under
    /// `password` (restic's `key add`), with the Argon2id costs `init`
    /// uses by default and a fresh salt; returns its id. The key file is
    /// read back before this returns. Every existing password keeps
    /// working.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an unencrypted repository or an empty
    /// password; storage errors.
    pub async fn add_key(&self, password: &[u8]) -> Result<Id> {
        crate::ops::keys::add(&self.engine, self.opened_key.as_deref(), password).await
    }

    /// Removes the key file whose id is `id`, or starts with it (restic's
    /// `key remove`); returns its id. Its password no longer opens the
    /// repository. The key this handle was opened with is never removed,
    /// nor the last readable key file. Do not remove keys from two places
    /// at once: there is no lock.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an unencrypted repository, an id that
    /// names no key or several, the key in use, or the last key; storage
    /// errors.
    pub async fn remove_key(&self, id: &str) -> Result<Id> {
        crate::ops::keys::remove(&self.engine, self.opened_key.as_deref(), id).await
    }

    /// Changes the password of the key in use (restic's `key passwd`): adds
    /// a key file for `new_password` (as [`add_key`](Repository::add_key)),
    /// makes it this handle's current key, then removes the key file the
    /// handle was opened with; returns the new key's id. The new key file
    /// is stored and read back before the old one is deleted, so a crash
    /// in between leaves both passwords working, never none. Other key
    /// files (other passwords) are not touched.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> backup_core::Result<()> {
    /// use std::sync::Arc;
    /// use backup_core::{Error, InitOptions, KdfParams, MemorySink, Repository};
    ///
    /// let sink = Arc::new(MemorySink::new());
    /// let options = InitOptions::default()
    ///     .with_password("old")
    ///     .with_kdf(KdfParams::insecure_for_tests());
    /// let repo = Repository::init(sink.clone(), options).await?;
    /// let new = repo.change_password(b"new").await?;
    /// assert_eq!(repo.keys().await?.iter().map(|key| (key.id, key.current)).collect::<Vec<_>>(), [(new, true)]);
    /// assert!(matches!(Repository::open(sink.clone(), Some(b"old")).await, Err(Error::WrongPassword)));
    /// Repository::open(sink, Some(b"new")).await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`add_key`](Repository::add_key); a failure to delete the old key
    /// file leaves both passwords working.
    pub async fn change_password(&self, new_password: &[u8]) -> Result<Id> {
        crate::ops::keys::change_password(&self.engine, self.opened_key.as_deref(), new_password)
            .await
    }

    /// Rebuilds the index from the packs' own headers (restic's `repair
    /// index`): lists every pack, reads its header, writes new index
    /// objects covering every blob found, then one superseding the old
    /// index objects, and only then deletes the old ones; a crash in
    /// between leaves a readable, if redundant, index. Use it when an index
    /// object is damaged or lost (verify reports it; prune refuses to run).
    ///
    /// Packs whose header cannot be read are reported in
    /// [`RepairIndexReport::unreadable_packs`] and left in place. Packs
    /// named in deletion marks stay out of the new index, as prune left
    /// them. Safe beside running backups (it deletes no pack, and no index
    /// object written after it started); not beside a prune.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> backup_core::Result<()> {
    /// use std::sync::Arc;
    /// use backup_core::{BackupOptions, DirectorySnapshotter, InitOptions, MemorySink, RepairIndexOptions, Repository, Sink};
    ///
    /// let source = tempfile::tempdir().unwrap();
    /// std::fs::write(source.path().join("hello.txt"), b"hello").unwrap();
    /// let sink = Arc::new(MemorySink::new());
    /// let repo = Repository::init(sink.clone(), InitOptions::default()).await?;
    /// repo.backup(&DirectorySnapshotter::new(vec![source.path().into()]), BackupOptions::default())
    ///     .await?;
    /// // Lose the whole index.
    /// for object in sink.list("index/").await? {
    ///     sink.delete(&object.key).await?;
    /// }
    /// let report = repo.repair_index(&RepairIndexOptions::default()).await?;
    /// assert!(report.is_complete());
    /// assert!(report.packs_indexed > 0);
    /// let target = tempfile::tempdir().unwrap();
    /// repo.restore(&repo.find_backup("latest", None).await?, target.path(), &Default::default())
    ///     .await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Storage errors (before anything is written when reading a header
    /// fails for a reason other than damage), and [`Error::Cancelled`].
    pub async fn repair_index(&self, options: &RepairIndexOptions) -> Result<RepairIndexReport> {
        crate::ops::repair_index::run(&self.engine, options).await
    }

    /// Repairs backups that reference lost data, as `restic repair
    /// snapshots` does: for each selected backup whose tree references a
    /// chunk no index holds (run [`repair_index`](Repository::repair_index)
    /// first, so that the index says what is lost), writes a new backup of
    /// the same set, time, tags and facts without the files whose content
    /// is lost (a directory whose listing is lost is stored empty),
    /// `partially_failed`, each item left out in its errors and the
    /// original named in the fact
    /// [`REPAIRED_FROM_FACT`](crate::REPAIRED_FROM_FACT). Nothing else is
    /// read or stored again. With
    /// [`forget`](crate::RepairBackupsOptions::forget) the original is
    /// forgotten once its repair is written.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> backup_core::Result<()> {
    /// use std::sync::Arc;
    /// use backup_core::{BackupOptions, DirectorySnapshotter, InitOptions, MemorySink, RepairBackupsOptions, Repository};
    ///
    /// let source = tempfile::tempdir().unwrap();
    /// std::fs::write(source.path().join("hello.txt"), b"hello").unwrap();
    /// let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
    /// repo.backup(&DirectorySnapshotter::new(vec![source.path().into()]), BackupOptions::default())
    ///     .await?;
    /// let report = repo.repair_backups(RepairBackupsOptions::default()).await?;
    /// assert!(report.repaired.is_empty());
    /// assert_eq!(report.intact.len(), 1);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] for a selector that names no backup;
    /// storage errors; [`Error::Cancelled`].
    pub async fn repair_backups(
        &self,
        options: RepairBackupsOptions,
    ) -> Result<RepairBackupsReport> {
        crate::ops::repair_backups::run(&self.engine, options).await
    }

    #[cfg(feature = "internals")]
    /// Reads one data or tree chunk by id (checked against its id).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] when the chunk is missing or damaged.
    pub async fn read_chunk(&self, id: &Id) -> Result<Vec<u8>> {
        self.engine.read_blob(id).await
    }

    #[cfg(feature = "internals")]
    /// Every stored pack with its size in bytes.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn packs(&self) -> Result<Vec<(Id, u64)>> {
        let mut packs: Vec<(Id, u64)> = list_packs(self.engine.sink.as_ref())
            .await?
            .into_iter()
            .collect();
        packs.sort();
        Ok(packs)
    }

    #[cfg(feature = "internals")]
    /// The blobs a pack holds, read from its own header (two ranged reads),
    /// for inspection and repair tools.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such pack, [`Error::Corrupt`] if
    /// its header is damaged.
    pub async fn pack_blobs(&self, pack: &Id) -> Result<Vec<crate::format::pack::BlobEntry>> {
        let size = self.engine.sink.head(&pack::pack_key(pack)).await?.size;
        self.engine.read_pack_header(pack, size).await
    }

    #[cfg(feature = "internals")]
    /// The blob kind of an indexed chunk.
    pub fn chunk_kind(&self, id: &Id) -> Option<BlobKind> {
        self.engine
            .index
            .read()
            .ok()
            .and_then(|index| index.get(id).map(|location| location.entry.kind))
    }
}
