//! # backup-core
//!
//! Consistent, deduplicated, verifiable backups of directories and data
//! stores, as a library.
//!
//! A [`Snapshotter`] takes a consistent view of a source (a directory, the
//! output of `etcdctl snapshot save` or `pg_dump`); an [`Archiver`] cuts it
//! into content-defined chunks, stores each distinct chunk once (compressed,
//! optionally encrypted) in pack files on a [`Sink`] (a local directory,
//! memory, S3, an SSH server); the [`Repository`] records each backup in a
//! manifest written last, so a backup is either complete or invisible.
//! The byte format is specified in `FORMAT.md`.
//!
//! Cargo features: `etcd` ([`EtcdSnapshotter`], [`EtcdRestorer`]; gRPC
//! through tonic), `redis` ([`RedisSnapshotter`], [`RedisRestorer`]),
//! `postgres` (`PostgresSnapshotter`, `PostgresRestorer`, `WalArchive`),
//! `mariadb` (`MariadbSnapshotter`, `MariadbRestorer`), `cassandra`
//! (`CassandraSnapshotter`, `CassandraRestorer`, `ClusterBackup`,
//! `ClusterRestore`),
//! `schedule` (the cron scheduler, module `schedule`),
//! `test-util` (test helpers for embedders), `conformance` (the
//! shared [`Sink`] conformance suite, for sink implementers) and
//! `internals` (the byte codecs; no stable API).
//!
//! ```
//! # async fn demo() -> backup_core::Result<()> {
//! use std::sync::Arc;
//! use backup_core::{BackupOptions, InitOptions, LocalSink, Repository, RestoreOptions, VerifyOptions};
//! use backup_core::DirectorySnapshotter;
//!
//! let place = tempfile::tempdir().unwrap();
//! let source = place.path().join("data");
//! std::fs::create_dir(&source).unwrap();
//! std::fs::write(source.join("notes.txt"), b"remember the milk").unwrap();
//!
//! let sink = Arc::new(LocalSink::create(place.path().join("repo"))?);
//! let repo = Repository::init(sink, InitOptions::default()).await?;
//! let backup = repo
//!     .backup(&DirectorySnapshotter::new(vec![source]), BackupOptions::default())
//!     .await?;
//! assert_eq!(backup.manifest.stats.files, 1);
//!
//! let latest = repo.find_backup("latest", None).await?;
//! repo.restore(&latest, &place.path().join("restored"), &RestoreOptions::default()).await?;
//! assert_eq!(std::fs::read(place.path().join("restored/data/notes.txt")).unwrap(), b"remember the milk");
//! assert!(repo.verify(&VerifyOptions::default().with_read_data(true)).await?.is_ok());
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![warn(unnameable_types)]

#[macro_use]
mod macros;

mod archiver;
mod chunker;
mod crypto;
mod duration;
mod engine;
mod error;
mod format;
mod id;
mod ops;
mod outcome;
mod progress;
mod readahead;
mod repository;
mod retention;
#[cfg(feature = "schedule")]
pub mod schedule;
mod sink;
mod snapshot;

#[cfg(feature = "conformance")]
pub use sink::conformance;
/// The shared [`Snapshotter`] conformance suite, for snapshotter
/// implementers (feature `conformance`).
#[cfg(feature = "conformance")]
pub use snapshot::conformance as snapshot_conformance;

// The README's Rust example is compiled as a doc test, so it stays on the
// public API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The byte codecs and engine records behind the API, for the fuzz targets,
/// the benchmarks and the golden-repository tests. Not part of the stable
/// API: enabled by the `internals` feature, and free to change in any
/// release. `FORMAT.md` is the specification they implement.
#[cfg(feature = "internals")]
pub mod internals {
    /// Content-defined chunking.
    pub mod chunker {
        pub use crate::chunker::*;
    }
    /// Keys, sealing and key derivation.
    pub mod crypto {
        pub use crate::crypto::*;
    }
    /// In-flight markers of running backups.
    pub mod inflight {
        pub use crate::engine::inflight::*;
    }
    /// Deletion marks of prune.
    pub mod marks {
        pub use crate::engine::marks::*;
    }
    pub use crate::engine::{DATA_PREFIX, INDEX_PREFIX, MANIFEST_PREFIX};
    pub use crate::format::*;
}

// The public API, as a table of contents. Everything an embedder needs is
// re-exported here; the modules behind it are the library's own layout.

