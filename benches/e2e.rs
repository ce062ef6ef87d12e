//! End-to-end benchmark of the service as it ships: the `scheduler-service`
//! binary runs as a child process (a fresh one per run, JSON logs piped back
//! here) against the servers of `scripts/services.sh up`: the Kafka-protocol
//! broker, the MongoDB-protocol server and PostgreSQL. Each run uses a fresh
//! collection or schema and fresh topics.
//!
//! Three parts:
//!
//! - `create`: CreateJob load. `--concurrency` calls in flight over
//!   `--connections` HTTP/2 connections, `--requests` calls (after a warm-up
//!   of a tenth, at most 100, not counted), jobs due a day later so that
//!   nothing fires; per store (`--stores mongodb,postgres,embedded`). A run stops
//!   issuing calls after `--max-secs` (the MongoDB-protocol server is slow).
//!   Reports calls per second, latency p50/p99/max, the service's CPU time
//!   and peak RSS, and the create events on the topic.
//! - `fire`: fire-to-consume latency. `--jobs` jobs are created ahead (after
//!   a pilot of 100 that measures the create rate) with due times uniform
//!   within one `--window-ms` window that opens `--lead-secs` after the
//!   expected end of the creation; a consumer assigned directly to every
//!   partition of the run topic (`fetch.wait.max.ms` = `--fetch-wait-ms`)
//!   records, per job, its arrival time minus the event's `ScheduleTime`.
//!   Reports p50/p99/max lateness and the drain time (last arrival − first
//!   due). Where the time goes: the event's `UpdatedAt` is the time the claim
//!   started (claim-start lateness), and the service's "job fired" log line
//!   gives the lateness when the claim returned (claimed lateness); arrival
//!   minus that is publish plus consume. Configurations: `--fire-stores`,
//!   `--fire-concurrency` (SCHEDULER_FIRE_CONCURRENCY) × `--partitions`
//!   (TOPIC_JOB_RUN_PARTITIONS); the service's KAFKA_FETCH_WAIT_MAX_MS is set
//!   to `--fetch-wait-ms` too (it only paces the run-result consumer).
//! - `recovery`: restart recovery with `--recovery-jobs` SCHEDULED jobs in
//!   each of `--recovery-stores` (PostgreSQL and the embedded store),
//!   inserted once through the store API (`JobDB::insert`, owing no event),
//!   due 10 to 50 minutes ahead within a one-hour look-ahead window. Each
//!   run starts the binary on that schema or folder and measures the time
//!   from spawning it to its log line "armed scheduled jobs from the store"
//!   (and the part of it between its first and that log line), and its peak
//!   RSS (VmHWM) once it listens; then stops it (SIGTERM). A baseline run on an
//!   empty store gives the fixed start-up cost and memory. Beside it, the
//!   store query (`scheduled_before`) and the arming (`Timer::arm_if_vacant`
//!   per job) are timed alone in this process.
//!
//! ```text
//! cargo bench --bench e2e                      # every part, 3 runs each
//! cargo bench --bench e2e -- --smoke           # tiny, well under a minute, for CI
//! cargo bench --bench e2e -- --parts create --stores postgres --concurrency 64 --requests 20000
//! cargo bench --bench e2e -- --parts fire --jobs 10000 --fire-concurrency 64,256 --partitions 1,4
//! cargo bench --bench e2e -- --parts recovery --recovery-stores embedded,postgres --recovery-jobs 100000
//! ```
//!
//! Without any argument (as `cargo test --all-targets` runs it) it runs
//! `--smoke`. It exits with failure when a call fails, a fired job does not
//! arrive, or a recovery does not arm every job.
//!
//! Server addresses as in the tests: `TEST_MONGODB_URI`, `TEST_POSTGRES_URI`,
//! `TEST_KAFKA_BROKERS`. Service logs are kept under
//! `target/tmp/e2e/` (one file per run).

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    io::{BufRead, BufReader, Write as _},
    path::PathBuf,
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use scheduler_service::{
    broker::JobEvent,
    config::vars,
    domain::{Job, JobSpec, JobType, PendingEvents, now},
    grpc::proto::{self, jobs_service_client::JobsServiceClient},
    store::{JobDB, embedded::EmbeddedJobDB, postgres::PgJobDB},
    timer::Timer,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

mod support;

use support::{
    bench_args, cpu_seconds, load_average, machine, now_us, number, numbers, stat_cpu_seconds,
    status_kib,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(msg) => {
            eprintln!("{msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(run(options));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

const USAGE: &str = "usage: e2e [--smoke] [--runs K] [--parts create,fire,recovery] [--seed X]
  [--service-log FILTER (RUST_LOG of the service, default info)]
  create:   [--stores mongodb,postgres,embedded] [--requests N] [--concurrency C] [--connections K] [--max-secs S]
  fire:     [--fire-stores postgres[,mongodb,embedded]] [--jobs N] [--fire-concurrency C[,C..]] [--partitions P[,P..]]
            [--window-ms MS] [--lead-secs S] [--fetch-wait-ms MS] [--grace-secs S]
            [--pg-waits (sample the service's PostgreSQL sessions while firing)]
  [--pg-options OPTS (server options of the service's PostgreSQL sessions, for
            experiments: e.g. \"-c synchronous_commit=off\")]
            [--perf FILE (`perf record -a -g` of the whole machine while firing, to FILE-<run>)]
  recovery: [--recovery-stores postgres,embedded] [--recovery-jobs N]
  [--service-bin PATH (the service binary to run instead of this build's, e.g. an
            older build kept aside, to compare before and after in one session)]
Without any argument (as `cargo test --all-targets` runs it) it runs --smoke.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Create,
    Fire,
    Recovery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Store {
    MongoDb,
    Postgres,
    /// The embedded redb store (no database server), in a fresh folder.
    Embedded,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::MongoDb => "mongodb",
            Store::Postgres => "postgres",
            Store::Embedded => "embedded",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "mongodb" | "mongo" | "polodb" => Some(Store::MongoDb),
            "postgres" | "postgresql" | "pg" => Some(Store::Postgres),
            "embedded" | "redb" => Some(Store::Embedded),
            _ => None,
        }
    }
}

/// The data folder of an embedded-store run.
fn embedded_dir(namespace: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e-data")
        .join(namespace)
}

#[derive(Debug, Clone)]
struct Options {
    smoke: bool,
    runs: usize,
    parts: Vec<Part>,
    seed: u64,
    service_log: String,
    stores: Vec<Store>,
    requests: usize,
    concurrency: usize,
    connections: usize,
    max_secs: f64,
    fire_stores: Vec<Store>,
    jobs: usize,
    fire_concurrency: Vec<usize>,
    partitions: Vec<i32>,
    window_ms: i64,
    lead_secs: f64,
    fetch_wait_ms: u64,
    grace_secs: f64,
    pg_waits: bool,
    pg_options: Option<String>,
    perf: Option<String>,
    recovery_stores: Vec<Store>,
    recovery_jobs: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let (smoke, args) = bench_args(args);
    let mut o = Options {
        smoke,
        runs: if smoke { 1 } else { 3 },
        parts: vec![Part::Create, Part::Fire, Part::Recovery],
        seed: 7,
        service_log: "info".into(),
        stores: vec![Store::MongoDb, Store::Postgres, Store::Embedded],
        requests: if smoke { 200 } else { 20_000 },
        concurrency: 64,
        connections: 4,
        max_secs: if smoke { 20.0 } else { 60.0 },
        fire_stores: vec![Store::Postgres],
        jobs: if smoke { 200 } else { 10_000 },
        fire_concurrency: vec![256],
        partitions: vec![1],
        window_ms: 1000,
        lead_secs: if smoke { 1.0 } else { 3.0 },
        fetch_wait_ms: 10,
        grace_secs: if smoke { 10.0 } else { 30.0 },
        pg_waits: false,
        pg_options: None,
        perf: None,
        recovery_stores: vec![Store::Postgres, Store::Embedded],
        recovery_jobs: if smoke { 1_000 } else { 100_000 },
    };
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let mut value = || {
            it.next()
                .copied()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg {
            "--smoke" => {}
            "--runs" => o.runs = number::<usize>(value()?)?.max(1),
            "--parts" => {
                o.parts = value()?
                    .split(',')
                    .map(|p| match p {
                        "create" => Ok(Part::Create),
                        "fire" => Ok(Part::Fire),
                        "recovery" => Ok(Part::Recovery),
                        other => Err(format!("unknown part {other}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--seed" => o.seed = number(value()?)?,
            "--service-log" => o.service_log = value()?.to_owned(),
            "--stores" => o.stores = stores(value()?)?,
            "--requests" => o.requests = number::<usize>(value()?)?.max(1),
            "--concurrency" => o.concurrency = number::<usize>(value()?)?.max(1),
            "--connections" => o.connections = number::<usize>(value()?)?.max(1),
            "--max-secs" => o.max_secs = number(value()?)?,
            "--fire-stores" => o.fire_stores = stores(value()?)?,
            "--jobs" => o.jobs = number::<usize>(value()?)?.max(1),
            "--fire-concurrency" => o.fire_concurrency = numbers(value()?)?,
            "--partitions" => o.partitions = numbers(value()?)?,
            "--window-ms" => o.window_ms = number::<i64>(value()?)?.max(1),
            "--lead-secs" => o.lead_secs = number(value()?)?,
            "--fetch-wait-ms" => o.fetch_wait_ms = number::<u64>(value()?)?.max(1),
            "--grace-secs" => o.grace_secs = number(value()?)?,
            "--pg-waits" => o.pg_waits = true,
            "--pg-options" => o.pg_options = Some(value()?.to_owned()),
            "--perf" => o.perf = Some(value()?.to_owned()),
            "--recovery-jobs" => o.recovery_jobs = number(value()?)?,
            "--recovery-stores" => o.recovery_stores = stores(value()?)?,
            "--service-bin" => {
                let path = PathBuf::from(value()?);
                if !path.is_file() {
                    return Err(format!("--service-bin {}: no such file", path.display()));
                }
                // Set once per process; a second --service-bin is refused.
                SERVICE_BIN
                    .set(path)
                    .map_err(|_| "--service-bin given twice".to_owned())?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.fire_concurrency.contains(&0) || o.partitions.iter().any(|&p| p < 1) {
        return Err("--fire-concurrency and --partitions must be at least 1".into());
    }
    Ok(o)
}

fn stores(s: &str) -> Result<Vec<Store>, String> {
    s.split(',')
        .map(|name| Store::parse(name).ok_or_else(|| format!("unknown store {name}")))
        .collect()
}

async fn run(o: Options) -> bool {
    eprintln!(
        "e2e: {} run(s) per configuration; {}; load average {}",
        o.runs,
        machine(),
        load_averages()
    );
    eprintln!(
        "e2e: {}service logs in {}",
        if o.smoke { "smoke configuration; " } else { "" },
        log_dir().display()
    );
    let mut ok = true;
    if o.parts.contains(&Part::Create) {
        ok &= create_part(&o).await;
    }
    if o.parts.contains(&Part::Fire) {
        ok &= fire_part(&o).await;
    }
    if o.parts.contains(&Part::Recovery) {
        ok &= recovery_part(&o).await;
    }
    ok
}

// ---------------------------------------------------------------------------
// Shared helpers: servers, the service process, figures.

fn mongodb_uri() -> String {
    std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/".to_owned())
}

fn postgres_uri() -> String {
    std::env::var("TEST_POSTGRES_URI")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

fn kafka_brokers() -> String {
    std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn unique() -> String {
    bson::oid::ObjectId::new().to_hex()
}

fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e")
}

fn load_averages() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time (user + system, s) of every live process, summed by group:
/// scheduler-service, postgres, tansu, polodb, this benchmark, the rest.
fn cpu_by_group() -> [f64; 6] {
    let mut groups = [0.0; 6];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("", |(comm, _)| comm);
        let group = match comm {
            c if c.starts_with("scheduler-serv") => 0,
            "postgres" => 1,
            "tansu" => 2,
            "polodb" => 3,
            c if c.starts_with("e2e-") => 4,
            _ => 5,
        };
        groups[group] += stat_cpu_seconds(&stat);
    }
    groups
}

/// CPU used by each group of processes over a measured phase.
#[derive(Debug, Clone)]
struct CpuUse {
    wall_s: f64,
    by_group: [f64; 6],
}

impl CpuUse {
    fn between(before: &[f64; 6], after: &[f64; 6], wall: Duration) -> Self {
        let mut by_group = [0.0; 6];
        for (i, g) in by_group.iter_mut().enumerate() {
            // Processes that ended meanwhile would make a group negative.
            *g = (after[i] - before[i]).max(0.0);
        }
        CpuUse {
            wall_s: wall.as_secs_f64(),
            by_group,
        }
    }
}

const CPU_HEADER: &str = "| configuration | run | wall (s) | CPU available (s) | scheduler-service | postgres | broker (tansu) | polodb | benchmark client | other | idle |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

fn cpu_row(label: &str, run: usize, c: &CpuUse) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let available = c.wall_s * cores;
    let used: f64 = c.by_group.iter().sum();
    let mut row = format!("| {label} | {run} | {:.2} | {available:.2} |", c.wall_s);
    for g in c.by_group {
        let _ = write!(row, " {g:.2} |");
    }
    let _ = write!(row, " {:.2} |", (available - used).max(0.0));
    row
}

fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).expect("nanos"),
    }
}

/// Percentile `q` of sorted values (nearest rank), as f64.
fn pick(sorted: &[i64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64)
}

/// (p50, p99, max) of values in µs, in ms.
fn percentiles_ms(mut v: Vec<i64>) -> (Option<f64>, Option<f64>, Option<f64>) {
    v.sort_unstable();
    let ms = |q| pick(&v, q).map(|us| us / 1000.0);
    (ms(0.50), ms(0.99), ms(1.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1}"))
}

fn mid<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[(v.len() - 1) / 2]
}

fn mid_opt(v: Vec<Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.into_iter().flatten().collect();
    (!v.is_empty()).then(|| mid(v))
}

/// What the log reader thread picked out of the service's JSON log lines.
#[derive(Default)]
struct LogState {
    /// When the first log line arrived, and its own timestamp.
    first: Option<(Instant, DateTime<Utc>)>,
    /// When "armed scheduled jobs from the store" arrived, its timestamp and count.
    armed: Option<(Instant, DateTime<Utc>, usize)>,
    /// `lateness_ms` of each "job fired" line.
    fired_lateness_ms: Vec<i64>,
    /// WARN and ERROR lines (the first 1,000): when they arrived, and what.
    warnings: Vec<(Instant, String)>,
    /// The pipe closed (the process exited).
    closed: bool,
}

/// The service binary as a child process, its stderr read by a thread that
/// copies it to a log file and picks out the lines the benchmark needs.
struct Service {
    child: Option<Child>,
    pid: u32,
    port: u16,
    log: Arc<Mutex<LogState>>,
    log_path: PathBuf,
    /// When it was first seen listening.
    listening: Instant,
}

/// The binary `--service-bin` names, if given.
static SERVICE_BIN: OnceLock<PathBuf> = OnceLock::new();

/// The service binary to run: `--service-bin`, else the one built with this
/// benchmark.
fn service_bin() -> PathBuf {
    SERVICE_BIN
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_scheduler-service")))
}

impl Service {
    /// Starts the binary with these variables and waits until it listens.
    async fn start(env: &[(String, String)], name: &str) -> Result<(Service, Instant), String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        std::fs::create_dir_all(log_dir()).map_err(|e| e.to_string())?;
        let log_path = log_dir().join(format!("{name}-{}.log", unique()));
        let mut file = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let spawned = Instant::now();
        let mut child = Command::new(service_bin())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(vars::SERVER_HOST, "127.0.0.1")
            .env(vars::SERVER_PORT, port.to_string())
            .env(vars::METRICS_PORT, "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the service binary: {e}"))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(LogState::default()));
        let state = log.clone();
        std::thread::spawn(move || {
            let reader = BufReader::new(stderr);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let _ = writeln!(file, "{line}");
                scan_line(&line, at, &state);
            }
            state.lock().expect("log state").closed = true;
        });
        let mut service = Service {
            pid: child.id(),
            child: Some(child),
            port,
            log,
            log_path,
            listening: spawned,
        };
        service.wait_listening(Duration::from_secs(120)).await?;
        service.listening = Instant::now();
        Ok((service, spawned))
    }

    async fn wait_listening(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if self.log.lock().expect("log state").closed || Instant::now() > deadline {
                return Err(format!(
                    "the service did not listen on {}; see {}",
                    self.port,
                    self.log_path.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn clients(&self, connections: usize) -> Vec<JobsServiceClient<Channel>> {
        let mut clients = Vec::new();
        for _ in 0..connections {
            let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
                .expect("valid URI")
                .connect()
                .await
                .expect("connects to the service");
            clients.push(JobsServiceClient::new(channel));
        }
        clients
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.pid.to_string())
    }

    fn peak_rss_mb(&self) -> f64 {
        status_kib(&self.pid.to_string(), "VmHWM:") as f64 / 1024.0
    }

    fn rss_mb(&self) -> f64 {
        status_kib(&self.pid.to_string(), "VmRSS:") as f64 / 1024.0
    }

    /// SIGTERM, and waits for the exit (SIGKILL after 15 s).
    async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let _ = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        })
        .await;
    }

    /// Warnings logged since it listens (start-up ones, such as running
    /// without authentication, are expected): how many, and the first three.
    fn warnings(&self) -> (usize, Vec<String>) {
        let log = self.log.lock().expect("log state");
        let since: Vec<&String> = log
            .warnings
            .iter()
            .filter(|(at, _)| *at >= self.listening)
            .map(|(_, m)| m)
            .collect();
        (since.len(), since.into_iter().take(3).cloned().collect())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn scan_line(line: &str, at: Instant, state: &Mutex<LogState>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    let message = value.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let level = value.get("level").and_then(|m| m.as_str()).unwrap_or("");
    let timestamp = value
        .get("timestamp")
        .and_then(|t| t.as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let mut s = state.lock().expect("log state");
    if s.first.is_none()
        && let Some(ts) = timestamp
    {
        s.first = Some((at, ts));
    }
    match message {
        "job fired" => {
            if let Some(l) = value.get("lateness_ms").and_then(serde_json::Value::as_i64) {
                s.fired_lateness_ms.push(l);
            }
        }
        "armed scheduled jobs from the store" => {
            let count = value
                .get("count")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            s.armed = Some((
                at,
                timestamp.unwrap_or_default(),
                usize::try_from(count).unwrap_or(0),
            ));
        }
        _ => {}
    }
    if (level == "WARN" || level == "ERROR") && s.warnings.len() < 1000 {
        let error = value.get("error").and_then(|e| e.as_str()).unwrap_or("");
        s.warnings
            .push((at, format!("{message} {error}").trim().to_owned()));
    }
}

/// The variables of one service instance: the given store namespace, fresh
/// topics and group, JSON logs, no config files.
fn service_env(o: &Options, store: Store, namespace: &str) -> Vec<(String, String)> {
    let suffix = unique();
    let mut env: Vec<(&str, String)> = vec![
        (vars::CONFIG_ENV_FILE, "/dev/null".into()),
        (vars::TOPICS_FILE, "/dev/null".into()),
        // JSON logs (production would also insist on an auth key).
        (vars::ENVIRONMENT, "staging".into()),
        (vars::RUST_LOG, o.service_log.clone()),
        (vars::DATABASE_DB_NAME, namespace.to_owned()),
        (vars::DATABASE_TIMEOUT_MS, "5000".into()),
        (vars::KAFKA_BROKERS, kafka_brokers()),
        (vars::KAFKA_FETCH_WAIT_MAX_MS, o.fetch_wait_ms.to_string()),
        (vars::TOPIC_JOB_CREATE, format!("e2e-job-create-{suffix}")),
        (vars::TOPIC_JOB_UPDATE, format!("e2e-job-update-{suffix}")),
        (vars::TOPIC_JOB_RUN, format!("e2e-job-run-{suffix}")),
        (
            vars::TOPIC_JOB_RUN_RESULT,
            format!("e2e-job-run-result-{suffix}"),
        ),
        (
            vars::TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID,
            format!("e2e-group-{suffix}"),
        ),
        (vars::SHUTDOWN_GRACE_SECS, "5".into()),
    ];
    match store {
        Store::MongoDb => {
            env.push((vars::DATABASE_URI, mongodb_uri()));
            // The MongoDB-protocol server ignores database names.
            env.push((vars::DATABASE_COLLECTION, namespace.to_owned()));
        }
        Store::Postgres => {
            let mut uri = postgres_uri();
            if let Some(options) = &o.pg_options {
                let encoded = percent_encoding::utf8_percent_encode(
                    options,
                    percent_encoding::NON_ALPHANUMERIC,
                );
                let sep = if uri.contains('?') { '&' } else { '?' };
                uri = format!("{uri}{sep}options={encoded}");
            }
            env.push((vars::DATABASE_URI, uri));
        }
        Store::Embedded => {
            // No database URI or connection part selects the embedded store.
            env.push((
                vars::DATA_DIR,
                embedded_dir(namespace).to_string_lossy().into_owned(),
            ));
        }
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: impl ToString) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_string()));
}

fn var<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Drops the schema or collection of a finished run (best effort).
async fn drop_namespace(store: Store, namespace: &str) {
    match store {
        Store::Postgres => {
            if let Ok((client, connection)) =
                tokio_postgres::connect(&postgres_uri(), tokio_postgres::NoTls).await
            {
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{namespace}\" CASCADE"))
                    .await;
            }
        }
        Store::MongoDb => {
            if let Ok(client) = mongodb::Client::with_uri_str(mongodb_uri()).await {
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    client
                        .database(namespace)
                        .collection::<bson::Document>(namespace)
                        .drop(),
                )
                .await;
            }
        }
        Store::Embedded => {
            let _ = std::fs::remove_dir_all(embedded_dir(namespace));
        }
    }
}

/// The events on a topic and the distinct jobs they name, read from the
/// beginning of every partition until nothing came for a second (30 s at
/// most).
fn topic_events(topic: &str) -> Option<(usize, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("e2e-count-{}", unique()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let partitions = metadata.topics().first()?.partitions().len();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, i32::try_from(p).ok()?, Offset::Beginning)
            .ok()?;
    }
    consumer.assign(&assignment).ok()?;
    let (mut events, mut keys) = (0, HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            events += 1;
            keys.insert(message.key().unwrap_or_default().to_vec());
            last = Instant::now();
        }
    }
    Some((events, keys.len()))
}

const JOB_DATA: &str = r#"{"SourceAddress":"a@example.com","DestinationAddress":"b@example.com","Subject":"s","Message":"m"}"#;

/// What a batch of CreateJob calls gave.
struct Load {
    /// Latency of each successful call, µs.
    latencies_us: Vec<i64>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

/// Sends CreateJob calls `0..n` (the job of call `i` due at `due_ms(i)`),
/// `concurrency` at a time spread over `clients`, until all are done or
/// `deadline` (no new call after it).
async fn create_load(
    clients: &[JobsServiceClient<Channel>],
    n: usize,
    concurrency: usize,
    deadline: Option<Instant>,
    due_ms: Arc<dyn Fn(usize) -> i64 + Send + Sync>,
) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let mut client = clients[w % clients.len()].clone();
            let (next, due_ms) = (next.clone(), due_ms.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut first_error = None;
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let request = proto::CreateJobRequest {
                        name: format!("e2e-{i}"),
                        description: "end-to-end benchmark".into(),
                        schedule_time: Some(timestamp_ms(due_ms(i))),
                        job_type: proto::JobType::Email.into(),
                        job_data: JOB_DATA.into(),
                    };
                    let t = Instant::now();
                    match client.create_job(request).await {
                        Ok(_) => latencies.push(t.elapsed().as_micros() as i64),
                        Err(status) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| status.to_string());
                        }
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut load = Load {
        latencies_us: Vec::with_capacity(n),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        let (latencies, errors, first_error) = worker.await.expect("worker");
        load.latencies_us.extend(latencies);
        load.errors += errors;
        if load.first_error.is_none() {
            load.first_error = first_error;
        }
    }
    load.elapsed = start.elapsed();
    load
}

// ---------------------------------------------------------------------------
// Part 1: CreateJob load.

#[derive(Debug, Clone)]
struct CreateOutcome {
    store: Store,
    requested: usize,
    ok: usize,
    errors: usize,
    secs: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    events: Option<i64>,
    cpu_s: f64,
    peak_rss_mb: f64,
    warnings: usize,
    load: f64,
    note: String,
    run: usize,
    cpu_use: Option<CpuUse>,
}

impl CreateOutcome {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

const CREATE_HEADER: &str = "| store | concurrency | calls ok | errors | time (s) | calls per s | p50 (ms) | p99 (ms) | max (ms) | create events | service CPU (s) | service peak RSS (MB) | load | note |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn create_row(c: &CreateOutcome, concurrency: usize, note: &str) -> String {
    format!(
        "| {} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {:.2} | {:.1} | {:.2} | {} |",
        c.store.name(),
        concurrency,
        c.ok,
        c.errors,
        c.secs,
        c.rate(),
        ms(c.p50_ms),
        ms(c.p99_ms),
        ms(c.max_ms),
        c.events.map_or_else(|| "–".into(), |e| e.to_string()),
        c.cpu_s,
        c.peak_rss_mb,
        c.load,
        joined_notes([note, &c.note])
    )
}

/// The non-empty notes, joined for a table cell.
fn joined_notes<'a>(notes: impl IntoIterator<Item = &'a str>) -> String {
    notes
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

async fn create_part(o: &Options) -> bool {
    println!(
        "\n## CreateJob load ({} calls, {} in flight over {} connections, jobs due in a day)\n\n{CREATE_HEADER}",
        o.requests, o.concurrency, o.connections
    );
    let mut results: Vec<CreateOutcome> = Vec::new();
    let mut ok = true;
    for run in 0..o.runs {
        for &store in &o.stores {
            match create_run(o, store, run + 1).await {
                Ok(outcome) => {
                    println!(
                        "{}",
                        create_row(&outcome, o.concurrency, &format!("run {}", run + 1))
                    );
                    if outcome.errors > 0 || outcome.ok == 0 {
                        ok = false;
                    }
                    results.push(outcome);
                }
                Err(err) => {
                    ok = false;
                    println!("| {} | (run {} failed: {err}) |", store.name(), run + 1);
                }
            }
        }
    }
    println!("\n### Medians of {} run(s)\n\n{CREATE_HEADER}", o.runs);
    for &store in &o.stores {
        let runs: Vec<&CreateOutcome> = results.iter().filter(|r| r.store == store).collect();
        if runs.is_empty() {
            continue;
        }
        let f = |g: fn(&CreateOutcome) -> f64| mid(runs.iter().map(|r| g(r)).collect());
        let u = |g: fn(&CreateOutcome) -> usize| mid(runs.iter().map(|r| g(r)).collect());
        let m = CreateOutcome {
            store,
            requested: runs[0].requested,
            ok: u(|r| r.ok),
            errors: u(|r| r.errors),
            // The median rate, as a time for the median count.
            secs: u(|r| r.ok) as f64 / f(CreateOutcome::rate),
            p50_ms: mid_opt(runs.iter().map(|r| r.p50_ms).collect()),
            p99_ms: mid_opt(runs.iter().map(|r| r.p99_ms).collect()),
            max_ms: mid_opt(runs.iter().map(|r| r.max_ms).collect()),
            events: Some(mid(runs.iter().map(|r| r.events.unwrap_or(-1)).collect()))
                .filter(|&e| e >= 0),
            cpu_s: f(|r| r.cpu_s),
            peak_rss_mb: f(|r| r.peak_rss_mb),
            warnings: u(|r| r.warnings),
            load: f(|r| r.load),
            note: String::new(),
            run: 0,
            cpu_use: None,
        };
        println!(
            "{}",
            create_row(&m, o.concurrency, &format!("median of {}", runs.len()))
        );
    }
    println!("\n### CPU time by process while the calls ran (s)\n\n{CPU_HEADER}");
    for r in &results {
        if let Some(c) = &r.cpu_use {
            println!("{}", cpu_row(r.store.name(), r.run, c));
        }
    }
    ok
}

async fn create_run(o: &Options, store: Store, run: usize) -> Result<CreateOutcome, String> {
    let load_avg = load_average();
    let namespace = format!("e2e_{}", unique());
    let env = service_env(o, store, &namespace);
    let (service, _) = Service::start(&env, &format!("create-{}", store.name())).await?;
    let clients = service.clients(o.connections).await;
    let far = now_us() / 1000 + 24 * 3600 * 1000;
    let due: Arc<dyn Fn(usize) -> i64 + Send + Sync> = Arc::new(move |_| far);
    // Warm-up: connections, prepared statements, the producer's connection.
    let warmup = (o.requests / 10).clamp(1, 100);
    let w = create_load(&clients, warmup, o.concurrency, None, due.clone()).await;
    if w.errors > 0 {
        eprintln!(
            "create {}: {} warm-up errors: {:?}",
            store.name(),
            w.errors,
            w.first_error
        );
    }
    let cpu_before = service.cpu_seconds();
    let groups_before = cpu_by_group();
    let deadline = Instant::now() + Duration::from_secs_f64(o.max_secs);
    let load = create_load(&clients, o.requests, o.concurrency, Some(deadline), due).await;
    let cpu = service.cpu_seconds() - cpu_before;
    let cpu_use = CpuUse::between(&groups_before, &cpu_by_group(), load.elapsed);
    let peak_rss_mb = service.peak_rss_mb();
    let events = topic_events(var(&env, vars::TOPIC_JOB_CREATE));
    let (warnings, first) = service.warnings();
    service.stop().await;
    drop_namespace(store, &namespace).await;
    let ok = load.latencies_us.len();
    let mut notes = Vec::new();
    if ok + load.errors < o.requests {
        notes.push(format!(
            "stopped after {} s: {} of {} calls",
            o.max_secs,
            ok + load.errors,
            o.requests
        ));
    }
    if let Some(err) = &load.first_error {
        notes.push(format!("first error: {err}"));
    }
    if let Some((events, jobs)) = events
        && events != jobs
    {
        notes.push(format!("{} duplicate create events", events - jobs));
    }
    if warnings > 0 {
        notes.push(format!("{warnings} service warnings, first: {first:?}"));
    }
    let (p50, p99, max) = percentiles_ms(load.latencies_us);
    Ok(CreateOutcome {
        store,
        requested: o.requests,
        ok,
        errors: load.errors,
        secs: load.elapsed.as_secs_f64(),
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        // Warm-up calls published create events too.
        events: events.map(|(e, _)| e as i64 - (warmup - w.errors) as i64),
        cpu_s: cpu,
        peak_rss_mb,
        warnings,
        load: load_avg,
        note: notes.join("; "),
        run,
        cpu_use: Some(cpu_use),
    })
}

// ---------------------------------------------------------------------------
// Part 2: fire-to-consume latency.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FireConfig {
    store: Store,
    fire_concurrency: usize,
    partitions: i32,
}

#[derive(Debug, Clone)]
struct FireOutcome {
    config: FireConfig,
    jobs: usize,
    created_per_s: f64,
    /// The last create returned after the first due time.
    overran: bool,
    arrived: usize,
    duplicates: usize,
    early: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    drain_ms: Option<f64>,
    /// UpdatedAt − ScheduleTime: lateness when the claim started.
    claim_start_p50_ms: Option<f64>,
    claim_start_p99_ms: Option<f64>,
    /// The service's "job fired" lateness_ms: when the claim returned.
    claimed_p50_ms: Option<f64>,
    claimed_p99_ms: Option<f64>,
    cpu_s: f64,
    warnings: usize,
    load: f64,
    note: String,
    run: usize,
    cpu_use: Option<CpuUse>,
    /// Shares of the samples of the service's PostgreSQL sessions, by
    /// state and wait event (`--pg-waits`).
    pg_waits: Vec<(String, f64)>,
}

const FIRE_HEADER: &str = "| store | fire concurrency | run partitions | jobs | created per s | arrived | dup | p50 (ms) | p99 (ms) | max (ms) | drain (ms) | claim start p50 / p99 (ms) | claimed p50 / p99 (ms) | service CPU (s) | load | note |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn fire_row(f: &FireOutcome, note: &str) -> String {
    let mut notes: Vec<String> = [note, &f.note]
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| (*s).to_owned())
        .collect();
    if f.overran {
        notes.push("creation overran the first due time".into());
    }
    if f.early > 0 {
        notes.push(format!("{} arrived early", f.early));
    }
    format!(
        "| {} | {} | {} | {} | {:.0} | {} ({:.1} %) | {} | {} | {} | {} | {} | {} / {} | {} / {} | {:.2} | {:.2} | {} |",
        f.config.store.name(),
        f.config.fire_concurrency,
        f.config.partitions,
        f.jobs,
        f.created_per_s,
        f.arrived,
        100.0 * f.arrived as f64 / f.jobs.max(1) as f64,
        f.duplicates,
        ms(f.p50_ms),
        ms(f.p99_ms),
        ms(f.max_ms),
        ms(f.drain_ms),
        ms(f.claim_start_p50_ms),
        ms(f.claim_start_p99_ms),
        ms(f.claimed_p50_ms),
        ms(f.claimed_p99_ms),
        f.cpu_s,
        f.load,
        notes.join("; ")
    )
}

