//! `--schedule cron`: recurring jobs. Job i runs the 6-field expression of
//! [`Cron::expression`] (every minute at second i mod 60 by default), so that
//! every job fires every period and the firings are spread over its seconds.
//! Each subject is started, every job added (timed, with the RSS before and
//! after), then the firings due in `rounds` whole periods from the first
//! whole second `margin` after the start are counted, per period, with their
//! lateness against the occurrence they stand for.
//!
//! The subjects: the timer re-armed on each firing with the next occurrence
//! the domain computes (`Timing::next_after`, then `Timing::fire_time`), as
//! the service does per occurrence, without a store; the firing path with
//! the memory store (`JobService::create_job` with a recurrence, claims that
//! compute occurrence N+1); and tokio-cron-scheduler with the same
//! expressions.

use std::sync::Arc;

use scheduler_service::{
    domain::{
        JobId, JobSpec, JobType,
        recurrence::{CatchUp, Overlap, RecurrenceSpec},
        schedule::{Bounds, CronExpression, CronSchedule, DstPolicy, Jitter, Schedule, Timing},
    },
    service::NewJob,
    timer::Timer,
};
use tokio_cron_scheduler::{Job as PeerJob, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, Cron, Subject},
    measure::{AddPhase, Added, Recorder, Rounds, Run, await_firings, outcome},
    report::Outcome,
    subjects::start_service,
    support::{
        now_us,
        proc::{load_average, status_kib},
    },
};

/// Measures `config`'s subject on recurring cron jobs.
pub async fn measure_cron(config: Config, cron: Cron) -> Outcome {
    let load = load_average();
    let n = config.jobs;
    // The parsed schedules are our subjects' input, as the offsets of
    // one-shot jobs: made before the RSS is read, so that the memory per
    // job is the scheduler's (the timer's; for the firing path, the store's
    // jobs, which hold their own copy). The peer parses its own.
    let timings: Vec<Timing> = if config.subject == Subject::Peer {
        Vec::new()
    } else {
        (0..n).map(|i| timing(&cron.expression(i))).collect()
    };
    // The rounds start on the first whole second after `margin` from now.
    let start_us = ((now_us() + config.margin.as_micros() as i64) / 1_000_000 + 1) * 1_000_000;
    let rounds = Rounds::new(
        start_us,
        i64::from(cron.period_s) * 1_000_000,
        cron.rounds as usize,
    );
    let end_us = rounds.end_us();
    let owed = n * cron.rounds as usize;
    let lateness = Recorder::counting(owed, Some(rounds));

    // Let the runtime settle (workers up, first allocations made).
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let rss_start_kib = status_kib("self", "VmRSS:");
    let mut added = match config.subject {
        Subject::Timer => add_timer(timings, lateness.clone()),
        Subject::Service => add_service(&timings, lateness.clone()).await,
        Subject::Peer => add_peer(&cron, n, lateness.clone()).await,
        other => unreachable!("{} has no --schedule cron", other.name()),
    };
    added.overran_at(start_us / 1000);
    let deadline_ms = (end_us + config.grace.as_micros() as i64) / 1000;
    let fired = await_firings(&lateness, owed, deadline_ms).await;
    let run = Run {
        config: &config,
        added: &added,
        rss_start_kib,
        load,
    };
    outcome(&run, fired, owed, &lateness, &Recorder::new(0))
}

/// The domain's timing of `expression` in UTC, no bounds, no jitter.
pub fn timing(expression: &str) -> Timing {
    let cron = CronSchedule {
        expression: CronExpression::parse(expression).expect("expression"),
        time_zone: chrono_tz::Tz::UTC,
        dst: DstPolicy::default(),
    };
    Timing::new(Schedule::Cron(cron), Bounds::default(), Jitter::default()).expect("timing")
}

/// Firings taken off the timer's channel at once, at most: the service's
/// largest batch.
const BATCH: usize = 512;

