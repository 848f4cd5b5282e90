//! Why an attempt failed, and the errors the sink returns.

use std::fmt;

use backup_core::Error;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;

use super::target::Target;
use super::SftpSink;

/// Why one attempt of an operation failed.
pub(super) enum Failure {
    /// The connection broke (or went silent): reconnect and retry.
    Connection(String),
    /// The server answered with an error status.
    Status(StatusFailure),
    /// A finished error.
    Done(Error),
    /// A permanent problem described by a message.
    Message(String),
}

/// An error status from the server, with what was being done.
pub(super) struct StatusFailure {
    pub(super) code: StatusCode,
    pub(super) server_message: String,
    /// What was being done, to complete "... {path}".
    pub(super) action: &'static str,
    pub(super) path: String,
    /// A write-side step, where a generic failure usually means a full disk.
    pub(super) writing: bool,
}

/// The result of one attempt.
pub(super) type Step<T> = std::result::Result<T, Failure>;

/// Classifies an SFTP client error from a read-side request.
pub(super) fn failure(error: SftpError, action: &'static str, path: &str) -> Failure {
    classify(error, action, path, false)
}

/// Classifies an SFTP client error from a write-side request.
pub(super) fn write_failure(error: SftpError, action: &'static str, path: &str) -> Failure {
    classify(error, action, path, true)
}

fn classify(error: SftpError, action: &'static str, path: &str, writing: bool) -> Failure {
    match error {
        SftpError::Status(status) => Failure::Status(StatusFailure {
            code: status.status_code,
            server_message: status.error_message,
            action,
            path: path.to_owned(),
            writing,
        }),
        SftpError::Limited(detail) => Failure::Message(format!(
            "{action} {path}: over the server's limit: {detail}"
        )),
        other => Failure::Connection(format!("{action} {path}: {other}")),
    }
}

/// Whether an SFTP error is the given status.
pub(super) fn is_status(error: &SftpError, code: StatusCode) -> bool {
    matches!(error, SftpError::Status(status) if status.status_code == code)
}

/// A message-only error, the source of [`Error::Sink`].
#[derive(Debug)]
struct SftpSinkError(String);

impl fmt::Display for SftpSinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SftpSinkError {}

/// Builds an [`Error::Sink`].
pub(super) fn sink_error(
    operation: &'static str,
    key: &str,
    temporary: bool,
    message: String,
) -> Error {
    Error::Sink {
        operation,
        key: key.to_owned(),
        temporary,
        source: Box::new(SftpSinkError(message)),
    }
}

/// Builds an [`Error::Unauthenticated`]: the server refused the key.
pub(super) fn unauthenticated(url: &str, message: String) -> Error {
    Error::Unauthenticated {
        operation: "connect",
        key: url.to_owned(),
        source: Box::new(SftpSinkError(message)),
    }
}

/// The failure of an operation that found the base directory gone.
pub(super) fn base_gone(target: &Target) -> Failure {
    Failure::Message(format!(
        "the base directory {} no longer exists on {} (was it removed, or is its volume \
         unmounted?)",
        target.base,
        target.host_port()
    ))
}

impl SftpSink {
    /// The error for a status the server answered.
    pub(super) fn status_error(
        &self,
        operation: &'static str,
        key: &str,
        status: &StatusFailure,
    ) -> Error {
        let StatusFailure {
            code,
            server_message,
            action,
            path,
            writing,
        } = status;
        let target = &self.inner.target;
        let host = target.host_port();
        // OpenSSH's messages only repeat the status name.
        let detail = if server_message.is_empty()
            || server_message.eq_ignore_ascii_case(&code.to_string())
            || server_message.eq_ignore_ascii_case("success")
        {
            String::new()
        } else {
            format!(" (server says: {server_message})")
        };
        let message = match *code {
            StatusCode::PermissionDenied => format!(
                "permission denied {action} {path} on {host} as user {:?}{detail}",
                target.user
            ),
            StatusCode::Failure if *writing => format!(
                "storage full or write failed {action} {path} on {host}{detail}: check free \
                 space and quotas on the server"
            ),
            StatusCode::NoSuchFile => {
                format!("{action} {path} on {host}: no such file or directory{detail}")
            }
            other => format!("{action} {path} on {host} failed: {other}{detail}"),
        };
        if *code == StatusCode::PermissionDenied {
            return Error::PermissionDenied {
                operation,
                key: key.to_owned(),
                source: Box::new(SftpSinkError(message)),
            };
        }
        sink_error(operation, key, false, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_full_is_called_out() {
        // status_error needs a sink; check the classification it relies on.
        let full = write_failure(
            SftpError::Status(russh_sftp::protocol::Status {
                id: 1,
                status_code: StatusCode::Failure,
                error_message: "Failure".into(),
                language_tag: "en".into(),
            }),
            "writing",
            "/repo/x",
        );
        assert!(matches!(
            full,
            Failure::Status(StatusFailure {
                code: StatusCode::Failure,
                writing: true,
                ..
            })
        ));
        assert!(matches!(
            failure(SftpError::Timeout, "reading", "/x"),
            Failure::Connection(_)
        ));
    }
}