// Repositories and the operations on them.
pub use archiver::restore::{Overwrite, RestoreOptions, RestoreSummary};
pub use engine::validate_set_name;
pub use ops::backup::{BackupOptions, BackupSummary, ParentSelection};
pub use ops::copy::{CopiedBackup, CopyOptions, CopyReport, COPIED_FROM_FACT};
pub use ops::diff::{DiffChange, DiffEntry, DiffReport, DiffStats};
pub use ops::find::{FindMatches, FindOptions};
pub use ops::forget::ForgetOptions;
pub use ops::keys::KeyInfo;
pub use ops::ls::LsEntry;
pub use ops::prune::{PruneOptions, PruneReport};
pub use ops::read_file::FileReader;
pub use ops::repair_backups::{
    RepairBackupsOptions, RepairBackupsReport, RepairedBackup, REPAIRED_FROM_FACT,
};
pub use ops::repair_index::{RepairIndexOptions, RepairIndexReport};
pub use ops::restore::SetRestore;
pub use ops::stats::{RawDataStats, StatsMode, StatsReport};
pub use ops::verify::{Problem, VerifyOptions, VerifyReport};
pub use repository::{InitOptions, Repository};

// What a backup records.
pub use format::manifest::{Backup, BackupStats, BackupStatus, Manifest, SourceInfo};
pub use format::tree::{NodeKind, Xattr};
pub use id::Id;

// How operations end.
pub use outcome::{FailureKind, ItemFailure, Status};

// Sources: snapshotters and what they produce.
#[cfg(feature = "postgres")]
pub use snapshot::{
    base_backup_for, wal_set, ArchivedWal, PostgresMode, PostgresRestorer, PostgresSnapshotter,
    RecoveryTarget, WalArchive, WalGap, WalPush, POSTGRES_DATA_DIR, POSTGRES_GLOBALS_FILE,
    WAL_KIND,
};
#[cfg(feature = "cassandra")]
pub use snapshot::{
    cluster_set, describe_node, CassandraNode, CassandraRestorer, CassandraSnapshotter,
    ClusterBackup, ClusterBackupReport, ClusterNodeReport, ClusterProgress, ClusterRecord,
    ClusterRestore, ClusterState, RecordedNode, SshAccess, CASSANDRA_DATA_DIR, CASSANDRA_KIND,
    CASSANDRA_SCHEMA_FILE, CLUSTER_KIND, DEFAULT_STALE_SNAPSHOT_AGE, SNAPSHOT_TAG_PREFIX,
};
pub use snapshot::{
    files_from, CommandRestorer, CommandSnapshotter, DirectoryRestorer, DirectorySnapshotter,
    Entry, FetchFiles, FilesFrom, Finisher, Hook, HookCallback, HookPoint, Hooks, ListedFile,
    OnError, PlannedItem, Restorer, Selection, Snapshot, Snapshotter, StoreRestore, TarCapture,
    WithHooks, CACHEDIR_TAG_SIGNATURE, DEFAULT_HOOK_TIMEOUT,
};
#[cfg(feature = "etcd")]
pub use snapshot::{EtcdRestorer, EtcdSnapshotter, EtcdTls, ETCD_SNAPSHOT_FILE};
#[cfg(feature = "mariadb")]
pub use snapshot::{
    MariadbMode, MariadbRestorer, MariadbSnapshotter, MARIADB_BACKUP_DIR, MARIADB_DUMP_FILE,
};
#[cfg(feature = "redis")]
pub use snapshot::{RedisRestorer, RedisSnapshotter, REDIS_SNAPSHOT_FILE};

// Turning entries into repository objects.
pub use archiver::{Archived, Archiver};

// Storage locations.
/// Helpers for implementing a [`Sink`]: temporary names, range clamping,
/// listing walks, retries.
pub use sink::support as sink_support;
pub use sink::{
    validate_key, LocalSink, MemorySink, ObjectMeta, PutMode, RetryPolicy, RetrySink, Sink,
    SinkExt, StagedObject,
};
pub use sink::{ThrottleLimits, ThrottleSink};

// Retention.
#[cfg(any(test, feature = "conformance"))]
pub use retention::check_policy_contract;
pub use retention::{Decision, InvalidPolicy, KeepPolicy, RetentionPolicy};

// Durations, in the one grammar every duration is written in.
pub use duration::{format_duration, parse_duration, CalendarDuration, ParseDurationError};

// Progress reporting.
pub use progress::{Phase, Progress, ProgressSink};

// Keys and errors.
pub use crypto::KdfParams;
pub use error::{BoxError, Error, Result};
/// Cancels a long operation ([`BackupOptions::with_cancellation`] and the
/// like) or a scheduled run; tokio-util's token, re-exported.
pub use tokio_util::sync::CancellationToken;
