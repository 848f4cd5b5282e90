//! Snapshotters: consistent point-in-time views of a data source.
//!
//! A [`Snapshotter`] turns a source (a directory, the output of a dump
//! command, an etcd member, a Cassandra node...) into a [`Snapshot`]: a list
//! of [`Entry`]s, each either a path on the local file system (a file or a
//! whole tree) or a byte stream, plus the consistency facts to record in the
//! manifest.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::format::manifest::SourceInfo;
use crate::Result;

#[cfg(feature = "cassandra")]
mod cassandra;
mod command;
#[cfg(feature = "conformance")]
pub mod conformance;
mod directory;
#[cfg(feature = "etcd")]
mod etcd;
mod hooks;
#[cfg(feature = "mariadb")]
mod mariadb;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod restorer;
mod select;
#[cfg(any(feature = "postgres", feature = "mariadb", feature = "cassandra"))]
mod tool;

#[cfg(feature = "cassandra")]
pub use cassandra::{
    cluster_set, describe_node, CassandraNode, CassandraRestorer, CassandraSnapshotter,
    ClusterBackup, ClusterBackupReport, ClusterNodeReport, ClusterProgress, ClusterRecord,
    ClusterRestore, ClusterState, RecordedNode, SshAccess, CASSANDRA_DATA_DIR, CASSANDRA_KIND,
    CASSANDRA_SCHEMA_FILE, CLUSTER_KIND, DEFAULT_STALE_SNAPSHOT_AGE, SNAPSHOT_TAG_PREFIX,
};
pub use command::CommandSnapshotter;
pub use directory::{DirectorySnapshotter, PlannedItem};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdRestorer, EtcdSnapshotter, EtcdTls, ETCD_SNAPSHOT_FILE};
pub use hooks::{Hook, HookCallback, HookPoint, Hooks, OnError, WithHooks, DEFAULT_HOOK_TIMEOUT};
#[cfg(feature = "mariadb")]
pub use mariadb::{
    MariadbMode, MariadbRestorer, MariadbSnapshotter, MARIADB_BACKUP_DIR, MARIADB_DUMP_FILE,
};
#[cfg(feature = "postgres")]
pub use postgres::{
    base_backup_for, wal_set, ArchivedWal, PostgresMode, PostgresRestorer, PostgresSnapshotter,
    RecoveryTarget, WalArchive, WalGap, WalPush, POSTGRES_DATA_DIR, POSTGRES_GLOBALS_FILE,
    WAL_KIND,
};
#[cfg(feature = "redis")]
pub use redis::{RedisRestorer, RedisSnapshotter, REDIS_SNAPSHOT_FILE};
pub(crate) use restorer::check_kind;
pub use restorer::{CommandRestorer, DirectoryRestorer, Restorer, StoreRestore};
pub(crate) use select::Verdict;
pub use select::{files_from, FilesFrom, Selection, CACHEDIR_TAG_SIGNATURE};

/// One item of a snapshot, stored as a top-level entry of the backup.
#[non_exhaustive]
pub enum Entry {
    /// A file, symlink or directory tree on the local file system, stored
    /// under `name` at the root of the backup.
    Path {
        /// Name at the backup's root.
        name: String,
        /// Where it is now.
        path: PathBuf,
        /// What of the tree is left out (`None`: nothing).
        selection: Option<Arc<Selection>>,
    },
    /// A byte stream, stored as a regular file `name`.
    Stream {
        /// Name at the backup's root.
        name: String,
        /// The stream; read on a blocking thread.
        reader: Box<dyn Read + Send>,
        /// Permission bits to restore the file with.
        mode: u32,
    },
    /// A tar stream (ustar, GNU or pax), stored as the directory tree it
    /// holds under `name`: each member a file, directory or symlink of
    /// its own, so that the next backup deduplicates file by file.
    ///
    /// Member paths are relative (a leading `./` is dropped); a member
    /// whose path is absolute or climbs out with `..` fails the backup, as
    /// does a truncated or damaged stream. Hard links, devices and FIFOs
    /// are refused. Permission bits and modification times are kept,
    /// owners are not (the restored files belong to whoever restores).
    Tar {
        /// Name of the directory at the backup's root.
        name: String,
        /// The stream; read on a blocking thread.
        reader: Box<dyn Read + Send>,
        /// Members whose contents the snapshotter wants to see as they
        /// pass (a label, a manifest), to record facts from them.
        capture: Option<TarCapture>,
    },
    /// Files listed in advance with their sizes and times, stored as the
    /// directory tree their `path`s make under `name`. A file whose path,
    /// size and modification time match the parent backup's is not read
    /// again (unless it is marked [`ListedFile::reread`]); the others are
    /// read from the local file system, or, with a `fetch`, from the tar
    /// stream it returns (files on another host). A file whose size is
    /// not the listed one when it is read fails the backup: the listing
    /// is of files that do not change (a store's snapshot).
    Files {
        /// Name of the directory at the backup's root.
        name: String,
        /// The files, each at its own path under `name`.
        files: Vec<ListedFile>,
        /// Where the files are read from when they are not local.
        fetch: Option<Box<dyn FetchFiles>>,
    },
}

