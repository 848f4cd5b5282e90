//! What a job is, and the contract between the scheduler and the code that
//! runs jobs.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::clock::Clock;
use super::expr::{CronExpr, JobTimeZone};
use super::ScheduleError;
use crate::CancellationToken;

/// The default [`JobSpec::stale_after_grace`]: one hour.
pub const DEFAULT_STALE_GRACE: Duration = Duration::from_secs(3600);

/// One scheduled job: a name, when it runs, and a payload the
/// [`JobRunner`] interprets (for `backupctl schedule`, the job's entry in its
/// schedule file, naming the repository, source and retention).
///
/// The cron expression is validated when the spec is created.
#[derive(Debug, Clone)]
pub struct JobSpec<P = ()> {
    name: String,
    cron: CronExpr,
    time_zone: JobTimeZone,
    jitter: Option<Duration>,
    stale_after_grace: Duration,
    payload: P,
}

impl<P> JobSpec<P> {
    /// A job named `name` running on `cron` (see [the module docs](super#cron-expressions)) in UTC, without
    /// jitter, with the [default grace](DEFAULT_STALE_GRACE) before a stale
    /// alert.
    ///
    /// Fails if the name is empty, has surrounding spaces or control
    /// characters, or if the expression is invalid; the error names the job
    /// and the expression.
    pub fn new(
        name: impl Into<String>,
        cron: &str,
        payload: P,
    ) -> Result<JobSpec<P>, ScheduleError> {
        let name = name.into();
        validate_job_name(&name)?;
        let cron = CronExpr::parse(cron).map_err(|reason| ScheduleError::InvalidCron {
            job: name.clone(),
            expression: cron.to_owned(),
            reason,
        })?;
        Ok(JobSpec {
            name,
            cron,
            time_zone: JobTimeZone::Utc,
            jitter: None,
            stale_after_grace: DEFAULT_STALE_GRACE,
            payload,
        })
    }

    /// Evaluates the cron expression in `time_zone`.
    pub fn with_time_zone(mut self, time_zone: JobTimeZone) -> JobSpec<P> {
        self.time_zone = time_zone;
        self
    }

    /// Delays each scheduled run by a random time in `[0, jitter)`; zero
    /// means no jitter. Keep it well below the schedule's interval: a run
    /// delayed past the next occurrence makes that occurrence lapse.
    pub fn with_jitter(mut self, jitter: Duration) -> JobSpec<P> {
        self.jitter = (!jitter.is_zero()).then_some(jitter);
        self
    }

    /// How long past one interval without a successful run the job becomes
    /// stale.
    pub fn with_stale_after_grace(mut self, grace: Duration) -> JobSpec<P> {
        self.stale_after_grace = grace;
        self
    }

    /// The same job with another payload.
    pub fn with_payload<Q>(self, payload: Q) -> JobSpec<Q> {
        JobSpec {
            name: self.name,
            cron: self.cron,
            time_zone: self.time_zone,
            jitter: self.jitter,
            stale_after_grace: self.stale_after_grace,
            payload,
        }
    }

    /// The job's name, unique within a scheduler.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cron expression as written.
    pub fn cron(&self) -> &str {
        self.cron.as_str()
    }

    /// The time zone the cron expression is evaluated in.
    pub fn time_zone(&self) -> JobTimeZone {
        self.time_zone
    }

    /// The maximum random delay added to each scheduled run, if any.
    pub fn jitter(&self) -> Option<Duration> {
        self.jitter
    }

    /// Grace after one missed interval before the job is reported stale.
    pub fn stale_after_grace(&self) -> Duration {
        self.stale_after_grace
    }

    /// The payload the runner interprets.
    pub fn payload(&self) -> &P {
        &self.payload
    }

    /// The first occurrence strictly after `after` (before jitter).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.next_after(after, self.time_zone)
    }

    /// The next `count` occurrences after `after` (before jitter), for
    /// example to show a schedule to a user.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(after), |previous| {
            self.next_after(*previous)
        })
        .take(count)
        .collect()
    }

    /// The schedule's period around `at`: the time between the occurrence at
    /// or before `at` and the next one.
    pub(crate) fn interval_around(&self, at: DateTime<Utc>) -> Option<chrono::Duration> {
        self.cron.interval_around(at, self.time_zone)
    }
}

fn validate_job_name(name: &str) -> Result<(), ScheduleError> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name.trim() != name {
        "the name has leading or trailing spaces"
    } else if name.chars().any(char::is_control) {
        "the name contains control characters"
    } else {
        return Ok(());
    };
    Err(ScheduleError::InvalidJobName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// The job's schedule came due.
    Scheduled,
    /// [`Scheduler::trigger`](super::Scheduler::trigger) asked for it.
    Manual,
}

/// What a [`JobRunner`] gets to know about the run it performs.
#[derive(Clone)]
pub struct RunContext {
    // Set by the scheduler when it starts a run.
    pub(super) job: String,
    pub(super) trigger: RunTrigger,
    pub(super) scheduled_for: DateTime<Utc>,
    pub(super) started_at: DateTime<Utc>,
    pub(super) run_number: u64,
    pub(super) cancel: CancellationToken,
    pub(super) clock: Arc<dyn Clock>,
}