/// The timer, each job armed for its first occurrence; a task reads the
/// firings in batches and records each, and a task per batch re-arms its
/// jobs for the occurrences after them.
fn add_timer(timings: Vec<Timing>, lateness: Arc<Recorder>) -> Added {
    let shutdown = CancellationToken::new();
    let (timer, mut firings) = Timer::start(shutdown.clone());
    let timings: Arc<[Timing]> = timings.into();
    let rearm = (timer.clone(), timings.clone());
    tokio::spawn(async move {
        let (timer, timings) = rearm;
        let mut batch = Vec::with_capacity(BATCH);
        // As the service's firing loop: what is due is taken in a batch
        // (each firing recorded as it is taken), and the batch is handed to
        // a task of its own that re-arms it, so that the next batch is taken
        // at once.
        while firings.recv_many(&mut batch, BATCH).await > 0 {
            for firing in &batch {
                lateness.record_due(firing.due_ms * 1000);
            }
            let taken = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            let (timer, timings) = (timer.clone(), timings.clone());
            tokio::spawn(async move {
                // Settled as the firing path settles its answered claims.
                timer.settle(taken.iter().map(|firing| firing.id));
                timer.arm_many(taken.into_iter().filter_map(|firing| {
                    // The fire token is the job's index in `timings`.
                    let timing = &timings[firing.fire_token as usize];
                    let next = timing.next_after(firing.due(), 0)?;
                    Some((
                        firing.id,
                        timing.fire_time(&firing.id, &next),
                        firing.fire_token,
                    ))
                }));
            });
        }
    });
    let phase = AddPhase::begin();
    let now = scheduler_service::domain::now();
    for (i, timing) in timings.iter().enumerate() {
        let id = JobId::new();
        let first = timing.first(now).expect("an occurrence");
        timer.arm(id, timing.fire_time(&id, &first), i as i64);
    }
    phase.end((timer, timings, shutdown))
}

/// The firing path: each job created through `JobService::create_job` with
/// its recurrence (overlap `run`, as no executor reports results here), in
/// the memory store; its run events are recorded against their occurrence.
async fn add_service(timings: &[Timing], lateness: Arc<Recorder>) -> Added {
    let (service, keep) = start_service(lateness, std::time::Duration::from_secs(3600));
    let phase = AddPhase::begin();
    for timing in timings {
        let new = NewJob {
            spec: JobSpec {
                name: "bench-cron-job".into(),
                description: String::new(),
                schedule_time: scheduler_service::domain::now(),
                job_type: JobType::Email,
                job_data: "{}".into(),
            },
            recurrence: Some(RecurrenceSpec {
                timing: timing.clone(),
                catch_up: CatchUp::default(),
                overlap: Overlap::Run,
            }),
            client_key: None,
            retry: None,
            requested_at: None,
        };
        service.create_job(new).await.expect("create");
    }
    phase.end((service, keep))
}

/// The peer: tokio-cron-scheduler cron jobs with the same expressions
/// (it parses 6 fields, with seconds, in UTC), scheduler started first.
/// Its callback gets no due time: it is the latest instant at or before
/// now at the job's second of the period.
async fn add_peer(cron: &Cron, n: usize, lateness: Arc<Recorder>) -> Added {
    let scheduler = JobScheduler::new().await.expect("peer scheduler");
    scheduler.start().await.expect("peer start");
    let period_us = i64::from(cron.period_s) * 1_000_000;
    let phase = AddPhase::begin();
    for i in 0..n {
        let offset_us = cron.offset_s(i) * 1_000_000;
        let lateness = lateness.clone();
        let job = PeerJob::new_async(cron.expression(i), move |_, _| {
            let now = now_us();
            let due = (now - offset_us).div_euclid(period_us) * period_us + offset_us;
            lateness.record_due(due);
            Box::pin(async {})
        })
        .expect("peer job");
        scheduler.add(job).await.expect("peer add");
    }
    phase.end(scheduler)
}
