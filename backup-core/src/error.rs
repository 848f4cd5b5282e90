//! The crate's one error type.
//!
//! # Error policy
//!
//! * Every fallible public function returns [`Result<T>`](crate::Result).
//! * Variants carry the context a user needs to act: the object key, the
//!   offset, the expected and actual checksum, the path on disk.
//! * [`Error::is_temporary`] tells a caller whether retrying the same call may
//!   succeed (a timeout, a dropped connection) or not (corruption, a wrong
//!   password, a missing object).
//! * Secrets (passwords, keys) never appear in an error or its `Debug` output.

use std::path::PathBuf;

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed error from a sink backend or another library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `backup-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist in the sink.
    #[error("object not found: {key}")]
    NotFound {
        /// Key of the missing object.
        key: String,
    },

    /// A create-only put found an object already stored under the key.
    #[error("object already exists: {key}")]
    AlreadyExists {
        /// Key of the existing object.
        key: String,
    },

    /// A storage operation failed.
    #[error("storage error on {key:?} during {operation}: {source}")]
    Sink {
        /// What was being done (`put`, `get`, `list`, ...).
        operation: &'static str,
        /// Key or prefix involved.
        key: String,
        /// Whether a retry may succeed.
        temporary: bool,
        /// The backend's error.
        #[source]
        source: BoxError,
    },

    /// A local file system operation failed.
    #[error("{context} {path:?}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A stored object failed its integrity check or could not be decoded.
    #[error("corrupt object {key} at offset {offset}: {detail}")]
    Corrupt {
        /// Key of the damaged object.
        key: String,
        /// Byte offset within the object where the damaged part starts.
        offset: u64,
        /// What is wrong, with expected and actual values where known.
        detail: String,
    },

    /// The password did not open any key of the repository.
    #[error("wrong password: no key in the repository can be opened with the given password (or the key file was modified)")]
    WrongPassword,

    /// A password was given but the repository is not encrypted.
    #[error("the repository at {location} is not encrypted, but a password was given: refusing to use it, since an unencrypted repository may have been put in place of an encrypted one (if it is meant to be unencrypted, give no password)")]
    NotEncrypted {
        /// Where the repository is.
        location: String,
    },

    /// The repository is encrypted and no password was given.
    #[error("the repository is encrypted: a password is required")]
    PasswordRequired,

    /// The repository uses a format version this build does not read.
    #[error("unsupported repository format version {found} in {key}: this build reads versions {min_supported} to {max_supported}")]
    UnsupportedVersion {
        /// Key of the object carrying the version.
        key: String,
        /// The version found.
        found: u32,
        /// The oldest version this build reads.
        min_supported: u32,
        /// The newest version this build reads.
        max_supported: u32,
    },

    /// There is no repository at the location.
    #[error("no repository found at {location} (none was initialised there)")]
    NoRepository {
        /// Where it was looked for.
        location: String,
    },

    /// `init` found a repository already there.
    #[error("a repository already exists at {location}")]
    RepositoryExists {
        /// Where it was found.
        location: String,
    },

    /// A backup id or selector matched no backup.
    #[error("no backup matches {selector:?}")]
    BackupNotFound {
        /// What was asked for.
        selector: String,
    },

    /// A backup id prefix matched several backups.
    #[error("backup id prefix {prefix:?} is ambiguous: it matches {count} backups")]
    AmbiguousBackup {
        /// The prefix given.
        prefix: String,
        /// How many backups it matched.
        count: usize,
    },

    /// A path in a backup or restore request is not allowed.
    #[error("refused path {path:?}: {reason}")]
    UnsafePath {
        /// The offending path or name.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A snapshotter could not produce a consistent view of its source.
    #[error("snapshot of {source_name} failed: {detail}")]
    Snapshot {
        /// The source being snapshotted.
        source_name: String,
        /// What went wrong.
        detail: String,
    },

    /// The storage refused the credentials: they are missing, wrong or
    /// expired. Fix the credentials; retrying as is will not help.
    #[error("storage refused the credentials during {operation} on {key:?}: {source}")]
    Unauthenticated {
        /// What was being done (`put`, `get`, `list`, ...).
        operation: &'static str,
        /// Key or prefix involved.
        key: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },

    /// The storage accepted the credentials but does not allow the
    /// operation on the key. Fix the permissions; retrying as is will not
    /// help.
    #[error("storage denied {operation} on {key:?}: {source}")]
    PermissionDenied {
        /// What was being done (`put`, `get`, `list`, ...).
        operation: &'static str,
        /// Key or prefix involved.
        key: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },

    /// The operation was cancelled through its cancellation token. It
    /// stopped and cleaned up: a cancelled backup wrote no manifest and
    /// left no in-flight marker.
    #[error("{operation} cancelled")]
    Cancelled {
        /// The operation cancelled (`backup`, `restore`, ...).
        operation: &'static str,
    },

    /// The newest backup of the set was written by another writer: two
    /// writers share one backup set, and this one stops rather than
    /// interleave with the other.
    #[error("backup collision in set {set:?}: its newest backup {backup} was written by {other_writer:?}, not by this writer {writer:?}; make sure only one writer uses the set, then resume")]
    Collision {
        /// The backup set.
        set: String,
        /// This writer's identity.
        writer: String,
        /// The identity found on the newest backup.
        other_writer: String,
        /// That backup's id.
        backup: String,
    },

    /// A store's own program failed while a backup was restored into the
    /// store (`pg_restore`, `mariadb`, `mariadb-backup --prepare`); the
    /// detail is its exit status and the end of its standard error.
    #[error("restore into {target} failed: {detail}")]
    RestoreFailed {
        /// The target: a data directory, a server.
        target: String,
        /// The program's own message.
        detail: String,
    },

    /// A restorer refused to restore a backup into a store, before writing
    /// anything: the backup is of another kind or a version the store cannot
    /// take, or the target is not empty.
    #[error("restore into {target} refused: {reason}")]
    RestoreRefused {
        /// The target: a data directory, a server.
        target: String,
        /// Why, and what to do.
        reason: String,
    },

    /// The caller's input is not valid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether retrying the failed operation may succeed.
    ///
    /// # Examples
    ///
    /// ```
    /// use backup_core::Error;
    /// let missing = Error::NotFound { key: "config".into() };
    /// assert!(!missing.is_temporary());
    /// ```
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Sink { temporary, .. } => *temporary,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Builds an [`Error::Io`].
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(key: impl Into<String>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            key: key.into(),
            offset,
            detail: detail.into(),
        }
    }
}
