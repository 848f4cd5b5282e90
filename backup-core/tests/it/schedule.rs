//! The job scheduler, driven through simulated time by a `ManualClock`: no
//! test waits for real time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::schedule::{
    runner_fn, JobFailure, JobSpec, JobStatus, JobTimeZone, LastOutcome, ManualClock, PauseReason,
    RunContext, RunOutcome, RunTrigger, ScheduleError, ScheduleEvents, Scheduler, SchedulerEvent,
    ShutdownMode,
};
use chrono::{DateTime, TimeZone, Timelike, Utc};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn hours(n: i64) -> chrono::Duration {
    chrono::Duration::hours(n)
}

/// Monday, 2024-01-01 00:00 UTC.
fn start() -> DateTime<Utc> {
    utc(2024, 1, 1, 0, 0, 0)
}

fn job(name: &str, cron: &str) -> JobSpec {
    JobSpec::new(name, cron, ()).unwrap()
}

fn drain(events: &mut ScheduleEvents) -> Vec<SchedulerEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(event);
    }
    out
}

fn running(scheduler: &Scheduler, name: &str) -> bool {
    status(scheduler, name).running_since.is_some()
}

fn status(scheduler: &Scheduler, name: &str) -> JobStatus {
    scheduler.job_status(name).unwrap()
}

/// What the test runners saw.
#[derive(Default)]
struct Log {
    /// (job, scheduled_for, started_at, trigger) of every run.
    starts: Vec<(String, DateTime<Utc>, DateTime<Utc>, RunTrigger)>,
    /// (started_at, finished_at) of every finished run.
    finished: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    running: usize,
    max_running: usize,
}

impl Log {
    fn start(&mut self, context: &RunContext) {
        self.starts.push((
            context.job().to_owned(),
            context.scheduled_for(),
            context.clock().now(),
            context.trigger(),
        ));
        self.running += 1;
        self.max_running = self.max_running.max(self.running);
    }

    fn finish(&mut self, context: &RunContext) {
        self.running -= 1;
        self.finished
            .push((context.started_at(), context.clock().now()));
    }

    fn start_times(&self) -> Vec<DateTime<Utc>> {
        self.starts.iter().map(|start| start.2).collect()
    }
}

#[tokio::test]
async fn a_simulated_week_of_two_hourly_runs_with_retention_after_each() {
    #[derive(Default)]
    struct Retention {
        /// Backups the repository holds (their start times).
        kept: Vec<DateTime<Utc>>,
        /// (time, kept, forgotten) of each retention step.
        steps: Vec<(DateTime<Utc>, usize, usize)>,
    }
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let retention = Arc::new(Mutex::new(Retention::default()));
    let runner = runner_fn({
        let (log, retention) = (log.clone(), retention.clone());
        move |_job: &JobSpec, context: RunContext| {
            let (log, retention) = (log.clone(), retention.clone());
            async move {
                log.lock().unwrap().start(&context);
                // The backup itself takes ten simulated minutes.
                let began = context.clock().now();
                context
                    .clock()
                    .sleep_until(began + chrono::Duration::minutes(10))
                    .await;
                // Then retention: keep the last 5.
                let mut retention = retention.lock().unwrap();
                retention.kept.push(began);
                let forget = retention.kept.len().saturating_sub(5);
                retention.kept.drain(..forget);
                let kept = retention.kept.len();
                retention.steps.push((context.clock().now(), kept, forget));
                log.lock().unwrap().finish(&context);
                Ok(RunOutcome::with_message(format!(
                    "kept {kept}, forgot {forget}"
                )))
            }
        }
    });
    let builder = Scheduler::builder(runner)
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"));
    let mut events = builder.subscribe();
    let scheduler = builder.start().unwrap();

    // A simulated week: it ends only because no run waits for real time.
    clock.run_until(start() + hours(7 * 24) + hours(1)).await;

    let log = log.lock().unwrap();
    let expected: Vec<_> = (1..=84).map(|k| start() + hours(2 * k)).collect();
    assert_eq!(log.start_times(), expected);
    assert!(log
        .starts
        .iter()
        .all(|(_, due, started, trigger)| due == started && *trigger == RunTrigger::Scheduled));
    assert_eq!(log.max_running, 1, "two runs of one job overlapped");

    let status = status(&scheduler, "etcd");
    assert_eq!(status.runs, 84);
    assert_eq!(status.failures, 0);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.skipped_overlaps, 0);
    assert_eq!(status.missed, 0);
    assert!(!status.stale);
    assert_eq!(status.paused, None);
    assert_eq!(status.last_run_started, Some(utc(2024, 1, 8, 0, 0, 0)));
    assert_eq!(status.last_success, Some(utc(2024, 1, 8, 0, 10, 0)));
    assert_eq!(status.next_run, Some(utc(2024, 1, 8, 2, 0, 0)));
    assert_eq!(
        status.last_outcome,
        Some(LastOutcome::Succeeded(RunOutcome::with_message(
            "kept 5, forgot 1"
        )))
    );

    // Retention ran once after each successful backup, ten minutes in.
    let retention = retention.lock().unwrap();
    assert_eq!(retention.steps.len(), 84);
    for (k, (at, kept, forgot)) in retention.steps.iter().enumerate() {
        assert_eq!(*at, expected[k] + chrono::Duration::minutes(10));
        assert_eq!(*kept, (k + 1).min(5));
        assert_eq!(*forgot, usize::from(k >= 5));
    }
    assert_eq!(retention.kept, expected[79..].to_vec());

    let successes: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|event| match event {
            SchedulerEvent::RunSucceeded { finished_at, .. } => Some(finished_at),
            _ => None,
        })
        .collect();
    let retention_times: Vec<_> = retention.steps.iter().map(|step| step.0).collect();
    assert_eq!(successes, retention_times);
}

