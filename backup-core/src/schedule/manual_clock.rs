//! A clock that tests move by hand (feature `test-util`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::clock::Clock;

/// A clock that only moves when told to, for deterministic tests.
///
/// [`advance`](ManualClock::advance) and [`set`](ManualClock::set) move the
/// time and wake, in deadline order, every task sleeping until a time that
/// has been reached. Clones share the same time.
///
/// The async helpers [`settle`](ManualClock::settle),
/// [`run_until`](ManualClock::run_until) and [`run_for`](ManualClock::run_for)
/// drive a scheduler through simulated time: `run_until` repeatedly lets all
/// woken tasks run until they are parked again, then jumps straight to the
/// earliest pending deadline, so each wake-up happens at exactly its
/// deadline and a simulated week takes milliseconds.
///
/// Prefer `run_until` over a bare `advance` past a deadline: a scheduler
/// woken long after an occurrence's time treats it as missed (see
/// [`SchedulerBuilder::late_tolerance`](super::SchedulerBuilder::late_tolerance)),
/// exactly as after real downtime.
///
/// Settling yields to the Tokio scheduler until no task has touched this
/// clock for several rounds. It is exact on a current-thread runtime (the
/// default of `#[tokio::test]`) for tasks that do in-process async work; a
/// runner that waits on real I/O or threads should be awaited through its own
/// signals (for example the scheduler's events).
#[derive(Clone)]
pub struct ManualClock {
    shared: Arc<ManualShared>,
}

struct ManualShared {
    state: Mutex<ManualState>,
    /// Bumped whenever a task reads the clock or starts, polls or drops a
    /// sleep; [`ManualClock::settle`] waits for it to stop changing.
    activity: AtomicU64,
}

struct ManualState {
    now: DateTime<Utc>,
    /// Parked sleepers by (deadline, registration number).
    sleepers: BTreeMap<(DateTime<Utc>, u64), Waker>,
    next_id: u64,
}

/// Consecutive quiet yields after which [`ManualClock::settle`] returns.
const QUIET_ROUNDS: u32 = 4;
/// Upper bound on the yields of one [`ManualClock::settle`], so a task that
/// never stops touching the clock cannot hang a test.
const MAX_SETTLE_ROUNDS: u32 = 100_000;

impl ManualClock {
    /// A clock standing still at `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            shared: Arc::new(ManualShared {
                state: Mutex::new(ManualState {
                    now: start,
                    sleepers: BTreeMap::new(),
                    next_id: 0,
                }),
                activity: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ManualState> {
        self.shared.lock()
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.touch();
        self.lock().now
    }

    /// Moves the time forward by `by` (saturating at the latest representable
    /// time) and wakes the sleepers whose deadline has been reached.
    pub fn advance(&self, by: Duration) {
        let now = self.lock().now;
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.set(
            now.checked_add_signed(by)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        );
    }

    /// Sets the time to `to` and wakes the sleepers whose deadline has been
    /// reached. Setting an earlier time is allowed (a clock stepping back):
    /// sleepers then simply wait longer.
    pub fn set(&self, to: DateTime<Utc>) {
        let mut woken = Vec::new();
        {
            let mut state = self.lock();
            state.now = to;
            while let Some(entry) = state.sleepers.first_entry() {
                if entry.key().0 > to {
                    break;
                }
                woken.push(entry.remove());
            }
        }
        self.shared.touch();
        for waker in woken {
            waker.wake();
        }
    }

    /// How many tasks are sleeping on this clock.
    pub fn sleepers(&self) -> usize {
        self.lock().sleepers.len()
    }

