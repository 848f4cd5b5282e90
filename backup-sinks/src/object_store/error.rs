//! object_store's errors converted at the boundary, and what they say
//! about retrying.

use backup_core::Error;

/// Converts an object_store error at the boundary.
pub(super) fn sink_error(
    operation: &'static str,
    key: &str,
    error: ::object_store::Error,
) -> Error {
    match error {
        ::object_store::Error::NotFound { .. } => Error::NotFound {
            key: key.to_owned(),
        },
        // The local file system reports a key below an existing object (a
        // file where a directory would be) as "not a directory": for reads
        // and deletes that key simply does not exist.
        other if operation != "put" && is_not_a_directory(&other) => Error::NotFound {
            key: key.to_owned(),
        },
        // HTTP 401, and what a store reports as such: the credentials.
        other @ ::object_store::Error::Unauthenticated { .. } => Error::Unauthenticated {
            operation,
            key: key.to_owned(),
            source: Box::new(other),
        },
        // HTTP 403: S3 answers it for a bad signature (a wrong secret key)
        // as well as for a policy that denies the operation.
        other @ ::object_store::Error::PermissionDenied { .. } => Error::PermissionDenied {
            operation,
            key: key.to_owned(),
            source: Box::new(other),
        },
        other => Error::Sink {
            operation,
            key: key.to_owned(),
            temporary: is_temporary(&other),
            source: Box::new(other),
        },
    }
}

/// Whether an I/O error "not a directory" is in the error's chain.
fn is_not_a_directory(error: &::object_store::Error) -> bool {
    chain(error).any(|error| {
        error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotADirectory)
    })
}

/// The error and its sources, outermost first.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |error| error.source())
}

/// Whether an error says the store does not support the operation.
pub(super) fn is_unsupported(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        error.downcast_ref::<::object_store::Error>(),
        Some(
            ::object_store::Error::NotSupported { .. }
                | ::object_store::Error::NotImplemented { .. }
        )
    )
}

/// Whether the error is an HTTP request that was interrupted (connection
/// reset, closed or cut short) or timed out after it may have been sent:
/// what object_store retries only for requests it knows to be idempotent.
pub(super) fn interrupted_in_flight(error: &::object_store::Error) -> bool {
    use ::object_store::client::{HttpError, HttpErrorKind};
    chain(error)
        .find_map(|error| error.downcast_ref::<HttpError>())
        .is_some_and(|http| {
            matches!(
                http.kind(),
                HttpErrorKind::Timeout | HttpErrorKind::Interrupted
            )
        })
}

/// Whether retrying may help: a connection failure, a timeout, an HTTP 5xx
/// or 429, anywhere in the error's chain of sources.
fn is_temporary(error: &::object_store::Error) -> bool {
    use ::object_store::client::{HttpError, HttpErrorKind};
    for error in chain(error) {
        if let Some(http) = error.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            if matches!(
                io.kind(),
                ErrorKind::TimedOut
                    | ErrorKind::Interrupted
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::ConnectionRefused
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        if let Some(status) = http_status(error) {
            return status >= 500 || status == 429;
        }
    }
    false
}

/// The HTTP status of a request that failed with an error status, read
/// from the error's message; the one place that reads an error's text.
///
/// Why the text: object_store 0.14 keeps the status in its
/// `client::retry::RetryError`, whose `status()` accessor is public but
/// whose module is private to the crate, so the type cannot be named to
/// downcast to (apache/arrow-rs-object-store#737 asks for a structured
/// way). Its public `retry::RetryFailure` carries the status only into the
/// retry policy of multipart parts. The message it writes is "... Server
/// returned non-2xx status code: 503 Service Unavailable: ...".
fn http_status(error: &(dyn std::error::Error + 'static)) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let message = error.to_string();
    let start = message.find(MARKER)? + MARKER.len();
    let digits = message.get(start..start + 3)?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with only a message.
    #[derive(Debug)]
    struct Message(&'static str);

    impl std::fmt::Display for Message {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Message {}

    #[test]
    fn status_codes_are_read_from_messages() {
        assert_eq!(
            http_status(&Message("Error performing PUT http://x in 1s - Server returned non-2xx status code: 503 Service Unavailable: ")),
            Some(503)
        );
        assert_eq!(http_status(&Message("status code: 4")), None);
        assert_eq!(http_status(&Message("nothing here")), None);
    }

    #[test]
    fn temporary_statuses() {
        for (status, temporary) in [
            (503, true),
            (500, true),
            (429, true),
            (400, false),
            (403, false),
        ] {
            let message: &'static str = Box::leak(
                format!("Server returned non-2xx status code: {status} Whatever: ")
                    .into_boxed_str(),
            );
            let error = ::object_store::Error::Generic {
                store: "test",
                source: Box::new(Message(message)),
            };
            assert_eq!(is_temporary(&error), temporary, "{status}");
        }
    }
}
