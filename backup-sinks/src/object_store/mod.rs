//! Object stores as a [`Sink`]: Amazon S3 and S3-compatible servers, Azure
//! Blob Storage, Google Cloud Storage, and the `object_store` crate's own
//! in-memory and local-file-system stores.
//!
//! [`ObjectStoreSink`] wraps any [`ObjectStore`] of the
//! [`object_store`](upstream) crate and a key prefix inside it. Open a cloud
//! location by URL:
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use std::sync::Arc;
//! use backup_core::{InitOptions, Repository};
//! use backup_sinks::object_store::{ObjectStoreOptions, ObjectStoreSink};
//!
//! // Credentials, region and endpoint come from AWS_* variables unless set here.
//! let sink = ObjectStoreSink::from_url("s3://my-bucket/backups/web", &ObjectStoreOptions::default())?;
//! let repo = Repository::init(Arc::new(sink), InitOptions::default()).await?;
//! # Ok(()) }
//! ```
//!
//! or wrap a store you built, such as object_store's `InMemory`:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use backup_core::{PutMode, Sink, SinkExt};
//! use backup_sinks::object_store::{upstream::memory::InMemory, ObjectStoreSink};
//!
//! let sink = ObjectStoreSink::new(Arc::new(InMemory::new()), "repo", "memory:///repo".into())?;
//! sink.put("config", "hello".into(), PutMode::Create).await?;
//! assert_eq!(sink.get("config").await?, "hello");
//! assert!(matches!(
//!     sink.put("config", "again".into(), PutMode::Create).await,
//!     Err(backup_core::Error::AlreadyExists { .. })
//! ));
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```
//!
//! # URLs
//!
//! | URL | store | cargo feature |
//! |---|---|---|
//! | `s3://bucket/prefix` | Amazon S3 or an S3-compatible server (`endpoint`) | `s3` |
//! | `az://container/prefix`, `azure://container/prefix` | Azure Blob Storage, Azurite | `azure` |
//! | `gs://bucket/prefix` | Google Cloud Storage | `gcs` |
//!
//! The prefix is optional and taken literally (no percent-decoding); keys are
//! stored as `prefix/key`, so the objects in the bucket have the repository's
//! key names. Query strings and credentials in the URL are refused: pass them
//! in [`ObjectStoreOptions`] or the environment.
//!
//! # How the contract is kept
//!
//! * **Atomic puts.** Objects up to
//!   [`multipart_threshold`](ObjectStoreOptions::multipart_threshold)
//!   (16 MiB) are sent in one request; larger ones as a multipart upload
//!   (S3, GCS), a block list (Azure) or a staged file (local), which becomes
//!   visible only when completed. Parts go up in parallel, bounded by
//!   [`max_concurrency`](ObjectStoreOptions::max_concurrency); a failed
//!   upload is aborted.
//! * **Create-only puts** use the store's conditional write: `If-None-Match: *`
//!   on S3 (object_store's `S3ConditionalPut::ETagMatch`) and Azure,
//!   `ifGenerationMatch=0` on GCS, a hard link on the local file system.
//!   Conditional writes cannot be combined with multipart uploads in
//!   `object_store`, so a create-only put above the threshold uploads the
//!   object in parts under a hidden temporary key next to its own
//!   (`.tmp-<32 hex digits>`), copies it to its key with a copy that fails if
//!   the key exists (S3: a one-part multipart copy completed with
//!   `If-None-Match: *`; Azure: `If-None-Match: *` on Copy Blob; GCS:
//!   `ifGenerationMatch=0`; local: a hard link), and deletes the temporary
//!   object. Where the store cannot copy conditionally, the object is sent in
//!   one conditional put instead, whatever its size. Create-only puts of one
//!   key through one sink are also serialised in the process, so that the
//!   store's conditional write only has to arbitrate between processes.
//! * **Missing keys**: object_store's `NotFound` becomes
//!   [`Error::NotFound`]; deleting a missing key succeeds.
//! * **Ranges**: a ranged get asks the store for the range (`Range:` header);
//!   a range ending past the end returns the rest of the object, one starting
//!   at or past the end is an error.
//! * **Listing** by any string prefix: the sink lists the deepest "directory"
//!   named by the prefix (whole `/`-separated segments) and keeps the keys
//!   that start with the prefix, so `list("data/ab")` matches `data/abc` and
//!   `data/ab/x`. Pages of 1,000 keys are followed to the end.
//! * **Errors** other than not-found and already-exists become
//!   [`Error::Sink`] with the operation and key; `temporary` is true for
//!   connection failures, timeouts, HTTP 5xx and 429 (after object_store's
//!   own retries, configured by the retry options, have run out).
//! * **Deletes** whose request was interrupted (connection reset or cut
//!   short) or timed out are retried by the sink with the same retry
//!   options: object_store retries those only for requests it knows to be
//!   idempotent, and its Azure `delete` is a batch `POST`.
//!
//! # Limitations
//!
//! * Keys containing ASCII control characters (other than the NUL every sink
//!   refuses) are refused: object_store's paths cannot hold them.
//! * Key names ending in `.tmp-` followed by 32 lowercase hex digits are
//!   reserved for temporary objects: refused by `put`, hidden by `list`. A
//!   process killed during a large create-only put can leave one behind; a
//!   bucket lifecycle rule on `.tmp-` names (and on incomplete multipart
//!   uploads) cleans them up.
//! * A create-only put above the threshold on S3 copies the object with one
//!   `UploadPartCopy`, which S3 limits to 5 GiB.
//! * Between processes (or between two sinks in one process), the atomicity
//!   of create-only puts is the store's: AWS S3, GCS and Azure decide the
//!   condition atomically with the write, and so did Azurite in the tests.
//!   The S3 test server s3s-fs checks `If-None-Match` before it writes the
//!   object: eight separate clients racing for one key mostly all
//!   "succeeded" there. moto checks it in a threaded Python handler right
//!   before the write: no double winner was seen, but nothing guarantees it.
//!   Within one sink, the in-process serialisation keeps create-only puts
//!   exclusive on every store, which is what the conformance suite checks.
//! * object_store's `LocalFileSystem` is durable only when built
//!   `.with_fsync(true)`; for local disks prefer `backup_core::LocalSink`.
//! * Stores without conditional writes (S3-compatible servers configured with
//!   `s3_conditional_put: "disabled"`) refuse create-only puts unless
//!   [`allow_non_atomic_create`](ObjectStoreOptions::allow_non_atomic_create)
//!   is set, which emulates them with a `head` then a put, and is not atomic.

