//! The library's errors as the exceptions of `backup_toolkit.exceptions`.
//!
//! The exception tree is written in Python (a class can have two bases
//! there: `NotFoundError` is also a `FileNotFoundError`); each error keeps
//! the library's message, and the facts a program acts on become attributes
//! of the exception.

use backup_core::Error;
use pyo3::prelude::*;

pyo3::import_exception!(backup_toolkit.exceptions, BackupError);
pyo3::import_exception!(backup_toolkit.exceptions, NotFoundError);
pyo3::import_exception!(backup_toolkit.exceptions, AlreadyExistsError);
pyo3::import_exception!(backup_toolkit.exceptions, WrongPasswordError);
pyo3::import_exception!(backup_toolkit.exceptions, CorruptionError);
pyo3::import_exception!(backup_toolkit.exceptions, UnsupportedVersionError);
pyo3::import_exception!(backup_toolkit.exceptions, CollisionError);
pyo3::import_exception!(backup_toolkit.exceptions, StorageError);
pyo3::import_exception!(backup_toolkit.exceptions, SnapshotError);
pyo3::import_exception!(backup_toolkit.exceptions, RestoreFailedError);
pyo3::import_exception!(backup_toolkit.exceptions, RestoreRefusedError);
pyo3::import_exception!(backup_toolkit.exceptions, UnsafePathError);
pyo3::import_exception!(backup_toolkit.exceptions, CancelledError);
pyo3::import_exception!(backup_toolkit.exceptions, InvalidArgumentError);

/// A `BackupError` with `message`.
pub(crate) fn backup_error(message: String) -> PyErr {
    BackupError::new_err(message)
}

/// An `InvalidArgumentError` with `message`.
pub(crate) fn invalid(message: impl Into<String>) -> PyErr {
    InvalidArgumentError::new_err(message.into())
}

/// A fact of an error, set as an attribute of its exception.
pub(crate) enum Fact {
    /// A text.
    Text(String),
    /// A number.
    Int(u64),
    /// A yes or no.
    Flag(bool),
}

impl<'py> IntoPyObject<'py> for Fact {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(match self {
            Fact::Text(text) => pyo3::types::PyString::new(py, &text).into_any(),
            Fact::Int(number) => number.into_pyobject(py)?.into_any(),
            Fact::Flag(flag) => pyo3::types::PyBool::new(py, flag).to_owned().into_any(),
        })
    }
}

/// The exception for a library error: its message the error's (with the
/// context and the source's words), its facts as attributes. Built lazily,
/// so that it needs no GIL: an async twin's error is made on a worker.
pub(crate) fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    let temporary = error.is_temporary();
    let text = |value: &str| Fact::Text(value.to_owned());
    let facts: Vec<(&'static str, Fact)>;
    macro_rules! raise {
        ($exception:ty) => {{
            let facts: std::collections::HashMap<&'static str, Fact> = facts.into_iter().collect();
            <$exception>::new_err((message, facts))
        }};
    }
    match &error {
        Error::NotFound { key: name }
        | Error::BackupNotFound { selector: name }
        | Error::NoRepository { location: name } => {
            facts = vec![("name", text(name))];
            raise!(NotFoundError)
        }
        Error::AlreadyExists { key: name } | Error::RepositoryExists { location: name } => {
            facts = vec![("name", text(name))];
            raise!(AlreadyExistsError)
        }
        Error::WrongPassword | Error::PasswordRequired | Error::NotEncrypted { .. } => {
            facts = vec![];
            raise!(WrongPasswordError)
        }
        Error::Corrupt { key, offset, .. } => {
            facts = vec![("object", text(key)), ("offset", Fact::Int(*offset))];
            raise!(CorruptionError)
        }
        Error::UnsupportedVersion { found, .. } => {
            facts = vec![("found", Fact::Int(u64::from(*found)))];
            raise!(UnsupportedVersionError)
        }
        Error::Collision {
            set,
            writer,
            other_writer,
            backup,
        } => {
            facts = vec![
                ("set", text(set)),
                ("writer", text(writer)),
                ("other_writer", text(other_writer)),
                ("backup", text(backup)),
            ];
            raise!(CollisionError)
        }
        Error::Sink { operation, key, .. }
        | Error::Unauthenticated { operation, key, .. }
        | Error::PermissionDenied { operation, key, .. } => {
            facts = vec![
                ("temporary", Fact::Flag(temporary)),
                ("operation", text(operation)),
                ("key", text(key)),
            ];
            raise!(StorageError)
        }
        Error::Io { path, source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            facts = vec![("name", text(&path.display().to_string()))];
            raise!(NotFoundError)
        }
        Error::Io { path, .. } => {
            facts = vec![
                ("temporary", Fact::Flag(temporary)),
                ("key", text(&path.display().to_string())),
            ];
            raise!(StorageError)
        }
        Error::Snapshot {
            source_name,
            detail,
        } => {
            facts = vec![("source", text(source_name)), ("detail", text(detail))];
            raise!(SnapshotError)
        }
        Error::RestoreFailed { target, detail } => {
            facts = vec![("target", text(target)), ("detail", text(detail))];
            raise!(RestoreFailedError)
        }
        Error::RestoreRefused { target, reason } => {
            facts = vec![("target", text(target)), ("reason", text(reason))];
            raise!(RestoreRefusedError)
        }
        Error::UnsafePath { path, .. } => {
            facts = vec![("path", text(path))];
            raise!(UnsafePathError)
        }
        Error::Cancelled { .. } => {
            facts = vec![];
            raise!(CancelledError)
        }
        Error::InvalidArgument(_) | Error::AmbiguousBackup { .. } => {
            facts = vec![];
            raise!(InvalidArgumentError)
        }
        _ => {
            facts = vec![];
            raise!(BackupError)
        }
    }
}
