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
//! ```
//! # async fn demo() -> backup_core::Result<()> {
//! use std::sync::Arc;
//! use backup_core::{BackupOptions, InitOptions, LocalSink, Repository, RestoreOptions, VerifyOptions};
//! use backup_core::snapshot::DirectorySnapshotter;
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
//! assert!(repo.verify(&VerifyOptions { read_data: true, ..Default::default() }).await?.is_ok());
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod archiver;
pub mod chunker;
pub mod config;
pub mod crypto;
mod error;
pub mod format;
mod id;
pub mod index;
pub mod inflight;
pub mod manifest;
pub mod pack;
pub mod progress;
pub mod prune;
mod readahead;
mod repository;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod sink;
pub mod snapshot;
pub mod tree;
pub mod verify;

// The public API, as a table of contents. Everything an embedder needs is
// re-exported here; the modules behind it are the library's own layout.

// Repositories and the operations on them.
pub use repository::{
    hostname, validate_set_name, Backup, BackupOptions, BackupSummary, InitOptions, LsEntry,
    ParentSelection, Repository, SetRestore,
};
pub use prune::{PruneOptions, PruneReport};
pub use restore::{RestoreOptions, RestoreSummary};
pub use verify::{Problem, VerifyOptions, VerifyReport};

// What a backup records.
pub use id::Id;
pub use manifest::{BackupStats, BackupStatus, ItemError, Manifest, SourceInfo};

// Sources: snapshotters and what they produce.
pub use snapshot::{
    split_command_line, CommandSnapshotter, DirectorySnapshotter, Entry, Finisher, Snapshot,
    Snapshotter,
};

// Turning entries into repository objects.
pub use archiver::{Archived, Archiver, ChunkArchiver};

// Storage locations.
pub use sink::{
    validate_key, LocalSink, MemorySink, ObjectMeta, PutMode, RetryPolicy, RetrySink, Sink,
    SinkExt, StagedObject,
};

// Retention.
pub use retention::{
    check_policy_contract, CalendarDuration, Decision, InvalidPolicy, KeepPolicy,
    ParseDurationError, RetentionPolicy,
};

// Progress reporting.
pub use progress::{Phase, Progress, ProgressSink};

// Keys and errors.
pub use crypto::KdfParams;
pub use error::{BoxError, Error, Result};