/// A runner whose runs take `duration` of simulated time.
fn slow_runner(
    log: Arc<Mutex<Log>>,
    duration: chrono::Duration,
) -> impl backup_core::schedule::JobRunner + 'static {
    runner_fn(move |_job: &JobSpec, context: RunContext| {
        let log = log.clone();
        async move {
            log.lock().unwrap().start(&context);
            let began = context.clock().now();
            tokio::select! {
                () = context.clock().sleep_until(began + duration) => {
                    log.lock().unwrap().finish(&context);
                    Ok(RunOutcome::new())
                }
                () = context.cancellation().cancelled() => {
                    log.lock().unwrap().finish(&context);
                    Err(JobFailure::failed("interrupted"))
                }
            }
        }
    })
}

#[tokio::test]
async fn a_run_longer_than_the_interval_skips_the_occurrences_it_overlaps() {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let builder = Scheduler::builder(slow_runner(log.clone(), hours(5)))
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"));
    let mut events = builder.subscribe();
    let scheduler = builder.start().unwrap();

    clock.run_until(start() + hours(24)).await;

    {
        let log = log.lock().unwrap();
        assert_eq!(
            log.start_times(),
            [2, 8, 14, 20].map(|h| start() + hours(h)).to_vec()
        );
        assert_eq!(log.max_running, 1, "two runs of one job overlapped");
        assert_eq!(log.finished.len(), 3);
    }
    let status_now = status(&scheduler, "etcd");
    assert_eq!(status_now.runs, 4);
    assert_eq!(status_now.skipped_overlaps, 8);
    assert_eq!(status_now.running_since, Some(start() + hours(20)));
    let skipped: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|event| match event {
            SchedulerEvent::OverlapSkipped { scheduled_for, .. } => Some(scheduled_for),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        [4, 6, 10, 12, 16, 18, 22, 24]
            .map(|h| start() + hours(h))
            .to_vec()
    );
    // After the long run ends (at 01:00), the job is back on its schedule.
    clock.run_until(start() + hours(27)).await;
    assert_eq!(status(&scheduler, "etcd").runs, 5);
    assert_eq!(log.lock().unwrap().max_running, 1);
}

#[tokio::test]
async fn different_jobs_run_at_the_same_time() {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let scheduler = Scheduler::builder(slow_runner(log.clone(), hours(1)))
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"))
        .job(job("data", "0 */2 * * *"))
        .start()
        .unwrap();
    clock
        .run_until(start() + hours(2) + chrono::Duration::minutes(30))
        .await;
    assert!(running(&scheduler, "etcd"));
    assert!(running(&scheduler, "data"));
    assert_eq!(log.lock().unwrap().max_running, 2);
    clock.run_until(start() + hours(3)).await;
    assert!(!running(&scheduler, "etcd"));
    assert!(scheduler
        .status()
        .iter()
        .all(|status| status.runs == 1 && status.failures == 0));
}

