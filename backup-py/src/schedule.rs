//! `Scheduler`: the library's cron scheduler, with backup jobs and Python
//! callables as jobs.
//!
//! The library's scheduler decides when jobs run (no overlapping runs of
//! one job, the next due time only after downtime, stale alerts, manual
//! triggers, pauses on collisions). A backup job runs the library's backup
//! job on the runtime. A Python callable is run on the thread that calls
//! `Scheduler.run` (or `stop`): the job's run hands it over and waits, so
//! Python code never runs on a tokio worker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::schedule::{
    run_backup_job, JobFailure, JobRunner, JobSpec, JobStatus, JobTimeZone, LastOutcome,
    PauseReason, RunContext, RunOutcome, ScheduleError, ScheduleEvents, Scheduler, SchedulerEvent,
    ShutdownMode,
};
use backup_core::{BackupOptions, KeepPolicy, PruneOptions, Repository, Snapshotter};
use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::errors::{backup_error, invalid};
use crate::policy::PyKeepPolicy;
use crate::repository::PyRepository;
use crate::runtime::{runtime, TICK};
use crate::sources::{snapshotter_for, Paths, PyHooks, PySource};

/// What a job does. Made once per job, so the size of a backup job's
/// settings does not matter.
#[allow(clippy::large_enum_variant)]
enum Work {
    Backup {
        repository: Repository,
        snapshotter: Arc<dyn Snapshotter>,
        options: BackupOptions,
        keep: KeepPolicy,
        prune: Option<PruneOptions>,
    },
    Callable(usize),
}

/// A run of a Python callable, handed to the Python thread.
struct Request {
    callable: usize,
    reply: oneshot::Sender<Result<Option<String>, String>>,
}

struct Runner {
    requests: mpsc::UnboundedSender<Request>,
}

#[async_trait]
impl JobRunner<Work> for Runner {
    async fn run(
        &self,
        job: &JobSpec<Work>,
        context: RunContext,
    ) -> Result<RunOutcome, JobFailure> {
        match job.payload() {
            Work::Backup {
                repository,
                snapshotter,
                options,
                keep,
                prune,
            } => {
                let mut options = options.clone();
                options.cancellation = Some(context.cancellation().clone());
                let report = run_backup_job(
                    repository,
                    snapshotter.as_ref(),
                    options,
                    keep,
                    prune.as_ref(),
                )
                .await?;
                Ok(RunOutcome::with_message(report.to_string()))
            }
            Work::Callable(callable) => {
                let (reply, answer) = oneshot::channel();
                self.requests
                    .send(Request {
                        callable: *callable,
                        reply,
                    })
                    .map_err(|_| JobFailure::failed("the scheduler is stopped"))?;
                tokio::select! {
                    answer = answer => match answer {
                        Ok(Ok(message)) => Ok(message.map_or_else(RunOutcome::new, RunOutcome::with_message)),
                        Ok(Err(message)) => Err(JobFailure::failed(message)),
                        Err(_) => Err(JobFailure::failed("the scheduler stopped before the job ran")),
                    },
                    () = context.cancellation().cancelled() => Err(JobFailure::failed("cancelled")),
                }
            }
        }
    }
}

/// A scheduler that is running.
struct Running {
    scheduler: Arc<Scheduler<Work>>,
    requests: mpsc::UnboundedReceiver<Request>,
    events: ScheduleEvents,
}

struct State {
    jobs: Vec<JobSpec<Work>>,
    callables: Vec<Py<PyAny>>,
    running: Option<Running>,
    stopped: bool,
}

/// Runs jobs on cron expressions: backups of a repository, and Python
/// callables (run on the thread that calls `run`).
#[pyclass(name = "Scheduler", module = "backup_toolkit", frozen)]
pub(crate) struct PyScheduler {
    state: Mutex<State>,
}

fn schedule_error(error: ScheduleError) -> PyErr {
    invalid(error.to_string())
}

fn spec(
    name: String,
    cron: &str,
    work: Work,
    time_zone: &str,
    jitter: Option<Duration>,
    stale_after_grace: Option<Duration>,
) -> PyResult<JobSpec<Work>> {
    let zone: JobTimeZone = time_zone
        .parse()
        .map_err(|error| invalid(format!("time_zone={time_zone:?}: {error}")))?;
    let mut spec = JobSpec::new(name, cron, work)
        .map_err(schedule_error)?
        .with_time_zone(zone);
    if let Some(jitter) = jitter {
        spec = spec.with_jitter(jitter);
    }
    if let Some(grace) = stale_after_grace {
        spec = spec.with_stale_after_grace(grace);
    }
    Ok(spec)
}

