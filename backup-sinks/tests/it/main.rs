//! backup-sinks' tests, in one test binary: each sink against real servers
//! started by backup-testkit (a missing server fails its tests; run
//! scripts/install-test-servers.sh), and their URL and option handling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The object store tests need every cloud client (GCS only for its builder).
#[cfg(all(feature = "s3", feature = "azure", feature = "gcs"))]
mod object_store;
#[cfg(feature = "sftp")]
mod sftp;

use backup_core::Error;

/// An error's message with its sources, each once.
pub fn error_text(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    // Shown with --nocapture, to read the messages users get.
    eprintln!("error message: {text}");
    text
}

/// Whether `error` is a storage error that a retry cannot cure.
pub fn is_permanent_sink_error(error: &Error) -> bool {
    matches!(
        error,
        Error::Sink {
            temporary: false,
            ..
        }
    )
}