mod cloud;
mod error;
mod export;
mod key_locks;
mod options;
mod upload;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::object_store::path::Path;
use ::object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use async_trait::async_trait;
use backup_core::sink_support::{is_temp_name, reject_temp_name};
use backup_core::{validate_key, Error, ObjectMeta, PutMode, Result, RetryPolicy, Sink};
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use error::{interrupted_in_flight, sink_error};
use key_locks::KeyLocks;

pub use export::ExportTarget;
pub use options::{
    ObjectStoreOptions, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, DEFAULT_RETRY_TIMEOUT,
    MAX_PART_SIZE, MIN_PART_SIZE,
};

/// The `object_store` crate this sink is built on, re-exported so that
/// callers build stores (`memory::InMemory`, `local::LocalFileSystem`, their
/// own) against the same version.
pub use ::object_store as upstream;

/// Range ends beyond this (8 PiB) are sent as "to the end": no object is that
/// large, and some servers (Azurite: JavaScript numbers) cannot parse the
/// 20-digit numbers of ranges like `0..u64::MAX`.
const UNBOUNDED_RANGE_END: u64 = 1 << 53;

/// A [`Sink`] on an object store: S3, Azure Blob Storage, GCS, or any
/// [`ObjectStore`].
///
/// See the [module documentation](self) for how each operation maps to the
/// store, and its limitations.
pub struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store, without leading or trailing `/`; empty
    /// for the whole bucket.
    prefix: String,
    location: String,
    /// Bounds the requests in flight through this sink.
    limiter: Arc<Semaphore>,
    max_concurrency: usize,
    multipart_threshold: u64,
    part_size: u64,
    allow_non_atomic_create: bool,
    /// Cleared once the store has said it cannot copy conditionally.
    conditional_copy: AtomicBool,
    /// Serialises create-only puts of one key within this process.
    creating: KeyLocks,
    stats: Counters,
    /// How `delete` retries a request that was interrupted or timed out:
    /// object_store retries such a request only when it is idempotent, and
    /// it does not count a bulk delete (Azure's `POST ?comp=batch`, which
    /// its `delete` uses) as one. A delete is idempotent for the sink:
    /// deleting a missing key succeeds. From the retry fields of the options.
    delete_retries: RetryPolicy,
    /// No delete retry starts later than this after the first attempt.
    retry_timeout: Duration,
}

