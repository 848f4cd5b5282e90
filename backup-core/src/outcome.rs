//! How an operation ended, in one shape for every operation: a
//! [`Status`] an operator can copy into a resource's status, and the
//! items that failed, each with a [`FailureKind`].

use crate::Error;

/// How an operation ended.
///
/// An operation that could not run at all returns an [`Error`]; its status
/// is [`Status::Failed`] ([`Status::of`]). One that ran reports its status
/// in its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Every item was done.
    Completed,
    /// Some items failed; the others were done, and the failures are listed.
    PartiallyFailed,
    /// Nothing was done.
    Failed,
}

impl Status {
    /// The status of an operation's outcome: [`Status::Failed`] for an
    /// error, the summary's own status otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use backup_core::{Error, RestoreSummary, Status};
    /// let failed: Result<RestoreSummary, Error> = Err(Error::WrongPassword);
    /// assert_eq!(Status::of(&failed, |summary| summary.status), Status::Failed);
    /// ```
    pub fn of<T>(outcome: &Result<T, Error>, status: impl FnOnce(&T) -> Status) -> Status {
        outcome.as_ref().map_or(Status::Failed, status)
    }

    /// The status of an operation that did `done` items and failed on
    /// `failed`: completed with no failure, failed with nothing done,
    /// partially failed otherwise.
    pub(crate) fn from_counts(done: u64, failed: usize) -> Status {
        match (done, failed) {
            (_, 0) => Status::Completed,
            (0, _) => Status::Failed,
            _ => Status::PartiallyFailed,
        }
    }

    /// The lower-case name used in JSON and logs (`partially_failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::PartiallyFailed => "partially_failed",
            Status::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure an item met, so that a caller can tell "fix the
/// permissions" from "the repository is damaged" from "retry later".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The file system or the storage refused access: fix the permissions.
    PermissionDenied,
    /// The storage refused the credentials: fix the credentials.
    Unauthenticated,
    /// The item, or something it needs, does not exist.
    NotFound,
    /// Stored data failed its integrity check.
    Corrupt,
    /// The storage failed (see [`Error::is_temporary`] on the operation's
    /// errors for whether retrying may help).
    Storage,
    /// A local file system operation failed otherwise.
    Io,
    /// The item was refused as unsafe (a hostile name or path).
    Refused,
    /// The item cannot be represented (for example a name that is not
    /// UTF-8).
    Unsupported,
    /// The file changed while it was read, each time it was read: not
    /// stored, since what was read may never have been on disk at one
    /// moment.
    Changed,
    /// Anything else; also a kind this build does not know, read from a
    /// manifest a newer writer wrote.
    #[serde(other)]
    Other,
}

impl FailureKind {
    fn other() -> FailureKind {
        FailureKind::Other
    }

    /// The kind of `error`.
    pub fn of(error: &Error) -> FailureKind {
        match error {
            Error::Io { source, .. } => FailureKind::of_io(source),
            Error::NotFound { .. } => FailureKind::NotFound,
            Error::Corrupt { .. } => FailureKind::Corrupt,
            Error::PermissionDenied { .. } => FailureKind::PermissionDenied,
            Error::Unauthenticated { .. } => FailureKind::Unauthenticated,
            Error::Sink { .. } => FailureKind::Storage,
            Error::UnsafePath { .. } => FailureKind::Refused,
            _ => FailureKind::Other,
        }
    }

    /// The kind of a local I/O error.
    pub(crate) fn of_io(error: &std::io::Error) -> FailureKind {
        match error.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                FailureKind::PermissionDenied
            }
            std::io::ErrorKind::NotFound => FailureKind::NotFound,
            std::io::ErrorKind::InvalidData => FailureKind::Corrupt,
            _ => FailureKind::Io,
        }
    }
}

/// One item an operation could not do: its path, the kind of failure and a
/// message for people. A backup records its failures in the manifest
/// ([`Manifest::errors`](crate::Manifest::errors)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ItemFailure {
    /// The item's path (relative to the backup's root for a restore; `/`
    /// is the root itself; a backup's source path for a backup).
    pub path: String,
    /// What kind of failure it was (`other` when a manifest does not say).
    #[serde(default = "FailureKind::other")]
    pub kind: FailureKind,
    /// Why it failed.
    pub message: String,
}

impl ItemFailure {
    /// A failure of `path`.
    pub fn new(path: impl Into<String>, kind: FailureKind, message: impl Into<String>) -> Self {
        ItemFailure {
            path: path.into(),
            kind,
            message: message.into(),
        }
    }

    /// The failure of `path` with `error`.
    pub(crate) fn of(path: impl Into<String>, error: &Error) -> Self {
        ItemFailure::new(path, FailureKind::of(error), error.to_string())
    }
}

impl std::fmt::Display for ItemFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
