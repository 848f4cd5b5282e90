//! Storage locations for repositories.
//!
//! A [`Sink`] is an object store: whole objects under string keys, no
//! directories, no cursors, no partial writes. The repository engine needs
//! nothing more, which is what lets the same repository live on a local disk,
//! in memory, in S3 or on an SSH server.
//!
//! Implementors write the small required trait; callers use the conveniences
//! of [`SinkExt`], which every sink gets for free. What implementations
//! share (temporary names, range rules, retries) is in [`support`], which
//! the crate root re-exports as `sink_support`.
//!
//! Wrappers add behaviour to any sink: [`RetrySink`] retries temporary
//! failures, [`ThrottleSink`] limits the bytes per second moved.

use std::fmt::Debug;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

mod local;
mod memory;
mod retry;
pub mod support;
mod throttle;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use local::LocalSink;
pub use memory::MemorySink;
pub use retry::{RetryPolicy, RetrySink};
pub use throttle::{ThrottleLimits, ThrottleSink};

/// How a put treats an object already stored under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutMode {
    /// Replace any existing object.
    Overwrite,
    /// Fail with [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the
    /// key exists. The check and the write are one atomic step.
    Create,
}

/// Size and identity of a stored object, as returned by `head` and `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's full key.
    pub key: String,
    /// The object's length in bytes.
    pub size: u64,
}

/// An object-store-like storage location.
///
/// # Contract
///
/// Every implementation must satisfy these rules; the conformance suite in
/// `backup_core::conformance` checks them (enable the `conformance`
/// feature to build it and run it against a sink of your own).
///
/// * **Keys** are non-empty UTF-8 strings of `/`-separated segments, none of
///   them empty, `.` or `..`. Keys may contain any other Unicode character.
/// * **Atomic puts**: after `put` returns `Ok`, `get` returns exactly the
///   bytes written; before that, readers see the old object or none, never a
///   partial one, even if the process is killed during the put.
/// * **Durability**: `put` returns only once the object survives a crash of
///   this machine (local sinks fsync the file and its directory).
/// * **Create-only**: `put` with [`PutMode::Create`] fails with
///   [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the key exists;
///   of two concurrent create-only puts of one key, exactly one succeeds.
/// * **Missing keys**: `get`, `get_range` and `head` of a missing key fail
///   with [`Error::NotFound`](crate::Error::NotFound); `delete` of a missing
///   key succeeds.
/// * **Ranges**: `get_range(key, a..b)` returns bytes `a..b`; a range that
///   ends past the object's end is truncated to the end; a range starting at
///   or past the end returns an error.
/// * **Listing**: `list(prefix)` returns every object whose key starts with
///   `prefix` (a plain string prefix, not a directory), each once, in no
///   particular order, with its size. Objects put before the call started
///   are listed.
/// * **Empty objects** are stored and listed like any other.
#[async_trait]
pub trait Sink: Send + Sync + Debug {
    /// Stores `data` under `key` atomically and durably.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) in
    /// [`PutMode::Create`] when the key exists; a sink error otherwise.
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()>;

    /// Returns the object's bytes, or the bytes in `range` when given.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) when the key is missing.
    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes>;

    /// Returns the object's size.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) when the key is missing.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Lists every object whose key starts with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes the object; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// A human-readable location for messages, such as `file:///backups`.
    fn location(&self) -> String;

    /// A hint that the caller will soon list `prefix` and read the objects
    /// under it whole (a repository's index objects, its backup manifests).
    /// A sink may start fetching them so that the reads find them ready;
    /// the local sink asks the kernel to read the files into its cache.
    ///
    /// Never fails: it returns once the hint is given, whatever became of
    /// it. The default does nothing (no listing, no request).
    async fn prefetch(&self, prefix: &str) {
        let _ = prefix;
    }

    /// How many large puts (packs) a writer should keep in flight at once.
    ///
    /// A hint for throughput against memory: each put in flight holds a
    /// whole pack. Network stores hide their latency with several; a local
    /// disk is as fast with two. The default is 4.
    fn write_concurrency(&self) -> usize {
        4
    }

    /// Starts an object whose bytes are written as they come and whose key
    /// is chosen once it is complete (a pack is named by its hash), so that
    /// a writer holds a few MiB of it rather than all of it.
    ///
    /// `None`, the default, when the sink stores objects whole only: the
    /// caller then buffers the object and calls [`put`](Sink::put). A
    /// committed object is stored as by `put` with [`PutMode::Overwrite`]
    /// (atomically and durably); one dropped uncommitted leaves nothing a
    /// reader can see.
    ///
    /// Blocking: call it, and the object's methods, off the async
    /// runtime's worker threads.
    ///
    /// # Errors
    ///
    /// A sink error when the object cannot be started.
    fn stage(&self) -> Result<Option<Box<dyn StagedObject>>> {
        Ok(None)
    }
}

/// An object being written piece by piece (see [`Sink::stage`]). Dropping
/// it uncommitted discards it. Its methods block.
pub trait StagedObject: Send + Debug {
    /// Appends `data` to the object.
    ///
    /// # Errors
    ///
    /// A sink error (such as a full disk); the object is then unusable.
    fn append(&mut self, data: &[u8]) -> Result<()>;

    /// Stores the bytes appended so far under `key`, atomically and
    /// durably, replacing any object there.
    ///
    /// # Errors
    ///
    /// A sink error; nothing is stored under `key` then.
    fn commit(self: Box<Self>, key: &str) -> Result<()>;
}

/// Conveniences over [`Sink`], implemented for every sink.
#[async_trait]
pub trait SinkExt: Sink {
    /// Returns the whole object.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) when the key is missing.
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.get_range(key, None).await
    }

    /// Whether an object exists under `key`.
    async fn exists(&self, key: &str) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(crate::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Stores `data` only if `key` does not exist yet.
    async fn put_new(&self, key: &str, data: Bytes) -> Result<()> {
        self.put(key, data, PutMode::Create).await
    }

    /// The keys under `prefix`, sorted, without their sizes.
    ///
    /// # Errors
    ///
    /// As [`Sink::list`].
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys: Vec<String> = self
            .list(prefix)
            .await?
            .into_iter()
            .map(|meta| meta.key)
            .collect();
        keys.sort();
        Ok(keys)
    }
}

impl<S: Sink + ?Sized> SinkExt for S {}

/// Checks that `key` follows the key rules of the [`Sink`] contract.
///
/// # Errors
///
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the key.
///
/// # Examples
///
/// ```
/// use backup_core::validate_key;
/// assert!(validate_key("data/ab/abcdef").is_ok());
/// assert!(validate_key("data/../config").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.contains('\0')
        || key
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        return Err(crate::Error::InvalidArgument(format!(
            "invalid object key {key:?}: keys are non-empty '/'-separated segments, none empty, '.' or '..'"
        )));
    }
    Ok(())
}
