//! Per-key locks that serialise create-only puts of one key in the
//! process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use ::object_store::path::Path;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Per-key async locks, removed when nobody holds or waits for them.
#[derive(Default)]
pub(super) struct KeyLocks {
    pub(super) locks: StdMutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Holds one key's lock; releases it and forgets the key when dropped.
pub(super) struct KeyGuard<'a> {
    owner: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    /// Waits for the lock of `path` and holds it until the guard drops.
    pub(super) async fn lock(&self, path: &Path) -> KeyGuard<'_> {
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
