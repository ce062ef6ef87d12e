//! Benchmark of the scheduling core: the in-memory timer and the firing path
//! (claim in `MemoryJobDB`, publish through `NullProducer`), measured on the
//! same input as the peer, tokio-cron-scheduler, and as a bare tokio-util
//! `DelayQueue` (the baseline: what the hardware and tokio's timer allow).
//!
//! N one-shot jobs are due uniformly at random over a window (10 s by
//! default) that opens `margin` after the add phase starts; the scheduler is
//! started before the first job is added. For each configuration it measures
//! the time to add all jobs, how many fired by the end of the window plus a
//! grace period (10 s; it stops early once all fired), the lateness of each
//! firing (firing time minus due time, wall clock, microseconds), the peak RSS
//! (VmHWM) and the RSS growth per pending job (VmRSS after the add phase minus
//! before, divided by N).
//!
//! A prototype timer driven from a dedicated thread (`proto-thread-timer`,
//! not the product) shows what a fix of the millisecond lateness floor of
//! tokio's timer would give; BENCHMARKS.md discusses it.
//!
//! Every configuration runs in a fresh process (the binary re-executes itself
//! with `--one`), so that peak RSS figures do not mix. See BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench core                          # the whole matrix, 3 runs each
//! cargo bench --bench core -- --smoke               # a few seconds, for CI
//! cargo bench --bench core -- --jobs 100000 --window-secs 10 --peer tokio-cron-scheduler
//! ```

use std::{
    any::Any,
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    process::{Command, ExitCode, Stdio},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng};
use scheduler_service::{
    broker::{BrokerError, EventKind, JobsProducer, NullProducer},
    config::SchedulerSettings,
    domain::{Job, JobId, JobSpec, JobType, PendingEvents, now},
    service::JobService,
    store::{JobDB, memory::MemoryJobDB},
    telemetry::metrics::Metrics,
    timer::Timer,
};
use serde::{Deserialize, Serialize};
use tokio_cron_scheduler::{Job as PeerJob, JobScheduler};
use tokio_util::{sync::CancellationToken, task::TaskTracker, time::DelayQueue};

mod support;

use support::{
    bench_args, cpu_seconds, load_average, machine, now_us, number, numbers, status_kib,
};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    /// The bare timer: `Timer::arm` per job, firings read off its channel.
    Timer,
    /// The bare timer armed through `Timer::arm_many`, 1,024 jobs per call.
    TimerMany,
    /// The firing path: `MemoryJobDB::insert` + `Timer::arm` per job, firings
    /// run in batches by `JobService::run_firing` (the firing loop, in batches)
    /// (claim, publish of the run event, clearing of the outbox entry).
    Service,
    /// As `Service`, but jobs are added through `JobService::create`
    /// (validation, insert, arm, publish of the create event, outbox cleared).
    ServiceCreate,
    /// The peer: tokio-cron-scheduler 0.15 one-shot jobs.
    Peer,
    /// The baseline: one task owning a tokio-util `DelayQueue`.
    DelayQueue,
    /// Not the product: a prototype of the timer with its driver on a
    /// dedicated thread (condvar waits with microsecond deadlines instead of
    /// tokio's millisecond timer), same data structures as `Timer`.
    ProtoThreadTimer,
}

impl Subject {
    const ALL: [Subject; 7] = [
        Subject::Timer,
        Subject::TimerMany,
        Subject::Service,
        Subject::ServiceCreate,
        Subject::Peer,
        Subject::DelayQueue,
        Subject::ProtoThreadTimer,
    ];

    fn name(self) -> &'static str {
        match self {
            Subject::Timer => "timer",
            Subject::TimerMany => "timer-many",
            Subject::Service => "service",
            Subject::ServiceCreate => "service-create",
            Subject::Peer => "tokio-cron-scheduler",
            Subject::DelayQueue => "delay-queue",
            Subject::ProtoThreadTimer => "proto-thread-timer",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Subject::ALL.into_iter().find(|s| s.name() == name)
    }

    fn is_core(self) -> bool {
        !matches!(
            self,
            Subject::Peer | Subject::DelayQueue | Subject::ProtoThreadTimer
        )
    }
}

