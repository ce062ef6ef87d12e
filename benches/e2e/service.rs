//! The service under test: the `scheduler-service` binary as a child process
//! (test-support's [`ServiceChild`]), its JSON log on stderr read by a
//! thread that copies it to a file and picks out the lines the benchmarks
//! time (start-up, arming, firings, warnings); the variables of a fresh
//! instance; a store opened in this process on a run's namespace, and filled
//! through it; and the cleanup of a run's schema, collection or folder.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write as _},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use scheduler_service::{
    config::vars,
    domain::Job,
    grpc::proto::jobs_service_client::JobsServiceClient,
    store::{
        JobDB,
        embedded::EmbeddedJobDB,
        mongo::{MongoJobDB, RUNS_SUFFIX},
        postgres::PgJobDB,
    },
};
use test_support::{ServiceChild, kafka_brokers, mongodb_uri, postgres_uri, topic_vars, unique};
use tonic::transport::Channel;

use crate::{
    args::{Options, Store},
    support::proc::{cpu_seconds, status_kib},
};

/// Where the service logs go: one file per run.
pub fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e")
}

/// The data folder of an embedded-store run.
pub fn embedded_dir(namespace: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e-data")
        .join(namespace)
}

/// What the log reader thread picked out of the service's JSON log lines.
#[derive(Default)]
pub struct LogState {
    /// When the first log line arrived, and its own timestamp.
    pub first: Option<(Instant, DateTime<Utc>)>,
    /// When "armed scheduled jobs from the store" arrived, its timestamp and count.
    pub armed: Option<(Instant, DateTime<Utc>, usize)>,
    /// Each job's lateness when its claim returned, from the "jobs fired"
    /// lines: the batch's `max_lateness_ms` for each of its `jobs` (an upper
    /// bound; the per-job "job fired" lines are DEBUG).
    pub fired_lateness_ms: Vec<i64>,
    /// WARN and ERROR lines (the first 1,000): when they arrived, and what.
    warnings: Vec<(Instant, String)>,
}

/// The service binary as a child process, its stderr read by a thread that
/// copies it to a log file and picks out the lines the benchmark needs.
/// Dropping it kills the process.
pub struct Service {
    child: ServiceChild,
    pub log: Arc<Mutex<LogState>>,
    /// When it was first seen listening.
    listening: Instant,
}

impl Service {
    /// Starts `bin` with these variables and waits until it listens; returns
    /// it and when it was spawned.
    pub async fn start(
        bin: &Path,
        env: &[(String, String)],
        name: &str,
    ) -> Result<(Service, Instant), String> {
        std::fs::create_dir_all(log_dir()).map_err(|e| e.to_string())?;
        let log_path = log_dir().join(format!("{name}-{}.log", unique()));
        let file = File::create(&log_path).map_err(|e| e.to_string())?;
        let mut child = ServiceChild::spawn(bin, env, Stdio::null(), Stdio::piped())
            .map_err(|e| format!("cannot start the service binary: {e}"))?;
        let log = Arc::new(Mutex::new(LogState::default()));
        if let Some(stderr) = child.take_stderr() {
            let state = log.clone();
            std::thread::spawn(move || read_log(stderr, file, &state));
        }
        child
            .wait_listening(Duration::from_secs(120))
            .await
            .map_err(|e| format!("{e}; see {}", log_path.display()))?;
        let spawned = child.spawned_at;
        let service = Service {
            child,
            log,
            listening: Instant::now(),
        };
        Ok((service, spawned))
    }

