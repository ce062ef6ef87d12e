//! The child process: one configuration measured in this process. The due
//! times are drawn, the subject's scheduler is started and every job added
//! (timed, with the RSS before and after), then the firings are awaited and
//! their lateness summarised. The subjects themselves are in `subjects` and
//! `proto_timer`.

use std::{
    any::Any,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    config::{Config, Subject},
    cron::measure_cron,
    proto_timer::add_proto_thread_timer,
    report::Outcome,
    subjects::{add_delay_queue, add_peer, add_service, add_timer},
    support::{
        now_us,
        proc::{cpu_seconds, load_average, status_kib},
        stats::Latencies,
    },
};

/// Measures `config` on a runtime of two workers, the add loop included.
pub fn run_one(config: Config) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Everything, the add loop included, runs on the two workers.
    let outcome = runtime
        .block_on(async move {
            match config.cron {
                Some(cron) => tokio::spawn(measure_cron(config, cron)).await,
                None => tokio::spawn(measure(config)).await,
            }
        })
        .expect("benchmark task");
    // The process exits next: skip dropping millions of entries.
    std::mem::forget(runtime);
    outcome
}

pub fn now_ms() -> i64 {
    now_us() / 1000
}

pub fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("valid time")
}

/// Per-firing lateness (µs) in a preallocated, pre-touched array, so that
/// recording allocates nothing and the array is already in the "before" RSS.
pub struct Recorder {
    slots: Box<[AtomicI64]>,
    count: AtomicUsize,
    /// Recurring jobs: only the firings due in these rounds are recorded.
    rounds: Option<Rounds>,
}

/// The rounds of a recurring run: `fired.len()` periods of `period_us`
/// from `start_us` (Unix µs), and how many firings were due in each.
pub struct Rounds {
    pub start_us: i64,
    pub period_us: i64,
    fired: Box<[AtomicUsize]>,
}

