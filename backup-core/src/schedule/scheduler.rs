//! The scheduler: decides when jobs run, runs them through the injected
//! [`JobRunner`], and keeps their status (the events and status it reports
//! are in `status.rs`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;

use super::clock::{Clock, SystemClock};
use super::job::{JobFailure, JobRunner, JobSpec, RunContext, RunOutcome, RunTrigger};
use super::status::{JobStatus, LastOutcome, PauseReason, ScheduleEvents, SchedulerEvent};
use super::ScheduleError;
use crate::CancellationToken;

/// Default capacity of the event channel (how many events a slow subscriber may fall behind before losing the oldest).
const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default for [`SchedulerBuilder::late_tolerance`].
const DEFAULT_LATE_TOLERANCE: Duration = Duration::from_secs(60);

/// How [`Scheduler::shutdown`] treats running jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutdownMode {
    /// Let running jobs finish.
    Finish,
    /// Cancel running jobs through their [`CancellationToken`](crate::CancellationToken) and wait for
    /// them to return.
    Cancel,
}

/// Configures and starts a [`Scheduler`].
pub struct SchedulerBuilder<P: Send + Sync + 'static = ()> {
    runner: Arc<dyn JobRunner<P>>,
    clock: Arc<dyn Clock>,
    jobs: Vec<JobSpec<P>>,
    seed: Option<u64>,
    events: broadcast::Sender<SchedulerEvent>,
    late_tolerance: Duration,
}

impl<P: Send + Sync + 'static> SchedulerBuilder<P> {
    /// A builder for a scheduler running jobs through `runner`, on the
    /// system clock, with no jobs yet.
    pub fn new(runner: impl JobRunner<P> + 'static) -> SchedulerBuilder<P> {
        let (events, _) = broadcast::channel(DEFAULT_EVENT_CAPACITY);
        SchedulerBuilder {
            runner: Arc::new(runner),
            clock: Arc::new(SystemClock),
            jobs: Vec::new(),
            seed: None,
            events,
            late_tolerance: DEFAULT_LATE_TOLERANCE,
        }
    }

    /// Uses `clock` instead of the system clock (feature `test-util`).
    #[cfg(feature = "test-util")]
    pub fn clock(mut self, clock: impl Clock + 'static) -> SchedulerBuilder<P> {
        self.clock = Arc::new(clock);
        self
    }

    /// Adds a job.
    pub fn job(mut self, job: JobSpec<P>) -> SchedulerBuilder<P> {
        self.jobs.push(job);
        self
    }

    /// Adds jobs.
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = JobSpec<P>>) -> SchedulerBuilder<P> {
        self.jobs.extend(jobs);
        self
    }

    /// Seeds the jitter's random generator, making jitter reproducible
    /// (feature `test-util`).
    #[cfg(feature = "test-util")]
    pub fn jitter_seed(mut self, seed: u64) -> SchedulerBuilder<P> {
        self.seed = Some(seed);
        self
    }

    /// How late after its time an occurrence may still start (default one
    /// minute). An occurrence noticed later than this (after downtime,
    /// suspend or a clock jump) is counted as missed, and the job waits for
    /// its next occurrence.
    pub fn late_tolerance(mut self, tolerance: Duration) -> SchedulerBuilder<P> {
        self.late_tolerance = tolerance;
        self
    }

    /// A receiver of all events from the start on.
    pub fn subscribe(&self) -> ScheduleEvents {
        self.events.subscribe()
    }

    /// Starts the scheduler on the current Tokio runtime. The first runs are
    /// the jobs' first occurrences strictly after now.
    ///
    /// Fails on duplicate job names or outside a Tokio runtime.
    pub fn start(self) -> Result<Scheduler<P>, ScheduleError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ScheduleError::NoRuntime)?;
        let mut names = HashSet::new();
        for job in &self.jobs {
            if !names.insert(job.name()) {
                return Err(ScheduleError::DuplicateJob {
                    name: job.name().to_owned(),
                });
            }
        }
        let started_at = self.clock.now();
        let rng = match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let state = State {
            shutting_down: false,
            started_at,
            rng,
            jobs: self.jobs.iter().map(|_| JobState::default()).collect(),
        };
        let tolerance =
            chrono::Duration::from_std(self.late_tolerance).unwrap_or(chrono::Duration::MAX);
        let shared = Arc::new(Shared {
            clock: self.clock,
            runner: self.runner,
            jobs: self.jobs.into_iter().map(Arc::new).collect(),
            state: Mutex::new(state),
            wake: Notify::new(),
            idle: Notify::new(),
            events: self.events,
            runtime: runtime.clone(),
            late_tolerance: tolerance,
        });
        let main_loop = runtime.spawn(run_loop(Arc::clone(&shared)));
        Ok(Scheduler {
            shared,
            main_loop: Mutex::new(Some(main_loop)),
        })
    }
}