async fn fire_part(o: &Options) -> bool {
    let mut configs = Vec::new();
    for &store in &o.fire_stores {
        for &fire_concurrency in &o.fire_concurrency {
            for &partitions in &o.partitions {
                configs.push(FireConfig {
                    store,
                    fire_concurrency,
                    partitions,
                });
            }
        }
    }
    configs.sort();
    println!(
        "\n## Fire to consume ({} jobs due within {} ms, consumer fetch.wait.max.ms {})\n\n{FIRE_HEADER}",
        o.jobs, o.window_ms, o.fetch_wait_ms
    );
    let mut results: Vec<FireOutcome> = Vec::new();
    let mut ok = true;
    for run in 0..o.runs {
        for &config in &configs {
            let seed = o.seed + run as u64;
            match fire_run(o, config, seed, run + 1).await {
                Ok(outcome) => {
                    println!("{}", fire_row(&outcome, &format!("run {}", run + 1)));
                    if outcome.arrived < outcome.jobs {
                        ok = false;
                    }
                    results.push(outcome);
                }
                Err(err) => {
                    ok = false;
                    println!(
                        "| {} | {} | {} | (run {} failed: {err}) |",
                        config.store.name(),
                        config.fire_concurrency,
                        config.partitions,
                        run + 1
                    );
                }
            }
        }
    }
    println!("\n### Medians of {} run(s)\n\n{FIRE_HEADER}", o.runs);
    let mut medians = Vec::new();
    for &config in &configs {
        let runs: Vec<&FireOutcome> = results.iter().filter(|r| r.config == config).collect();
        if runs.is_empty() {
            continue;
        }
        let f = |g: fn(&FireOutcome) -> f64| mid(runs.iter().map(|r| g(r)).collect());
        let u = |g: fn(&FireOutcome) -> usize| mid(runs.iter().map(|r| g(r)).collect());
        let p = |g: fn(&FireOutcome) -> Option<f64>| mid_opt(runs.iter().map(|r| g(r)).collect());
        let overran = runs.iter().filter(|r| r.overran).count();
        let m = FireOutcome {
            config,
            jobs: runs[0].jobs,
            created_per_s: f(|r| r.created_per_s),
            overran: overran > 0,
            arrived: u(|r| r.arrived),
            duplicates: u(|r| r.duplicates),
            early: u(|r| r.early),
            p50_ms: p(|r| r.p50_ms),
            p99_ms: p(|r| r.p99_ms),
            max_ms: p(|r| r.max_ms),
            drain_ms: p(|r| r.drain_ms),
            claim_start_p50_ms: p(|r| r.claim_start_p50_ms),
            claim_start_p99_ms: p(|r| r.claim_start_p99_ms),
            claimed_p50_ms: p(|r| r.claimed_p50_ms),
            claimed_p99_ms: p(|r| r.claimed_p99_ms),
            cpu_s: f(|r| r.cpu_s),
            warnings: u(|r| r.warnings),
            load: f(|r| r.load),
            note: if overran > 0 {
                format!("{overran} of {} runs overran", runs.len())
            } else {
                String::new()
            },
            run: 0,
            cpu_use: None,
            pg_waits: Vec::new(),
        };
        println!("{}", fire_row(&m, &format!("median of {}", runs.len())));
        medians.push(m);
    }
    let mut targets = String::from("\n### Targets\n\n");
    let mark = |met: bool| if met { "met" } else { "NOT met" };
    for m in &medians {
        let c = m.config;
        let _ = writeln!(
            targets,
            "- {} / fire concurrency {} / {} partition(s): all {} arrive: {} ({}); p99 lateness ≤ 250 ms: {} ({} ms)",
            c.store.name(),
            c.fire_concurrency,
            c.partitions,
            m.jobs,
            mark(m.arrived == m.jobs),
            m.arrived,
            mark(m.p99_ms.is_some_and(|p| p <= 250.0)),
            ms(m.p99_ms)
        );
    }
    print!("{targets}");
    println!(
        "\n### CPU time by process from 200 ms before the window opened until the last arrival (s)\n\n{CPU_HEADER}"
    );
    let label = |c: FireConfig| {
        format!(
            "{} / {} / {}",
            c.store.name(),
            c.fire_concurrency,
            c.partitions
        )
    };
    for r in &results {
        if let Some(c) = &r.cpu_use {
            println!("{}", cpu_row(&label(r.config), r.run, c));
        }
    }
    if results.iter().any(|r| !r.pg_waits.is_empty()) {
        println!(
            "\n### The service's PostgreSQL sessions during the firing (share of samples every 10 ms, by state and wait event)\n"
        );
        for r in results.iter().filter(|r| !r.pg_waits.is_empty()) {
            let waits: Vec<String> = r
                .pg_waits
                .iter()
                .map(|(k, v)| format!("{k} {:.0} %", v * 100.0))
                .collect();
            println!("- {} run {}: {}", label(r.config), r.run, waits.join(", "));
        }
    }
    ok
}

