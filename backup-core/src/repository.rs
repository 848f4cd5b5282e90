//! The public facade: an open [`Repository`] and the operations on it.

use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::archiver::restore::{RestoreOptions, RestoreSummary};
use crate::archiver::{Archiver, ChunkArchiver};
use crate::chunker::Chunker;
use crate::crypto::{KdfParams, MasterKey};
use crate::engine::*;
use crate::format::config::{KeyFile, RepoConfig, CONFIG_KEY, KEYS_PREFIX};
use crate::format::index::Index;
use crate::format::manifest::Backup;
#[cfg(feature = "internals")]
use crate::format::pack::{self, BlobKind};
use crate::ops::backup::{BackupOptions, BackupSummary};
use crate::ops::forget::ForgetOptions;
use crate::ops::ls::LsEntry;
use crate::ops::prune::{PruneOptions, PruneReport};
use crate::ops::restore::SetRestore;
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
                let file = {
                    let (master, password, config_object) = (
                        master.clone(),
                        zeroize::Zeroizing::new(password.clone()),
                        config_object.clone(),
                    );
                    let kdf = options.kdf;
                    crate::engine::keys::off_runtime(move || {
                        KeyFile::create(&master, &password, kdf, &config_object, hostname())
                    })
                    .await?
                };
                let object = file.to_object()?;
                let id = Id(Sha256::digest(&object).into());
                sink.put(
                    &format!("{KEYS_PREFIX}{id}"),
                    Bytes::from(object),
                    PutMode::Create,
                )
                .await?;
                Some(master)
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
                Some(open_key(sink.as_ref(), password, &config_object).await?)
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
        key: Option<MasterKey>,
        index: Index,
    ) -> Result<Repository> {
        let seed = key.as_ref().map(MasterKey::chunker_seed).unwrap_or(0);
        let chunker = Chunker::new(config.chunker, seed)?;
        let tree_chunker = Chunker::new(config.tree_chunker, seed)?;
        Ok(Repository {
            archiver: None,
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
