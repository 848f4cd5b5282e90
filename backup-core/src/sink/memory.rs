//! A sink in memory, for tests and throw-away repositories.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use super::support::clamp_range;
use super::{validate_key, ObjectMeta, PutMode, Sink};
use crate::{Error, Result};

/// A repository held in memory.
///
/// Clones share the same objects, so a test can keep a handle to inspect or
/// tamper with what the code under test wrote. Nothing survives the process.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use backup_core::{MemorySink, PutMode, Sink, SinkExt};
/// let sink = MemorySink::new();
/// sink.put("config", "hello".into(), PutMode::Create).await?;
/// assert_eq!(sink.get("config").await?, "hello");
/// assert_eq!(sink.list_keys("").await?, ["config"]);
/// # Ok::<(), backup_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemorySink {
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

impl fmt::Debug for MemorySink {
    // The objects themselves would flood any log or assertion message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySink")
            .field("objects", &self.lock().len())
            .finish()
    }
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored key, sorted.
    #[cfg(any(test, feature = "test-util"))]
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The object stored under `key`, without any check.
    #[cfg(any(test, feature = "test-util"))]
    pub fn raw_get(&self, key: &str) -> Option<Bytes> {
        self.lock().get(key).cloned()
    }

    /// Stores `data` under `key`, replacing any object and skipping all
    /// checks (the key is not validated), so tests can corrupt objects.
    #[cfg(any(test, feature = "test-util"))]
    pub fn raw_put(&self, key: impl Into<String>, data: Bytes) {
        self.lock().insert(key.into(), data);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
        // Every update is a single map operation, so a panic while the lock
        // was held cannot have left the map half-changed.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        validate_key(key)?;
        let mut objects = self.lock();
        if mode == PutMode::Create && objects.contains_key(key) {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        objects.insert(key.to_owned(), data);
        Ok(())
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        validate_key(key)?;
        let data = self
            .lock()
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                key: key.to_owned(),
            })?;
        let Some(range) = range else {
            return Ok(data);
        };
        let range = clamp_range(key, range, data.len() as u64)?;
        // Both ends are at most data.len(), which is a usize.
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        let size = self
            .lock()
            .get(key)
            .map(|data| data.len() as u64)
            .ok_or_else(|| Error::NotFound {
                key: key.to_owned(),
            })?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size,
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .lock()
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, data)| ObjectMeta {
                key: key.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }

    fn location(&self) -> String {
        "memory://".to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sink::SinkExt;

    #[tokio::test]
    async fn clones_share_objects_and_raw_access_bypasses_checks() {
        let sink = MemorySink::new();
        let other = sink.clone();
        sink.put("a/b", "one".into(), PutMode::Create)
            .await
            .unwrap();
        assert_eq!(other.raw_get("a/b").unwrap(), "one");
        other.raw_put("a/b", "two".into());
        assert_eq!(sink.get("a/b").await.unwrap(), "two");
        // raw_put skips key validation, for tests that need odd states.
        other.raw_put("bad//key", Bytes::new());
        assert_eq!(sink.keys(), ["a/b", "bad//key"]);
        assert_eq!(format!("{sink:?}"), "MemorySink { objects: 2 }");
        assert_eq!(sink.location(), "memory://");
    }
}
