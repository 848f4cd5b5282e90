//! The suite run on the sinks of this crate, and checked against sinks
//! that break one rule each.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use async_trait::async_trait;
use futures::FutureExt;

use super::*;
use crate::sink::{LocalSink, MemorySink};

#[tokio::test]
async fn memory_sink_conforms() {
    let sink = MemorySink::new();
    run_all(&sink).await;
    assert!(sink.keys().is_empty(), "{:?}", sink.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_sink_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let sink = LocalSink::create(&root).unwrap();
    run_all(&sink).await;
    // Nothing escaped the root, and no file (temporary or not) remains.
    let outside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["repo"]);
    assert_eq!(files_below(&root), Vec::<String>::new());
}

fn files_below(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files.extend(files_below(&entry.path()));
        } else {
            files.push(entry.path().display().to_string());
        }
    }
    files
}

#[test]
fn pseudo_random_bytes_do_not_repeat() {
    let data = pseudo_random_bytes(1 << 20, 3);
    assert_eq!(data.len(), 1 << 20);
    assert_eq!(data, pseudo_random_bytes(1 << 20, 3));
    assert_ne!(data[..4096], data[4096..8192]);
    assert_ne!(data[..64], pseudo_random_bytes(64, 4)[..]);
}

/// A memory sink with one deliberate contract violation.
#[derive(Debug)]
struct Broken {
    inner: MemorySink,
    flaw: Flaw,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    CreateOverwrites,
    DeleteMissingFails,
    ListDuplicates,
    ListWholeSegmentsOnly,
    RangesNotTruncated,
    AcceptsInvalidKeys,
}

#[async_trait]
impl Sink for Broken {
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        match self.flaw {
            Flaw::CreateOverwrites => self.inner.put(key, data, PutMode::Overwrite).await,
            Flaw::AcceptsInvalidKeys => {
                self.inner.raw_put(key, data);
                Ok(())
            }
            _ => self.inner.put(key, data, mode).await,
        }
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        if self.flaw == Flaw::RangesNotTruncated {
            if let Some(range) = &range {
                let size = self.inner.head(key).await?.size;
                if range.end > size {
                    return Err(Error::InvalidArgument("range past end".into()));
                }
            }
        }
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut objects = self.inner.list(prefix).await?;
        match self.flaw {
            Flaw::ListDuplicates => objects.extend(objects.clone().into_iter().take(1)),
            Flaw::ListWholeSegmentsOnly => {
                let directory = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
                objects.retain(|object| {
                    let rest = &object.key[directory.len()..];
                    prefix.len() == directory.len()
                        || rest.split('/').next() == Some(&prefix[directory.len()..])
                });
            }
            _ => {}
        }
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        if self.flaw == Flaw::DeleteMissingFails && self.inner.raw_get(key).is_none() {
            return Err(Error::NotFound { key: key.into() });
        }
        self.inner.delete(key).await
    }

    fn location(&self) -> String {
        format!("broken://{:?}", self.flaw)
    }
}

async fn panics(check: impl Future<Output = ()>) -> bool {
    AssertUnwindSafe(check).catch_unwind().await.is_err()
}

#[tokio::test]
async fn checks_catch_violations() {
    let broken = |flaw| Broken {
        inner: MemorySink::new(),
        flaw,
    };
    let sink = broken(Flaw::CreateOverwrites);
    assert!(panics(create_only(&sink)).await);
    assert!(panics(concurrent_create_only(&sink)).await);
    assert!(panics(delete_missing(&broken(Flaw::DeleteMissingFails))).await);
    assert!(panics(list_by_prefix(&broken(Flaw::ListDuplicates))).await);
    assert!(panics(list_by_prefix(&broken(Flaw::ListWholeSegmentsOnly))).await);
    assert!(panics(ranged_get(&broken(Flaw::RangesNotTruncated))).await);
    assert!(panics(invalid_keys(&broken(Flaw::AcceptsInvalidKeys))).await);
    // The same sinks pass the checks their flaw does not affect.
    put_get_round_trip(&broken(Flaw::CreateOverwrites)).await;
    ranged_get(&broken(Flaw::ListDuplicates)).await;
}