/// Runs jobs on their cron schedules; see the [module documentation](super)
/// for the semantics.
///
/// Dropping the scheduler stops it from starting new runs; running jobs go on
/// in the background. Call [`shutdown`](Scheduler::shutdown) to wait for them.
pub struct Scheduler<P: Send + Sync + 'static = ()> {
    shared: Arc<Shared<P>>,
    main_loop: Mutex<Option<JoinHandle<()>>>,
}

impl<P: Send + Sync + 'static> Scheduler<P> {
    /// Starts configuring a scheduler running jobs through `runner`.
    pub fn builder(runner: impl JobRunner<P> + 'static) -> SchedulerBuilder<P> {
        SchedulerBuilder::new(runner)
    }

    /// A receiver of events from now on.
    pub fn subscribe(&self) -> ScheduleEvents {
        self.shared.events.subscribe()
    }

    /// The status of every job, in the order they were added.
    pub fn status(&self) -> Vec<JobStatus> {
        let state = self.shared.lock();
        self.shared
            .jobs
            .iter()
            .zip(&state.jobs)
            .map(|(spec, job)| job.status(spec))
            .collect()
    }

    /// The status of the job named `name`.
    pub fn job_status(&self, name: &str) -> Option<JobStatus> {
        let index = self.shared.index_of(name).ok()?;
        let state = self.shared.lock();
        Some(state.jobs[index].status(&self.shared.jobs[index]))
    }

    /// Starts a run of `name` now, outside its schedule (also while the job
    /// is paused, without resuming it).
    ///
    /// Fails with [`ScheduleError::Busy`] if the job is running,
    /// [`ScheduleError::UnknownJob`] or [`ScheduleError::ShuttingDown`].
    pub fn trigger(&self, name: &str) -> Result<(), ScheduleError> {
        let index = self.shared.index_of(name)?;
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        if state.shutting_down {
            return Err(ScheduleError::ShuttingDown);
        }
        if state.jobs[index].running.is_some() {
            return Err(ScheduleError::Busy {
                name: name.to_owned(),
            });
        }
        self.shared
            .start_run(&mut state, index, RunTrigger::Manual, now, now);
        Ok(())
    }

    /// Takes `name` off its schedule until [`resume`](Scheduler::resume); a
    /// running run goes on. Does nothing if the job is already paused.
    pub fn pause(&self, name: &str) -> Result<(), ScheduleError> {
        let index = self.shared.index_of(name)?;
        let mut state = self.shared.lock();
        if state.jobs[index].paused.is_none() {
            self.shared.pause(&mut state, index, PauseReason::Manual);
        }
        drop(state);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Puts a paused job (after a collision or [`pause`](Scheduler::pause))
    /// back on its schedule: it next runs at its first occurrence strictly
    /// after now. Does nothing if the job is not paused.
    pub fn resume(&self, name: &str) -> Result<(), ScheduleError> {
        let index = self.shared.index_of(name)?;
        let mut state = self.shared.lock();
        let job = &mut state.jobs[index];
        if job.paused.take().is_some() {
            job.next = None;
            job.exhausted = false;
            tracing::info!(job = name, "job resumed");
            self.shared.emit(SchedulerEvent::Resumed {
                job: name.to_owned(),
            });
        }
        drop(state);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Stops the scheduler: no run starts after this is called. With
    /// [`ShutdownMode::Finish`] running jobs are left to finish; with
    /// [`ShutdownMode::Cancel`] their cancellation tokens are cancelled.
    /// Returns once every run has returned. Calling it again (for example
    /// with `Cancel` after `Finish`) is allowed.
    pub async fn shutdown(&self, mode: ShutdownMode) {
        {
            let mut state = self.shared.lock();
            if !state.shutting_down {
                tracing::info!(?mode, "scheduler shutting down");
            }
            state.shutting_down = true;
            for job in &mut state.jobs {
                job.next = None;
                if mode == ShutdownMode::Cancel {
                    if let Some(run) = &job.running {
                        run.token.cancel();
                    }
                }
            }
        }
        self.shared.wake.notify_one();
        let main_loop = self
            .main_loop
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(main_loop) = main_loop {
            if let Err(error) = main_loop.await {
                tracing::error!(%error, "scheduler loop ended abnormally");
            }
        }
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self
                .shared
                .lock()
                .jobs
                .iter()
                .all(|job| job.running.is_none())
            {
                return;
            }
            idle.await;
        }
    }
}

