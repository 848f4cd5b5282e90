//! A sink that injects faults, for testing what happens when storage
//! misbehaves: failures before or after the write, stalls, truncated reads,
//! storage gone for good.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use backup_core::{Error, ObjectMeta, PutMode, Result, Sink};

/// Which faults [`FaultSink`] injects, each as a probability per operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Fail the operation before it reaches the inner sink (temporary error).
    pub fail: f64,
    /// For puts: write the object, then report a temporary failure anyway
    /// (as a timeout after the server stored it).
    pub fail_after_write: f64,
    /// Wait `stall_for` before the operation.
    pub stall: f64,
    /// How long a stall lasts.
    pub stall_for: Duration,
    /// For gets: return only a prefix of the bytes.
    pub truncate_read: f64,
    /// After this many operations, the storage is gone for good (every
    /// later operation fails permanently).
    pub gone_after: Option<u64>,
    /// Seed of the random choices, so a failing run can be replayed.
    pub seed: u64,
}

impl Default for FaultPlan {
    /// No faults.
    fn default() -> Self {
        FaultPlan {
            fail: 0.0,
            fail_after_write: 0.0,
            stall: 0.0,
            stall_for: Duration::from_millis(50),
            truncate_read: 0.0,
            gone_after: None,
            seed: 0,
        }
    }
}

/// Counts of the faults injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Operations seen.
    pub operations: u64,
    /// Operations failed before reaching the inner sink.
    pub failed: u64,
    /// Puts that wrote and then reported failure.
    pub failed_after_write: u64,
    /// Operations stalled.
    pub stalled: u64,
    /// Reads truncated.
    pub truncated: u64,
}

/// Wraps a sink and injects failures, stalls and truncated reads according
/// to a [`FaultPlan`], or fails everything once [`FaultSink::set_gone`] is
/// called (storage gone for good).
///
/// Used by tests to prove that retries work, that failures are reported
/// clearly, and that the repository stays valid whatever happens.
#[derive(Debug)]
pub struct FaultSink {
    inner: Arc<dyn Sink>,
    plan: Mutex<FaultPlan>,
    rng: Mutex<StdRng>,
    gone: AtomicBool,
    operations: AtomicU64,
    failed: AtomicU64,
    failed_after_write: AtomicU64,
    stalled: AtomicU64,
    truncated: AtomicU64,
    log: Mutex<Vec<(&'static str, String)>>,
}

enum Fault {
    None,
    Fail,
    FailAfterWrite,
    Truncate,
}

impl FaultSink {
    /// Injects the faults of `plan` into `inner`'s operations.
    pub fn new(inner: Arc<dyn Sink>, plan: FaultPlan) -> Self {
        FaultSink {
            inner,
            rng: Mutex::new(StdRng::seed_from_u64(plan.seed)),
            plan: Mutex::new(plan),
            gone: AtomicBool::new(false),
            operations: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failed_after_write: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        }
    }

    /// Every operation seen so far, as (operation, key or prefix), in order.
    pub fn operations(&self) -> Vec<(&'static str, String)> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Forgets the operations seen so far ([`FaultSink::operations`]).
    pub fn clear_operations(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.clear();
        }
    }

    /// Replaces the plan.
    pub fn set_plan(&self, plan: FaultPlan) {
        if let Ok(mut slot) = self.plan.lock() {
            *slot = plan;
        }
    }

    /// When `gone`, every operation fails with a permanent error, as when the
    /// storage was deleted or the credentials revoked.
    pub fn set_gone(&self, gone: bool) {
        self.gone.store(gone, Ordering::SeqCst);
    }

    /// The faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            operations: self.operations.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            failed_after_write: self.failed_after_write.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
        }
    }

    /// Decides this operation's fault and applies any stall.
    async fn decide(
        &self,
        operation: &'static str,
        key: &str,
        is_put: bool,
        is_get: bool,
    ) -> Result<Fault> {
        let seen = self.operations.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut log) = self.log.lock() {
            log.push((operation, key.to_string()));
        }
        let plan = self.plan.lock().map(|plan| *plan).unwrap_or_default();
        if plan.gone_after.is_some_and(|limit| seen >= limit) {
            self.gone.store(true, Ordering::SeqCst);
        }
        if self.gone.load(Ordering::SeqCst) {
            return Err(injected(operation, key, false, "the storage is gone"));
        }
        let (stall, roll) = match self.rng.lock() {
            Ok(mut rng) => (rng.gen_bool(plan.stall.clamp(0.0, 1.0)), rng.gen::<f64>()),
            Err(_) => (false, 1.0),
        };
        if stall {
            self.stalled.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(plan.stall_for).await;
        }
        let mut threshold = plan.fail;
        if roll < threshold {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Ok(Fault::Fail);
        }
        if is_put {
            threshold += plan.fail_after_write;
            if roll < threshold {
                self.failed_after_write.fetch_add(1, Ordering::Relaxed);
                return Ok(Fault::FailAfterWrite);
            }
        }
        if is_get {
            threshold += plan.truncate_read;
            if roll < threshold {
                self.truncated.fetch_add(1, Ordering::Relaxed);
                return Ok(Fault::Truncate);
            }
        }
        Ok(Fault::None)
    }
}

fn injected(operation: &'static str, key: &str, temporary: bool, what: &str) -> Error {
    Error::Sink {
        operation,
        key: key.to_string(),
        temporary,
        source: format!("injected fault: {what}").into(),
    }
}

#[async_trait]
impl Sink for FaultSink {
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        match self.decide("put", key, true, false).await? {
            Fault::Fail => Err(injected("put", key, true, "write failed")),
            Fault::FailAfterWrite => {
                self.inner.put(key, data, mode).await?;
                Err(injected("put", key, true, "timed out after the write"))
            }
            _ => self.inner.put(key, data, mode).await,
        }
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        match self.decide("get", key, false, true).await? {
            Fault::Fail => Err(injected("get", key, true, "read failed")),
            Fault::Truncate => {
                let bytes = self.inner.get_range(key, range).await?;
                Ok(bytes.slice(..bytes.len() / 2))
            }
            _ => self.inner.get_range(key, range).await,
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        match self.decide("head", key, false, false).await? {
            Fault::Fail => Err(injected("head", key, true, "head failed")),
            _ => self.inner.head(key).await,
        }
    }

    /// Passed on without a fault: a hint reads nothing the caller sees.
    async fn prefetch(&self, prefix: &str) {
        self.inner.prefetch(prefix).await;
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        match self.decide("list", prefix, false, false).await? {
            Fault::Fail => Err(injected("list", prefix, true, "list failed")),
            _ => self.inner.list(prefix).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.decide("delete", key, false, false).await? {
            Fault::Fail => Err(injected("delete", key, true, "delete failed")),
            _ => self.inner.delete(key).await,
        }
    }

    fn location(&self) -> String {
        format!("fault+{}", self.inner.location())
    }

    fn write_concurrency(&self) -> usize {
        self.inner.write_concurrency()
    }
}