impl PyScheduler {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| backup_error("the scheduler's state is poisoned".to_owned()))
    }

    fn add(&self, job: JobSpec<Work>) -> PyResult<()> {
        let mut state = self.lock()?;
        if state.running.is_some() || state.stopped {
            return Err(invalid("jobs are added before the scheduler starts"));
        }
        if state
            .jobs
            .iter()
            .any(|existing| existing.name() == job.name())
        {
            return Err(invalid(format!(
                "there is already a job named {:?}",
                job.name()
            )));
        }
        state.jobs.push(job);
        Ok(())
    }

    /// The running scheduler, started now if it was not.
    fn scheduler(&self) -> PyResult<Arc<Scheduler<Work>>> {
        let mut state = self.lock()?;
        if let Some(running) = &state.running {
            return Ok(running.scheduler.clone());
        }
        if state.stopped {
            return Err(invalid("the scheduler was stopped; make a new one"));
        }
        let runtime = runtime()?;
        let (sender, requests) = mpsc::unbounded_channel();
        let jobs = std::mem::take(&mut state.jobs);
        let builder = Scheduler::builder(Runner { requests: sender }).jobs(jobs);
        let events = builder.subscribe();
        let scheduler = {
            let _entered = runtime.enter();
            Arc::new(builder.start().map_err(schedule_error)?)
        };
        state.running = Some(Running {
            scheduler: scheduler.clone(),
            requests,
            events,
        });
        Ok(scheduler)
    }

    /// Runs the callables asked for and hands the events to `on_event`;
    /// whether anything was done.
    fn pump(&self, py: Python<'_>, on_event: Option<&Py<PyAny>>) -> PyResult<()> {
        let (requests, events) = {
            let mut state = self.lock()?;
            let Some(running) = state.running.as_mut() else {
                return Ok(());
            };
            let mut requests = Vec::new();
            while let Ok(request) = running.requests.try_recv() {
                requests.push(request);
            }
            let mut events = Vec::new();
            loop {
                match running.events.try_recv() {
                    Ok(event) => events.push(event),
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            let requests: Vec<(Py<PyAny>, Request)> = requests
                .into_iter()
                .filter_map(|request| {
                    state
                        .callables
                        .get(request.callable)
                        .map(|callable| (callable.clone_ref(py), request))
                })
                .collect();
            (requests, events)
        };
        for (callable, request) in requests {
            let answer = match callable.call0(py) {
                Ok(value) if value.is_none(py) => Ok(None),
                Ok(value) => Ok(Some(value.bind(py).str()?.to_string())),
                Err(error) => Err(error.to_string()),
            };
            let _ = request.reply.send(answer);
        }
        if let Some(on_event) = on_event {
            for event in events {
                on_event.call1(py, (PyScheduleEvent::from(event),))?;
            }
        }
        Ok(())
    }
}

#[pymethods]
impl PyScheduler {
    #[new]
    fn new() -> Self {
        PyScheduler {
            state: Mutex::new(State {
                jobs: Vec::new(),
                callables: Vec::new(),
                running: None,
                stopped: false,
            }),
        }
    }

    /// Adds a backup job: on `cron`, back up `paths` or `source` into
    /// `repository` as a backup of `set` (checking for collisions with
    /// another writer of the set), then forget what `keep` does not keep in
    /// that set, and prune when `prune` is true.
    #[pyo3(signature = (name, cron, repository, paths=None, *, source=None, hooks=None, set="default", keep=None, prune=false, time_zone="UTC", jitter=None, stale_after_grace=None))]
    #[allow(clippy::too_many_arguments)]
    fn add_backup(
        &self,
        name: String,
        cron: &str,
        repository: PyRef<'_, PyRepository>,
        paths: Option<Paths>,
        source: Option<PyRef<'_, PySource>>,
        hooks: Option<PyRef<'_, PyHooks>>,
        set: &str,
        keep: Option<PyRef<'_, PyKeepPolicy>>,
        prune: bool,
        time_zone: &str,
        jitter: Option<Duration>,
        stale_after_grace: Option<Duration>,
    ) -> PyResult<()> {
        let snapshotter = snapshotter_for(paths, source, hooks)?;
        // Checked now, when the job is defined, not at its first run.
        backup_core::validate_set_name(set).map_err(crate::errors::to_py)?;
        let work = Work::Backup {
            repository: repository.inner().clone(),
            snapshotter: Arc::from(snapshotter),
            options: BackupOptions::default()
                .with_set(set)
                .with_check_collision(true),
            keep: keep.map(|keep| keep.inner.clone()).unwrap_or_default(),
            prune: prune.then(PruneOptions::default),
        };
        self.add(spec(
            name,
            cron,
            work,
            time_zone,
            jitter,
            stale_after_grace,
        )?)
    }

    /// Adds a Python callable as a job: called without arguments on the
    /// thread that calls `run`; what it returns (unless None) is the run's
    /// message, and an exception it raises fails the run.
    #[pyo3(signature = (name, cron, function, *, time_zone="UTC", jitter=None, stale_after_grace=None))]
    fn add_callable(
        &self,
        name: String,
        cron: &str,
        function: Py<PyAny>,
        time_zone: &str,
        jitter: Option<Duration>,
        stale_after_grace: Option<Duration>,
    ) -> PyResult<()> {
        let index = {
            let mut state = self.lock()?;
            state.callables.push(function);
            state.callables.len() - 1
        };
        self.add(spec(
            name,
            cron,
            Work::Callable(index),
            time_zone,
            jitter,
            stale_after_grace,
        )?)
    }

    /// Starts the jobs' schedules (done by `run` when not yet).
    fn start(&self) -> PyResult<()> {
        self.scheduler().map(drop)
    }

    /// Runs the scheduler on this thread for `duration` (a `timedelta`;
    /// until `stop` or Ctrl-C when None): calls the Python jobs as they
    /// come due and hands every event to `on_event`.
    #[pyo3(signature = (*, duration=None, on_event=None))]
    fn run(
        &self,
        py: Python<'_>,
        duration: Option<Duration>,
        on_event: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.scheduler()?;
        let deadline = duration.map(|duration| std::time::Instant::now() + duration);
        loop {
            self.pump(py, on_event.as_ref())?;
            if self.lock()?.stopped {
                return Ok(());
            }
            if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
                return Ok(());
            }
            py.detach(|| std::thread::sleep(TICK));
            py.check_signals()?;
        }
    }

    /// Runs a job now (it must not be running).
    fn trigger(&self, name: &str) -> PyResult<()> {
        self.scheduler()?.trigger(name).map_err(schedule_error)
    }

    /// Stops a job's schedule until `resume`.
    fn pause(&self, name: &str) -> PyResult<()> {
        self.scheduler()?.pause(name).map_err(schedule_error)
    }

    /// Puts a paused job (by hand or by a collision) back on its schedule.
    fn resume(&self, name: &str) -> PyResult<()> {
        self.scheduler()?.resume(name).map_err(schedule_error)
    }

    /// The status of every job.
    fn status(&self) -> PyResult<Vec<PyJobStatus>> {
        Ok(self
            .scheduler()?
            .status()
            .into_iter()
            .map(PyJobStatus::from)
            .collect())
    }

    /// Stops the scheduler: no new runs; running jobs finish (or, with
    /// `cancel`, are cancelled), Python jobs among them run on this thread.
    #[pyo3(signature = (*, cancel=false))]
    fn stop(&self, py: Python<'_>, cancel: bool) -> PyResult<()> {
        let scheduler = {
            let mut state = self.lock()?;
            state.stopped = true;
            match &state.running {
                Some(running) => running.scheduler.clone(),
                None => return Ok(()),
            }
        };
        let mode = if cancel {
            ShutdownMode::Cancel
        } else {
            ShutdownMode::Finish
        };
        let runtime = runtime()?;
        let mut done = runtime.spawn(async move { scheduler.shutdown(mode).await });
        loop {
            self.pump(py, None)?;
            let finished = py.detach(|| {
                runtime.block_on(async { tokio::time::timeout(TICK, &mut done).await.is_ok() })
            });
            if finished {
                return Ok(());
            }
        }
    }

    fn __repr__(&self) -> String {
        match self.state.lock() {
            Ok(state) => format!(
                "Scheduler(jobs={}, running={})",
                state.jobs.len()
                    + state
                        .running
                        .as_ref()
                        .map_or(0, |running| running.scheduler.status().len()),
                if state.running.is_some() && !state.stopped {
                    "True"
                } else {
                    "False"
                }
            ),
            Err(_) => "Scheduler(<poisoned>)".to_owned(),
        }
    }
}

