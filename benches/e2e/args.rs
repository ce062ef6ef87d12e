//! The command line of the end-to-end bench, parsed with clap, and the
//! options it resolves to: which parts run, on which stores, at which sizes.
//! Sizes left out default to the full run, or to the smoke run (`--smoke`,
//! or no argument at all, as `cargo test --all-targets` runs it). The flags
//! are those BENCHMARKS.md and the module doc of `main.rs` document.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use scheduler_service::domain::retry::MAX_ATTEMPTS_LIMIT;

use crate::{
    replicas::Scenario,
    support::{BARE_RUN_HELP, bench_args, number},
};

/// The eight benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    Create,
    Fire,
    Recovery,
    Recurring,
    History,
    /// The HTTP/JSON API against gRPC.
    Api,
    /// The web console's pages on a large store.
    Console,
    /// Replicas sharing the jobs by shards.
    Replicas,
}

/// Where the service keeps its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Store {
    /// The MongoDB-protocol server.
    #[value(name = "mongodb", alias = "mongo", alias = "polodb")]
    MongoDb,
    /// PostgreSQL.
    #[value(alias = "postgresql", alias = "pg")]
    Postgres,
    /// The embedded redb store (no database server), in a fresh folder.
    #[value(alias = "redb")]
    Embedded,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::MongoDb => "mongodb",
            Store::Postgres => "postgres",
            Store::Embedded => "embedded",
        }
    }
}