    /// `connections` clients, each on its own HTTP/2 connection.
    pub async fn clients(&self, connections: usize) -> Vec<JobsServiceClient<Channel>> {
        let mut clients = Vec::new();
        for _ in 0..connections {
            let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.child.port))
                .expect("valid URI")
                .connect()
                .await
                .expect("connects to the service");
            clients.push(JobsServiceClient::new(channel));
        }
        clients
    }

    /// Its CPU time so far (user + system, s).
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.child.id().to_string())
    }

    /// The bytes it has sent to storage so far, in MB.
    pub fn written_mb(&self) -> f64 {
        written_bytes(&self.child.id().to_string()) as f64 / 1e6
    }

    /// Its peak RSS (VmHWM) so far.
    pub fn peak_rss_mb(&self) -> f64 {
        status_kib(&self.child.id().to_string(), "VmHWM:") as f64 / 1024.0
    }

    /// Its RSS now.
    pub fn rss_mb(&self) -> f64 {
        status_kib(&self.child.id().to_string(), "VmRSS:") as f64 / 1024.0
    }

    /// SIGTERM, and waits for the exit (SIGKILL after 15 s).
    pub async fn stop(self) {
        let child = self.child;
        let _ = tokio::task::spawn_blocking(move || child.terminate(Duration::from_secs(15))).await;
    }

    /// SIGKILL, as a crash, and waits for the exit.
    pub async fn kill(self) {
        let child = self.child;
        let _ = tokio::task::spawn_blocking(move || drop(child)).await;
    }

    /// Warnings logged since it listens (start-up ones, such as running
    /// without authentication, are expected): how many, and the first three.
    pub fn warnings(&self) -> (usize, Vec<String>) {
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

/// Copies each line of the service's stderr to `file` and scans it, until
/// the pipe closes (the process exited).
fn read_log(stderr: impl std::io::Read, mut file: File, state: &Mutex<LogState>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let at = Instant::now();
        let _ = writeln!(file, "{line}");
        scan_line(&line, at, state);
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
        "jobs fired" => {
            let field = |name| value.get(name).and_then(serde_json::Value::as_i64);
            if let (Some(jobs), Some(l)) = (field("jobs"), field("max_lateness_ms")) {
                let jobs = usize::try_from(jobs).unwrap_or(0);
                s.fired_lateness_ms.extend(std::iter::repeat_n(l, jobs));
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
pub fn service_env(o: &Options, store: Store, namespace: &str) -> Vec<(String, String)> {
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
        (vars::SHUTDOWN_GRACE_SECS, "5".into()),
    ];
    env.extend(topic_vars("e2e", &unique()));
    env.extend(store_vars(o, store, namespace));
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The variables that select `store` and its namespace.
fn store_vars(o: &Options, store: Store, namespace: &str) -> Vec<(&'static str, String)> {
    match store {
        Store::MongoDb => vec![
            (vars::DATABASE_URI, mongodb_uri()),
            // The MongoDB-protocol server ignores database names.
            (vars::DATABASE_COLLECTION, namespace.to_owned()),
        ],
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
            vec![(vars::DATABASE_URI, uri)]
        }
        // No database URI or connection part selects the embedded store.
        Store::Embedded => vec![(
            vars::DATA_DIR,
            embedded_dir(namespace).to_string_lossy().into_owned(),
        )],
    }
}

/// Sets `name` to `value` in a list of variables.
pub fn set(env: &mut Vec<(String, String)>, name: &str, value: impl ToString) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_string()));
}

/// The value of `name` in a list of variables.
pub fn var<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The jobs of `namespace` in `store`, opened from this process as the
/// service opens them (`service_env`): a PostgreSQL schema, an embedded
/// store's folder, or a MongoDB collection of that name.
pub async fn open_store(store: Store, namespace: &str) -> Result<Arc<dyn JobDB>, String> {
    let timeout = Duration::from_secs(30);
    match store {
        Store::Postgres => PgJobDB::connect_with(
            &postgres_uri(),
            namespace,
            timeout,
            16,
            tokio_postgres::NoTls,
        )
        .await
        .map(|db| Arc::new(db) as Arc<dyn JobDB>),
        Store::Embedded => {
            EmbeddedJobDB::open(&embedded_dir(namespace)).map(|db| Arc::new(db) as Arc<dyn JobDB>)
        }
        Store::MongoDb => MongoJobDB::connect(&mongodb_uri(), namespace, namespace, timeout, None)
            .await
            .map(|db| Arc::new(db) as Arc<dyn JobDB>),
    }
    .map_err(|e| e.to_string())
}

/// Fills a fresh schema or folder of `store` with jobs `job(0)` to
/// `job(n - 1)` through the store API (`JobDB::insert`, 64 at a time);
/// returns how many were stored and how long that took. PostgreSQL and the
/// embedded store only: MongoDB-protocol inserts are too slow here for
/// 100,000 jobs. The store is closed again (the embedded store is a file
/// only one process may open) before this returns.
pub async fn fill_store(
    store: Store,
    namespace: &str,
    n: usize,
    label: &str,
    job: impl Fn(usize) -> Job,
) -> Result<(usize, Duration), String> {
    if store == Store::MongoDb {
        return Err("filled through the store API on PostgreSQL and embedded only".into());
    }
    let db = open_store(store, namespace)
        .await
        .map_err(|err| format!("cannot use the store: {err}"))?;
    db.ensure_indexes()
        .await
        .map_err(|err| format!("cannot set up the store: {err}"))?;
    let start = Instant::now();
    let failures = Arc::new(AtomicUsize::new(0));
    futures::stream::iter((0..n).map(job))
        .map(|job| {
            let (db, failures) = (db.clone(), failures.clone());
            async move {
                if db.insert(&job).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .buffer_unordered(64)
        .collect::<()>()
        .await;
    let elapsed = start.elapsed();
    drop(db);
    let inserted = n - failures.load(Ordering::Relaxed);
    eprintln!(
        "{label}: inserted {inserted} of {n} jobs in {:.1} s",
        elapsed.as_secs_f64()
    );
    Ok((inserted, elapsed))
}

/// Drops the schema, or the collection and its runs, of a finished run
/// (best effort).
pub async fn drop_namespace(store: Store, namespace: &str) {
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
                let db = client.database(namespace);
                for name in [namespace.to_owned(), format!("{namespace}{RUNS_SUFFIX}")] {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        db.collection::<bson::Document>(&name).drop(),
                    )
                    .await;
                }
            }
        }
        Store::Embedded => {
            let _ = std::fs::remove_dir_all(embedded_dir(namespace));
        }
    }
}

/// The bytes a process (`pid` may be `self`) has sent to storage so far
/// (`write_bytes` of /proc/<pid>/io: pages it dirtied in files, whether
/// written back yet or not).
fn written_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}
