//! Part 4, recurring jobs end to end. `--recurring-jobs` jobs are created
//! through gRPC CreateJob with a `Recurrence` of `interval_seconds` =
//! `--recurring-every-secs`, their anchors spread evenly over one period (so
//! that as many fall due in each millisecond of it) and overlap `run` (no
//! executor reports results here; with the default `skip`, an occurrence
//! due while the previous run is RUNNING would not run). A consumer reads
//! the run topic; the occurrences due in `--recurring-secs` from the first
//! whole period after the creation are counted by their `ScheduledKey`:
//! each must arrive exactly once, with no duplicate and none missing.
//! Lateness is the arrival time minus the occurrence (the event's
//! `Occurrence`), and is split at the message's CreateTime, the time the
//! service handed it to its producer: the service's share (the claim and
//! the hand-off) and the broker's (publish, store, fetch). The service's
//! `scheduler_run_publish_lateness_seconds` histogram, scraped when the
//! span opens and after it, gives the lateness at the broker's
//! acknowledgement of the run events published meanwhile (at its bucket
//! bounds: the share within 100 ms, and the bound the p99 falls under). Per 30 s of the
//! span, the arrival p99 shows whether the broker's share grows with the
//! log: tansu's in-memory store lists every batch of the partition on each
//! fetch, so with it the consumer falls behind as the topic grows, a cost
//! Kafka (which finds an offset through an index) does not have.
//! Target: every occurrence exactly once, p99 < 100 ms.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::Arc,
    time::Duration,
};

use scheduler_service::{
    config::vars,
    grpc::proto::{self, jobs_service_client::JobsServiceClient},
    telemetry::metrics::RUN_PUBLISH_LATENESS,
};
use test_support::{free_port, scrape_metrics, unique};
use tonic::transport::Channel;

use crate::{
    args::{Options, Store},
    fire::reader::{Arrival, Reader},
    load::{JOB_DATA, create_requests, timestamp_ms},
    report::{mark, ms},
    service::{Service, drop_namespace, service_env, set, var},
    support::{
        now_us,
        proc::load_average,
        stats::{Latencies, median, median_of_some},
    },
};

/// One run's figures.
#[derive(Debug, Clone)]
struct Outcome {
    store: Store,
    jobs: usize,
    created_per_s: f64,
    /// Occurrences due in the measured span: jobs × span ÷ period.
    owed: usize,
    /// Distinct `ScheduledKey`s of those that arrived.
    arrived: usize,
    /// Messages whose `ScheduledKey` arrived before.
    duplicates: usize,
    /// (job, occurrence) pairs that arrived under more than one key.
    twice: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// Lateness at the hand-off to the producer (CreateTime − occurrence).
    produced_p50_ms: Option<f64>,
    produced_p99_ms: Option<f64>,
    /// Run events the broker acknowledged within 100 ms of their due time,
    /// per cent (the service's histogram).
    acked_in_100ms_pct: Option<f64>,
    /// The histogram bucket bound the acknowledgements' p99 falls under.
    acked_p99_under_ms: Option<f64>,
    cpu_s: f64,
    load: f64,
    note: String,
}

const HEADER: &str = "| store | jobs | every (s) | partitions | created per s | occurrences owed | arrived once | duplicates | produced p50 (ms) | produced p99 (ms) | acked in 100 ms (%) | acked p99 under (ms) | arrived p50 (ms) | arrived p99 (ms) | arrived max (ms) | service CPU (s) | load | note |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn row(o: &Options, r: &Outcome, note: &str) -> String {
    format!(
        "| {} | {} | {} | {} | {:.0} | {} | {} ({:.2} %) | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
        r.store.name(),
        r.jobs,
        o.recurring_every_secs,
        o.recurring_partitions,
        r.created_per_s,
        r.owed,
        r.arrived,
        100.0 * r.arrived as f64 / r.owed.max(1) as f64,
        r.duplicates + r.twice,
        ms(r.produced_p50_ms),
        ms(r.produced_p99_ms),
        r.acked_in_100ms_pct
            .map_or("–".into(), |p| format!("{p:.2}")),
        ms(r.acked_p99_under_ms),
        ms(r.p50_ms),
        ms(r.p99_ms),
        ms(r.max_ms),
        r.cpu_s,
        r.load,
        [note, &r.note].join("; ").trim_matches([';', ' '])
    )
}

