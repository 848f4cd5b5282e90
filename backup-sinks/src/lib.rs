//! Remote sinks for `backup-core` repositories.
//!
//! Each backend lives in its own module behind its own cargo feature and
//! implements [`backup_core::Sink`]. The object-store (S3, GCS, Azure) and
//! SSH/SFTP backends are being built; until they land this crate only
//! re-exports the local sinks so that front ends can depend on one crate.

pub use backup_core::sink::{LocalSink, MemorySink};
