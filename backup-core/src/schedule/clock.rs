//! Where the scheduler's time comes from: the system clock, or (with the
//! `test-util` feature) the manual one of `manual_clock` that tests drive.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A source of wall-clock time that can also put a task to sleep.
///
/// The scheduler and the [`RunContext`](super::RunContext) handed to runners
/// use it for every reading of the time and every wait, so a test can replace
/// it with a manual clock (feature `test-util`).
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Returns once [`now`](Clock::now) has reached `deadline` (at once if it
    /// already has). Dropping the future cancels the wait.
    async fn sleep_until(&self, deadline: DateTime<Utc>);
}

#[async_trait]
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        (**self).sleep_until(deadline).await;
    }
}

/// The system's wall clock, sleeping with Tokio timers.
///
/// Long waits are cut into slices of at most a minute and the wall clock is
/// read again after each, so a suspended machine or a clock step (NTP) delays
/// a wake-up by at most a minute.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

/// The longest single Tokio sleep of [`SystemClock::sleep_until`].
const SYSTEM_SLEEP_SLICE: Duration = Duration::from_secs(60);

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        loop {
            let remaining = match (deadline - Utc::now()).to_std() {
                Ok(remaining) if !remaining.is_zero() => remaining,
                // Negative (an error) or zero: the deadline has passed.
                _ => return,
            };
            tokio::time::sleep(remaining.min(SYSTEM_SLEEP_SLICE)).await;
        }
    }
}