/// Runs the part and prints its table; false if an occurrence was missed
/// or published twice, or a run failed.
pub async fn recurring_part(o: &Options) -> bool {
    println!(
        "\n## Recurring jobs ({} jobs every {} s for {} s, overlap run)\n\n{HEADER}",
        o.recurring_jobs, o.recurring_every_secs, o.recurring_secs
    );
    let mut results = Vec::new();
    let mut ok = true;
    for run in 0..o.runs {
        for &store in &o.recurring_stores {
            match recurring_run(o, store).await {
                Ok(r) => {
                    println!("{}", row(o, &r, &format!("run {}", run + 1)));
                    ok &= r.arrived == r.owed && r.duplicates + r.twice == 0;
                    results.push(r);
                }
                Err(err) => {
                    ok = false;
                    println!("| {} | (run {} failed: {err}) |", store.name(), run + 1);
                }
            }
        }
    }
    println!("\n### Medians of {} run(s)\n\n{HEADER}", o.runs);
    let mut targets = String::from("\n### Targets\n\n");
    for &store in &o.recurring_stores {
        let runs: Vec<&Outcome> = results.iter().filter(|r| r.store == store).collect();
        if let Some(m) = median_outcome(&runs) {
            println!("{}", row(o, &m, &format!("median of {}", runs.len())));
            let _ = writeln!(
                targets,
                "- {}: every occurrence exactly once: {} ({} of {}, {} duplicates); \
                 p99 < 100 ms handed to the producer: {} ({} ms), acknowledged by the broker: {} \
                 ({} % within 100 ms), at the consumer: {} ({} ms)",
                store.name(),
                mark(m.arrived == m.owed && m.duplicates + m.twice == 0),
                m.arrived,
                m.owed,
                m.duplicates + m.twice,
                mark(m.produced_p99_ms.is_some_and(|p| p < 100.0)),
                ms(m.produced_p99_ms),
                mark(m.acked_in_100ms_pct.is_some_and(|p| p >= 99.0)),
                m.acked_in_100ms_pct
                    .map_or("–".into(), |p| format!("{p:.2}")),
                mark(m.p99_ms.is_some_and(|p| p < 100.0)),
                ms(m.p99_ms)
            );
        }
    }
    print!("{targets}");
    ok
}

/// The median of each figure of `runs` on its own.
fn median_outcome(runs: &[&Outcome]) -> Option<Outcome> {
    let first = runs.first()?;
    let f = |g: fn(&Outcome) -> f64| median(runs.iter().map(|r| g(r)).collect());
    let u = |g: fn(&Outcome) -> usize| median(runs.iter().map(|r| g(r)).collect());
    let p = |g: fn(&Outcome) -> Option<f64>| median_of_some(runs.iter().map(|r| g(r)).collect());
    Some(Outcome {
        store: first.store,
        jobs: first.jobs,
        created_per_s: f(|r| r.created_per_s),
        owed: u(|r| r.owed),
        arrived: u(|r| r.arrived),
        duplicates: u(|r| r.duplicates),
        twice: u(|r| r.twice),
        p50_ms: p(|r| r.p50_ms),
        p99_ms: p(|r| r.p99_ms),
        max_ms: p(|r| r.max_ms),
        produced_p50_ms: p(|r| r.produced_p50_ms),
        produced_p99_ms: p(|r| r.produced_p99_ms),
        acked_in_100ms_pct: p(|r| r.acked_in_100ms_pct),
        acked_p99_under_ms: p(|r| r.acked_p99_under_ms),
        cpu_s: f(|r| r.cpu_s),
        load: f(|r| r.load),
        note: String::new(),
    })
}

