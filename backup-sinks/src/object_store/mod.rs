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
mod options;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use ::object_store::path::Path;
use ::object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload,
};
use async_trait::async_trait;
use backup_core::sink::{validate_key, ObjectMeta, PutMode, RetryPolicy, Sink};
use backup_core::{Error, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

pub use options::{
    ObjectStoreOptions, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, DEFAULT_RETRY_TIMEOUT,
    MAX_PART_SIZE, MIN_PART_SIZE,
};

/// The `object_store` crate this sink is built on, re-exported so that
/// callers build stores (`memory::InMemory`, `local::LocalFileSystem`, their
/// own) against the same version.
pub use ::object_store as upstream;

/// The name prefix of temporary objects (followed by 32 hex digits).
const TEMP_PREFIX: &str = ".tmp-";
/// Number of hex digits after [`TEMP_PREFIX`] in a temporary object name.
const TEMP_HEX_DIGITS: usize = 32;
/// Most parts S3 and GCS accept in one multipart upload.
const MAX_PARTS: u64 = 10_000;
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
        let name = key.rsplit('/').next().unwrap_or(key);
        if is_temp_name(name) {
            return Err(Error::InvalidArgument(format!(
                "invalid object key {key:?}: names {TEMP_PREFIX}<{TEMP_HEX_DIGITS} hex digits> \
                 are reserved for the temporary objects of the object store sink"
            )));
        }
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

    /// One request with the whole object.
    async fn put_single(
        &self,
        key: &str,
        path: &Path,
        data: Bytes,
        mode: ::object_store::PutMode,
    ) -> Result<()> {
        let create = matches!(mode, ::object_store::PutMode::Create);
        let result = {
            let _permit = self.permit("put", key).await?;
            self.store
                .put_opts(path, PutPayload::from_bytes(data), PutOptions::from(mode))
                .await
        };
        match result {
            Ok(_) => {
                self.stats.single_puts.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(
                ::object_store::Error::AlreadyExists { .. }
                | ::object_store::Error::Precondition { .. },
            ) if create => Err(Error::AlreadyExists {
                key: key.to_owned(),
            }),
            Err(error) => Err(sink_error("put", key, error)),
        }
    }

    /// The part size for an object of `len` bytes: the configured one, raised
    /// to stay within the stores' part count limit.
    fn part_size_for(&self, len: u64) -> u64 {
        const MIB: u64 = 1024 * 1024;
        let needed = len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.part_size.max(needed)
    }

    /// Uploads `data` to `path` in parts, in parallel, then completes the
    /// upload (or aborts it on failure).
    async fn put_multipart(&self, key: &str, path: &Path, data: Bytes) -> Result<()> {
        let mut upload = {
            let _permit = self.permit("put", key).await?;
            self.store
                .put_multipart_opts(path, PutMultipartOptions::default())
                .await
                .map_err(|error| sink_error("put", key, error))?
        };
        let result = self.upload_parts(key, upload.as_mut(), &data).await;
        let result = match result {
            Ok(()) => {
                let _permit = self.permit("put", key).await?;
                upload
                    .complete()
                    .await
                    .map(drop)
                    .map_err(|error| sink_error("put", key, error))
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                self.stats.multipart_uploads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                if let Err(abort_error) = upload.abort().await {
                    tracing::warn!(key, %abort_error, "could not abort a failed multipart upload");
                }
                Err(error)
            }
        }
    }

    /// Sends the parts of `data`, each holding a request slot while it runs.
    async fn upload_parts(
        &self,
        key: &str,
        upload: &mut dyn ::object_store::MultipartUpload,
        data: &Bytes,
    ) -> Result<()> {
        let len = data.len() as u64;
        let part_size = self.part_size_for(len);
        // Dropping the set (on error or cancellation) aborts the parts still
        // running.
        let mut parts = JoinSet::new();
        let mut start = 0u64;
        while start < len {
            let end = (start + part_size).min(len);
            let permit = self.permit("put", key).await?;
            // Stop early when a part failed meanwhile.
            while let Some(done) = parts.try_join_next() {
                part_result(key, done)?;
            }
            // In range: `start < end <= len == data.len()`.
            let payload = PutPayload::from_bytes(data.slice(start as usize..end as usize));
            let part = upload.put_part(payload);
            parts.spawn(async move {
                let result = part.await;
                drop(permit);
                result
            });
            self.stats.multipart_parts.fetch_add(1, Ordering::Relaxed);
            start = end;
        }
        while let Some(done) = parts.join_next().await {
            part_result(key, done)?;
        }
        Ok(())
    }

    /// A create-only put above the multipart threshold: upload in parts to a
    /// temporary key, copy it to `key` unless `key` exists, delete the
    /// temporary object.
    async fn create_large(&self, key: &str, path: &Path, data: Bytes) -> Result<()> {
        if !self.conditional_copy.load(Ordering::Relaxed) {
            return self.create_single(key, path, data).await;
        }
        let temp_key = temp_key_beside(key);
        let temp_path = self.store_path(&temp_key)?;
        self.put_multipart(key, &temp_path, data.clone()).await?;
        let copied = {
            let _permit = self.permit("put", key).await?;
            self.store
                .copy_opts(
                    &temp_path,
                    path,
                    CopyOptions::new().with_mode(CopyMode::Create),
                )
                .await
        };
        self.delete_temp(key, &temp_path).await;
        match copied {
            Ok(()) => {
                self.stats
                    .conditional_copies
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(
                ::object_store::Error::AlreadyExists { .. }
                | ::object_store::Error::Precondition { .. },
            ) => Err(Error::AlreadyExists {
                key: key.to_owned(),
            }),
            Err(
                error @ (::object_store::Error::NotSupported { .. }
                | ::object_store::Error::NotImplemented { .. }),
            ) => {
                tracing::info!(
                    location = %self.location, %error,
                    "the store cannot copy without overwriting: large create-only puts are sent in one request"
                );
                self.conditional_copy.store(false, Ordering::Relaxed);
                self.create_single(key, path, data).await
            }
            Err(error) => Err(sink_error("put", key, error)),
        }
    }

    /// A create-only put in one request, or the non-atomic emulation when
    /// the store has no conditional put and the options allow it.
    async fn create_single(&self, key: &str, path: &Path, data: Bytes) -> Result<()> {
        let result = self
            .put_single(key, path, data.clone(), ::object_store::PutMode::Create)
            .await;
        match result {
            Err(Error::Sink { source, .. })
                if self.allow_non_atomic_create && is_unsupported(source.as_ref()) =>
            {
                self.create_by_head_then_put(key, path, data).await
            }
            other => other,
        }
    }

    /// Create-only put emulated by `head`, then an overwriting put: NOT
    /// atomic, used only with `allow_non_atomic_create`.
    async fn create_by_head_then_put(&self, key: &str, path: &Path, data: Bytes) -> Result<()> {
        match self.head_path(key, path).await {
            Ok(_) => Err(Error::AlreadyExists {
                key: key.to_owned(),
            }),
            Err(Error::NotFound { .. }) => {
                if data.len() as u64 > self.multipart_threshold {
                    self.put_multipart(key, path, data).await
                } else {
                    self.put_single(key, path, data, ::object_store::PutMode::Overwrite)
                        .await
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Deletes a temporary object, logging (not failing) when it cannot.
    async fn delete_temp(&self, key: &str, temp_path: &Path) {
        let result = match self.permit("delete", key).await {
            Ok(_permit) => self.store.delete(temp_path).await,
            Err(_) => return,
        };
        match result {
            Ok(()) | Err(::object_store::Error::NotFound { .. }) => {}
            Err(error) => tracing::warn!(
                temporary_object = %temp_path, %error,
                "could not delete the temporary object of a create-only put; `list` hides it"
            ),
        }
    }

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

/// Per-key async locks, removed when nobody holds or waits for them.
#[derive(Default)]
struct KeyLocks {
    locks: StdMutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Holds one key's lock; releases it and forgets the key when dropped.
struct KeyGuard<'a> {
    owner: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    async fn lock(&self, path: &Path) -> KeyGuard<'_> {
        let key = path.as_ref().to_owned();
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        let guard = lock.lock_owned().await;
        KeyGuard {
            owner: self,
            key,
            guard: Some(guard),
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Release while holding the map, so no one clones the entry between
        // the release and the check below.
        self.guard.take();
        if locks
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.key);
        }
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

/// A fresh temporary key in the same "directory" as `key`.
fn temp_key_beside(key: &str) -> String {
    let name = format!("{TEMP_PREFIX}{:032x}", rand::random::<u128>());
    match key.rsplit_once('/') {
        Some((directory, _)) => format!("{directory}/{name}"),
        None => name,
    }
}

/// Whether `name` is the name of a temporary object.
fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX).is_some_and(|rest| {
        rest.len() == TEMP_HEX_DIGITS
            && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The outcome of one part upload task.
fn part_result(
    key: &str,
    done: std::result::Result<::object_store::Result<()>, tokio::task::JoinError>,
) -> Result<()> {
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(sink_error("put", key, error)),
        Err(error) => Err(Error::Sink {
            operation: "put",
            key: key.to_owned(),
            temporary: false,
            source: Box::new(error),
        }),
    }
}

/// Converts an object_store error at the boundary.
fn sink_error(operation: &'static str, key: &str, error: ::object_store::Error) -> Error {
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
fn is_unsupported(error: &(dyn std::error::Error + 'static)) -> bool {
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
fn interrupted_in_flight(error: &::object_store::Error) -> bool {
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
        // object_store keeps the HTTP status in a private type; its message
        // reads "Server returned non-2xx status code: 503 Service Unavailable".
        if let Some(status) = http_status_in(&error.to_string()) {
            return status >= 500 || status == 429;
        }
    }
    false
}

/// The HTTP status in an object_store request error message, if any.
fn http_status_in(message: &str) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let start = message.find(MARKER)? + MARKER.len();
    let digits = message.get(start..start + 3)?;
    digits.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ::object_store::memory::InMemory;
    use backup_core::SinkExt;

    fn memory_sink(prefix: &str, options: &ObjectStoreOptions) -> ObjectStoreSink {
        ObjectStoreSink::with_options(
            Arc::new(InMemory::new()),
            prefix,
            "memory:///test".into(),
            options,
        )
        .unwrap()
    }

    #[test]
    fn prefixes_are_normalized_and_checked() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert_eq!(normalize_prefix("/a/b/").unwrap(), "a/b");
        for bad in ["a//b", "a/../b", "./a", "a/\u{1}/b"] {
            assert!(normalize_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn temp_names() {
        let key = temp_key_beside("data/ab/object");
        let (directory, name) = key.rsplit_once('/').unwrap();
        assert_eq!(directory, "data/ab");
        assert!(is_temp_name(name), "{name}");
        assert!(is_temp_name(&temp_key_beside("top")));
        assert!(!is_temp_name(".tmp-notes"));
        assert!(!is_temp_name(".tmp-0123456789ABCDEF0123456789abcdef"));
    }

    #[test]
    fn status_codes_are_read_from_messages() {
        assert_eq!(
            http_status_in("Error performing PUT http://x in 1s - Server returned non-2xx status code: 503 Service Unavailable: "),
            Some(503)
        );
        assert_eq!(http_status_in("status code: 4"), None);
        assert_eq!(http_status_in("nothing here"), None);
    }

    #[test]
    fn part_sizes_respect_the_part_limit() {
        let sink = memory_sink("", &ObjectStoreOptions::default());
        assert_eq!(sink.part_size_for(40 << 20), DEFAULT_PART_SIZE);
        // 200 GiB in 8 MiB parts would be 25,600 parts.
        let size = sink.part_size_for(200 << 30);
        assert!((200u64 << 30).div_ceil(size) <= MAX_PARTS);
        assert_eq!(size % (1 << 20), 0);
    }

    #[tokio::test]
    async fn keys_live_under_the_prefix() {
        let store = Arc::new(InMemory::new());
        let sink = ObjectStoreSink::new(
            Arc::clone(&store) as _,
            "/backups/web/",
            "memory:///".into(),
        )
        .unwrap();
        sink.put("data/x", "x".into(), PutMode::Overwrite)
            .await
            .unwrap();
        let stored = store.head(&Path::from("backups/web/data/x")).await.unwrap();
        assert_eq!(stored.size, 1);
        // A sibling prefix that shares the name's start is not listed.
        store
            .put(&Path::from("backups/webby/data/y"), "y".into())
            .await
            .unwrap();
        let keys: Vec<_> = sink
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["data/x"]);
    }

    #[tokio::test]
    async fn temporary_objects_are_hidden_and_reserved() {
        let store = Arc::new(InMemory::new());
        let sink = ObjectStoreSink::new(Arc::clone(&store) as _, "", "memory:///".into()).unwrap();
        let temp = temp_key_beside("d/x");
        store
            .put(&Path::from(temp.as_str()), "left by a crash".into())
            .await
            .unwrap();
        sink.put("d/x", "x".into(), PutMode::Overwrite)
            .await
            .unwrap();
        let keys: Vec<_> = sink
            .list("d/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["d/x"]);
        let error = sink
            .put(&temp, "x".into(), PutMode::Overwrite)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    }

    #[tokio::test]
    async fn large_creates_go_through_a_temporary_object() {
        let options = ObjectStoreOptions {
            multipart_threshold: 6 << 20,
            multipart_part_size: MIN_PART_SIZE,
            ..Default::default()
        };
        let sink = memory_sink("p", &options);
        let data = Bytes::from(vec![7u8; 11 << 20]);
        sink.put("big", data.clone(), PutMode::Create)
            .await
            .unwrap();
        assert_eq!(sink.get("big").await.unwrap(), data);
        let error = sink
            .put("big", data.clone(), PutMode::Create)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
        let stats = sink.stats();
        assert_eq!(stats.multipart_uploads, 2, "{stats:?}");
        assert_eq!(stats.multipart_parts, 6, "{stats:?}");
        assert_eq!(stats.conditional_copies, 1, "{stats:?}");
        // No temporary object is left, visible or not.
        let all: Vec<_> = sink.store().list(None).try_collect().await.unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
    }

    #[tokio::test]
    async fn empty_ranges() {
        let sink = memory_sink("", &ObjectStoreOptions::default());
        sink.put("k", "0123456789".into(), PutMode::Overwrite)
            .await
            .unwrap();
        assert!(sink.get_range("k", Some(10..10)).await.unwrap().is_empty());
        assert!(sink.get_range("k", Some(3..3)).await.unwrap().is_empty());
        assert!(sink.get_range("k", Some(11..11)).await.is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..3;
        assert!(sink.get_range("k", Some(backwards)).await.is_err());
        assert!(matches!(
            sink.get_range("missing", Some(1..1)).await,
            Err(Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn key_locks_are_forgotten() {
        let locks = KeyLocks::default();
        let path = Path::from("a");
        {
            let _first = locks.lock(&path).await;
            assert_eq!(locks.locks.lock().unwrap().len(), 1);
        }
        assert!(locks.locks.lock().unwrap().is_empty());
    }

    #[test]
    fn debug_shows_no_store_internals() {
        let sink = memory_sink("p", &ObjectStoreOptions::default());
        let text = format!("{sink:?}");
        assert!(text.contains("memory:///test"), "{text}");
    }

    /// An in-memory store whose deletes fail, before reaching the store,
    /// with an HTTP transport error of `kind` while `failures` lasts.
    #[derive(Debug)]
    struct FailingDeletes {
        inner: InMemory,
        kind: ::object_store::client::HttpErrorKind,
        failures: AtomicU64,
        deletes: AtomicU64,
    }

    impl fmt::Display for FailingDeletes {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("FailingDeletes")
        }
    }

    #[async_trait]
    impl ObjectStore for FailingDeletes {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> ::object_store::Result<::object_store::PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> ::object_store::Result<Box<dyn ::object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> ::object_store::Result<::object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, ::object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, ::object_store::Result<Path>> {
            use futures::StreamExt;
            self.deletes.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                let source = ::object_store::client::HttpError::new(self.kind, io);
                let error = ::object_store::Error::Generic {
                    store: "FailingDeletes",
                    source: Box::new(source),
                };
                return futures::stream::once(async move { Err(error) }).boxed();
            }
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, ::object_store::Result<::object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> ::object_store::Result<::object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> ::object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn failing_deletes_sink(
        kind: ::object_store::client::HttpErrorKind,
        failures: u64,
        max_retries: usize,
    ) -> (ObjectStoreSink, Arc<FailingDeletes>) {
        let store = Arc::new(FailingDeletes {
            inner: InMemory::new(),
            kind,
            failures: AtomicU64::new(failures),
            deletes: AtomicU64::new(0),
        });
        let options = ObjectStoreOptions {
            max_retries,
            retry_initial_backoff: Duration::from_millis(1),
            retry_max_backoff: Duration::from_millis(4),
            ..Default::default()
        };
        let sink = ObjectStoreSink::with_options(
            Arc::clone(&store) as Arc<dyn ObjectStore>,
            "p",
            "memory:///test".into(),
            &options,
        )
        .unwrap();
        (sink, store)
    }

    #[tokio::test]
    async fn interrupted_deletes_are_retried() {
        use ::object_store::client::HttpErrorKind;
        // Interrupted twice, then through: the object is gone.
        let (sink, store) = failing_deletes_sink(HttpErrorKind::Interrupted, 2, 10);
        sink.put("k", Bytes::from_static(b"v"), PutMode::Overwrite)
            .await
            .unwrap();
        sink.delete("k").await.unwrap();
        assert_eq!(store.deletes.load(Ordering::SeqCst), 3);
        assert!(matches!(sink.get("k").await, Err(Error::NotFound { .. })));

        // A timeout is retried too; the retries are bounded by max_retries
        // and the last error is temporary.
        let (sink, store) = failing_deletes_sink(HttpErrorKind::Timeout, 100, 3);
        sink.put("k", Bytes::from_static(b"v"), PutMode::Overwrite)
            .await
            .unwrap();
        match sink.delete("k").await {
            Err(Error::Sink {
                operation: "delete",
                temporary: true,
                ..
            }) => {}
            other => panic!("expected a temporary delete error, got {other:?}"),
        }
        assert_eq!(store.deletes.load(Ordering::SeqCst), 4);
        assert_eq!(sink.get("k").await.unwrap(), Bytes::from_static(b"v"));

        // An error of unknown kind is not retried here, nor is one with
        // retries disabled.
        let (sink, store) = failing_deletes_sink(HttpErrorKind::Unknown, 1, 10);
        assert!(sink.delete("k").await.is_err());
        assert_eq!(store.deletes.load(Ordering::SeqCst), 1);
        let (sink, store) = failing_deletes_sink(HttpErrorKind::Interrupted, 1, 0);
        assert!(sink.delete("k").await.is_err());
        assert_eq!(store.deletes.load(Ordering::SeqCst), 1);
    }
}