    /// The earliest deadline a task is sleeping until, if any.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.lock()
            .sleepers
            .keys()
            .next()
            .map(|(deadline, _)| *deadline)
    }

    /// Lets every task that can make progress run until all are parked
    /// again (see the type's documentation for the exact guarantee).
    pub async fn settle(&self) {
        let mut quiet = 0;
        let mut rounds = 0;
        while quiet < QUIET_ROUNDS && rounds < MAX_SETTLE_ROUNDS {
            let before = self.shared.activity.load(Ordering::SeqCst);
            tokio::task::yield_now().await;
            if self.shared.activity.load(Ordering::SeqCst) == before {
                quiet += 1;
            } else {
                quiet = 0;
            }
            rounds += 1;
        }
    }

    /// Runs simulated time forward to `target`: settles, jumps to the
    /// earliest pending deadline not after `target`, wakes its sleepers,
    /// and repeats; finally sets the clock to `target` and settles. Returns
    /// the number of jumps made. Does nothing if `target` is not after now.
    pub async fn run_until(&self, target: DateTime<Utc>) -> usize {
        let mut jumps = 0;
        loop {
            self.settle().await;
            let now = self.lock().now;
            match self.next_wake() {
                Some(deadline) if deadline <= target => {
                    self.set(deadline.max(now));
                    jumps += 1;
                }
                _ => break,
            }
        }
        if self.lock().now < target {
            self.set(target);
            self.settle().await;
        }
        jumps
    }

    /// [`run_until`](ManualClock::run_until) now plus `duration`.
    pub async fn run_for(&self, duration: Duration) -> usize {
        let now = self.lock().now;
        let by = chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        let target = now
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.run_until(target).await
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("ManualClock")
            .field("now", &state.now)
            .field("sleepers", &state.sleepers.len())
            .finish()
    }
}

impl ManualShared {
    fn lock(&self) -> MutexGuard<'_, ManualState> {
        // The state stays consistent even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn touch(&self) {
        self.activity.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        ManualClock::now(self)
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        ManualSleep {
            shared: Arc::clone(&self.shared),
            deadline,
            id: None,
        }
        .await;
    }
}

/// The future of [`ManualClock::sleep_until`].
struct ManualSleep {
    shared: Arc<ManualShared>,
    deadline: DateTime<Utc>,
    /// Registration number once parked.
    id: Option<u64>,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.shared.touch();
        let mut state = this.shared.lock();
        if state.now >= this.deadline {
            if let Some(id) = this.id.take() {
                state.sleepers.remove(&(this.deadline, id));
            }
            return Poll::Ready(());
        }
        let id = match this.id {
            Some(id) => id,
            None => {
                let id = state.next_id;
                state.next_id += 1;
                this.id = Some(id);
                id
            }
        };
        state
            .sleepers
            .insert((this.deadline, id), cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.lock().sleepers.remove(&(self.deadline, id));
            self.shared.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::clock::SystemClock;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, minute, 0).unwrap()
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_in_deadline_order() {
        let clock = ManualClock::new(at(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        for minute in [30, 10, 20] {
            let (clock, order) = (clock.clone(), order.clone());
            tokio::spawn(async move {
                clock.sleep_until(at(minute)).await;
                order.lock().unwrap().push((minute, clock.now()));
            });
        }
        clock.settle().await;
        assert_eq!(clock.sleepers(), 3);
        assert_eq!(clock.next_wake(), Some(at(10)));
        clock.advance(Duration::from_secs(15 * 60));
        clock.settle().await;
        assert_eq!(*order.lock().unwrap(), vec![(10, at(15))]);
        assert_eq!(clock.run_until(at(40)).await, 2);
        assert_eq!(
            *order.lock().unwrap(),
            vec![(10, at(15)), (20, at(20)), (30, at(30))]
        );
        assert_eq!(clock.now(), at(40));
        assert_eq!(clock.sleepers(), 0);
    }

    #[tokio::test]
    async fn dropped_and_past_sleeps() {
        let clock = ManualClock::new(at(5));
        // A deadline already reached returns at once.
        clock.sleep_until(at(5)).await;
        clock.sleep_until(at(1)).await;
        // A dropped sleep leaves nothing behind.
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(at(50)).await }
        });
        clock.settle().await;
        assert_eq!(clock.sleepers(), 1);
        sleeper.abort();
        clock.settle().await;
        assert_eq!(clock.sleepers(), 0);
        // Going back in time is allowed and wakes nobody.
        clock.set(at(0));
        assert_eq!(clock.now(), at(0));
    }

    #[tokio::test]
    async fn system_clock_sleeps_until_the_deadline() {
        let clock = SystemClock;
        let deadline = clock.now() + chrono::Duration::milliseconds(30);
        clock.sleep_until(deadline).await;
        assert!(clock.now() >= deadline);
        // A past deadline returns at once.
        clock
            .sleep_until(deadline - chrono::Duration::hours(1))
            .await;
    }
}