/// One run on `store`: a fresh service, the jobs created, the span awaited.
async fn recurring_run(o: &Options, store: Store) -> Result<Outcome, String> {
    let load = load_average();
    let namespace = format!("e2e_{}", unique());
    let mut env = service_env(o, store, &namespace);
    // Every next occurrence is armed as soon as its claim computed it.
    set(&mut env, vars::SCHEDULER_LOOK_AHEAD_SECS, 3600);
    set(
        &mut env,
        vars::TOPIC_JOB_RUN_PARTITIONS,
        o.recurring_partitions,
    );
    let metrics_port = free_port().map_err(|e| format!("no free port: {e}"))?;
    set(&mut env, vars::METRICS_PORT, metrics_port);
    let (service, _) = Service::start(&o.service_bin, &env, "recurring").await?;
    let clients = service.clients(o.connections).await;
    let period_ms = o.recurring_every_secs as i64 * 1000;
    let owed = o.recurring_jobs * (o.recurring_secs / o.recurring_every_secs) as usize;
    let reader = Reader::start(
        var(&env, vars::TOPIC_JOB_RUN),
        o.recurring_partitions,
        o.fetch_wait_ms,
        owed * 2,
    )?;
    let anchor_ms = now_us() / 1000 / period_ms * period_ms;
    let created = create_recurring_jobs(
        &clients,
        "e2e-recurring",
        o.recurring_jobs,
        o.recurring_every_secs as i64,
        o.concurrency,
        anchor_ms,
    )
    .await?;
    // The span opens at the first whole period after a second from now.
    let start_ms = ((now_us() / 1000 + 1000) / period_ms + 1) * period_ms;
    let end_ms = start_ms + o.recurring_secs as i64 * 1000;
    let cpu_before = service.cpu_seconds();
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(start_ms - now_us() / 1000).unwrap_or(0),
    ))
    .await;
    let acked_before = Buckets::scrape(metrics_port).await?;
    // Until a second after the span (its last occurrences arrive within
    // ms) and as many messages as owed are in, or the grace period passed.
    let deadline_ms = end_ms + (o.grace_secs * 1000.0) as i64;
    while now_us() / 1000 < deadline_ms
        && (now_us() / 1000 < end_ms + 1000 || reader.messages() < owed)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu_s = service.cpu_seconds() - cpu_before;
    let acked = Buckets::scrape(metrics_port).await?.since(&acked_before);
    let (warnings, first) = service.warnings();
    let arrivals = reader.stop_reading();
    service.stop().await;
    drop_namespace(store, &namespace).await;
    let mut outcome = count(&arrivals, start_ms * 1000, end_ms * 1000);
    outcome.store = store;
    outcome.jobs = o.recurring_jobs;
    outcome.created_per_s = created;
    outcome.owed = owed;
    outcome.cpu_s = cpu_s;
    outcome.acked_in_100ms_pct = acked.share_within(0.1).map(|s| s * 100.0);
    outcome.acked_p99_under_ms = acked.bound_of(0.99).map(|b| b * 1000.0);
    outcome.load = load;
    if warnings > 0 {
        let _ = write!(
            outcome.note,
            "; {warnings} service warnings, first: {first:?}"
        );
    }
    Ok(outcome)
}