impl<P: Send + Sync + 'static> Drop for Scheduler<P> {
    fn drop(&mut self) {
        self.shared.lock().shutting_down = true;
        self.shared.wake.notify_one();
    }
}

impl<P: Send + Sync + 'static> std::fmt::Debug for Scheduler<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field(
                "jobs",
                &self
                    .shared
                    .jobs
                    .iter()
                    .map(|job| job.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

struct Shared<P: Send + Sync + 'static> {
    clock: Arc<dyn Clock>,
    runner: Arc<dyn JobRunner<P>>,
    jobs: Vec<Arc<JobSpec<P>>>,
    state: Mutex<State>,
    /// Wakes the main loop: a run finished, a job was paused or resumed, or
    /// shutdown began.
    wake: Notify,
    /// Wakes shutdown waiters when a run finishes.
    idle: Notify,
    events: broadcast::Sender<SchedulerEvent>,
    runtime: tokio::runtime::Handle,
    late_tolerance: chrono::Duration,
}

struct State {
    shutting_down: bool,
    started_at: DateTime<Utc>,
    rng: StdRng,
    jobs: Vec<JobState>,
}

#[derive(Default)]
struct JobState {
    /// The next occurrence and its start time (occurrence plus jitter).
    next: Option<Planned>,
    /// The expression has no occurrence after the last planning.
    exhausted: bool,
    running: Option<ActiveRun>,
    last_run_started: Option<DateTime<Utc>>,
    last_run_finished: Option<DateTime<Utc>>,
    last_outcome: Option<LastOutcome>,
    last_success: Option<DateTime<Utc>>,
    consecutive_failures: u32,
    runs: u64,
    failures: u64,
    skipped_overlaps: u64,
    missed: u64,
    paused: Option<PauseReason>,
    stale: bool,
}

#[derive(Clone, Copy)]
struct Planned {
    due: DateTime<Utc>,
    start: DateTime<Utc>,
}

struct ActiveRun {
    token: CancellationToken,
    started_at: DateTime<Utc>,
}

impl JobState {
    fn status<P>(&self, spec: &JobSpec<P>) -> JobStatus {
        JobStatus {
            name: spec.name().to_owned(),
            cron: spec.cron().to_owned(),
            running_since: self.running.as_ref().map(|run| run.started_at),
            last_run_started: self.last_run_started,
            last_run_finished: self.last_run_finished,
            last_outcome: self.last_outcome.clone(),
            last_success: self.last_success,
            next_run: self.next.map(|next| next.start),
            consecutive_failures: self.consecutive_failures,
            runs: self.runs,
            failures: self.failures,
            skipped_overlaps: self.skipped_overlaps,
            missed: self.missed,
            paused: self.paused.clone(),
            stale: self.stale,
        }
    }
}

/// The main loop: start what is due, then sleep until the next thing to do
/// or until woken.
async fn run_loop<P: Send + Sync + 'static>(shared: Arc<Shared<P>>) {
    loop {
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let deadline = match shared.tick() {
            Tick::Stop => return,
            Tick::Sleep(deadline) => deadline,
        };
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = shared.clock.sleep_until(deadline) => {}
                    () = &mut woken => {}
                }
            }
            None => woken.await,
        }
    }
}