/// One configuration's input.
#[derive(Debug, Clone, Copy)]
struct Config {
    subject: Subject,
    jobs: usize,
    /// Width of the window the due times are spread over.
    window: Duration,
    /// From the start of the add phase to the opening of the window.
    margin: Duration,
    /// How long after the window closes firings are still waited for.
    grace: Duration,
    seed: u64,
}

impl Config {
    fn args(&self) -> Vec<String> {
        vec![
            "--one".into(),
            "--subject".into(),
            self.subject.name().into(),
            "--jobs".into(),
            self.jobs.to_string(),
            "--window-secs".into(),
            self.window.as_secs_f64().to_string(),
            "--margin-secs".into(),
            self.margin.as_secs_f64().to_string(),
            "--grace-secs".into(),
            self.grace.as_secs_f64().to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ]
    }
}

/// One configuration's measurements (one process, one run).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outcome {
    subject: String,
    jobs: usize,
    /// Time to add all jobs.
    add_ms: f64,
    /// Whether the last add finished after the first due time.
    add_overran: bool,
    /// Firings seen by the end of the window plus the grace period.
    fired: usize,
    /// Lateness percentiles over the firings seen (ms).
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// Firings before their due time.
    early: usize,
    /// Peer only: lateness against the requested (millisecond) due time, as
    /// the peer keeps due times in whole seconds.
    requested_p50_ms: Option<f64>,
    requested_p99_ms: Option<f64>,
    requested_early: usize,
    /// VmHWM at the end.
    peak_rss_mb: f64,
    /// VmHWM at the end − VmRSS just before the subject was started: the
    /// peak memory the scheduler itself added, without the process and the
    /// bench's own arrays.
    peak_added_mb: f64,
    /// (VmRSS after the add phase − VmRSS before) / jobs.
    bytes_per_pending: f64,
    /// User + system CPU time of the whole process.
    cpu_s: f64,
    /// The machine's 1-minute load average when the run started.
    load: f64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(Mode::One(config)) => {
            let outcome = run_one(config);
            println!("RESULT {}", serde_json::to_string(&outcome).expect("json"));
            println!("{}", HEADER);
            println!("{}", row(&outcome, None));
            // Skip tearing down millions of entries.
            std::process::exit(0);
        }
        Ok(Mode::Matrix {
            configs,
            runs,
            smoke,
        }) => matrix(&configs, runs, smoke),
        Err(msg) => {
            eprintln!("{msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: core [--smoke] [--jobs N[,N..]] [--peer-jobs N[,N..]] \
[--window-secs S] [--margin-secs S (default 2 + 3e-6 × jobs)] [--grace-secs S] [--runs K] [--seed X] \
[--core timer,timer-many,service,service-create|none] \
[--peer tokio-cron-scheduler,delay-queue,proto-thread-timer|none]
       core --one --subject NAME --jobs N [--window-secs S] [--margin-secs S] [--grace-secs S] [--seed X]
Without any argument (as `cargo test --all-targets` runs it) it runs --smoke.";

enum Mode {
    One(Config),
    Matrix {
        configs: Vec<Config>,
        runs: usize,
        smoke: bool,
    },
}

fn parse(args: &[String]) -> Result<Mode, String> {
    let (smoke, args) = bench_args(args);
    let mut jobs: Vec<usize> = if smoke {
        vec![1_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    };
    let mut peer_jobs: Option<Vec<usize>> = smoke.then(|| vec![200]);
    let mut window = if smoke { 1.0 } else { 10.0 };
    let mut margin: Option<f64> = smoke.then_some(0.5);
    let mut grace = 10.0;
    let mut runs = if smoke { 1 } else { 3 };
    let mut seed = 7;
    let mut core: Vec<Subject> = Subject::ALL.into_iter().filter(|s| s.is_core()).collect();
    let mut peers = vec![
        Subject::Peer,
        Subject::DelayQueue,
        Subject::ProtoThreadTimer,
    ];
    let mut one = false;
    let mut subject = None;

    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let mut value = || {
            it.next()
                .copied()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg {
            "--smoke" => {}
            "--one" => one = true,
            "--subject" => {
                let v = value()?;
                subject = Some(Subject::parse(v).ok_or_else(|| format!("unknown subject {v}"))?);
            }
            "--jobs" => jobs = numbers(value()?)?,
            "--peer-jobs" => peer_jobs = Some(numbers(value()?)?),
            "--window-secs" => window = number(value()?)?,
            "--margin-secs" => margin = Some(number(value()?)?),
            "--grace-secs" => grace = number(value()?)?,
            "--runs" => runs = number::<usize>(value()?)?.max(1),
            "--seed" => seed = number(value()?)?,
            "--core" => core = subjects(value()?, true)?,
            "--peer" => peers = subjects(value()?, false)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let config = |subject, jobs: usize| Config {
        subject,
        jobs,
        window: Duration::from_secs_f64(window),
        // The window opens after the add phase: by default 2 s + 3 µs per
        // job (2.03 s at 10k, 2.3 s at 100k, 5 s at 1M), the same for every
        // subject at a given N.
        margin: Duration::from_secs_f64(margin.unwrap_or(2.0 + 3e-6 * jobs as f64)),
        grace: Duration::from_secs_f64(grace),
        seed,
    };
    if one {
        let subject = subject.ok_or("--one needs --subject")?;
        let [n] = jobs[..] else {
            return Err("--one needs exactly one --jobs value".into());
        };
        return Ok(Mode::One(config(subject, n)));
    }
    let peer_jobs = peer_jobs.unwrap_or_else(|| jobs.clone());
    let mut configs = Vec::new();
    for &n in &jobs {
        for &s in core
            .iter()
            .chain(peers.iter().filter(|&&s| s != Subject::Peer))
        {
            configs.push(config(s, n));
        }
    }
    if peers.contains(&Subject::Peer) {
        for &n in &peer_jobs {
            configs.push(config(Subject::Peer, n));
        }
    }
    configs.sort_by_key(|c| (c.jobs, c.subject));
    Ok(Mode::Matrix {
        configs,
        runs,
        smoke,
    })
}

fn subjects(s: &str, core: bool) -> Result<Vec<Subject>, String> {
    if s == "none" {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|name| {
            Subject::parse(name)
                .filter(|s| s.is_core() == core)
                .ok_or_else(|| format!("unknown {} {name}", if core { "core" } else { "peer" }))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The parent: runs each configuration in a fresh process and summarises.

fn matrix(configs: &[Config], runs: usize, smoke: bool) -> ExitCode {
    let exe = std::env::current_exe().expect("current exe");
    eprintln!(
        "{} configurations × {runs} run(s), each in a fresh process; {}",
        configs.len(),
        machine()
    );
    let mut results: BTreeMap<(usize, Subject), Vec<Outcome>> = BTreeMap::new();
    let mut failed = false;
    println!("{HEADER}");
    // Runs are interleaved (all configurations once, then again) so that a
    // noisy spell of the machine does not hit all runs of one configuration.
    for run in 0..runs {
        for config in configs {
            let config = Config {
                seed: config.seed + run as u64,
                ..*config
            };
            let child = Command::new(&exe)
                .args(config.args())
                .stderr(Stdio::inherit())
                .output();
            let outcome = child.ok().and_then(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("RESULT "))
                    .and_then(|json| serde_json::from_str::<Outcome>(json).ok())
            });
            match outcome {
                Some(outcome) => {
                    println!("{}", row(&outcome, Some(format!("run {}", run + 1))));
                    results
                        .entry((config.jobs, config.subject))
                        .or_default()
                        .push(outcome);
                }
                None => {
                    failed = true;
                    println!(
                        "| {} | {} | (run {} failed) |",
                        config.subject.name(),
                        config.jobs,
                        run + 1
                    );
                }
            }
        }
    }

    let medians: BTreeMap<(usize, Subject), Outcome> = results
        .iter()
        .map(|(key, runs)| (*key, median(runs)))
        .collect();
    println!("\n## Medians of {runs} run(s)\n\n{HEADER}");
    for (key, m) in &medians {
        let all = &results[key];
        let overran = all.iter().filter(|o| o.add_overran).count();
        let note = if overran > 0 {
            format!(
                "median of {}; add overran the margin in {overran}",
                all.len()
            )
        } else {
            format!("median of {}", all.len())
        };
        println!("{}", row(m, Some(note)));
    }
    print!("{}", ratios(&medians));
    print!("{}", targets(&medians));

    if smoke {
        for m in medians.values() {
            if Subject::parse(&m.subject).is_some_and(Subject::is_core) && m.fired != m.jobs {
                eprintln!("smoke: {} fired {} of {}", m.subject, m.fired, m.jobs);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The median of each figure independently.
fn median(runs: &[Outcome]) -> Outcome {
    fn mid<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        v[(v.len() - 1) / 2]
    }
    fn mid_opt(v: Vec<Option<f64>>) -> Option<f64> {
        let v: Vec<f64> = v.into_iter().flatten().collect();
        (!v.is_empty()).then(|| mid(v))
    }
    let f = |g: fn(&Outcome) -> f64| mid(runs.iter().map(g).collect());
    let o = |g: fn(&Outcome) -> Option<f64>| mid_opt(runs.iter().map(g).collect());
    let u = |g: fn(&Outcome) -> usize| mid(runs.iter().map(g).collect());
    Outcome {
        subject: runs[0].subject.clone(),
        jobs: runs[0].jobs,
        add_ms: f(|r| r.add_ms),
        add_overran: runs.iter().any(|r| r.add_overran),
        fired: u(|r| r.fired),
        p50_ms: o(|r| r.p50_ms),
        p99_ms: o(|r| r.p99_ms),
        max_ms: o(|r| r.max_ms),
        early: u(|r| r.early),
        requested_p50_ms: o(|r| r.requested_p50_ms),
        requested_p99_ms: o(|r| r.requested_p99_ms),
        requested_early: u(|r| r.requested_early),
        peak_rss_mb: f(|r| r.peak_rss_mb),
        peak_added_mb: f(|r| r.peak_added_mb),
        bytes_per_pending: f(|r| r.bytes_per_pending),
        cpu_s: f(|r| r.cpu_s),
        load: f(|r| r.load),
    }
}

const HEADER: &str = "| subject | jobs | add all (ms) | added per s | fired | p50 (ms) | p99 (ms) | max (ms) | peak RSS (MB) | peak added (MB) | bytes per pending job | CPU (s) | load | note |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.2}"))
}

fn row(o: &Outcome, note: Option<String>) -> String {
    let mut notes: Vec<String> = note.into_iter().collect();
    if o.add_overran {
        notes.push("last add after first due time".into());
    }
    if o.early > 0 {
        notes.push(format!("{} fired early", o.early));
    }
    if o.subject == Subject::Peer.name() {
        notes.push(format!(
            "lateness vs its whole-second due time; vs requested: p50 {} p99 {}, {} early",
            ms(o.requested_p50_ms),
            ms(o.requested_p99_ms),
            o.requested_early
        ));
    }
    format!(
        "| {} | {} | {:.1} | {:.0} | {} ({:.1} %) | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.2} | {:.1} | {} |",
        o.subject,
        o.jobs,
        o.add_ms,
        o.jobs as f64 / (o.add_ms / 1000.0),
        o.fired,
        100.0 * o.fired as f64 / o.jobs as f64,
        ms(o.p50_ms),
        ms(o.p99_ms),
        ms(o.max_ms),
        o.peak_rss_mb,
        o.peak_added_mb,
        o.bytes_per_pending,
        o.cpu_s,
        o.load,
        notes.join("; ")
    )
}

/// How many times better each core subject is than the peer, per N.
fn ratios(medians: &BTreeMap<(usize, Subject), Outcome>) -> String {
    let mut out = String::from(
        "\n## Against tokio-cron-scheduler (peer ÷ core; > 1 means the core is better)\n\n\
         | core subject | jobs | add time | fired share (core ÷ peer) | p50 | p99 | max | peak RSS | peak added |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let ratio = |peer: Option<f64>, core: Option<f64>| match (peer, core) {
        (Some(p), Some(c)) if c > 0.0 => format!("{:.1}×", p / c),
        _ => "–".into(),
    };
    for ((n, subject), core) in medians {
        let Some(peer) = medians.get(&(*n, Subject::Peer)) else {
            continue;
        };
        if !subject.is_core() {
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            subject.name(),
            n,
            ratio(Some(peer.add_ms), Some(core.add_ms)),
            ratio(Some(core.fired as f64), Some(peer.fired as f64)),
            ratio(peer.p50_ms, core.p50_ms),
            ratio(peer.p99_ms, core.p99_ms),
            ratio(peer.max_ms, core.max_ms),
            ratio(Some(peer.peak_rss_mb), Some(core.peak_rss_mb)),
            ratio(Some(peer.peak_added_mb), Some(core.peak_added_mb)),
        );
    }
    out
}

/// The issue's targets, checked against the medians.
fn targets(medians: &BTreeMap<(usize, Subject), Outcome>) -> String {
    let mut out = String::from("\n## Targets\n\n");
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    for ((n, subject), m) in medians {
        if !subject.is_core() {
            continue;
        }
        let name = subject.name();
        if *n == 1_000_000 {
            let rate = m.jobs as f64 / (m.add_ms / 1000.0);
            let _ = writeln!(
                out,
                "- {name} @ 1M: 100 % fired: {} ({} of {})",
                mark(m.fired == m.jobs),
                m.fired,
                m.jobs
            );
            let _ = writeln!(
                out,
                "- {name} @ 1M: lateness p99 ≤ 5 ms: {} ({} ms)",
                mark(m.p99_ms.is_some_and(|p| p <= 5.0)),
                ms(m.p99_ms)
            );
            let _ = writeln!(
                out,
                "- {name} @ 1M: ≤ 200 bytes per pending job: {} ({:.0} B)",
                mark(m.bytes_per_pending <= 200.0),
                m.bytes_per_pending
            );
            let _ = writeln!(
                out,
                "- {name} @ 1M: ≥ 1,000,000 jobs scheduled per s: {} ({rate:.0}/s)",
                mark(rate >= 1_000_000.0)
            );
        }
        if *n == 100_000 {
            let _ = writeln!(
                out,
                "- {name} @ 100k: lateness p99 < 1.2 ms (go-quartz): {} ({} ms)",
                mark(m.p99_ms.is_some_and(|p| p < 1.2)),
                ms(m.p99_ms)
            );
            if let Some(peer) = medians.get(&(*n, Subject::Peer)) {
                let x = |p: Option<f64>, c: Option<f64>| match (p, c) {
                    (Some(p), Some(c)) if c > 0.0 => p / c,
                    _ => f64::NAN,
                };
                let figures = [
                    ("add time", x(Some(peer.add_ms), Some(m.add_ms))),
                    (
                        "fired",
                        x(Some(m.fired as f64), Some(peer.fired.max(1) as f64)),
                    ),
                    ("p99", x(peer.p99_ms, m.p99_ms)),
                    ("peak RSS", x(Some(peer.peak_rss_mb), Some(m.peak_rss_mb))),
                    (
                        "peak RSS added",
                        x(Some(peer.peak_added_mb), Some(m.peak_added_mb)),
                    ),
                ];
                for (what, r) in figures {
                    let _ = writeln!(
                        out,
                        "- {name} @ 100k: ≥ 10× tokio-cron-scheduler on {what}: {} ({r:.1}×)",
                        mark(r >= 10.0)
                    );
                }
                // A fired-share ratio is capped at 1 ÷ the peer's share, so
                // also say how many jobs each lost outright.
                let _ = writeln!(
                    out,
                    "- {name} @ 100k: jobs that never fired: {} against tokio-cron-scheduler's {} ({:.1} %)",
                    m.jobs - m.fired,
                    peer.jobs - peer.fired,
                    100.0 * (peer.jobs - peer.fired) as f64 / peer.jobs as f64
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The child: one configuration, measured in this process.

fn run_one(config: Config) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Everything, the add loop included, runs on the two workers.
    let outcome = runtime
        .block_on(async move { tokio::spawn(measure(config)).await })
        .expect("benchmark task");
    // The process exits next: skip dropping millions of entries.
    std::mem::forget(runtime);
    outcome
}

fn now_ms() -> i64 {
    now_us() / 1000
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("valid time")
}

/// Per-firing lateness (µs) in a preallocated, pre-touched array, so that
/// recording allocates nothing and the array is already in the "before" RSS.
struct Recorder {
    slots: Box<[AtomicI64]>,
    count: AtomicUsize,
}

const EMPTY: i64 = i64::MIN;

impl Recorder {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Recorder {
            slots: (0..n).map(|_| AtomicI64::new(EMPTY)).collect(),
            count: AtomicUsize::new(0),
        })
    }

    fn record(&self, lateness_us: i64) {
        let i = self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.slots.get(i) {
            slot.store(lateness_us, Ordering::Relaxed);
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// (p50, p99, max) in ms, and how many were early (negative).
    fn summary(&self) -> (Option<f64>, Option<f64>, Option<f64>, usize) {
        let mut v: Vec<i64> = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&l| l != EMPTY)
            .collect();
        if v.is_empty() {
            return (None, None, None, 0);
        }
        v.sort_unstable();
        let pick = |q: f64| {
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            Some(v[rank - 1] as f64 / 1000.0)
        };
        let early = v.iter().filter(|&&l| l < 0).count();
        (pick(0.50), pick(0.99), pick(1.0), early)
    }
}

/// What an add phase reports.
struct Added {
    /// Wall-clock start of the add phase (Unix ms); due times are relative.
    t0_ms: i64,
    add: Duration,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// Whatever must live until the end of the run.
    _keep: Box<dyn Any + Send>,
}

/// An add phase being timed: when it began, and the RSS before it.
struct AddPhase {
    t0_ms: i64,
    start: Instant,
    rss_before_kib: u64,
}

impl AddPhase {
    /// Reads the RSS, then starts the clocks.
    fn begin() -> Self {
        let rss_before_kib = status_kib("self", "VmRSS:");
        AddPhase {
            t0_ms: now_ms(),
            start: Instant::now(),
            rss_before_kib,
        }
    }

    /// Stops the clock, reads the RSS; `keep` lives until the run ends.
    fn end(self, keep: impl Any + Send) -> Added {
        let add = self.start.elapsed();
        Added {
            t0_ms: self.t0_ms,
            add,
            rss_before_kib: self.rss_before_kib,
            rss_after_kib: status_kib("self", "VmRSS:"),
            _keep: Box::new(keep),
        }
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

    let look_ahead = config.margin + config.window + config.grace + Duration::from_secs(60);
    let added = match config.subject {
        Subject::Timer => add_timer(&offsets, lateness.clone(), false).await,
        Subject::TimerMany => add_timer(&offsets, lateness.clone(), true).await,
        Subject::Service => add_service(&offsets, lateness.clone(), false, look_ahead).await,
        Subject::ServiceCreate => add_service(&offsets, lateness.clone(), true, look_ahead).await,
        Subject::Peer => add_peer(&offsets, lateness.clone(), requested.clone()).await,
        Subject::DelayQueue => add_delay_queue(offsets.clone(), lateness.clone()).await,
        Subject::ProtoThreadTimer => add_proto_thread_timer(&offsets, lateness.clone()),
    };
    let add_end_ms = added.t0_ms + added.add.as_millis() as i64;
    let add_overran = add_end_ms >= added.t0_ms + first_due;

    let deadline_ms = added.t0_ms + margin_ms + window_ms + config.grace.as_millis() as i64;
    while lateness.count() < n && now_ms() < deadline_ms {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fired = lateness.count().min(n);
    let (p50, p99, max, early) = lateness.summary();
    let (rp50, rp99, _, rearly) = requested.summary();
    let grown = added.rss_after_kib.saturating_sub(added.rss_before_kib);
    Outcome {
        subject: config.subject.name().into(),
        jobs: n,
        add_ms: added.add.as_secs_f64() * 1000.0,
        add_overran,
        fired,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        early,
        requested_p50_ms: rp50,
        requested_p99_ms: rp99,
        requested_early: rearly,
        peak_rss_mb: status_kib("self", "VmHWM:") as f64 / 1024.0,
        peak_added_mb: status_kib("self", "VmHWM:").saturating_sub(rss_start_kib) as f64 / 1024.0,
        bytes_per_pending: (grown * 1024) as f64 / n.max(1) as f64,
        cpu_s: cpu_seconds("self"),
        load,
    }
}

/// (a) The bare timer; a task reads firings off its channel.
async fn add_timer(offsets: &[i64], lateness: Arc<Recorder>, many: bool) -> Added {
    let shutdown = CancellationToken::new();
    let (timer, mut firings) = Timer::start(shutdown.clone());
    tokio::spawn(async move {
        while let Some(firing) = firings.recv().await {
            lateness.record(now_us() - firing.due_ms * 1000);
        }
    });
    let phase = AddPhase::begin();
    let t0_ms = phase.t0_ms;
    if many {
        const CHUNK: usize = 1024;
        for (c, chunk) in offsets.chunks(CHUNK).enumerate() {
            timer.arm_many(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, off)| (JobId::new(), at_ms(t0_ms + off), (c * CHUNK + i) as i64)),
            );
        }
    } else {
        for (i, off) in offsets.iter().enumerate() {
            timer.arm(JobId::new(), at_ms(t0_ms + off), i as i64);
        }
    }
    phase.end((timer, shutdown))
}

/// `NullProducer`, plus the lateness of each run event it is handed.
struct RecordingProducer {
    inner: NullProducer,
    lateness: Arc<Recorder>,
}

#[async_trait]
impl JobsProducer for RecordingProducer {
    async fn publish(&self, kind: EventKind, job: &Job) -> Result<(), BrokerError> {
        self.inner.publish(kind, job).await?;
        if kind == EventKind::Run {
            self.lateness
                .record(now_us() - job.spec.schedule_time.timestamp_micros());
        }
        Ok(())
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BrokerError> {
        self.inner.flush(timeout).await
    }
}

/// (b) The firing path: jobs in `MemoryJobDB`, armed in the timer, fired by
/// `JobService::run_firing` (the firing loop, in batches) (claim, publish of the run
/// event through `NullProducer`, then the outbox entry cleared in the store).
async fn add_service(
    offsets: &[i64],
    lateness: Arc<Recorder>,
    via_create: bool,
    look_ahead: Duration,
) -> Added {
    let shutdown = CancellationToken::new();
    let (timer, firings) = Timer::start(shutdown.clone());
    let db = Arc::new(MemoryJobDB::new());
    let producer = Arc::new(RecordingProducer {
        inner: NullProducer,
        lateness,
    });
    let settings = SchedulerSettings {
        look_ahead,
        ..SchedulerSettings::default()
    };
    let service = JobService::new(
        db.clone(),
        producer,
        timer.clone(),
        settings,
        Metrics::new(),
    );
    let tasks = TaskTracker::new();
    let firing_loop = tokio::spawn(service.clone().run_firing(firings, tasks, shutdown.clone()));

    let phase = AddPhase::begin();
    let t0_ms = phase.t0_ms;
    for off in offsets {
        let due = at_ms(t0_ms + off);
        let spec = JobSpec {
            name: "bench-job".into(),
            description: String::new(),
            schedule_time: due,
            job_type: JobType::Email,
            job_data: "{}".into(),
        };
        if via_create {
            service.create(spec).await.expect("create");
        } else {
            // As a job whose create event was delivered long ago: only its
            // run event is owed when it fires.
            let job = Job {
                pending: PendingEvents::NONE,
                ..Job::new_scheduled(spec, now())
            };
            db.insert(&job).await.expect("insert");
            timer.arm(job.id, due, job.fire_token);
        }
    }
    phase.end((service, firing_loop, shutdown))
}

/// The peer: tokio-cron-scheduler one-shot jobs, scheduler started first.
async fn add_peer(offsets: &[i64], lateness: Arc<Recorder>, requested: Arc<Recorder>) -> Added {
    let scheduler = JobScheduler::new().await.expect("peer scheduler");
    scheduler.start().await.expect("peer start");
    let phase = AddPhase::begin();
    let t0_ms = phase.t0_ms;
    for off in offsets {
        let due_ms = t0_ms + off;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let wait = Duration::from_millis(
            u64::try_from(due_ms - now.as_millis() as i64).unwrap_or_default(),
        );
        // The peer keeps due times in whole seconds: floor(now) + floor(wait)
        // (JobLocked::make_one_shot_job); it fires at its first 500 ms tick
        // at or after that.
        let promised_us = (now.as_secs() + wait.as_secs()) as i64 * 1_000_000;
        let (lateness, requested) = (lateness.clone(), requested.clone());
        let job = PeerJob::new_one_shot_async(wait, move |_, _| {
            let fired = now_us();
            lateness.record(fired - promised_us);
            requested.record(fired - due_ms * 1000);
            Box::pin(async {})
        })
        .expect("peer job");
        scheduler.add(job).await.expect("peer add");
    }
    phase.end(scheduler)
}

/// The baseline: one task owns a `DelayQueue`, adds every entry, then polls.
async fn add_delay_queue(offsets: Arc<[i64]>, lateness: Arc<Recorder>) -> Added {
    let (report, added) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut queue: DelayQueue<i64> = DelayQueue::with_capacity(offsets.len());
        let rss_before_kib = status_kib("self", "VmRSS:");
        let base = tokio::time::Instant::now();
        let base_us = now_us();
        let t0_ms = base_us / 1000;
        let phase = AddPhase {
            t0_ms,
            start: Instant::now(),
            rss_before_kib,
        };
        for off in offsets.iter() {
            let due_ms = t0_ms + off;
            let from_base = u64::try_from(due_ms * 1000 - base_us).unwrap_or_default();
            queue.insert_at(due_ms, base + Duration::from_micros(from_base));
        }
        let _ = report.send(phase.end(()));
        while let Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)).await {
            lateness.record(now_us() - expired.into_inner() * 1000);
        }
    });
    added.await.expect("delay queue task")
}

/// A prototype, not the product: `Timer`'s data structures (B-tree by due
/// time + map from job to due time) with the driver on a dedicated thread that
/// waits on a condvar until the earliest due time in microseconds, to show
/// how much of the lateness is tokio's millisecond timer.
struct ProtoTimer {
    state: Mutex<ProtoState>,
    wake: Condvar,
}

#[derive(Default)]
struct ProtoState {
    queue: BTreeMap<(i64, JobId), i64>,
    due_of: HashMap<JobId, i64>,
}

impl ProtoTimer {
    fn start(fired: tokio::sync::mpsc::UnboundedSender<(JobId, i64, i64)>) -> Arc<Self> {
        let timer = Arc::new(ProtoTimer {
            state: Mutex::new(ProtoState::default()),
            wake: Condvar::new(),
        });
        let driver = timer.clone();
        std::thread::spawn(move || driver.drive(&fired));
        timer
    }

    fn arm(&self, id: JobId, due_us: i64, key: i64) {
        let earliest = {
            let mut s = self.state.lock().expect("lock");
            if let Some(old) = s.due_of.insert(id, due_us) {
                s.queue.remove(&(old, id));
            }
            s.queue.insert((due_us, id), key);
            s.queue.first_key_value().is_some_and(|(k, _)| k.1 == id)
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    fn drive(&self, fired: &tokio::sync::mpsc::UnboundedSender<(JobId, i64, i64)>) {
        let mut batch = Vec::new();
        loop {
            {
                let mut s = self.state.lock().expect("lock");
                loop {
                    let now = now_us();
                    while let Some(entry) = s.queue.first_entry() {
                        let (due, id) = *entry.key();
                        if due > now {
                            break;
                        }
                        let key = entry.remove();
                        s.due_of.remove(&id);
                        batch.push((id, key, due));
                    }
                    if !batch.is_empty() {
                        break;
                    }
                    s = match s.queue.first_key_value().map(|(k, _)| k.0) {
                        Some(due) => {
                            let wait = Duration::from_micros((due - now).unsigned_abs());
                            self.wake.wait_timeout(s, wait).expect("lock").0
                        }
                        None => self.wake.wait(s).expect("lock"),
                    };
                }
            }
            for firing in batch.drain(..) {
                if fired.send(firing).is_err() {
                    return;
                }
            }
        }
    }
}

fn add_proto_thread_timer(offsets: &[i64], lateness: Arc<Recorder>) -> Added {
    let (tx, mut firings) = tokio::sync::mpsc::unbounded_channel();
    let timer = ProtoTimer::start(tx);
    tokio::spawn(async move {
        while let Some((_, _, due_us)) = firings.recv().await {
            lateness.record(now_us() - due_us);
        }
    });
    let phase = AddPhase::begin();
    let t0_ms = phase.t0_ms;
    for (i, off) in offsets.iter().enumerate() {
        timer.arm(JobId::new(), (t0_ms + off) * 1000, i as i64);
    }
    phase.end(timer)
}
