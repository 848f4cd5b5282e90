//! Backup manifests: the record that makes a backup exist.
//!
//! A manifest is JSON in an envelope of kind `Manifest` (compressed; encrypted
//! in encrypted repositories), stored under `manifests/<id>` where the id is
//! the SHA-256 of the stored object. It is written last, with a create-only
//! put, after every pack and index it depends on is stored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Id;

/// Outcome recorded in a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackupStatus {
    /// Every item was stored.
    Completed,
    /// The backup was stored, but some items could not be read; they are
    /// listed in [`Manifest::errors`].
    PartiallyFailed,
}

/// What was backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The snapshotter kind: `directory`, `command`, `etcd`, ...
    pub kind: String,
    /// The paths or command given by the user.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// Counters of one backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Regular files (and streams) in the backup.
    pub files: u64,
    /// Directories in the backup.
    pub dirs: u64,
    /// Symbolic links in the backup.
    pub symlinks: u64,
    /// Files recognised as unchanged from the parent backup, not read again.
    pub files_unchanged: u64,
    /// Total size of all files.
    pub bytes_total: u64,
    /// Bytes read and chunked (excludes unchanged files).
    pub bytes_read: u64,
    /// Bytes of new pack files stored in the repository.
    pub bytes_added: u64,
    /// New data chunks stored.
    pub chunks_added: u64,
    /// Special files (devices, FIFOs, sockets) skipped.
    pub skipped: u64,
    /// Wall time of the backup in milliseconds.
    pub duration_ms: u64,
}

/// The record of one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest schema version (1).
    pub version: u32,
    /// The backup set this backup belongs to.
    pub set: String,
    /// The time the backup represents (start of the snapshot, or `--time`).
    pub time: DateTime<Utc>,
    /// When the backup started writing.
    pub started: DateTime<Utc>,
    /// When the manifest was written.
    pub finished: DateTime<Utc>,
    /// Identity of the writer (host name by default).
    pub writer: String,
    /// Host name of the machine that wrote it.
    pub hostname: String,
    /// What was backed up.
    pub source: SourceInfo,
    /// User tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Tree chunk ids of the root directory.
    pub root: Vec<Id>,
    /// The backup this one was compared against for unchanged files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Consistency facts from the snapshotter (revision, LSN, ...).
    #[serde(default)]
    pub facts: BTreeMap<String, serde_json::Value>,
    /// Counters.
    pub stats: BackupStats,
    /// Outcome.
    pub status: BackupStatus,
    /// Items that could not be stored, each with the kind of its failure
    /// (manifests written before the kind was recorded read as
    /// [`FailureKind::Other`](crate::FailureKind::Other)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<crate::ItemFailure>,
}

/// The manifest schema version of a backup whose tree holds no field of
/// version 2: what readers of version 1 read too.
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest schema version of a backup whose tree holds hard links or
/// extended attributes (fields of its tree nodes), the newest
/// this build writes and reads. Readers of version 1 refuse such a backup
/// with a version error instead of restoring it without them.
pub const MANIFEST_VERSION_2: u32 = 2;

/// A backup: its id and manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The manifest's id.
    pub id: Id,
    /// The manifest.
    pub manifest: Manifest,
}