/// A job's status.
#[pyclass(name = "JobStatus", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyJobStatus {
    name: String,
    cron: String,
    running_since: Option<DateTime<Utc>>,
    last_run_started: Option<DateTime<Utc>>,
    last_run_finished: Option<DateTime<Utc>>,
    /// `succeeded`, `failed`, `collision`, `cancelled`, or None before the
    /// first run.
    last_outcome: Option<&'static str>,
    /// The last run's message (its report, or what went wrong).
    last_message: Option<String>,
    last_success: Option<DateTime<Utc>>,
    next_run: Option<DateTime<Utc>>,
    consecutive_failures: u32,
    runs: u64,
    failures: u64,
    skipped_overlaps: u64,
    missed: u64,
    /// Why the job is paused (`manual`, or the collision), None if not.
    paused: Option<String>,
    /// No run succeeded within an interval plus the grace.
    stale: bool,
}

fn pause_text(reason: &PauseReason) -> String {
    match reason {
        PauseReason::Collision { message } => format!("collision: {message}"),
        _ => "manual".to_owned(),
    }
}

impl From<JobStatus> for PyJobStatus {
    fn from(status: JobStatus) -> Self {
        let (last_outcome, last_message) = match &status.last_outcome {
            None => (None, None),
            Some(LastOutcome::Succeeded(outcome)) => (Some("succeeded"), outcome.message.clone()),
            Some(LastOutcome::Failed { message }) => (Some("failed"), Some(message.clone())),
            Some(LastOutcome::Collision { message }) => (Some("collision"), Some(message.clone())),
            Some(LastOutcome::Cancelled { message }) => (Some("cancelled"), Some(message.clone())),
            Some(_) => (Some("other"), None),
        };
        PyJobStatus {
            name: status.name,
            cron: status.cron,
            running_since: status.running_since,
            last_run_started: status.last_run_started,
            last_run_finished: status.last_run_finished,
            last_outcome,
            last_message,
            last_success: status.last_success,
            next_run: status.next_run,
            consecutive_failures: status.consecutive_failures,
            runs: status.runs,
            failures: status.failures,
            skipped_overlaps: status.skipped_overlaps,
            missed: status.missed,
            paused: status.paused.as_ref().map(pause_text),
            stale: status.stale,
        }
    }
}