impl RunContext {
    /// A context for a run of `job` starting now on `clock`, with a fresh
    /// cancellation token: for testing a runner outside a scheduler
    /// (feature `test-util`).
    #[cfg(feature = "test-util")]
    pub fn new(job: impl Into<String>, trigger: RunTrigger, clock: Arc<dyn Clock>) -> RunContext {
        let now = clock.now();
        RunContext {
            job: job.into(),
            trigger,
            scheduled_for: now,
            started_at: now,
            run_number: 1,
            cancel: CancellationToken::new(),
            clock,
        }
    }

    /// Replaces the cancellation token (feature `test-util`).
    #[cfg(feature = "test-util")]
    pub fn with_cancellation(mut self, token: CancellationToken) -> RunContext {
        self.cancel = token;
        self
    }

    /// Name of the job.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Why the run started.
    pub fn trigger(&self) -> RunTrigger {
        self.trigger
    }

    /// The occurrence this run is for (before jitter), or the time of the
    /// manual trigger.
    pub fn scheduled_for(&self) -> DateTime<Utc> {
        self.scheduled_for
    }

    /// When the run started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// The job's run count including this run, starting at 1.
    pub fn run_number(&self) -> u64 {
        self.run_number
    }

    /// The run's cancellation token, cancelled on
    /// [`ShutdownMode::Cancel`](super::ShutdownMode::Cancel): pass it on to
    /// the operations the run performs
    /// ([`BackupOptions::with_cancellation`](crate::BackupOptions::with_cancellation)),
    /// or wait for it with `cancelled()`.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The scheduler's clock: runners should read time and sleep through it,
    /// so tests with a manual clock (feature `test-util`) stay in control.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("job", &self.job)
            .field("trigger", &self.trigger)
            .field("scheduled_for", &self.scheduled_for)
            .field("started_at", &self.started_at)
            .field("run_number", &self.run_number)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// What a successful run reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// A one-line summary for status displays (for example the backup's id
    /// and size), if the runner gives one.
    pub message: Option<String>,
}

impl RunOutcome {
    /// A success without a message.
    pub fn new() -> RunOutcome {
        RunOutcome::default()
    }

    /// A success with a one-line summary.
    pub fn with_message(message: impl Into<String>) -> RunOutcome {
        RunOutcome {
            message: Some(message.into()),
        }
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobFailure {
    /// The run failed; the job stays on its schedule.
    #[error("{0}")]
    Failed(String),
    /// Another writer is backing up to the same set (ACM's
    /// `BackupCollision`): the job is paused until
    /// [`Scheduler::resume`](super::Scheduler::resume).
    #[error("backup collision: {message}")]
    Collision {
        /// What collided, for the operator.
        message: String,
    },
}

impl JobFailure {
    /// A plain failure.
    pub fn failed(message: impl fmt::Display) -> JobFailure {
        JobFailure::Failed(message.to_string())
    }

    /// A collision that pauses the job.
    pub fn collision(message: impl fmt::Display) -> JobFailure {
        JobFailure::Collision {
            message: message.to_string(),
        }
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            JobFailure::Failed(message) | JobFailure::Collision { message } => message,
        }
    }

    /// Whether this failure pauses the job.
    pub fn is_collision(&self) -> bool {
        matches!(self, JobFailure::Collision { .. })
    }
}

/// The work a job does, injected into the [`Scheduler`](super::Scheduler).
///
/// `P` is the type of the jobs' payload. The runner should stop soon after
/// [`RunContext::cancellation`] fires, and read time and sleep through
/// [`RunContext::clock`]. A panic in a runner is caught and recorded as a
/// failed run.
#[async_trait]
pub trait JobRunner<P = ()>: Send + Sync
where
    P: Send + Sync + 'static,
{
    /// Performs one run of `job`.
    async fn run(&self, job: &JobSpec<P>, context: RunContext) -> Result<RunOutcome, JobFailure>;
}

#[async_trait]
impl<P, R> JobRunner<P> for Arc<R>
where
    P: Send + Sync + 'static,
    R: JobRunner<P> + ?Sized,
{
    async fn run(&self, job: &JobSpec<P>, context: RunContext) -> Result<RunOutcome, JobFailure> {
        (**self).run(job, context).await
    }
}

/// A [`JobRunner`] made from a closure; see [`runner_fn`].
struct FnRunner<F> {
    run: F,
}

/// Makes a [`JobRunner`] from a closure taking the job and the run's context
/// and returning a future. The future may not borrow the job: copy what it
/// needs out of it first.
///
/// ```
/// use backup_core::schedule::{runner_fn, JobSpec, RunContext, RunOutcome};
///
/// let runner = runner_fn(|job: &JobSpec, _context: RunContext| {
///     let name = job.name().to_owned();
///     async move { Ok(RunOutcome::with_message(format!("backed up {name}"))) }
/// });
/// # let _ = runner;
/// ```
pub fn runner_fn<P, F, Fut>(run: F) -> impl JobRunner<P>
where
    P: Send + Sync + 'static,
    F: Fn(&JobSpec<P>, RunContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<RunOutcome, JobFailure>> + Send + 'static,
{
    FnRunner { run }
}

#[async_trait]
impl<P, F, Fut> JobRunner<P> for FnRunner<F>
where
    P: Send + Sync + 'static,
    F: Fn(&JobSpec<P>, RunContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<RunOutcome, JobFailure>> + Send + 'static,
{
    async fn run(&self, job: &JobSpec<P>, context: RunContext) -> Result<RunOutcome, JobFailure> {
        (self.run)(job, context).await
    }
}

impl<F> fmt::Debug for FnRunner<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnRunner")
    }
}