/// One message read off the run topic.
struct Arrival {
    key: String,
    firing_key: String,
    received_us: i64,
    schedule_us: Option<i64>,
    updated_us: Option<i64>,
}

/// Reads every partition of `topic` from the beginning on a thread of its
/// own, stamping each message with the wall clock as it is polled.
fn spawn_reader(
    topic: &str,
    partitions: i32,
    fetch_wait_ms: u64,
    stop: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
) -> std::thread::JoinHandle<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("e2e-reader-{}", unique()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    std::thread::spawn(move || {
        let mut reported = false;
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(50)) {
                None => {}
                Some(Err(err)) if !reported => {
                    eprintln!("fire: reader: {err} (the topic may still be propagating)");
                    reported = true;
                }
                Some(Err(_)) => {}
                Some(Ok(message)) => {
                    let received_us = now_us();
                    let key = String::from_utf8_lossy(message.key().unwrap_or_default());
                    let firing_key = message
                        .headers()
                        .and_then(|h| {
                            h.iter()
                                .find(|h| h.key == "firing-key")
                                .and_then(|h| h.value)
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                        })
                        .unwrap_or_default();
                    let event: Option<JobEvent> =
                        serde_json::from_slice(message.payload().unwrap_or_default()).ok();
                    let micros = |t: &str| {
                        DateTime::parse_from_rfc3339(t)
                            .ok()
                            .map(|t| t.timestamp_micros())
                    };
                    arrivals.lock().expect("arrivals").push(Arrival {
                        key: key.into_owned(),
                        firing_key,
                        received_us,
                        schedule_us: event.as_ref().and_then(|e| micros(&e.schedule_time)),
                        updated_us: event.as_ref().and_then(|e| micros(&e.updated_at)),
                    });
                }
            }
        }
    })
}