#[tokio::test]
async fn a_clock_jump_does_not_catch_up_missed_runs() {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let builder = Scheduler::builder(slow_runner(log.clone(), chrono::Duration::zero()))
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"));
    let mut events = builder.subscribe();
    let scheduler = builder.start().unwrap();
    clock.run_until(start() + hours(3)).await;
    assert_eq!(status(&scheduler, "etcd").runs, 1);
    drain(&mut events);

    // The machine sleeps for three days: 36 occurrences pass unseen.
    let woke = start() + hours(3 * 24 + 3);
    clock.set(woke);
    clock.settle().await;
    let status_now = status(&scheduler, "etcd");
    assert_eq!(status_now.runs, 1, "missed occurrences were caught up");
    assert_eq!(status_now.missed, 1);
    assert_eq!(status_now.next_run, Some(woke + hours(1)));
    // Three days without a backup is worth an alert, though.
    assert!(status_now.stale);
    assert_eq!(
        drain(&mut events),
        vec![
            SchedulerEvent::Missed {
                job: "etcd".into(),
                scheduled_for: start() + hours(4),
                noticed_at: woke,
            },
            SchedulerEvent::StaleAlert {
                job: "etcd".into(),
                last_success: Some(start() + hours(2)),
                stale_since: start() + hours(5),
            }
        ]
    );

    // Exactly one run, at the next due time.
    clock
        .run_until(woke + hours(1) + chrono::Duration::minutes(59))
        .await;
    assert_eq!(
        log.lock().unwrap().start_times(),
        vec![start() + hours(2), woke + hours(1)]
    );
    assert!(!status(&scheduler, "etcd").stale);
}

#[tokio::test]
async fn a_scheduler_started_after_downtime_waits_for_the_next_due_time() {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let first = Scheduler::builder(slow_runner(log.clone(), chrono::Duration::zero()))
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"))
        .start()
        .unwrap();
    clock.run_until(start() + hours(3)).await;
    first.shutdown(ShutdownMode::Finish).await;

    clock.set(start() + hours(3 * 24) + chrono::Duration::minutes(30));
    let second = Scheduler::builder(slow_runner(log.clone(), chrono::Duration::zero()))
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"))
        .start()
        .unwrap();
    clock.run_until(start() + hours(3 * 24 + 3)).await;
    assert_eq!(
        log.lock().unwrap().start_times(),
        vec![start() + hours(2), start() + hours(3 * 24 + 2)]
    );
    assert_eq!(status(&second, "etcd").missed, 0);
}

#[tokio::test]
async fn stale_alert_fires_once_and_clears_on_success() {
    let clock = ManualClock::new(start());
    let failing = Arc::new(AtomicBool::new(false));
    let runner = runner_fn({
        let failing = failing.clone();
        move |_job: &JobSpec, _context: RunContext| {
            let fail = failing.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(JobFailure::failed("repository unreachable"))
                } else {
                    Ok(RunOutcome::new())
                }
            }
        }
    });
    let builder = Scheduler::builder(runner)
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *").with_stale_after_grace(Duration::from_secs(30 * 60)));
    let mut events = builder.subscribe();
    let scheduler = builder.start().unwrap();

    clock.run_until(start() + hours(5)).await; // Successes at 02:00 and 04:00.
    failing.store(true, Ordering::SeqCst);
    clock
        .run_until(start() + hours(6) + chrono::Duration::minutes(29))
        .await;
    let status_now = status(&scheduler, "etcd");
    assert!(!status_now.stale);
    assert_eq!(status_now.consecutive_failures, 1);
    assert_eq!(status_now.last_success, Some(start() + hours(4)));

    // 04:00 + one interval (2 h) + grace (30 min).
    clock
        .run_until(start() + hours(6) + chrono::Duration::minutes(30))
        .await;
    assert!(status(&scheduler, "etcd").stale);

    clock
        .run_until(start() + hours(12) + chrono::Duration::minutes(30))
        .await;
    let status_now = status(&scheduler, "etcd");
    assert!(status_now.stale);
    assert_eq!(status_now.consecutive_failures, 4);
    assert_eq!(status_now.failures, 4);
    assert_eq!(
        status_now.last_outcome,
        Some(LastOutcome::Failed {
            message: "repository unreachable".into()
        })
    );

    failing.store(false, Ordering::SeqCst);
    clock
        .run_until(start() + hours(14) + chrono::Duration::minutes(30))
        .await;
    let status_now = status(&scheduler, "etcd");
    assert!(!status_now.stale);
    assert_eq!(status_now.consecutive_failures, 0);

    let stale_events: Vec<_> = drain(&mut events)
        .into_iter()
        .filter(|event| {
            matches!(
                event,
                SchedulerEvent::StaleAlert { .. } | SchedulerEvent::StaleCleared { .. }
            )
        })
        .collect();
    assert_eq!(
        stale_events,
        vec![
            SchedulerEvent::StaleAlert {
                job: "etcd".into(),
                last_success: Some(start() + hours(4)),
                stale_since: start() + hours(6) + chrono::Duration::minutes(30),
            },
            SchedulerEvent::StaleCleared {
                job: "etcd".into(),
                last_success: start() + hours(14),
            },
        ]
    );
}

