//! Part 6, the HTTP/JSON API against gRPC: `--requests` CreateJob calls over
//! each face of one service (embedded store), `--concurrency` in flight,
//! gRPC over `--connections` HTTP/2 connections and HTTP/1.1 over a pool of
//! keep-alive connections, one after the other in the same run (each first
//! in turn), so that the cost of the HTTP face (JSON, and its transcoding to
//! the RPC's message) shows as a ratio of figures measured side by side.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use scheduler_service::config::vars;
use test_support::{free_port, unique};

use crate::{
    args::{Options, Store},
    load::{DueMs, JOB_DATA, Load, call_load, create_load},
    service::{Service, drop_namespace, service_env, set},
    support::{
        now_us,
        stats::{Latencies, median},
    },
};

const HEADER: &str = "| API | run | calls ok | errors | calls per s | p50 (ms) | p99 (ms) |\n\
|---|---:|---:|---:|---:|---:|---:|";

/// One face's figures in one run.
struct Outcome {
    api: &'static str,
    ok: usize,
    errors: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Outcome {
    fn of(api: &'static str, load: &Load) -> Outcome {
        let latency = Latencies::of_us(load.latencies_us.iter().copied()).map(|l| l.percentiles());
        Outcome {
            api,
            ok: load.latencies_us.len(),
            errors: load.errors,
            rate: load.latencies_us.len() as f64 / load.elapsed.as_secs_f64().max(1e-9),
            p50_ms: latency.map_or(f64::NAN, |p| p.p50_ms),
            p99_ms: latency.map_or(f64::NAN, |p| p.p99_ms),
        }
    }

    fn row(&self, run: &str) -> String {
        format!(
            "| {} | {run} | {} | {} | {:.0} | {:.2} | {:.2} |",
            self.api, self.ok, self.errors, self.rate, self.p50_ms, self.p99_ms
        )
    }
}

/// Runs the part; false if a run failed.
pub async fn api_part(o: &Options) -> bool {
    println!(
        "\n## HTTP/JSON against gRPC: {} CreateJob calls each, {} in flight\n\n{HEADER}",
        o.requests, o.concurrency
    );
    let (mut grpc, mut http, mut ok) = (Vec::new(), Vec::new(), true);
    for run in 1..=o.runs {
        match api_run(o, run % 2 == 0).await {
            Ok([g, h]) => {
                println!("{}\n{}", g.row(&run.to_string()), h.row(&run.to_string()));
                ok &= g.errors == 0 && h.errors == 0;
                grpc.push(g);
                http.push(h);
            }
            Err(err) => {
                ok = false;
                println!("| - | {run} | (failed: {err}) |");
            }
        }
    }
    print_medians(&grpc, &http);
    ok
}

/// The medians of each face, and HTTP's over gRPC's.
fn print_medians(grpc: &[Outcome], http: &[Outcome]) {
    let m = |runs: &[Outcome], f: fn(&Outcome) -> f64| median(runs.iter().map(f).collect());
    if grpc.is_empty() || http.is_empty() {
        return;
    }
    println!(
        "\n### Medians of {} run(s)\n\n| figure | gRPC | HTTP | HTTP / gRPC |\n|---|---:|---:|---:|",
        grpc.len()
    );
    for (name, f) in [
        ("calls per s", (|r: &Outcome| r.rate) as fn(&Outcome) -> f64),
        ("p50 (ms)", |r: &Outcome| r.p50_ms),
        ("p99 (ms)", |r: &Outcome| r.p99_ms),
    ] {
        let (g, h) = (m(grpc, f), m(http, f));
        println!("| {name} | {g:.2} | {h:.2} | {:.2} |", h / g);
    }
}

/// One service, warmed up on both faces, then the load on each, HTTP's
/// first when `http_first` (runs alternate, so that neither face always
/// meets the larger store).
async fn api_run(o: &Options, http_first: bool) -> Result<[Outcome; 2], String> {
    let namespace = format!("e2e_{}", unique());
    let mut env = service_env(o, Store::Embedded, &namespace);
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    set(&mut env, vars::HTTP_PORT, port);
    let (service, _) = Service::start(&o.service_bin, &env, "api").await?;
    let clients = service.clients(o.connections).await;
    let http = HttpClient::new(port)?;
    let far = now_us() / 1000 + 24 * 3600 * 1000;
    let due: DueMs = Arc::new(move |_| far);
    let warmup = (o.requests / 10).clamp(1, 100);
    create_load(&clients, warmup, o.concurrency, None, due.clone()).await;
    http.create_load(warmup, o.concurrency, due.clone()).await;
    let grpc_load = || create_load(&clients, o.requests, o.concurrency, None, due.clone());
    let (grpc, http) = if http_first {
        let http = http
            .create_load(o.requests, o.concurrency, due.clone())
            .await;
        (grpc_load().await, http)
    } else {
        let grpc = grpc_load().await;
        (
            grpc,
            http.create_load(o.requests, o.concurrency, due.clone())
                .await,
        )
    };
    service.stop().await;
    drop_namespace(Store::Embedded, &namespace).await;
    Ok([Outcome::of("gRPC", &grpc), Outcome::of("HTTP", &http)])
}

/// A client of the HTTP API's `POST /v1/jobs`.
#[derive(Clone)]
struct HttpClient {
    client: reqwest::Client,
    url: String,
}

impl HttpClient {
    fn new(port: u16) -> Result<HttpClient, String> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpClient {
            client,
            url: format!("http://127.0.0.1:{port}/v1/jobs"),
        })
    }

    /// Creates jobs `0..n` (job `i` due at `due(i)`), `concurrency` at a time.
    async fn create_load(&self, n: usize, concurrency: usize, due: DueMs) -> Load {
        let http = self.clone();
        let call = move |_, i| http.clone().create(i, due(i));
        call_load(n, concurrency, None, call).await
    }

    /// Creates job `i`, due at `due_ms`, and reads the answer's body (as a
    /// client reads the id).
    async fn create(self, i: usize, due_ms: i64) -> Result<(), String> {
        let at = DateTime::<Utc>::from_timestamp_millis(due_ms).unwrap_or_default();
        let body = serde_json::json!({
            "name": format!("e2e-{i}"),
            "description": "end-to-end benchmark",
            "schedule_time": at.to_rfc3339(),
            "job_type": "email",
            "job_data": JOB_DATA,
        });
        let answer = self.client.post(&self.url).json(&body).send().await;
        let answer = answer.map_err(|err| err.to_string())?;
        if answer.status() != reqwest::StatusCode::CREATED {
            return Err(answer.status().to_string());
        }
        answer
            .bytes()
            .await
            .map(|_| ())
            .map_err(|err| err.to_string())
    }
}