/// What an [`ObjectStoreSink`] has done since it was created, for tests and
/// monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectStoreStats {
    /// Objects uploaded in a single request.
    pub single_puts: u64,
    /// Objects uploaded as completed multipart uploads (including the
    /// temporary objects of large create-only puts).
    pub multipart_uploads: u64,
    /// Parts uploaded by those multipart uploads.
    pub multipart_parts: u64,
    /// Create-only copies from a temporary object to the final key.
    pub conditional_copies: u64,
}

#[derive(Default)]
struct Counters {
    single_puts: AtomicU64,
    multipart_uploads: AtomicU64,
    multipart_parts: AtomicU64,
    conditional_copies: AtomicU64,
}

impl fmt::Debug for ObjectStoreSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the store's own Debug, which may include credentials.
        f.debug_struct("ObjectStoreSink")
            .field("location", &self.location)
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.prefix)
            .field("max_concurrency", &self.max_concurrency)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl ObjectStoreSink {
    /// Opens the object store location named by `url`: `s3://bucket/prefix`,
    /// `az://container/prefix` (or `azure://`), `gs://bucket/prefix`.
    ///
    /// Connection settings come from the cloud's environment variables,
    /// overridden by `options`. Nothing is sent to the store yet.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL, an unknown scheme or
    /// one whose cargo feature is not enabled, invalid options, or settings
    /// the store's builder rejects (such as an unreadable service account
    /// file).
    ///
    /// # Examples
    ///
    /// ```
    /// use backup_core::Sink;
    /// use backup_sinks::object_store::{ObjectStoreOptions, ObjectStoreSink};
    ///
    /// let options = ObjectStoreOptions {
    ///     endpoint: Some("http://127.0.0.1:9000".into()),
    ///     allow_http: Some(true),
    ///     access_key_id: Some("minio".into()),
    ///     secret_access_key: Some("minio-secret".into()),
    ///     ..Default::default()
    /// };
    /// let sink = ObjectStoreSink::from_url("s3://backups/prod/etcd", &options)?;
    /// assert_eq!(sink.location(), "s3://backups/prod/etcd");
    /// assert_eq!(sink.prefix(), "prod/etcd");
    /// assert!(ObjectStoreSink::from_url("ftp://host/x", &options).is_err());
    /// # Ok::<(), backup_core::Error>(())
    /// ```
    pub fn from_url(url: &str, options: &ObjectStoreOptions) -> Result<Self> {
        options.validate()?;
        let parsed = cloud::StoreUrl::parse(url)?;
        let store = cloud::build_store(&parsed, options)?;
        Self::with_options(store, &parsed.prefix, parsed.location(), options)
    }

    /// Wraps `store`, keeping objects under `prefix` (`""` for the whole
    /// store), with default [sink settings](ObjectStoreOptions#sink-fields).
    /// `location` is what [`Sink::location`] reports, such as
    /// `memory:///test`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `prefix` is not made of valid key
    /// segments.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, location: String) -> Result<Self> {
        Self::with_options(store, prefix, location, &ObjectStoreOptions::default())
    }

    /// Like [`new`](Self::new), with the [sink
    /// settings](ObjectStoreOptions#sink-fields) of `options` (its connection
    /// fields are ignored: `store` is already built).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an invalid prefix or options.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use backup_sinks::object_store::{upstream::memory::InMemory, ObjectStoreOptions, ObjectStoreSink};
    ///
    /// let options = ObjectStoreOptions { multipart_threshold: 1024 * 1024, ..Default::default() };
    /// let sink = ObjectStoreSink::with_options(Arc::new(InMemory::new()), "a/b", "memory:///a/b".into(), &options)?;
    /// assert_eq!(sink.prefix(), "a/b");
    /// assert!(ObjectStoreSink::with_options(Arc::new(InMemory::new()), "a/../b", String::new(), &options).is_err());
    /// # Ok::<(), backup_core::Error>(())
    /// ```
    pub fn with_options(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        location: String,
        options: &ObjectStoreOptions,
    ) -> Result<Self> {
        options.validate()?;
        let prefix = normalize_prefix(prefix)?;
        Ok(Self {
            store,
            prefix,
            location,
            limiter: Arc::new(Semaphore::new(options.max_concurrency)),
            max_concurrency: options.max_concurrency,
            multipart_threshold: options.multipart_threshold,
            part_size: options.multipart_part_size,
            allow_non_atomic_create: options.allow_non_atomic_create,
            conditional_copy: AtomicBool::new(true),
            creating: KeyLocks::default(),
            stats: Counters::default(),
            delete_retries: RetryPolicy {
                max_retries: u32::try_from(options.max_retries).unwrap_or(u32::MAX),
                initial_backoff: options.retry_initial_backoff,
                max_backoff: options.retry_max_backoff,
            },
            retry_timeout: options.retry_timeout,
        })
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key prefix inside the store, without leading or trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store path of `key`: `prefix/key`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `key` breaks the key rules of the
    /// [`Sink`] contract or the [limitations](self#limitations) of this sink.
    pub fn path_of(&self, key: &str) -> Result<Path> {
        validate_key(key)?;
        reject_temp_name(key, "an object store sink")?;
        self.store_path(key)
    }

    /// How many objects were uploaded in parts so far.
    pub fn multipart_uploads(&self) -> u64 {
        self.stats.multipart_uploads.load(Ordering::Relaxed)
    }

    /// Everything counted so far.
    pub fn stats(&self) -> ObjectStoreStats {
        ObjectStoreStats {
            single_puts: self.stats.single_puts.load(Ordering::Relaxed),
            multipart_uploads: self.multipart_uploads(),
            multipart_parts: self.stats.multipart_parts.load(Ordering::Relaxed),
            conditional_copies: self.stats.conditional_copies.load(Ordering::Relaxed),
        }
    }

    /// The store path of a key already checked, or of a temporary key.
    fn store_path(&self, key: &str) -> Result<Path> {
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|error| {
            Error::InvalidArgument(format!(
                "invalid object key {key:?}: object stores refuse it ({error})"
            ))
        })
    }

    /// Waits for a free request slot.
    async fn permit(&self, operation: &'static str, key: &str) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.limiter)
            .acquire_owned()
            .await
            .map_err(|error| Error::Sink {
                operation,
                key: key.to_owned(),
                temporary: false,
                source: Box::new(error),
            })
    }

    /// The size of the object at `path`, whose key is `key`.
    async fn head_path(&self, key: &str, path: &Path) -> Result<ObjectMeta> {
        let _permit = self.permit("head", key).await?;
        let meta = self
            .store
            .head(path)
            .await
            .map_err(|error| sink_error("head", key, error))?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: meta.size,
        })
    }
}