#[tokio::test]
async fn a_job_that_never_succeeds_goes_stale_counted_from_the_start() {
    let clock = ManualClock::new(start());
    let runner = runner_fn(|_job: &JobSpec, _context: RunContext| async {
        Err(JobFailure::failed("no space left on device"))
    });
    let builder = Scheduler::builder(runner)
        .clock(clock.clone())
        .job(job("nightly", "0 3 * * *").with_stale_after_grace(HOUR));
    let mut events = builder.subscribe();
    let scheduler = builder.start().unwrap();
    clock
        .run_until(start() + hours(24) + chrono::Duration::minutes(59))
        .await;
    assert!(!status(&scheduler, "nightly").stale);
    clock.run_until(start() + hours(25)).await;
    assert!(status(&scheduler, "nightly").stale);
    let alerts: Vec<_> = drain(&mut events)
        .into_iter()
        .filter(|event| matches!(event, SchedulerEvent::StaleAlert { .. }))
        .collect();
    assert_eq!(
        alerts,
        vec![SchedulerEvent::StaleAlert {
            job: "nightly".into(),
            last_success: None,
            stale_since: start() + hours(25),
        }]
    );
}

#[tokio::test]
async fn a_collision_pauses_the_job_until_resumed() {
    let clock = ManualClock::new(start());
    let runner = runner_fn(|_job: &JobSpec, context: RunContext| {
        let collide = context.run_number() == 2;
        async move {
            if collide {
                Err(JobFailure::collision("set \"etcd\" was written by host-b"))
            } else {
                Ok(RunOutcome::new())
            }
        }
    });
    let builder = Scheduler::builder(runner)
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"));
    let mut events = builder.subscribe();
    let scheduler = builder.start().unwrap();

    clock
        .run_until(start() + hours(4) + chrono::Duration::minutes(30))
        .await;
    let paused = status(&scheduler, "etcd");
    let reason = PauseReason::Collision {
        message: "set \"etcd\" was written by host-b".into(),
    };
    assert_eq!(paused.paused, Some(reason.clone()));
    assert_eq!(paused.runs, 2);
    assert_eq!(paused.next_run, None);
    assert_eq!(
        paused.last_outcome,
        Some(LastOutcome::Collision {
            message: "set \"etcd\" was written by host-b".into()
        })
    );
    let tail: Vec<_> = drain(&mut events).into_iter().rev().take(2).collect();
    assert_eq!(
        tail,
        vec![
            SchedulerEvent::Paused {
                job: "etcd".into(),
                reason
            },
            SchedulerEvent::Collision {
                job: "etcd".into(),
                message: "set \"etcd\" was written by host-b".into()
            },
        ]
    );

    // A day later it still has not run, and has gone stale.
    clock.run_until(start() + hours(29)).await;
    assert_eq!(status(&scheduler, "etcd").runs, 2);
    assert!(status(&scheduler, "etcd").stale);
    assert!(matches!(
        drain(&mut events).as_slice(),
        [SchedulerEvent::StaleAlert { .. }]
    ));

    scheduler.resume("etcd").unwrap();
    clock.settle().await;
    assert_eq!(
        drain(&mut events),
        vec![SchedulerEvent::Resumed { job: "etcd".into() }]
    );
    let resumed = status(&scheduler, "etcd");
    assert_eq!(resumed.paused, None);
    assert_eq!(resumed.next_run, Some(start() + hours(30)));
    clock.run_until(start() + hours(33)).await;
    let resumed = status(&scheduler, "etcd");
    assert_eq!(resumed.runs, 4);
    assert_eq!(resumed.consecutive_failures, 0);
    assert_eq!(resumed.last_run_started, Some(start() + hours(32)));
}