/// End-to-end benchmark of the service binary against the test servers;
/// see BENCHMARKS.md.
#[derive(Parser, Debug)]
#[command(
    name = "e2e",
    args_override_self = true,
    after_help = BARE_RUN_HELP
)]
struct Args {
    /// Tiny sizes and one run, for CI.
    #[arg(long)]
    smoke: bool,
    /// Runs of each configuration [default: 3, smoke 1].
    #[arg(long, value_name = "K", value_parser = number::<usize>)]
    runs: Option<usize>,
    /// The parts to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "create,fire,recovery,recurring,history,api,console,replicas"
    )]
    parts: Vec<Part>,
    /// Seed of the fire part's due times; run k uses seed + k − 1.
    #[arg(long, value_name = "X", value_parser = number::<u64>, default_value = "7")]
    seed: u64,
    /// RUST_LOG of the service.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    service_log: String,
    /// create: the stores.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mongodb,postgres,embedded"
    )]
    stores: Vec<Store>,
    /// create and api: calls (api: on each face) [default: 20000, smoke 200].
    #[arg(long, value_name = "N", value_parser = number::<usize>)]
    requests: Option<usize>,
    /// create, fire and api: calls in flight.
    #[arg(long, value_name = "C", value_parser = number::<usize>, default_value = "64")]
    concurrency: usize,
    /// create, fire and api: HTTP/2 connections the gRPC calls are spread over.
    #[arg(long, value_name = "K", value_parser = number::<usize>, default_value = "4")]
    connections: usize,
    /// create: no new call after this long [default: 60, smoke 20].
    #[arg(long, value_name = "S", value_parser = number::<f64>)]
    max_secs: Option<f64>,
    /// fire: the stores.
    #[arg(long, value_delimiter = ',', default_value = "postgres")]
    fire_stores: Vec<Store>,
    /// fire: jobs due within the window [default: 10000, smoke 200].
    #[arg(long, value_name = "N", value_parser = number::<usize>)]
    jobs: Option<usize>,
    /// fire: SCHEDULER_FIRE_CONCURRENCY values, one configuration each
    /// (the default is the service's).
    #[arg(long, value_name = "C[,C..]", value_delimiter = ',', value_parser = at_least_one::<usize>, default_value = "8192")]
    fire_concurrency: Vec<usize>,
    /// fire: TOPIC_JOB_RUN_PARTITIONS values, one configuration each.
    #[arg(long, value_name = "P[,P..]", value_delimiter = ',', value_parser = at_least_one::<i32>, default_value = "1")]
    partitions: Vec<i32>,
    /// fire: width of the window the due times are spread over.
    #[arg(long, value_name = "MS", value_parser = number::<i64>, default_value = "1000")]
    window_ms: i64,
    /// fire: from the expected end of the creation to the window
    /// [default: 3, smoke 1].
    #[arg(long, value_name = "S", value_parser = number::<f64>)]
    lead_secs: Option<f64>,
    /// fire: fetch.wait.max.ms of the consumer (and the service's
    /// KAFKA_FETCH_WAIT_MAX_MS).
    #[arg(long, value_name = "MS", value_parser = number::<u64>, default_value = "10")]
    fetch_wait_ms: u64,
    /// fire: how long after the window arrivals are awaited
    /// [default: 30, smoke 10].
    #[arg(long, value_name = "S", value_parser = number::<f64>)]
    grace_secs: Option<f64>,
    /// fire: sample the service's PostgreSQL sessions while firing.
    #[arg(long)]
    pg_waits: bool,
    /// fire: time a small write's sync to disk every 5 ms while firing
    /// (what a commit waits for), beside the service's logs [always in a
    /// smoke run, so that CI runs it].
    #[arg(long)]
    disk_probe: bool,
    /// Server options of the service's PostgreSQL sessions, for experiments:
    /// e.g. "-c synchronous_commit=off".
    #[arg(long, value_name = "OPTS", allow_hyphen_values = true)]
    pg_options: Option<String>,
    /// fire: `perf record -a -g` of the whole machine while firing, to FILE-<run>.
    #[arg(long, value_name = "FILE")]
    perf: Option<String>,
    /// recovery: the stores (PostgreSQL and the embedded store).
    #[arg(long, value_delimiter = ',', default_value = "postgres,embedded")]
    recovery_stores: Vec<Store>,
    /// recovery: SCHEDULED jobs in the store [default: 100000, smoke 1000].
    #[arg(long, value_name = "N", value_parser = number::<usize>)]
    recovery_jobs: Option<usize>,
    /// recurring: the stores.
    #[arg(long, value_delimiter = ',', default_value = "postgres")]
    recurring_stores: Vec<Store>,
    /// recurring: jobs [default: 10000, smoke 100].
    #[arg(long, value_name = "N", value_parser = number::<usize>)]
    recurring_jobs: Option<usize>,
    /// recurring: seconds between two occurrences of a job [default: 10, smoke 1].
    #[arg(long, value_name = "S", value_parser = at_least_one::<u64>)]
    recurring_every_secs: Option<u64>,
    /// recurring: seconds of occurrences counted, a multiple of
    /// --recurring-every-secs [default: 120, smoke 3].
    #[arg(long, value_name = "S", value_parser = at_least_one::<u64>)]
    recurring_secs: Option<u64>,
    /// recurring: TOPIC_JOB_RUN_PARTITIONS.
    #[arg(long, value_name = "P", value_parser = at_least_one::<i32>, default_value = "1")]
    recurring_partitions: i32,
    /// history: the stores.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "postgres,embedded,mongodb"
    )]
    history_stores: Vec<Store>,
    /// history: jobs, each given --history-runs runs [default: 20, smoke 3].
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>)]
    history_jobs: Option<usize>,
    /// history: runs of each job, failed attempts of a job allowed 100, so
    /// from 1 to 100 [default: 100, smoke 10].
    #[arg(long, value_name = "N", value_parser = runs_per_job)]
    history_runs: Option<u32>,
    /// console: the stores (PostgreSQL and the embedded store).
    #[arg(long, value_delimiter = ',', default_value = "postgres,embedded")]
    console_stores: Vec<Store>,
    /// console: jobs in the store, at least 100 [default: 100000, smoke 300].
    #[arg(long, value_name = "N", value_parser = console_jobs)]
    console_jobs: Option<usize>,
    /// replicas: the scenarios [default: share,kill,scale, smoke share].
    #[arg(long, value_delimiter = ',')]
    replicas_scenarios: Option<Vec<Scenario>>,
    /// replicas (share, kill): one-shot jobs [default: 30000, smoke 300].
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>)]
    replicas_jobs: Option<usize>,
    /// replicas (share, kill): width of the window the due times are spread
    /// over [default: 10000, smoke 2000].
    #[arg(long, value_name = "MS", value_parser = at_least_one::<i64>)]
    replicas_window_ms: Option<i64>,
    /// replicas: SCHEDULER_LOOK_AHEAD_SECS of the replicas; the jobs are
    /// created more than half of it before they are due [default: 60, the
    /// service's; smoke 6].
    #[arg(long, value_name = "S", value_parser = at_least_one::<u64>)]
    replicas_look_ahead_secs: Option<u64>,
    /// replicas (scale): recurring jobs.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value = "2000")]
    replicas_recurring_jobs: usize,
    /// replicas (scale): seconds between two occurrences of a job.
    #[arg(long, value_name = "S", value_parser = at_least_one::<u64>, default_value = "2")]
    replicas_every_secs: u64,
    /// replicas (scale): seconds between two replicas started or stopped.
    #[arg(long, value_name = "S", value_parser = at_least_one::<u64>, default_value = "5")]
    replicas_step_secs: u64,
    /// The service binary to run instead of this build's, e.g. an older build
    /// kept aside, to compare before and after in one session.
    #[arg(long, value_name = "PATH", value_parser = existing_file)]
    service_bin: Option<PathBuf>,
    /// Also draw the charts of BENCHMARKS.md into DIR (created if need be),
    /// as SVG: e2e-create-throughput.svg (create) and
    /// e2e-fire-latency-<jobs>.svg (fire).
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
}