#[pymethods]
impl PyJobStatus {
    fn __repr__(&self) -> String {
        format!(
            "JobStatus(name={:?}, runs={}, failures={}, last_outcome={:?}, stale={})",
            self.name,
            self.runs,
            self.failures,
            self.last_outcome,
            if self.stale { "True" } else { "False" }
        )
    }
}

/// Something that happened in the scheduler.
#[pyclass(name = "ScheduleEvent", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyScheduleEvent {
    /// `run_started`, `run_succeeded`, `run_failed`, `run_cancelled`,
    /// `collision`, `overlap_skipped`, `missed`, `stale_alert`,
    /// `stale_cleared`, `paused` or `resumed`.
    kind: &'static str,
    /// The job.
    job: String,
    /// When it happened (or the occurrence it concerns).
    time: Option<DateTime<Utc>>,
    /// The run's message, the failure, or the reason.
    message: Option<String>,
}

impl From<SchedulerEvent> for PyScheduleEvent {
    fn from(event: SchedulerEvent) -> Self {
        let (kind, job, time, message) = match event {
            SchedulerEvent::RunStarted {
                job, started_at, ..
            } => ("run_started", job, Some(started_at), None),
            SchedulerEvent::RunSucceeded {
                job,
                finished_at,
                outcome,
                ..
            } => ("run_succeeded", job, Some(finished_at), outcome.message),
            SchedulerEvent::RunFailed {
                job,
                finished_at,
                message,
                ..
            } => ("run_failed", job, Some(finished_at), Some(message)),
            SchedulerEvent::RunCancelled {
                job,
                finished_at,
                message,
                ..
            } => ("run_cancelled", job, Some(finished_at), Some(message)),
            SchedulerEvent::Collision { job, message } => ("collision", job, None, Some(message)),
            SchedulerEvent::OverlapSkipped { job, scheduled_for } => {
                ("overlap_skipped", job, Some(scheduled_for), None)
            }
            SchedulerEvent::Missed {
                job, scheduled_for, ..
            } => ("missed", job, Some(scheduled_for), None),
            SchedulerEvent::StaleAlert {
                job, stale_since, ..
            } => ("stale_alert", job, Some(stale_since), None),
            SchedulerEvent::StaleCleared { job, last_success } => {
                ("stale_cleared", job, Some(last_success), None)
            }
            SchedulerEvent::Paused { job, reason } => {
                ("paused", job, None, Some(pause_text(&reason)))
            }
            SchedulerEvent::Resumed { job } => ("resumed", job, None, None),
            _ => ("other", String::new(), None, None),
        };
        PyScheduleEvent {
            kind,
            job,
            time,
            message,
        }
    }
}

#[pymethods]
impl PyScheduleEvent {
    fn __repr__(&self) -> String {
        format!(
            "ScheduleEvent(kind={:?}, job={:?}, message={:?})",
            self.kind, self.job, self.message
        )
    }
}