#[tokio::test]
async fn manual_trigger_runs_now_and_refuses_while_running() {
    let clock = ManualClock::new(start() + chrono::Duration::minutes(30));
    let log = Arc::new(Mutex::new(Log::default()));
    let builder = Scheduler::builder(slow_runner(log.clone(), hours(1)))
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"));
    let mut events = builder.subscribe();
    let scheduler = builder.start().unwrap();

    scheduler.trigger("etcd").unwrap();
    clock.settle().await;
    assert!(running(&scheduler, "etcd"));
    let now = start() + chrono::Duration::minutes(30);
    assert_eq!(
        drain(&mut events),
        vec![SchedulerEvent::RunStarted {
            job: "etcd".into(),
            trigger: RunTrigger::Manual,
            scheduled_for: now,
            started_at: now,
        }]
    );
    assert_eq!(
        scheduler.trigger("etcd"),
        Err(ScheduleError::Busy {
            name: "etcd".into()
        })
    );
    assert_eq!(
        scheduler.trigger("nope"),
        Err(ScheduleError::UnknownJob {
            name: "nope".into()
        })
    );
    // The schedule is unchanged.
    assert_eq!(
        status(&scheduler, "etcd").next_run,
        Some(start() + hours(2))
    );

    clock.run_until(start() + hours(3)).await;
    let log = log.lock().unwrap();
    assert_eq!(
        log.starts
            .iter()
            .map(|(_, _, started, trigger)| (*started, *trigger))
            .collect::<Vec<_>>(),
        vec![
            (now, RunTrigger::Manual),
            (start() + hours(2), RunTrigger::Scheduled)
        ]
    );
}

/// Start times of each run of a jittered hourly job over two days.
async fn jittered_starts(seed: u64) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let _scheduler = Scheduler::builder(slow_runner(log.clone(), chrono::Duration::zero()))
        .clock(clock.clone())
        .jitter_seed(seed)
        .job(job("etcd", "0 * * * *").with_jitter(10 * MINUTE))
        .start()
        .unwrap();
    clock
        .run_until(start() + hours(48) + chrono::Duration::minutes(30))
        .await;
    let log = log.lock().unwrap();
    log.starts
        .iter()
        .map(|(_, due, started, _)| (*due, *started))
        .collect()
}

#[tokio::test]
async fn jitter_delays_each_run_within_bounds_reproducibly() {
    let runs = jittered_starts(42).await;
    assert_eq!(runs.len(), 48);
    for (k, (due, started)) in runs.iter().enumerate() {
        assert_eq!(*due, start() + hours(k as i64 + 1));
        assert!(started >= due, "run {k} started at {started}, before {due}");
        assert!(
            *started < *due + chrono::Duration::minutes(10),
            "run {k} started at {started}, 10 minutes or more after {due}"
        );
    }
    let mut delays: Vec<_> = runs.iter().map(|(due, started)| *started - *due).collect();
    delays.sort();
    delays.dedup();
    assert!(delays.len() > 40, "jitter is not random: {delays:?}");
    assert!(delays[0] < chrono::Duration::minutes(2));
    assert!(*delays.last().unwrap() > chrono::Duration::minutes(8));

    assert_eq!(
        jittered_starts(42).await,
        runs,
        "same seed, different jitter"
    );
    assert_ne!(jittered_starts(43).await, runs, "jitter ignores the seed");
}

