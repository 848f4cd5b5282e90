//! Remote sinks for `backup-core` repositories.
//!
//! Each backend lives in its own module behind its own cargo feature and
//! implements [`backup_core::Sink`]:
//!
//! | module | cargo feature | stores |
//! |---|---|---|
//! | [`object_store`] | `s3`, `azure`, `gcs` (any of them) | Amazon S3 and S3-compatible servers, Azure Blob Storage, Google Cloud Storage, and the `object_store` crate's in-memory and local stores |
//! | [`sftp`] | `sftp` | a directory on an SSH server, over SFTP, with the host key verified |
//!
//! [`open_sink`] turns a repository location (a path or a URL) and its
//! [`StorageOptions`] into the right sink.
//!
//! All features are on by default. The local sinks of `backup-core` are
//! re-exported so that front ends can depend on this one crate.
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use std::sync::Arc;
//! use backup_core::{InitOptions, Repository};
//! use backup_sinks::object_store::{ObjectStoreOptions, ObjectStoreSink};
//!
//! let sink = ObjectStoreSink::from_url("gs://my-bucket/backups", &ObjectStoreOptions::default())?;
//! let repo = Repository::init(Arc::new(sink), InitOptions::default()).await?;
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub use backup_core::{LocalSink, MemorySink};

#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
pub mod object_store;

#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
pub use self::object_store::{ObjectStoreOptions, ObjectStoreSink};

#[cfg(feature = "sftp")]
pub mod sftp;

pub mod location;
pub use self::location::{
    create_sink, local_root, open_sink, read_password, read_password_file, read_secret_file,
    StorageOptions,
};
