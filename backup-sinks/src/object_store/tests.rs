//! The object store sink's own tests, on object_store's in-memory store;
//! the conformance suite and the real servers are in the integration tests.

#![allow(clippy::unwrap_used)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::object_store::memory::InMemory;
use ::object_store::path::Path;
use ::object_store::{
    CopyOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload,
};
use async_trait::async_trait;
use backup_core::{Error, PutMode, Sink, SinkExt};
use bytes::Bytes;
use futures::TryStreamExt;

use super::key_locks::KeyLocks;
use super::upload::{temp_key_beside, MAX_PARTS};
use super::*;
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
    let keys = sink.list_keys("").await.unwrap();
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
    let keys = sink.list_keys("d/").await.unwrap();
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