#[async_trait]
impl Sink for ObjectStoreSink {
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        let path = self.path_of(key)?;
        let large = data.len() as u64 > self.multipart_threshold;
        match mode {
            PutMode::Overwrite if large => self.put_multipart(key, &path, data).await,
            PutMode::Overwrite => {
                self.put_single(key, &path, data, ::object_store::PutMode::Overwrite)
                    .await
            }
            PutMode::Create => {
                let _creating = self.creating.lock(&path).await;
                if large {
                    self.create_large(key, &path, data).await
                } else {
                    self.create_single(key, &path, data).await
                }
            }
            other => Err(Error::InvalidArgument(format!(
                "put mode {other:?} is not supported by the object store sink"
            ))),
        }
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let path = self.path_of(key)?;
        let get_range = match range {
            None => None,
            Some(range) if range.start > range.end => {
                return Err(Error::InvalidArgument(format!(
                    "invalid range {range:?} for {key}: start after end"
                )));
            }
            Some(range) if range.start == range.end => {
                // Stores refuse empty ranges: answer from the size.
                let meta = self.head_path(key, &path).await?;
                if range.start > meta.size {
                    return Err(Error::InvalidArgument(format!(
                        "range {range:?} starts past the end of {key} ({} bytes)",
                        meta.size
                    )));
                }
                return Ok(Bytes::new());
            }
            Some(range) if range.end > UNBOUNDED_RANGE_END => Some(GetRange::Offset(range.start)),
            Some(range) => Some(GetRange::Bounded(range)),
        };
        let _permit = self.permit("get", key).await?;
        let options = GetOptions::new().with_range(get_range);
        let result = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|error| sink_error("get", key, error))?;
        result
            .bytes()
            .await
            .map_err(|error| sink_error("get", key, error))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path_of(key)?;
        self.head_path(key, &path).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let root = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let wanted = format!("{root}{prefix}");
        // The deepest directory the prefix names by whole segments.
        let directory = match wanted.rfind('/') {
            Some(end) => Some(match Path::parse(&wanted[..end]) {
                Ok(path) => path,
                // No valid key lies below such a directory.
                Err(_) => return Ok(Vec::new()),
            }),
            None => None,
        };
        let _permit = self.permit("list", prefix).await?;
        let mut objects = Vec::new();
        let mut listing = self.store.list(directory.as_ref());
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(|error| sink_error("list", prefix, error))?
        {
            let location: &str = meta.location.as_ref();
            let Some(key) = location.strip_prefix(&root) else {
                continue;
            };
            let name = key.rsplit('/').next().unwrap_or(key);
            if location.starts_with(&wanted) && !is_temp_name(name) {
                objects.push(ObjectMeta {
                    key: key.to_owned(),
                    size: meta.size,
                });
            }
        }
        objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let outcome = {
                let _permit = self.permit("delete", key).await?;
                self.store.delete(&path).await
            };
            let error = match outcome {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let backoff = self.delete_retries.backoff(attempt);
            let again = attempt < self.delete_retries.max_retries
                && started.elapsed() + backoff <= self.retry_timeout
                && interrupted_in_flight(&error);
            if !again {
                return match sink_error("delete", key, error) {
                    Error::NotFound { .. } => Ok(()),
                    other => Err(other),
                };
            }
            tracing::debug!(key, attempt, ?backoff, "retrying an interrupted delete");
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

/// Checks a key prefix and removes its leading and trailing `/`.
fn normalize_prefix(prefix: &str) -> Result<String> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok(String::new());
    }
    validate_key(prefix).map_err(|_| {
        Error::InvalidArgument(format!(
            "invalid object store prefix {prefix:?}: it must be '/'-separated segments, none empty, '.' or '..'"
        ))
    })?;
    Path::parse(prefix).map_err(|error| {
        Error::InvalidArgument(format!("invalid object store prefix {prefix:?}: {error}"))
    })?;
    Ok(prefix.to_owned())
}