/// One file of an [`Entry::Files`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedFile {
    /// Where it is stored, relative to the entry: names separated by `/`.
    pub path: String,
    /// Where it is read from: a local path, or the path the
    /// [`FetchFiles`] stream names it by.
    pub source: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Its permission bits.
    pub mode: u32,
    /// Read again even when it looks as it did in the parent backup (a
    /// file the store rewrites in place).
    pub reread: bool,
}

impl ListedFile {
    /// A file stored at `path`, read from `source`.
    pub fn new(
        path: impl Into<String>,
        source: impl Into<String>,
        size: u64,
        mtime_ns: i64,
    ) -> ListedFile {
        ListedFile {
            path: path.into(),
            source: source.into(),
            size,
            mtime_ns,
            mode: 0o644,
            reread: false,
        }
    }

    /// Sets the permission bits.
    pub fn with_mode(mut self, mode: u32) -> ListedFile {
        self.mode = mode & 0o7777;
        self
    }

    /// Marks it to be read again whatever the parent backup holds.
    pub fn reread(mut self, reread: bool) -> ListedFile {
        self.reread = reread;
        self
    }
}

/// Reads the files of an [`Entry::Files`] that are not on the local file
/// system (on another host, over SSH).
pub trait FetchFiles: Send {
    /// A tar stream holding the files named by `sources` (their
    /// [`ListedFile::source`]s), each as a member whose path is the source
    /// without its leading `/`. The stream's final read fails when the
    /// program producing it did.
    ///
    /// # Errors
    ///
    /// When the stream cannot be started.
    fn fetch(self: Box<Self>, sources: Vec<String>) -> std::io::Result<Box<dyn Read + Send>>;
}

/// Copies of chosen members of an [`Entry::Tar`] stream, taken as the
/// stream is archived: how a snapshotter learns facts (a backup label,
/// a manifest) from a stream it does not read itself.
///
/// # Examples
///
/// ```
/// use backup_core::TarCapture;
/// let capture = TarCapture::new(["backup_label"]);
/// assert!(capture.get("backup_label").is_none()); // nothing archived yet
/// ```
#[derive(Debug, Clone, Default)]
pub struct TarCapture {
    wanted: std::sync::Arc<[String]>,
    captured: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl TarCapture {
    /// Members larger than this are not captured (they are still archived).
    pub const LIMIT: u64 = 64 << 20;

    /// Captures the members at these paths (relative, as in the stream
    /// without its leading `./`).
    pub fn new<I, S>(paths: I) -> TarCapture
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TarCapture {
            wanted: paths.into_iter().map(Into::into).collect(),
            captured: Default::default(),
        }
    }

    /// The contents of the member at `path`, once archived.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.captured.lock().ok()?.get(path).cloned()
    }

    pub(crate) fn wants(&self, path: &str, size: u64) -> bool {
        size <= Self::LIMIT && self.wanted.iter().any(|wanted| wanted == path)
    }

    pub(crate) fn put(&self, path: &str, contents: Vec<u8>) {
        if let Ok(mut captured) = self.captured.lock() {
            captured.insert(path.to_string(), contents);
        }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Path {
                name,
                path,
                selection,
            } => f
                .debug_struct("Path")
                .field("name", name)
                .field("path", path)
                .field("selection", selection)
                .finish(),
            Entry::Stream { name, mode, .. } => f
                .debug_struct("Stream")
                .field("name", name)
                .field("mode", mode)
                .finish(),
            Entry::Tar { name, capture, .. } => f
                .debug_struct("Tar")
                .field("name", name)
                .field("capture", capture)
                .finish(),
            Entry::Files { name, files, fetch } => f
                .debug_struct("Files")
                .field("name", name)
                .field("files", &files.len())
                .field("remote", &fetch.is_some())
                .finish(),
        }
    }
}