/// Creates `n` recurring jobs named `<prefix>-<i>` through `clients`,
/// `concurrency` calls in flight, every `every_secs` (overlap `run`), job
/// i anchored i × period ÷ n after `anchor_ms`; the calls per second.
/// The `replicas` part's scale scenario creates its load the same way.
pub(crate) async fn create_recurring_jobs(
    clients: &[JobsServiceClient<Channel>],
    prefix: &'static str,
    n: usize,
    every_secs: i64,
    concurrency: usize,
    anchor_ms: i64,
) -> Result<f64, String> {
    let period_ms = every_secs * 1000;
    let request = Arc::new(move |i: usize| proto::CreateJobRequest {
        name: format!("{prefix}-{i}"),
        description: "end-to-end benchmark".into(),
        job_type: proto::JobType::Email.into(),
        job_data: JOB_DATA.into(),
        recurrence: Some(proto::Recurrence {
            interval_seconds: every_secs,
            anchor_time: Some(timestamp_ms(anchor_ms + i as i64 * period_ms / n as i64)),
            overlap: "run".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let load = create_requests(clients, n, concurrency, None, request).await;
    if load.errors > 0 {
        return Err(format!(
            "{} creates failed, first: {:?}",
            load.errors, load.first_error
        ));
    }
    Ok(n as f64 / load.elapsed.as_secs_f64())
}

/// Seconds of the span each arrival p99 in a run's note stands for.
const SLICE_SECS: i64 = 30;

/// The arrivals of the occurrences due in [start_us, end_us): distinct
/// `ScheduledKey`s, duplicates, (job, occurrence) pairs under two keys, the
/// lateness of each first arrival and of its hand-off to the producer, and
/// in the note the arrival p99 per `SLICE_SECS` of the span.
fn count(arrivals: &[Arrival], start_us: i64, end_us: i64) -> Outcome {
    let mut keys: HashSet<i64> = HashSet::new();
    let mut occurrences: HashMap<(&str, i64), i64> = HashMap::new();
    let (mut duplicates, mut twice) = (0, 0);
    let (mut lateness, mut produced) = (Vec::new(), Vec::new());
    let mut slices: Vec<Vec<i64>> = Vec::new();
    for a in arrivals {
        let (Some(key), Some(at)) = (a.scheduled_key, a.occurrence_us) else {
            continue;
        };
        if !(start_us..end_us).contains(&at) {
            continue;
        }
        if !keys.insert(key) {
            duplicates += 1;
            continue;
        }
        if occurrences.insert((a.key.as_str(), at), key).is_some() {
            twice += 1;
        }
        lateness.push(a.received_us - at);
        produced.extend(a.produced_us.map(|p| p - at));
        let slice = usize::try_from((at - start_us) / (SLICE_SECS * 1_000_000)).unwrap_or(0);
        if slices.len() <= slice {
            slices.resize_with(slice + 1, Vec::new);
        }
        slices[slice].push(a.received_us - at);
    }
    let p = Latencies::of_us(lateness.iter().copied()).map(|l| l.percentiles());
    let q = Latencies::of_us(produced.iter().copied()).map(|l| l.percentiles());
    let by_slice: Vec<String> = slices
        .into_iter()
        .map(|v| ms(Latencies::of_us(v.into_iter()).map(|l| l.percentiles().p99_ms)))
        .collect();
    Outcome {
        store: Store::Postgres,
        jobs: 0,
        created_per_s: 0.0,
        owed: 0,
        arrived: occurrences.len(),
        duplicates,
        twice,
        p50_ms: p.map(|p| p.p50_ms),
        p99_ms: p.map(|p| p.p99_ms),
        max_ms: p.map(|p| p.max_ms),
        produced_p50_ms: q.map(|q| q.p50_ms),
        produced_p99_ms: q.map(|q| q.p99_ms),
        acked_in_100ms_pct: None,
        acked_p99_under_ms: None,
        cpu_s: 0.0,
        load: 0.0,
        note: format!("arrived p99 per {SLICE_SECS} s: {} ms", by_slice.join(", ")),
    }
}

/// The cumulative buckets of the service's run publish lateness histogram:
/// (upper bound in s, count), the last bound infinite.
struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    async fn scrape(port: u16) -> Result<Self, String> {
        let text = scrape_metrics(port).await?;
        let prefix = format!("{RUN_PUBLISH_LATENESS}_bucket{{le=\"");
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|line| {
                let (le, count) = line.strip_prefix(prefix.as_str())?.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.parse().ok()?))
            })
            .collect();
        if buckets.is_empty() {
            return Err(format!("no {RUN_PUBLISH_LATENESS} on the metrics endpoint"));
        }
        Ok(Buckets(buckets))
    }

    /// What was counted after `before`.
    fn since(&self, before: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .zip(&before.0)
                .map(|(&(le, now), &(_, then))| (le, now - then))
                .collect(),
        )
    }

    fn total(&self) -> Option<f64> {
        self.0.last().map(|&(_, n)| n).filter(|&n| n > 0.0)
    }

    /// The share counted within `bound` s (a bucket bound).
    fn share_within(&self, bound: f64) -> Option<f64> {
        let within = self.0.iter().find(|&&(le, _)| le >= bound)?.1;
        Some(within / self.total()?)
    }

    /// The smallest bucket bound that `quantile` of the counts fall under.
    fn bound_of(&self, quantile: f64) -> Option<f64> {
        let total = self.total()?;
        self.0
            .iter()
            .find(|&&(_, n)| n >= quantile * total)
            .map(|&(le, _)| le)
    }
}