/// A number of at least 1.
fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(s: &str) -> Result<T, String> {
    number(s).and_then(|n: T| {
        if n >= T::from(1) {
            Ok(n)
        } else {
            Err("must be at least 1".to_owned())
        }
    })
}

/// Runs of one job: its attempts, from 1 to the retry policy's limit.
fn runs_per_job(s: &str) -> Result<u32, String> {
    at_least_one(s).and_then(|n: u32| {
        if n <= MAX_ATTEMPTS_LIMIT {
            Ok(n)
        } else {
            Err(format!("must be at most {MAX_ATTEMPTS_LIMIT}"))
        }
    })
}

/// Jobs of the console part: at least 100, so that every kind of job the
/// set mixes is there.
fn console_jobs(s: &str) -> Result<usize, String> {
    number(s).and_then(|n: usize| {
        if n >= 100 {
            Ok(n)
        } else {
            Err("must be at least 100".to_owned())
        }
    })
}

fn existing_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{s}: no such file"))
    }
}

/// What to run, every default resolved.
#[derive(Debug, Clone)]
pub struct Options {
    pub smoke: bool,
    pub runs: usize,
    pub parts: Vec<Part>,
    pub seed: u64,
    pub service_log: String,
    pub service_bin: PathBuf,
    pub stores: Vec<Store>,
    pub requests: usize,
    pub concurrency: usize,
    pub connections: usize,
    pub max_secs: f64,
    pub fire_stores: Vec<Store>,
    pub jobs: usize,
    pub fire_concurrency: Vec<usize>,
    pub partitions: Vec<i32>,
    pub window_ms: i64,
    pub lead_secs: f64,
    pub fetch_wait_ms: u64,
    pub grace_secs: f64,
    pub pg_waits: bool,
    pub disk_probe: bool,
    pub pg_options: Option<String>,
    pub perf: Option<String>,
    pub recovery_stores: Vec<Store>,
    pub recovery_jobs: usize,
    pub recurring_stores: Vec<Store>,
    pub recurring_jobs: usize,
    pub recurring_every_secs: u64,
    pub recurring_secs: u64,
    pub recurring_partitions: i32,
    pub history_stores: Vec<Store>,
    pub history_jobs: usize,
    pub history_runs: u32,
    pub console_stores: Vec<Store>,
    pub console_jobs: usize,
    pub replicas_scenarios: Vec<Scenario>,
    pub replicas_jobs: usize,
    pub replicas_window_ms: i64,
    pub replicas_look_ahead_secs: u64,
    pub replicas_recurring_jobs: usize,
    pub replicas_every_secs: u64,
    pub replicas_step_secs: u64,
    pub plot: Option<PathBuf>,
}

