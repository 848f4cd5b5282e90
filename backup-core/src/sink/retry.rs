//! Retrying temporary failures with exponential backoff and jitter.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use super::{ObjectMeta, PutMode, Sink};
use crate::{Error, Result};

/// When and how often [`RetrySink`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of any delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 8 retries, from 100 ms doubling up to 10 s (about 30 s in all).
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (0-based): exponential, capped,
    /// with "full jitter" (uniform between half and all of it) so that many
    /// clients do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(30)));
        let capped = exponential.min(self.max_backoff);
        let millis = u64::try_from(capped.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis))
    }
}

/// Wraps a sink and retries operations that fail with a temporary error
/// ([`Error::is_temporary`]).
///
/// A create-only put that timed out may have succeeded; its retry then fails
/// with [`Error::AlreadyExists`]. The repository stores content-addressed
/// objects, for which that outcome means success, so this is safe there.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use backup_core::{MemorySink, RetryPolicy, RetrySink};
/// let sink = RetrySink::new(Arc::new(MemorySink::new()), RetryPolicy::default());
/// assert_eq!(sink.policy().max_retries, 8);
/// ```
#[derive(Debug, Clone)]
pub struct RetrySink {
    inner: Arc<dyn Sink>,
    policy: RetryPolicy,
}

impl RetrySink {
    /// Retries `inner`'s temporary failures according to `policy`.
    pub fn new(inner: Arc<dyn Sink>, policy: RetryPolicy) -> Self {
        RetrySink { inner, policy }
    }

    /// The retry policy.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    async fn retry<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        mut attempt_once: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>> + Send,
        T: Send,
    {
        let mut attempt = 0;
        loop {
            match attempt_once().await {
                Err(error) if error.is_temporary() && attempt < self.policy.max_retries => {
                    let delay = self.policy.backoff(attempt);
                    tracing::debug!(operation, key, %error, ?delay, "temporary failure; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) if error.is_temporary() => {
                    tracing::warn!(operation, key, %error, attempts = attempt + 1, "giving up");
                    return Err(error);
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Sink for RetrySink {
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        let mut first = true;
        self.retry("put", key, || {
            let retried = !std::mem::replace(&mut first, false);
            let data = data.clone();
            async move {
                match self.inner.put(key, data, mode).await {
                    // An earlier attempt reported failure but did write.
                    Err(Error::AlreadyExists { .. }) if retried && mode == PutMode::Create => {
                        Ok(())
                    }
                    other => other,
                }
            }
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.retry("get", key, || self.inner.get_range(key, range.clone()))
            .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.retry("head", key, || self.inner.head(key)).await
    }

    /// Passed on once: a hint is not retried.
    async fn prefetch(&self, prefix: &str) {
        self.inner.prefetch(prefix).await;
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.retry("list", prefix, || self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.retry("delete", key, || self.inner.delete(key)).await
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn write_concurrency(&self) -> usize {
        self.inner.write_concurrency()
    }

    /// The inner sink's staged objects, without retries: a sink that
    /// stages (a local disk) has no temporary failures to retry.
    fn stage(&self) -> Result<Option<Box<dyn super::StagedObject>>> {
        self.inner.stage()
    }
}
