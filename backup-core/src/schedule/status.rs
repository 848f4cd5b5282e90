//! What the scheduler reports: the events it broadcasts and each job's
//! status.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

use super::job::{RunOutcome, RunTrigger};

/// A receiver of [`SchedulerEvent`]s. A receiver that falls more than the
/// channel's capacity behind loses the oldest events
/// ([`broadcast::error::RecvError::Lagged`]).
pub type ScheduleEvents = broadcast::Receiver<SchedulerEvent>;

/// Something that happened to a job, as broadcast to
/// [`Scheduler::subscribe`](super::Scheduler::subscribe)rs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// A run started.
    RunStarted {
        /// Name of the job.
        job: String,
        /// Why it started.
        trigger: RunTrigger,
        /// The occurrence it is for (before jitter), or the trigger time.
        scheduled_for: DateTime<Utc>,
        /// When it started.
        started_at: DateTime<Utc>,
    },
    /// A run succeeded.
    RunSucceeded {
        /// Name of the job.
        job: String,
        /// When the run started.
        started_at: DateTime<Utc>,
        /// When it finished.
        finished_at: DateTime<Utc>,
        /// What the runner reported.
        outcome: RunOutcome,
    },
    /// A run failed (collisions are reported as [`SchedulerEvent::Collision`]).
    RunFailed {
        /// Name of the job.
        job: String,
        /// When the run started.
        started_at: DateTime<Utc>,
        /// When it finished.
        finished_at: DateTime<Utc>,
        /// The runner's error.
        message: String,
        /// Failed runs in a row, this one included.
        consecutive_failures: u32,
    },
    /// A run stopped after being cancelled by
    /// [`ShutdownMode::Cancel`](super::ShutdownMode::Cancel).
    RunCancelled {
        /// Name of the job.
        job: String,
        /// When the run started.
        started_at: DateTime<Utc>,
        /// When it returned.
        finished_at: DateTime<Utc>,
        /// What the runner returned.
        message: String,
    },
    /// A run found another writer on its backup set; the job is paused
    /// (a [`SchedulerEvent::Paused`] follows).
    Collision {
        /// Name of the job.
        job: String,
        /// The runner's description of the collision.
        message: String,
    },
    /// An occurrence came while the job's previous run was still going and
    /// was skipped.
    OverlapSkipped {
        /// Name of the job.
        job: String,
        /// The skipped occurrence.
        scheduled_for: DateTime<Utc>,
    },
    /// An occurrence was noticed too late (after downtime or a clock jump)
    /// and was not run; the job waits for its next occurrence.
    Missed {
        /// Name of the job.
        job: String,
        /// The missed occurrence.
        scheduled_for: DateTime<Utc>,
        /// When the scheduler noticed.
        noticed_at: DateTime<Utc>,
    },
    /// No run succeeded within one interval plus the job's grace.
    StaleAlert {
        /// Name of the job.
        job: String,
        /// The last success, if the job ever succeeded.
        last_success: Option<DateTime<Utc>>,
        /// When the job became stale.
        stale_since: DateTime<Utc>,
    },
    /// A stale job succeeded again.
    StaleCleared {
        /// Name of the job.
        job: String,
        /// The success that cleared it.
        last_success: DateTime<Utc>,
    },
    /// The job stopped running on its schedule.
    Paused {
        /// Name of the job.
        job: String,
        /// Why.
        reason: PauseReason,
    },
    /// A paused job is back on its schedule.
    Resumed {
        /// Name of the job.
        job: String,
    },
}

impl SchedulerEvent {
    /// Name of the job the event is about.
    pub fn job(&self) -> &str {
        match self {
            SchedulerEvent::RunStarted { job, .. }
            | SchedulerEvent::RunSucceeded { job, .. }
            | SchedulerEvent::RunFailed { job, .. }
            | SchedulerEvent::RunCancelled { job, .. }
            | SchedulerEvent::Collision { job, .. }
            | SchedulerEvent::OverlapSkipped { job, .. }
            | SchedulerEvent::Missed { job, .. }
            | SchedulerEvent::StaleAlert { job, .. }
            | SchedulerEvent::StaleCleared { job, .. }
            | SchedulerEvent::Paused { job, .. }
            | SchedulerEvent::Resumed { job } => job,
        }
    }
}

/// Why a job is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PauseReason {
    /// A run reported a [`JobFailure::Collision`](super::JobFailure::Collision).
    Collision {
        /// The runner's description of the collision.
        message: String,
    },
    /// [`Scheduler::pause`](super::Scheduler::pause) was called.
    Manual,
}

/// How the last finished run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LastOutcome {
    /// It succeeded.
    Succeeded(RunOutcome),
    /// It failed (a runner panic counts as a failure).
    Failed {
        /// The runner's error.
        message: String,
    },
    /// It hit a collision and paused the job.
    Collision {
        /// The runner's description of the collision.
        message: String,
    },
    /// It was cancelled by a shutdown.
    Cancelled {
        /// What the runner returned.
        message: String,
    },
}

/// A job's state as shown by [`Scheduler::status`](super::Scheduler::status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct JobStatus {
    /// Name of the job.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// When the current run started, if one is going.
    pub running_since: Option<DateTime<Utc>>,
    /// When the last run started.
    pub last_run_started: Option<DateTime<Utc>>,
    /// When the last run finished.
    pub last_run_finished: Option<DateTime<Utc>>,
    /// How the last finished run ended.
    pub last_outcome: Option<LastOutcome>,
    /// When the last successful run finished.
    pub last_success: Option<DateTime<Utc>>,
    /// When the next scheduled run starts (jitter included); `None` while
    /// paused, after shutdown, or if the expression has no future occurrence.
    pub next_run: Option<DateTime<Utc>>,
    /// Failed runs since the last success (collisions included, cancelled
    /// runs not).
    pub consecutive_failures: u32,
    /// Runs started, scheduled and manual.
    pub runs: u64,
    /// Runs that failed (collisions included, cancelled runs not).
    pub failures: u64,
    /// Occurrences skipped because the previous run was still going.
    pub skipped_overlaps: u64,
    /// Occurrences not run because they were noticed too late.
    pub missed: u64,
    /// Why the job is paused, if it is.
    pub paused: Option<PauseReason>,
    /// Whether no run succeeded within one interval plus the grace.
    pub stale: bool,
}