impl Entry {
    /// A file, symlink or directory tree stored whole under `name`.
    pub fn path(name: impl Into<String>, path: impl Into<PathBuf>) -> Entry {
        Entry::Path {
            name: name.into(),
            path: path.into(),
            selection: None,
        }
    }

    /// The entry's name at the backup's root.
    pub fn name(&self) -> &str {
        match self {
            Entry::Path { name, .. }
            | Entry::Stream { name, .. }
            | Entry::Tar { name, .. }
            | Entry::Files { name, .. } => name,
        }
    }
}

/// Clean-up and completion check run after a snapshot's entries are consumed.
#[async_trait]
pub trait Finisher: Send {
    /// Releases the snapshot. Returns extra facts for the manifest, or an
    /// error when the snapshot is not complete (see the module contract).
    async fn finish(self: Box<Self>, success: bool) -> Result<BTreeMap<String, serde_json::Value>>;
}

/// A consistent view of a source, ready to be archived.
pub struct Snapshot {
    /// The entries to store.
    pub entries: Vec<Entry>,
    /// What the source is, for the manifest.
    pub source: SourceInfo,
    /// Consistency facts known when the snapshot was taken.
    pub facts: BTreeMap<String, serde_json::Value>,
    finisher: Option<Box<dyn Finisher>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("entries", &self.entries)
            .field("source", &self.source)
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// A snapshot with nothing to clean up.
    pub fn new(entries: Vec<Entry>, source: SourceInfo) -> Snapshot {
        Snapshot {
            entries,
            source,
            facts: BTreeMap::new(),
            finisher: None,
        }
    }

    /// Sets the clean-up and completion check.
    pub fn with_finisher(mut self, finisher: Box<dyn Finisher>) -> Snapshot {
        self.finisher = Some(finisher);
        self
    }

    /// Takes the finisher out, leaving the entries to be consumed.
    pub(crate) fn take_finisher(&mut self) -> Option<Box<dyn Finisher>> {
        self.finisher.take()
    }

    /// Runs the finisher (if any): see the module contract.
    ///
    /// # Errors
    ///
    /// The finisher's error when the snapshot was incomplete.
    pub async fn finish(mut self, success: bool) -> Result<BTreeMap<String, serde_json::Value>> {
        match self.finisher.take() {
            Some(finisher) => finisher.finish(success).await,
            None => Ok(BTreeMap::new()),
        }
    }
}

/// Produces consistent point-in-time views of one data source.
///
/// A snapshotter turns a source (a directory, the output of a dump
/// command, an etcd member, a Cassandra node...) into a [`Snapshot`]: a list
/// of [`Entry`]s, each either a path on the local file system (a file or a
/// whole tree) or a byte stream, plus the consistency facts to record in the
/// manifest.
///
/// # Contract
///
/// * `snapshot` returns only once the view is consistent (a database dump
///   started, a file-system snapshot taken); the entries stay readable until
///   [`Snapshot::finish`] is called.
/// * The caller consumes every entry and then calls [`Snapshot::finish`]
///   exactly once, with `success` telling whether the backup stored the
///   entries. `finish` cleans up (removes temporary snapshots, reaps
///   processes) *whatever* the outcome, and returns an error if the view
///   turned out not to be complete (a dump command that exited non-zero):
///   the backup must then not be recorded.
/// * Dropping a `Snapshot` without calling `finish` must still release
///   resources (kill a child process), though it cannot report errors.
#[async_trait]
pub trait Snapshotter: Send + Sync {
    /// A short name of the kind of source: `directory`, `command`, `etcd`...
    fn kind(&self) -> &str;

    /// Takes the snapshot.
    ///
    /// # Errors
    ///
    /// [`Error::Snapshot`](crate::Error::Snapshot) when the source cannot
    /// be snapshotted.
    async fn snapshot(&self) -> Result<Snapshot>;
}

#[async_trait]
impl<S: Snapshotter + ?Sized> Snapshotter for Box<S> {
    fn kind(&self) -> &str {
        (**self).kind()
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        (**self).snapshot().await
    }
}