impl Rounds {
    pub fn new(start_us: i64, period_us: i64, rounds: usize) -> Self {
        Rounds {
            start_us,
            period_us,
            fired: (0..rounds).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Unix µs at which the last round ends.
    pub fn end_us(&self) -> i64 {
        self.start_us + self.period_us * self.fired.len() as i64
    }
}

const EMPTY: i64 = i64::MIN;

impl Recorder {
    pub fn new(n: usize) -> Arc<Self> {
        Self::counting(n, None)
    }

    /// Room for `n` firings; with `rounds`, only those due in them count.
    pub fn counting(n: usize, rounds: Option<Rounds>) -> Arc<Self> {
        Arc::new(Recorder {
            slots: (0..n).map(|_| AtomicI64::new(EMPTY)).collect(),
            count: AtomicUsize::new(0),
            rounds,
        })
    }

    /// Records a firing due at `due_us` (Unix µs) happening now; with
    /// rounds, only if it was due in one of them.
    pub fn record_due(&self, due_us: i64) {
        let lateness_us = now_us() - due_us;
        if let Some(r) = &self.rounds {
            let round = usize::try_from((due_us - r.start_us).div_euclid(r.period_us)).ok();
            match round.and_then(|k| r.fired.get(k)) {
                Some(fired) => fired.fetch_add(1, Ordering::Relaxed),
                None => return,
            };
        }
        self.record(lateness_us);
    }

    /// The firings counted in each round (none without rounds).
    pub fn per_round(&self) -> Vec<usize> {
        self.rounds.as_ref().map_or_else(Vec::new, |r| {
            r.fired.iter().map(|f| f.load(Ordering::Relaxed)).collect()
        })
    }

    pub fn record(&self, lateness_us: i64) {
        let i = self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.slots.get(i) {
            slot.store(lateness_us, Ordering::Relaxed);
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The distribution of what was recorded, and how many were early
    /// (negative).
    pub fn summary(&self) -> (Option<Latencies>, usize) {
        let recorded = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&l| l != EMPTY);
        let early = recorded.clone().filter(|&l| l < 0).count();
        (Latencies::of_us(recorded), early)
    }
}

/// What an add phase reports.
pub struct Added {
    /// Wall-clock start of the add phase (Unix ms); due times are relative.
    pub t0_ms: i64,
    add: Duration,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// Whether the add phase ended after the first due time.
    overran: bool,
    /// Whatever must live until the end of the run.
    _keep: Box<dyn Any + Send>,
}

/// An add phase being timed: when it began, and the RSS before it.
pub struct AddPhase {
    pub t0_ms: i64,
    start: Instant,
    rss_before_kib: u64,
}

impl AddPhase {
    /// Reads the RSS, then starts the clocks.
    pub fn begin() -> Self {
        let rss_before_kib = status_kib("self", "VmRSS:");
        Self::starting(now_ms(), rss_before_kib)
    }

    /// Starts the clock of a phase that began at `t0_ms` (Unix ms), the RSS
    /// read just before.
    pub fn starting(t0_ms: i64, rss_before_kib: u64) -> Self {
        AddPhase {
            t0_ms,
            start: Instant::now(),
            rss_before_kib,
        }
    }

    /// Stops the clock, reads the RSS; `keep` lives until the run ends.
    pub fn end(self, keep: impl Any + Send) -> Added {
        let add = self.start.elapsed();
        Added {
            t0_ms: self.t0_ms,
            add,
            rss_before_kib: self.rss_before_kib,
            rss_after_kib: status_kib("self", "VmRSS:"),
            overran: false,
            _keep: Box::new(keep),
        }
    }
}

impl Added {
    /// Notes whether the add phase ended at or after `first_due_ms` (Unix ms).
    pub fn overran_at(&mut self, first_due_ms: i64) {
        self.overran = self.t0_ms + self.add.as_millis() as i64 >= first_due_ms;
    }
}

/// Adds every job of `offsets` to the subject's scheduler, started first.
async fn add_all(
    config: &Config,
    offsets: &Arc<[i64]>,
    lateness: &Arc<Recorder>,
    requested: &Arc<Recorder>,
) -> Added {
    let look_ahead = config.margin + config.window + config.grace + Duration::from_secs(60);
    let lateness = lateness.clone();
    match config.subject {
        Subject::Timer => add_timer(offsets, lateness, false).await,
        Subject::TimerMany => add_timer(offsets, lateness, true).await,
        Subject::Service => add_service(offsets, lateness, false, look_ahead).await,
        Subject::ServiceCreate => add_service(offsets, lateness, true, look_ahead).await,
        Subject::Peer => add_peer(offsets, lateness, requested.clone()).await,
        Subject::DelayQueue => add_delay_queue(offsets.clone(), lateness).await,
        Subject::ProtoThreadTimer => add_proto_thread_timer(offsets, lateness),
    }
}

async fn measure(config: Config) -> Outcome {
    let load = load_average();
    let n = config.jobs;
    let window_ms = (config.window.as_millis() as i64).max(1);
    let margin_ms = config.margin.as_millis() as i64;
    let mut rng = StdRng::seed_from_u64(config.seed);
    // Due times as offsets from the start of the add phase, whole ms (the
    // store's precision), in random order.
    let offsets: Arc<[i64]> = (0..n)
        .map(|_| margin_ms + rng.random_range(0..window_ms))
        .collect();
    let first_due = offsets.iter().copied().min().unwrap_or(margin_ms);
    let lateness = Recorder::new(n);
    let requested = Recorder::new(if config.subject == Subject::Peer {
        n
    } else {
        0
    });

    // Let the runtime settle (workers up, first allocations made).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rss_start_kib = status_kib("self", "VmRSS:");

    let mut added = add_all(&config, &offsets, &lateness, &requested).await;
    added.overran_at(added.t0_ms + first_due);

    let deadline_ms = added.t0_ms + margin_ms + window_ms + config.grace.as_millis() as i64;
    let fired = await_firings(&lateness, n, deadline_ms).await;
    let run = Run {
        config: &config,
        added: &added,
        rss_start_kib,
        load,
    };
    outcome(&run, fired, n, &lateness, &requested)
}

/// Waits until `owed` firings were recorded or `deadline_ms` (Unix ms)
/// passed; how many were.
pub async fn await_firings(lateness: &Recorder, owed: usize, deadline_ms: i64) -> usize {
    while lateness.count() < owed && now_ms() < deadline_ms {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lateness.count().min(owed)
}

/// What a run knows besides its firings: its configuration, its add
/// phase, the RSS before the subject started and the load at the start.
pub struct Run<'a> {
    pub config: &'a Config,
    pub added: &'a Added,
    pub rss_start_kib: u64,
    pub load: f64,
}

/// The run's figures: `fired` of the `owed` firings, their lateness, the
/// peer's lateness against the requested time, memory and CPU.
pub fn outcome(
    run: &Run,
    fired: usize,
    owed: usize,
    lateness: &Recorder,
    requested: &Recorder,
) -> Outcome {
    let (config, added, n) = (run.config, run.added, run.config.jobs);
    // Memory and CPU are read before the summary, which is the bench's own
    // work and not part of the run.
    let peak_kib = status_kib("self", "VmHWM:");
    let cpu_s = cpu_seconds("self");
    let (latencies, early) = lateness.summary();
    let percentiles = latencies.as_ref().map(Latencies::percentiles);
    let (requested, requested_early) = requested.summary();
    let requested_percentiles = requested.as_ref().map(Latencies::percentiles);
    let grown = added.rss_after_kib.saturating_sub(added.rss_before_kib);
    Outcome {
        subject: config.subject.name().into(),
        jobs: n,
        add_ms: added.add.as_secs_f64() * 1000.0,
        add_overran: added.overran,
        fired,
        owed,
        fired_per_round: lateness.per_round(),
        period_s: config.cron.map_or(0, |c| c.period_s),
        p50_ms: percentiles.map(|p| p.p50_ms),
        p99_ms: percentiles.map(|p| p.p99_ms),
        max_ms: percentiles.map(|p| p.max_ms),
        lateness_curve: latencies.map(|l| l.curve()).unwrap_or_default(),
        early,
        requested_p50_ms: requested_percentiles.map(|p| p.p50_ms),
        requested_p99_ms: requested_percentiles.map(|p| p.p99_ms),
        requested_early,
        peak_rss_mb: peak_kib as f64 / 1024.0,
        peak_added_mb: peak_kib.saturating_sub(run.rss_start_kib) as f64 / 1024.0,
        bytes_per_pending: (grown * 1024) as f64 / n.max(1) as f64,
        cpu_s,
        load: run.load,
    }
}