#[tokio::test]
async fn cron_is_evaluated_in_the_job_time_zone() {
    let summer = utc(2024, 7, 1, 0, 0, 0);
    let clock = ManualClock::new(summer);
    let log = Arc::new(Mutex::new(Log::default()));
    let zone = |text: &str| text.parse::<JobTimeZone>().unwrap();
    let _scheduler = Scheduler::builder(slow_runner(log.clone(), chrono::Duration::zero()))
        .clock(clock.clone())
        .job(job("offset", "0 3 * * *").with_time_zone(zone("+02:00")))
        .job(job("berlin", "0 3 * * *").with_time_zone(zone("Europe/Berlin")))
        .job(job("new-york", "0 3 * * *").with_time_zone(zone("America/New_York")))
        .job(job("utc", "0 3 * * *"))
        .start()
        .unwrap();
    clock.run_until(summer + hours(8)).await;
    let mut started: Vec<_> = log
        .lock()
        .unwrap()
        .starts
        .iter()
        .map(|(job, _, at, _)| (job.clone(), at.hour()))
        .collect();
    started.sort();
    assert_eq!(
        started,
        vec![
            ("berlin".to_owned(), 1),
            ("new-york".to_owned(), 7),
            ("offset".to_owned(), 1),
            ("utc".to_owned(), 3),
        ]
    );
    // In winter Berlin is one hour ahead of UTC, not two.
    let berlin = job("berlin", "0 3 * * *").with_time_zone(zone("Europe/Berlin"));
    assert_eq!(
        berlin.next_after(utc(2024, 1, 1, 0, 0, 0)),
        Some(utc(2024, 1, 1, 2, 0, 0))
    );
}

#[tokio::test]
async fn a_seconds_field_runs_every_thirty_seconds() {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let scheduler = Scheduler::builder(slow_runner(log.clone(), chrono::Duration::zero()))
        .clock(clock.clone())
        .job(job("tick", "*/30 * * * * *"))
        .start()
        .unwrap();
    clock.run_for(5 * MINUTE).await;
    let expected: Vec<_> = (1..=10)
        .map(|k| start() + chrono::Duration::seconds(30 * k))
        .collect();
    assert_eq!(log.lock().unwrap().start_times(), expected);
    assert_eq!(status(&scheduler, "tick").runs, 10);
}

#[test]
fn invalid_cron_expressions_are_rejected_with_the_job_and_expression() {
    let err = JobSpec::new("etcd", "61 * * * *", ()).unwrap_err();
    assert!(matches!(
        &err,
        ScheduleError::InvalidCron { job, expression, .. } if job == "etcd" && expression == "61 * * * *"
    ));
    let message = err.to_string();
    assert!(
        message.starts_with("job \"etcd\": invalid cron expression \"61 * * * *\": "),
        "{message}"
    );

    let message = JobSpec::new("db", "*/5 * *", ()).unwrap_err().to_string();
    assert!(message.contains("job \"db\""), "{message}");
    assert!(message.contains("expected 5 fields"), "{message}");
    assert!(message.contains("found 3"), "{message}");

    let message = JobSpec::new("db", "0 3 * * funday", ())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("invalid day of week \"funday\""),
        "{message}"
    );

    assert!(matches!(
        JobSpec::new("", "0 * * * *", ()),
        Err(ScheduleError::InvalidJobName { .. })
    ));
}

#[tokio::test]
async fn duplicate_job_names_are_rejected() {
    let runner = runner_fn(|_job: &JobSpec, _context: RunContext| async { Ok(RunOutcome::new()) });
    let err = Scheduler::builder(runner)
        .clock(ManualClock::new(start()))
        .job(job("etcd", "@daily"))
        .job(job("etcd", "@hourly"))
        .start()
        .unwrap_err();
    assert_eq!(
        err,
        ScheduleError::DuplicateJob {
            name: "etcd".into()
        }
    );
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let runner = runner_fn(|_job: &JobSpec, _context: RunContext| async { Ok(RunOutcome::new()) });
    let err = Scheduler::builder(runner)
        .job(job("etcd", "@daily"))
        .start()
        .unwrap_err();
    assert_eq!(err, ScheduleError::NoRuntime);
}