enum Tick {
    Stop,
    /// Sleep until this time, or until woken if `None`.
    Sleep(Option<DateTime<Utc>>),
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<P: Send + Sync + 'static> Shared<P> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere
        // while holding the lock does not invalidate it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn index_of(&self, name: &str) -> Result<usize, ScheduleError> {
        self.jobs
            .iter()
            .position(|job| job.name() == name)
            .ok_or_else(|| ScheduleError::UnknownJob {
                name: name.to_owned(),
            })
    }

    fn emit(&self, event: SchedulerEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// Starts what is due and returns when to look again.
    fn tick(self: &Arc<Self>) -> Tick {
        let now = self.clock.now();
        let mut state = self.lock();
        if state.shutting_down {
            return Tick::Stop;
        }
        let mut wake_at = None;
        for index in 0..self.jobs.len() {
            wake_at = earliest(wake_at, self.schedule_job(&mut state, index, now));
            wake_at = earliest(wake_at, self.check_stale(&mut state, index, now));
        }
        Tick::Sleep(wake_at)
    }

    /// Starts, skips or drops the job's occurrence if its time has come, and
    /// returns when the next one starts.
    fn schedule_job(
        self: &Arc<Self>,
        state: &mut State,
        index: usize,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let spec = &self.jobs[index];
        if state.jobs[index].paused.is_some() {
            return None;
        }
        if state.jobs[index].next.is_none() && !state.jobs[index].exhausted {
            self.plan_next(state, index, now);
        }
        let planned = state.jobs[index].next?;
        if planned.start > now {
            return Some(planned.start);
        }
        let job = &mut state.jobs[index];
        if now - planned.start > self.late_tolerance {
            job.missed += 1;
            tracing::warn!(job = spec.name(), scheduled_for = %planned.due, "occurrence missed (scheduler was not running or the clock jumped); not catching up");
            self.emit(SchedulerEvent::Missed {
                job: spec.name().to_owned(),
                scheduled_for: planned.due,
                noticed_at: now,
            });
        } else if job.running.is_some() {
            job.skipped_overlaps += 1;
            tracing::warn!(job = spec.name(), scheduled_for = %planned.due, "previous run still going; occurrence skipped");
            self.emit(SchedulerEvent::OverlapSkipped {
                job: spec.name().to_owned(),
                scheduled_for: planned.due,
            });
        } else {
            self.start_run(state, index, RunTrigger::Scheduled, planned.due, now);
        }
        self.plan_next(state, index, now);
        state.jobs[index].next.map(|next| next.start)
    }

    /// Plans the job's first occurrence strictly after `now`, with jitter.
    fn plan_next(&self, state: &mut State, index: usize, now: DateTime<Utc>) {
        let spec = &self.jobs[index];
        let planned = spec.next_after(now).map(|due| {
            let delay = match spec.jitter() {
                Some(jitter) => {
                    let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
                    Duration::from_nanos(state.rng.gen_range(0..nanos))
                }
                None => Duration::ZERO,
            };
            let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
            Planned {
                due,
                start: due.checked_add_signed(delay).unwrap_or(due),
            }
        });
        let job = &mut state.jobs[index];
        job.exhausted = planned.is_none();
        job.next = planned;
    }

    /// Raises the stale alert if due, and returns when it would be.
    fn check_stale(
        &self,
        state: &mut State,
        index: usize,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let spec = &self.jobs[index];
        let started_at = state.started_at;
        let job = &mut state.jobs[index];
        if job.stale {
            return None;
        }
        let reference = job.last_success.unwrap_or(started_at);
        let grace = chrono::Duration::from_std(spec.stale_after_grace()).ok()?;
        let deadline = reference
            .checked_add_signed(spec.interval_around(now)?)?
            .checked_add_signed(grace)?;
        if now < deadline {
            return Some(deadline);
        }
        job.stale = true;
        tracing::warn!(job = spec.name(), last_success = ?job.last_success, "job is stale: no successful run within one interval plus grace");
        self.emit(SchedulerEvent::StaleAlert {
            job: spec.name().to_owned(),
            last_success: job.last_success,
            stale_since: deadline,
        });
        None
    }

    fn pause(&self, state: &mut State, index: usize, reason: PauseReason) {
        let job = &mut state.jobs[index];
        job.paused = Some(reason.clone());
        job.next = None;
        let name = self.jobs[index].name();
        tracing::warn!(job = name, ?reason, "job paused");
        self.emit(SchedulerEvent::Paused {
            job: name.to_owned(),
            reason,
        });
    }

    /// Marks the job running and spawns the run.
    fn start_run(
        self: &Arc<Self>,
        state: &mut State,
        index: usize,
        trigger: RunTrigger,
        scheduled_for: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let spec = Arc::clone(&self.jobs[index]);
        let token = CancellationToken::new();
        let job = &mut state.jobs[index];
        job.running = Some(ActiveRun {
            token: token.clone(),
            started_at: now,
        });
        job.runs += 1;
        job.last_run_started = Some(now);
        let context = RunContext {
            job: spec.name().to_owned(),
            trigger,
            scheduled_for,
            started_at: now,
            run_number: job.runs,
            cancel: token,
            clock: Arc::clone(&self.clock),
        };
        tracing::info!(job = spec.name(), ?trigger, %scheduled_for, "run started");
        self.emit(SchedulerEvent::RunStarted {
            job: spec.name().to_owned(),
            trigger,
            scheduled_for,
            started_at: now,
        });
        let shared = Arc::clone(self);
        let runner = Arc::clone(&self.runner);
        self.runtime.spawn(async move {
            // The run gets a task of its own so a panic is caught as a
            // `JoinError` and recorded instead of leaving the job "running".
            let run = tokio::spawn(async move { runner.run(&spec, context).await });
            let result = match run.await {
                Ok(result) => result,
                Err(error) if error.is_panic() => {
                    let panic = error.into_panic();
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|text| (*text).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-text panic payload".to_owned());
                    Err(JobFailure::Failed(format!(
                        "job runner panicked: {message}"
                    )))
                }
                Err(_) => Err(JobFailure::failed("job run was aborted")),
            };
            shared.finish_run(index, result);
        });
    }

    /// Records a finished run.
    fn finish_run(&self, index: usize, result: Result<RunOutcome, JobFailure>) {
        let now = self.clock.now();
        let name = self.jobs[index].name();
        let mut state = self.lock();
        let job = &mut state.jobs[index];
        let (started_at, cancelled) = match job.running.take() {
            Some(run) => (run.started_at, run.token.is_cancelled()),
            None => (now, false),
        };
        job.last_run_finished = Some(now);
        match result {
            Ok(outcome) => {
                job.last_success = Some(now);
                job.consecutive_failures = 0;
                job.last_outcome = Some(LastOutcome::Succeeded(outcome.clone()));
                tracing::info!(job = name, message = ?outcome.message, "run succeeded");
                self.emit(SchedulerEvent::RunSucceeded {
                    job: name.to_owned(),
                    started_at,
                    finished_at: now,
                    outcome,
                });
                if job.stale {
                    job.stale = false;
                    tracing::info!(job = name, "job is no longer stale");
                    self.emit(SchedulerEvent::StaleCleared {
                        job: name.to_owned(),
                        last_success: now,
                    });
                }
            }
            Err(failure) if cancelled => {
                let message = failure.message().to_owned();
                tracing::info!(job = name, %message, "run cancelled");
                job.last_outcome = Some(LastOutcome::Cancelled {
                    message: message.clone(),
                });
                self.emit(SchedulerEvent::RunCancelled {
                    job: name.to_owned(),
                    started_at,
                    finished_at: now,
                    message,
                });
            }
            Err(JobFailure::Failed(message)) => {
                job.failures += 1;
                job.consecutive_failures = job.consecutive_failures.saturating_add(1);
                tracing::warn!(job = name, %message, consecutive_failures = job.consecutive_failures, "run failed");
                job.last_outcome = Some(LastOutcome::Failed {
                    message: message.clone(),
                });
                self.emit(SchedulerEvent::RunFailed {
                    job: name.to_owned(),
                    started_at,
                    finished_at: now,
                    message,
                    consecutive_failures: job.consecutive_failures,
                });
            }
            Err(JobFailure::Collision { message }) => {
                job.failures += 1;
                job.consecutive_failures = job.consecutive_failures.saturating_add(1);
                job.last_outcome = Some(LastOutcome::Collision {
                    message: message.clone(),
                });
                tracing::warn!(job = name, %message, "backup collision");
                self.emit(SchedulerEvent::Collision {
                    job: name.to_owned(),
                    message: message.clone(),
                });
                self.pause(&mut state, index, PauseReason::Collision { message });
            }
        }
        drop(state);
        self.wake.notify_one();
        self.idle.notify_waiters();
    }
}