async fn fire_run(
    o: &Options,
    config: FireConfig,
    seed: u64,
    run: usize,
) -> Result<FireOutcome, String> {
    let load_avg = load_average();
    let n = o.jobs;
    let namespace = format!("e2e_{}", unique());
    let mut env = service_env(o, config.store, &namespace);
    set(
        &mut env,
        vars::SCHEDULER_FIRE_CONCURRENCY,
        config.fire_concurrency,
    );
    set(&mut env, vars::TOPIC_JOB_RUN_PARTITIONS, config.partitions);
    // Long enough that every job is armed when it is created, whatever the
    // creation time.
    set(&mut env, vars::SCHEDULER_LOOK_AHEAD_SECS, 3600);
    let (service, _) = Service::start(&env, &format!("fire-{}", config.store.name())).await?;
    let clients = service.clients(o.connections).await;

    // Pilot: the create rate of this service (jobs due in a day), which also
    // warms connections and prepared statements.
    let pilot = n.clamp(1, 100);
    let far = now_us() / 1000 + 24 * 3600 * 1000;
    let p = create_load(&clients, pilot, o.concurrency, None, Arc::new(move |_| far)).await;
    if p.errors > 0 {
        return Err(format!("pilot creates failed: {:?}", p.first_error));
    }
    let rate = pilot as f64 / p.elapsed.as_secs_f64();
    let expected_create = Duration::from_secs_f64(n as f64 / rate * 1.5);
    let window_open_ms =
        (now_us() / 1000) + (expected_create.as_secs_f64() + o.lead_secs).ceil() as i64 * 1000;
    let mut rng = StdRng::seed_from_u64(seed);
    let offsets: Arc<Vec<i64>> =
        Arc::new((0..n).map(|_| rng.random_range(0..o.window_ms)).collect());
    let first_due_ms = window_open_ms + offsets.iter().copied().min().unwrap_or(0);

    let stop = Arc::new(AtomicBool::new(false));
    let arrivals = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let reader = spawn_reader(
        var(&env, vars::TOPIC_JOB_RUN),
        config.partitions,
        o.fetch_wait_ms,
        stop.clone(),
        arrivals.clone(),
    );

    let due = offsets.clone();
    let load = create_load(
        &clients,
        n,
        o.concurrency,
        None,
        Arc::new(move |i| window_open_ms + due[i]),
    )
    .await;
    let created_at_ms = now_us() / 1000;
    let overran = created_at_ms >= first_due_ms;
    let created = load.latencies_us.len();
    let created_per_s = created as f64 / load.elapsed.as_secs_f64();

    // Service CPU over the firing: from just before the window opens.
    let wait = (window_open_ms - 200 - now_us() / 1000).max(0);
    tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
    let cpu_before = service.cpu_seconds();
    let groups_before = cpu_by_group();
    let cpu_from = Instant::now();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = (o.pg_waits && config.store == Store::Postgres)
        .then(|| tokio::spawn(sample_pg_waits(namespace.clone(), sampling.clone())));
    let perf = o.perf.as_ref().and_then(|file| {
        Command::new("perf")
            .args(["record", "-a", "-g", "-F", "499", "-o"])
            .arg(format!("{file}-{run}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("fire: cannot start perf: {e}"))
            .ok()
    });
    let deadline_ms =
        window_open_ms + o.window_ms + Duration::from_secs_f64(o.grace_secs).as_millis() as i64;
    loop {
        let seen = {
            let a = arrivals.lock().expect("arrivals");
            a.iter()
                .map(|a| a.key.as_str())
                .collect::<HashSet<_>>()
                .len()
        };
        if seen >= created || now_us() / 1000 > deadline_ms {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = service.cpu_seconds() - cpu_before;
    let cpu_use = CpuUse::between(&groups_before, &cpu_by_group(), cpu_from.elapsed());
    if let Some(mut perf) = perf {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(perf.id().to_string())
            .status();
        let _ = tokio::task::spawn_blocking(move || perf.wait()).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let pg_waits = match sampler {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    // Late duplicates, if any.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let (warnings, first_warnings) = service.warnings();
    let claimed: Vec<i64> = service
        .log
        .lock()
        .expect("log state")
        .fired_lateness_ms
        .iter()
        .map(|ms| ms * 1000)
        .collect();
    service.stop().await;
    drop_namespace(config.store, &namespace).await;

    let arrivals = std::mem::take(&mut *arrivals.lock().expect("arrivals"));
    let mut first: HashMap<&str, &Arrival> = HashMap::new();
    let mut firings: HashSet<&str> = HashSet::new();
    let mut duplicates = 0;
    for a in &arrivals {
        if !firings.insert(&a.firing_key) {
            duplicates += 1;
        }
        first.entry(a.key.as_str()).or_insert(a);
    }
    let lateness: Vec<i64> = first
        .values()
        .filter_map(|a| a.schedule_us.map(|s| a.received_us - s))
        .collect();
    let early = lateness.iter().filter(|&&l| l < 0).count();
    let claim_start: Vec<i64> = first
        .values()
        .filter_map(|a| a.updated_us.zip(a.schedule_us).map(|(u, s)| u - s))
        .collect();
    let drain_ms = first
        .values()
        .map(|a| a.received_us)
        .max()
        .map(|last| (last - first_due_ms * 1000) as f64 / 1000.0);
    let (p50, p99, max) = percentiles_ms(lateness);
    let (cs50, cs99, _) = percentiles_ms(claim_start);
    let (cl50, cl99, _) = percentiles_ms(claimed);
    let mut notes = Vec::new();
    if load.errors > 0 {
        notes.push(format!(
            "{} creates failed, first: {:?}",
            load.errors, load.first_error
        ));
    }
    if warnings > 0 {
        notes.push(format!(
            "{warnings} service warnings, first: {first_warnings:?}"
        ));
    }
    Ok(FireOutcome {
        config,
        jobs: created,
        created_per_s,
        overran,
        arrived: first.len(),
        duplicates,
        early,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        drain_ms,
        claim_start_p50_ms: cs50,
        claim_start_p99_ms: cs99,
        claimed_p50_ms: cl50,
        claimed_p99_ms: cl99,
        cpu_s: cpu,
        warnings,
        load: load_avg,
        note: notes.join("; "),
        run,
        cpu_use: Some(cpu_use),
        pg_waits,
    })
}

/// Samples, every 10 ms until `running` turns false, the state and wait
/// event of the PostgreSQL sessions whose last statement names `schema`
/// (the service's); returns each state's share of the samples.
async fn sample_pg_waits(schema: String, running: Arc<AtomicBool>) -> Vec<(String, f64)> {
    let Ok((client, connection)) =
        tokio_postgres::connect(&postgres_uri(), tokio_postgres::NoTls).await
    else {
        return Vec::new();
    };
    tokio::spawn(connection);
    let Ok(statement) = client
        .prepare(
            "SELECT coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, '') \
             FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1",
        )
        .await
    else {
        return Vec::new();
    };
    let pattern = format!("%\"{schema}\"%");
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    while running.load(Ordering::Relaxed) {
        if let Ok(rows) = client.query(&statement, &[&pattern]).await {
            for row in rows {
                let state: String = row.get(0);
                let wait: String = row.get(1);
                let key = if wait.is_empty() {
                    state
                } else {
                    format!("{state} ({wait})")
                };
                *counts.entry(key).or_default() += 1;
                total += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut shares: Vec<(String, f64)> = counts
        .into_iter()
        .map(|(k, n)| (k, n as f64 / total.max(1) as f64))
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}

// ---------------------------------------------------------------------------
// Part 3: restart recovery.

#[derive(Debug, Clone)]
struct RecoveryOutcome {
    jobs: usize,
    armed: usize,
    /// Spawn → the "armed" log line reached this process.
    to_armed_ms: f64,
    /// The service's first log line → its "armed" line (its own timestamps).
    logged_ms: Option<f64>,
    /// `scheduled_before` alone, from this process.
    query_ms: f64,
    /// Arming the listed jobs into a fresh `Timer`, in this process.
    arm_ms: f64,
    peak_rss_mb: f64,
    rss_mb: f64,
    load: f64,
    note: String,
}

const RECOVERY_HEADER: &str = "| SCHEDULED jobs | armed | start to armed (ms) | first log to armed (ms) | store query alone (ms) | arming alone (ms) | peak RSS (MB) | RSS (MB) | load | note |\n\
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn recovery_row(r: &RecoveryOutcome, note: &str) -> String {
    format!(
        "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {} |",
        r.jobs,
        r.armed,
        r.to_armed_ms,
        r.logged_ms
            .map_or_else(|| "–".into(), |v| format!("{v:.0}")),
        r.query_ms,
        r.arm_ms,
        r.peak_rss_mb,
        r.rss_mb,
        r.load,
        joined_notes([note, &r.note])
    )
}

async fn recovery_part(o: &Options) -> bool {
    let mut ok = true;
    for &store in &o.recovery_stores {
        ok &= recovery_of(o, store).await;
    }
    ok
}

/// Opens the jobs of `namespace` in `store` from this process (PostgreSQL or
/// the embedded store; MongoDB-protocol inserts are too slow here for
/// 100,000 jobs).
async fn open_store(store: Store, namespace: &str) -> Result<Arc<dyn JobDB>, String> {
    match store {
        Store::Postgres => PgJobDB::connect_with(
            &postgres_uri(),
            namespace,
            Duration::from_secs(30),
            16,
            tokio_postgres::NoTls,
        )
        .await
        .map(|db| Arc::new(db) as Arc<dyn JobDB>)
        .map_err(|e| e.to_string()),
        Store::Embedded => EmbeddedJobDB::open(&embedded_dir(namespace))
            .map(|db| Arc::new(db) as Arc<dyn JobDB>)
            .map_err(|e| e.to_string()),
        Store::MongoDb => Err("restart recovery is measured on PostgreSQL and embedded".into()),
    }
}

/// Inserts `n` SCHEDULED jobs due 10 to 50 minutes ahead; returns how many
/// were stored.
async fn insert_due_jobs(db: &Arc<dyn JobDB>, n: usize) -> usize {
    let base_ms = now_us() / 1000;
    let failures = Arc::new(AtomicUsize::new(0));
    futures::stream::iter(0..n)
        .map(|i| {
            let (db, failures) = (db.clone(), failures.clone());
            async move {
                // Spread evenly over the 40 minutes.
                let due_ms = base_ms + 600_000 + (i as i64 * 2_400_000) / n.max(1) as i64;
                let spec = JobSpec {
                    name: format!("e2e-recovery-{i}"),
                    description: "end-to-end benchmark".into(),
                    schedule_time: DateTime::from_timestamp_millis(due_ms).expect("valid time"),
                    job_type: JobType::Email,
                    job_data: JOB_DATA.into(),
                };
                // As a job whose create event was delivered long ago.
                let job = Job {
                    pending: PendingEvents::NONE,
                    ..Job::new_scheduled(spec, now())
                };
                if db.insert(&job).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .buffer_unordered(64)
        .collect::<()>()
        .await;
    n - failures.load(Ordering::Relaxed)
}

async fn recovery_of(o: &Options, store: Store) -> bool {
    let n = o.recovery_jobs;
    let schema = format!("e2e_recovery_{}", unique());
    let empty = format!("e2e_empty_{}", unique());
    let title = match store {
        Store::Embedded => "embedded store",
        _ => "PostgreSQL",
    };
    let db = match open_store(store, &schema).await {
        Ok(db) => db,
        Err(err) => {
            println!("\n## Restart recovery: cannot use the {title}: {err}");
            return false;
        }
    };
    if let Err(err) = db.ensure_indexes().await {
        println!("\n## Restart recovery: cannot set up the {title}: {err}");
        return false;
    }
    let start = Instant::now();
    let inserted = insert_due_jobs(&db, n).await;
    // The embedded store is a file only one process may open: close it
    // before the service opens it.
    drop(db);
    eprintln!(
        "recovery ({title}): inserted {inserted} of {n} jobs in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    println!(
        "\n## Restart recovery ({title}, {inserted} SCHEDULED jobs due within the one-hour look-ahead window)\n\n{RECOVERY_HEADER}"
    );
    let mut env = service_env(o, store, &empty);
    set(&mut env, vars::SCHEDULER_LOOK_AHEAD_SECS, 3600);
    let mut ok = true;
    // Baseline on an empty namespace; it also creates the topics that the
    // restarts then find, as a restarted service does.
    match recovery_run(&env, 0, None).await {
        Ok(r) => println!("{}", recovery_row(&r, "baseline: empty store")),
        Err(err) => {
            ok = false;
            println!("| 0 | (baseline failed: {err}) |");
        }
    }
    set(&mut env, vars::DATABASE_DB_NAME, &schema);
    if store == Store::Embedded {
        set(
            &mut env,
            vars::DATA_DIR,
            embedded_dir(&schema).to_string_lossy(),
        );
    }
    let mut results = Vec::new();
    for run in 0..o.runs {
        match recovery_run(&env, inserted, Some((store, &schema))).await {
            Ok(r) => {
                println!("{}", recovery_row(&r, &format!("run {}", run + 1)));
                if r.armed != inserted {
                    ok = false;
                }
                results.push(r);
            }
            Err(err) => {
                ok = false;
                println!("| {inserted} | (run {} failed: {err}) |", run + 1);
            }
        }
    }
    drop_namespace(store, &schema).await;
    drop_namespace(store, &empty).await;
    if inserted < n {
        ok = false;
    }
    if !results.is_empty() {
        let f = |g: fn(&RecoveryOutcome) -> f64| mid(results.iter().map(g).collect());
        let m = RecoveryOutcome {
            jobs: inserted,
            armed: mid(results.iter().map(|r| r.armed).collect()),
            to_armed_ms: f(|r| r.to_armed_ms),
            logged_ms: mid_opt(results.iter().map(|r| r.logged_ms).collect()),
            query_ms: f(|r| r.query_ms),
            arm_ms: f(|r| r.arm_ms),
            peak_rss_mb: f(|r| r.peak_rss_mb),
            rss_mb: f(|r| r.rss_mb),
            load: f(|r| r.load),
            note: String::new(),
        };
        println!(
            "\n### Medians of {} run(s)\n\n{RECOVERY_HEADER}\n{}",
            results.len(),
            recovery_row(&m, &format!("median of {}", results.len()))
        );
    }
    ok
}

/// Starts the service on `env` and times its start-up load. With `alone`
/// (the store and namespace the service used), then times the load's two
/// steps alone in this process once the service has stopped.
async fn recovery_run(
    env: &[(String, String)],
    jobs: usize,
    alone: Option<(Store, &str)>,
) -> Result<RecoveryOutcome, String> {
    let load = load_average();
    let (service, spawned) = Service::start(env, "recovery").await?;
    // The armed line is written before the port is bound; give the reader
    // thread a moment in case it has not been through it yet.
    let mut armed = None;
    for _ in 0..500 {
        armed = service.log.lock().expect("log state").armed;
        if armed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (armed_at, armed_ts, armed) =
        armed.ok_or("no \"armed scheduled jobs from the store\" log line")?;
    let first_ts = service.log.lock().expect("log state").first.map(|f| f.1);
    let peak_rss_mb = service.peak_rss_mb();
    let rss_mb = service.rss_mb();
    let (warnings, first_warnings) = service.warnings();
    service.stop().await;

    // The two steps of the load, alone in this process.
    let (mut query_ms, mut arm_ms) = (0.0, 0.0);
    if let Some((store, namespace)) = alone {
        let db = open_store(store, namespace).await?;
        let horizon = Utc::now() + chrono::Duration::hours(1);
        let t = Instant::now();
        let due = db
            .scheduled_before(horizon)
            .await
            .map_err(|e| e.to_string())?;
        query_ms = t.elapsed().as_secs_f64() * 1000.0;
        let shutdown = CancellationToken::new();
        let (timer, _firings) = Timer::start(shutdown.clone());
        let t = Instant::now();
        for job in &due {
            timer.arm_if_vacant(job.id, job.schedule_time, job.fire_token);
        }
        arm_ms = t.elapsed().as_secs_f64() * 1000.0;
        shutdown.cancel();
    }
    Ok(RecoveryOutcome {
        jobs,
        armed,
        to_armed_ms: (armed_at - spawned).as_secs_f64() * 1000.0,
        logged_ms: first_ts.map(|f| (armed_ts - f).num_microseconds().unwrap_or(0) as f64 / 1000.0),
        query_ms,
        arm_ms,
        peak_rss_mb,
        rss_mb,
        load,
        note: if warnings > 0 {
            format!("{warnings} service warnings, first: {first_warnings:?}")
        } else {
            String::new()
        },
    })
}
