//! Running backup jobs on cron schedules.
//!
//! The [`Scheduler`] runs a set of [`JobSpec`]s on their cron schedules. What
//! a job *does* is injected through a [`JobRunner`] (for a backup job, usually
//! [`run_backup_job`]: a backup with the collision check on, then the job's
//! retention); the scheduler only decides *when* jobs run and keeps their
//! [`JobStatus`]. The payload of a job is the runner's: `backupctl schedule`
//! reads its jobs from a TOML file of its own. Time comes from a
//! [`Clock`]: the system clock in production and, with the `test-util`
//! feature, a `ManualClock` in tests, where a simulated week passes in
//! milliseconds.
//!
//! # Semantics
//!
//! * **Next due time only.** After downtime, a clock jump or a run that
//!   outlasted its interval, missed occurrences are *not* caught up: the next
//!   run is the next occurrence strictly after now. An occurrence noticed more
//!   than a small tolerance (one minute by default, see
//!   [`SchedulerBuilder::late_tolerance`]) after its time is counted in
//!   [`JobStatus::missed`] and reported as [`SchedulerEvent::Missed`].
//! * **No overlapping runs of one job.** An occurrence that comes while the
//!   previous run of the same job is still going is skipped and counted in
//!   [`JobStatus::skipped_overlaps`]. Different jobs run concurrently.
//! * **Manual triggers** ([`Scheduler::trigger`]) start a run at once, or fail
//!   with [`ScheduleError::Busy`] while the job is running. They do not move
//!   the job's schedule.
//! * **Collisions** ([`JobFailure::Collision`]) pause the job: it does not run
//!   on its schedule again until [`Scheduler::resume`]; its status shows the
//!   reason.
//! * **Stale alerts.** A job is stale when no run succeeded within one
//!   interval of its schedule (the time between the occurrences around now)
//!   plus [`JobSpec::stale_after_grace`], counted from its last success or,
//!   if it never succeeded, from the scheduler's start.
//!   [`SchedulerEvent::StaleAlert`] is emitted once when a job becomes stale
//!   and [`SchedulerEvent::StaleCleared`] once when a run succeeds again.
//! * **Jitter.** A job's [`JobSpec::jitter`] delays each scheduled run by a
//!   random time in `[0, jitter)`, drawn from a generator that tests seed with
//!   `SchedulerBuilder::jitter_seed` (feature `test-util`).
//! * **Shutdown** ([`Scheduler::shutdown`]) stops new runs at once, then
//!   either lets running jobs finish ([`ShutdownMode::Finish`]) or cancels
//!   them through their [`RunContext`]'s [`CancellationToken`](crate::CancellationToken)
//!   ([`ShutdownMode::Cancel`]), and waits for them to return.
//!
//! # Cron expressions
//!
//! A standard five-field expression (`minute hour day-of-month month
//! day-of-week`) has the meaning it has in crontab(5): day-of-week `0` and
//! `7` are Sunday, and when both day fields are restricted a day matching
//! *either* runs the job. Six- or seven-field expressions (a seconds field
//! first, an optional year last) and the `@yearly`, `@monthly`, `@weekly`,
//! `@daily` and `@hourly` shorthands are handed to the `cron` crate as they
//! are; there day-of-week runs from `1` (Sunday) to `7` (Saturday), so prefer
//! names (`MON-FRI`). Times are evaluated in the job's [`JobTimeZone`]; on a
//! daylight-saving change a local time that does not exist is skipped and one
//! that happens twice runs once.
//!
//! # Example
//!
//! With the `test-util` feature, in a test:
//!
//! ```
//! use std::time::Duration;
//! use backup_core::schedule::{
//!     runner_fn, Clock, JobSpec, ManualClock, RunContext, RunOutcome, Scheduler,
//! };
//! use chrono::{TimeZone, Utc};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
//!     let runner = runner_fn(|job: &JobSpec, context: RunContext| {
//!         let name = job.name().to_owned();
//!         async move {
//!             // A real runner backs up, applies retention, checks for collisions.
//!             Ok(RunOutcome::with_message(format!("{name} at {}", context.started_at())))
//!         }
//!     });
//!     let job = JobSpec::new("etcd", "0 */2 * * *", ())?.with_jitter(Duration::from_secs(60));
//!     let scheduler = Scheduler::builder(runner)
//!         .clock(clock.clone())
//!         .jitter_seed(7)
//!         .job(job)
//!         .start()?;
//!
//!     // A simulated day passes in a blink: runs at 02:00, 04:00, ..., 24:00.
//!     clock.run_for(Duration::from_secs(25 * 3600)).await;
//!     let status = scheduler.job_status("etcd").ok_or("no such job")?;
//!     assert_eq!(status.runs, 12);
//!     assert_eq!(status.failures, 0);
//!     assert!(!status.stale);
//!
//!     scheduler.shutdown(backup_core::schedule::ShutdownMode::Finish).await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```

mod backup_job;
mod clock;
mod expr;
mod job;
#[cfg(any(test, feature = "test-util"))]
mod manual_clock;
mod scheduler;
mod status;

pub use backup_job::{run_backup_job, BackupJobReport};
pub use clock::Clock;
pub use expr::JobTimeZone;
pub use job::{
    runner_fn, JobFailure, JobRunner, JobSpec, RunContext, RunOutcome, RunTrigger,
    DEFAULT_STALE_GRACE,
};
#[cfg(feature = "test-util")]
pub use manual_clock::ManualClock;
pub use scheduler::{Scheduler, SchedulerBuilder, ShutdownMode};
pub use status::{JobStatus, LastOutcome, PauseReason, ScheduleEvents, SchedulerEvent};

/// Everything that can go wrong when defining or driving scheduled jobs.
///
/// Failures of the jobs themselves are not errors of the scheduler: they are
/// [`JobFailure`]s, recorded in the job's [`JobStatus`] and reported as
/// [`SchedulerEvent`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A job's cron expression could not be parsed.
    #[error("job {job:?}: invalid cron expression {expression:?}: {reason}")]
    InvalidCron {
        /// Name of the job.
        job: String,
        /// The expression as written.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A job name is empty or contains control characters.
    #[error("invalid job name {name:?}: {reason}")]
    InvalidJobName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A time zone is neither `UTC`, an IANA zone name nor a UTC offset.
    #[error("unknown time zone {value:?}: expected \"UTC\", an IANA zone name such as \"Europe/Berlin\", or an offset such as \"+02:00\"")]
    InvalidTimeZone {
        /// The rejected text.
        value: String,
    },

    /// Two jobs have the same name.
    #[error("duplicate job name {name:?}: job names must be unique")]
    DuplicateJob {
        /// The repeated name.
        name: String,
    },

    /// No job has this name.
    #[error("unknown job {name:?}")]
    UnknownJob {
        /// The name asked for.
        name: String,
    },

    /// The job is already running, so it cannot be triggered.
    #[error("job {name:?} is already running")]
    Busy {
        /// Name of the job.
        name: String,
    },

    /// The scheduler is shutting down and starts no new runs.
    #[error("the scheduler is shutting down and starts no new runs")]
    ShuttingDown,

    /// [`SchedulerBuilder::start`] was called outside a Tokio runtime.
    #[error("the scheduler must be started from within a Tokio runtime")]
    NoRuntime,
}