#[tokio::test]
async fn shutdown_finish_waits_for_running_jobs() {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let scheduler = Arc::new(
        Scheduler::builder(slow_runner(log.clone(), hours(1)))
            .clock(clock.clone())
            .job(job("etcd", "0 */2 * * *"))
            .start()
            .unwrap(),
    );
    scheduler.trigger("etcd").unwrap();
    clock.settle().await;

    let shutdown = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.shutdown(ShutdownMode::Finish).await }
    });
    clock.settle().await;
    assert!(!shutdown.is_finished(), "shutdown did not wait for the run");
    assert_eq!(scheduler.trigger("etcd"), Err(ScheduleError::ShuttingDown));
    assert!(running(&scheduler, "etcd"));

    clock.run_until(start() + hours(1)).await;
    assert!(shutdown.is_finished());
    shutdown.await.unwrap();
    let status_now = status(&scheduler, "etcd");
    assert_eq!(
        status_now.last_outcome,
        Some(LastOutcome::Succeeded(RunOutcome::new()))
    );
    assert_eq!(status_now.next_run, None);

    // No run starts after shutdown, scheduled or manual.
    assert_eq!(scheduler.trigger("etcd"), Err(ScheduleError::ShuttingDown));
    clock.run_until(start() + hours(6)).await;
    assert_eq!(status(&scheduler, "etcd").runs, 1);
    assert_eq!(log.lock().unwrap().finished.len(), 1);
}

#[tokio::test]
async fn shutdown_cancel_stops_running_jobs() {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let builder = Scheduler::builder(slow_runner(log.clone(), hours(1)))
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"))
        .job(job("data", "0 */2 * * *"));
    let mut events = builder.subscribe();
    let scheduler = builder.start().unwrap();
    clock
        .run_until(start() + hours(2) + chrono::Duration::minutes(10))
        .await;
    assert!(running(&scheduler, "etcd") && running(&scheduler, "data"));
    drain(&mut events);

    tokio::time::timeout(
        Duration::from_secs(10),
        scheduler.shutdown(ShutdownMode::Cancel),
    )
    .await
    .expect("cancelled runs did not stop");
    assert_eq!(
        clock.now(),
        start() + hours(2) + chrono::Duration::minutes(10)
    );
    for status in scheduler.status() {
        assert_eq!(status.running_since, None);
        assert_eq!(
            status.last_outcome,
            Some(LastOutcome::Cancelled {
                message: "interrupted".into()
            })
        );
        assert_eq!(status.failures, 0, "a cancelled run is not a failure");
    }
    let cancelled = drain(&mut events)
        .into_iter()
        .filter(|event| matches!(event, SchedulerEvent::RunCancelled { .. }))
        .count();
    assert_eq!(cancelled, 2);
    assert_eq!(scheduler.trigger("etcd"), Err(ScheduleError::ShuttingDown));
}

#[tokio::test]
async fn a_panicking_runner_is_recorded_as_a_failure() {
    let clock = ManualClock::new(start());
    let runner = runner_fn(|_job: &JobSpec, context: RunContext| {
        let explode = context.run_number() == 1;
        async move {
            if explode {
                panic!("disk on fire");
            }
            Ok(RunOutcome::new())
        }
    });
    let scheduler = Scheduler::builder(runner)
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"))
        .start()
        .unwrap();
    clock.run_until(start() + hours(3)).await;
    let status_now = status(&scheduler, "etcd");
    assert_eq!(status_now.running_since, None);
    assert_eq!(
        status_now.last_outcome,
        Some(LastOutcome::Failed {
            message: "job runner panicked: disk on fire".into()
        })
    );
    clock.run_until(start() + hours(5)).await;
    let status_now = status(&scheduler, "etcd");
    assert_eq!((status_now.runs, status_now.failures), (2, 1));
    assert_eq!(status_now.consecutive_failures, 0);
}

#[tokio::test]
async fn manual_pause_and_resume() {
    let clock = ManualClock::new(start());
    let log = Arc::new(Mutex::new(Log::default()));
    let scheduler = Scheduler::builder(slow_runner(log.clone(), chrono::Duration::zero()))
        .clock(clock.clone())
        .job(job("etcd", "0 */2 * * *"))
        .start()
        .unwrap();
    scheduler.pause("etcd").unwrap();
    clock.run_until(start() + hours(5)).await;
    assert_eq!(status(&scheduler, "etcd").paused, Some(PauseReason::Manual));
    assert_eq!(status(&scheduler, "etcd").runs, 0);
    scheduler.resume("etcd").unwrap();
    clock.run_until(start() + hours(7)).await;
    assert_eq!(log.lock().unwrap().start_times(), vec![start() + hours(6)]);
    assert!(scheduler.pause("nope").is_err());
}