/// The options this process's arguments ask for; exits with a usage error
/// (2) on arguments it cannot run.
pub fn parse() -> Options {
    let (args, bare) = bench_args();
    let a = Args::parse_from(args);
    let smoke = bare || a.smoke;
    let pick = |full, small| if smoke { small } else { full };
    Options {
        smoke,
        runs: a.runs.unwrap_or(pick(3, 1)).max(1),
        parts: a.parts,
        seed: a.seed,
        service_log: a.service_log,
        service_bin: a
            .service_bin
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_scheduler-service"))),
        stores: a.stores,
        requests: a.requests.unwrap_or(pick(20_000, 200)).max(1),
        concurrency: a.concurrency.max(1),
        connections: a.connections.max(1),
        max_secs: a.max_secs.unwrap_or(if smoke { 20.0 } else { 60.0 }),
        fire_stores: a.fire_stores,
        jobs: a.jobs.unwrap_or(pick(10_000, 200)).max(1),
        fire_concurrency: a.fire_concurrency,
        partitions: a.partitions,
        window_ms: a.window_ms.max(1),
        lead_secs: a.lead_secs.unwrap_or(if smoke { 1.0 } else { 3.0 }),
        fetch_wait_ms: a.fetch_wait_ms.max(1),
        grace_secs: a.grace_secs.unwrap_or(if smoke { 10.0 } else { 30.0 }),
        pg_waits: a.pg_waits,
        disk_probe: a.disk_probe || smoke,
        pg_options: a.pg_options,
        perf: a.perf,
        recovery_stores: a.recovery_stores,
        recovery_jobs: a.recovery_jobs.unwrap_or(pick(100_000, 1_000)),
        recurring_stores: a.recurring_stores,
        recurring_jobs: a.recurring_jobs.unwrap_or(pick(10_000, 100)).max(1),
        recurring_every_secs: a.recurring_every_secs.unwrap_or(if smoke { 1 } else { 10 }),
        recurring_secs: a.recurring_secs.unwrap_or(if smoke { 3 } else { 120 }),
        recurring_partitions: a.recurring_partitions,
        history_stores: a.history_stores,
        history_jobs: a.history_jobs.unwrap_or(pick(20, 3)),
        history_runs: a.history_runs.unwrap_or(if smoke { 10 } else { 100 }),
        console_stores: a.console_stores,
        console_jobs: a.console_jobs.unwrap_or(pick(100_000, 300)),
        replicas_scenarios: a.replicas_scenarios.unwrap_or_else(|| {
            if smoke {
                vec![Scenario::Share]
            } else {
                vec![Scenario::Share, Scenario::Kill, Scenario::Scale]
            }
        }),
        replicas_jobs: a.replicas_jobs.unwrap_or(pick(30_000, 300)),
        replicas_window_ms: a
            .replicas_window_ms
            .unwrap_or(if smoke { 2_000 } else { 10_000 }),
        replicas_look_ahead_secs: a
            .replicas_look_ahead_secs
            .unwrap_or(if smoke { 6 } else { 60 }),
        replicas_recurring_jobs: a.replicas_recurring_jobs,
        replicas_every_secs: a.replicas_every_secs,
        replicas_step_secs: a.replicas_step_secs,
        plot: a.plot,
    }
}
