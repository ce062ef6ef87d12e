//! The scale scenario: `--replicas-recurring-jobs` recurring jobs every
//! `--replicas-every-secs` (anchors spread evenly over one period, overlap
//! `run`), created through the first replica alone; then, one
//! `--replicas-step-secs` apart from the opening of the measured span,
//! replicas 2, 3 and 4 start one at a time and stop again (SIGTERM, 4 first)
//! back to one. The span runs from a whole period to the first whole period
//! after the last step, so that each job owes exactly span ÷ period
//! occurrences in it; each is counted on the run topic by its `ScheduledKey`
//! and its (job, occurrence) pair: none doubled, none missing.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::Duration,
};

use super::cluster::{Cluster, Counters};
use crate::{
    args::Options,
    fire::reader::{Arrival, Reader},
    recurring::create_recurring_jobs,
    support::{
        now_us,
        proc::load_average,
        stats::{Latencies, Percentiles},
    },
};

/// The steps after the span opens: start (true) or stop a replica.
const STEPS: [(bool, &str); 6] = [
    (true, "r2"),
    (true, "r3"),
    (true, "r4"),
    (false, "r4"),
    (false, "r3"),
    (false, "r2"),
];

/// One run's figures.
#[derive(Debug, Clone)]
pub struct ScaleOutcome {
    pub span_s: i64,
    /// Occurrences due in the span: jobs × span ÷ period.
    pub owed: usize,
    /// Distinct (job, occurrence) pairs of the span that arrived.
    pub arrived: usize,
    /// Messages whose `ScheduledKey` arrived before.
    pub duplicates: usize,
    /// (job, occurrence) pairs that arrived under more than one key.
    pub twice: usize,
    /// The first few occurrences missing: s after the span opened, and
    /// the job.
    pub missing: Vec<(f64, String)>,
    pub lateness: Option<Percentiles>,
    pub counters: Counters,
    /// The shares after each step, e.g. "r1 22 · r2 21 · r3 21".
    pub shares: Vec<String>,
    pub load: f64,
    pub note: String,
}

impl ScaleOutcome {
    /// Claim attempts per fired occurrence.
    pub fn claims_per_fired(&self) -> f64 {
        self.counters.claim_attempts / self.counters.fired.max(1.0)
    }
}

/// One run of the scale scenario.
pub async fn scale_run(o: &Options) -> Result<ScaleOutcome, String> {
    let load = load_average();
    let mut cluster = Cluster::new(o, o.replicas_look_ahead_secs);
    let outcome = scale_in(o, &mut cluster).await;
    cluster.finish().await;
    outcome.map(|mut outcome| {
        outcome.load = load;
        outcome
    })
}

async fn scale_in(o: &Options, cluster: &mut Cluster) -> Result<ScaleOutcome, String> {
    let period_ms = o.replicas_every_secs as i64 * 1000;
    let step_ms = o.replicas_step_secs as i64 * 1000;
    cluster.start(o, "r1").await?;
    let mut shares = vec![shares_now(cluster).await];
    let clients = cluster.clients(o.connections).await;
    let anchor_ms = now_us() / 1000 / period_ms * period_ms;
    create_recurring_jobs(
        &clients,
        "e2e-scale",
        o.replicas_recurring_jobs,
        o.replicas_every_secs as i64,
        o.concurrency,
        anchor_ms,
    )
    .await?;
    let reader = Reader::start(cluster.run_topic(), 1, o.fetch_wait_ms, 0)?;
    let start_ms = ((now_us() / 1000 + 1000) / period_ms + 1) * period_ms;
    let steps_end_ms = start_ms + step_ms * (STEPS.len() as i64 + 1);
    let end_ms = (steps_end_ms + period_ms - 1) / period_ms * period_ms;
    for (k, (up, name)) in STEPS.iter().enumerate() {
        sleep_until_ms(start_ms + step_ms * (k as i64 + 1)).await;
        if *up {
            cluster.start(o, name).await?;
        } else {
            cluster.stop(name).await?;
        }
        shares.push(shares_now(cluster).await);
    }
    let owed = o.replicas_recurring_jobs * ((end_ms - start_ms) / period_ms) as usize;
    // The whole grace, always: the jobs keep firing after the span, so a
    // count of messages reaching `owed` says nothing about the span's own
    // occurrences, and one a stopped replica left owed arrives only when
    // another replica's relay publishes it.
    sleep_until_ms(end_ms + (o.grace_secs * 1000.0) as i64).await;
    let counters = cluster.counters().await?;
    let (warnings, first) = cluster.warnings();
    let arrivals = reader.stop_reading();
    let mut outcome = count(&arrivals, start_ms * 1000, end_ms * 1000, period_ms * 1000);
    outcome.owed = owed;
    outcome.counters = counters;
    outcome.shares = shares;
    if warnings > 0 {
        outcome.note = format!("{warnings} service warnings, first: {first:?}");
    }
    Ok(outcome)
}

async fn sleep_until_ms(at_ms: i64) {
    let wait = u64::try_from(at_ms - now_us() / 1000).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// The live replicas' shares once balanced (or as they are after 5 s).
async fn shares_now(cluster: &Cluster) -> String {
    let owned = match cluster.await_balance(Duration::from_secs(5)).await {
        Ok(owned) => owned,
        Err(_) => cluster.owned().await.unwrap_or_default(),
    };
    let names = cluster.names();
    let each: Vec<String> = (names.iter().zip(&owned))
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    each.join(" · ")
}

/// The arrivals of the occurrences due in [start_us, end_us): distinct
/// keys, duplicates, pairs under two keys, lateness; and, per job seen,
/// the occurrences of its grid (`period_us` apart) in the span that did
/// not arrive.
fn count(arrivals: &[Arrival], start_us: i64, end_us: i64, period_us: i64) -> ScaleOutcome {
    let mut keys: HashSet<i64> = HashSet::new();
    let mut by_job: HashMap<&str, BTreeSet<i64>> = HashMap::new();
    let (mut duplicates, mut twice, mut lateness) = (0, 0, Vec::new());
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
        if !by_job.entry(a.key.as_str()).or_default().insert(at) {
            twice += 1;
            continue;
        }
        lateness.push(a.received_us - at);
    }
    let mut missing: Vec<(i64, &str)> = Vec::new();
    for (&job, seen) in &by_job {
        let phase = seen.first().map_or(0, |t| t.rem_euclid(period_us));
        let first = start_us + (phase - start_us).rem_euclid(period_us);
        let grid = (first..end_us).step_by(usize::try_from(period_us).unwrap_or(1));
        missing.extend(grid.filter(|t| !seen.contains(t)).map(|t| (t, job)));
    }
    missing.sort_unstable();
    if let Some(&(_, job)) = missing.first() {
        trace_job(arrivals, job, start_us);
    }
    ScaleOutcome {
        span_s: (end_us - start_us) / 1_000_000,
        owed: 0,
        arrived: by_job.values().map(BTreeSet::len).sum(),
        duplicates,
        twice,
        missing: (missing.iter().take(3))
            .map(|&(t, job)| ((t - start_us) as f64 / 1e6, job.to_owned()))
            .collect(),
        lateness: Latencies::of_us(lateness.into_iter()).map(|l| l.percentiles()),
        counters: Counters::default(),
        shares: Vec::new(),
        load: 0.0,
        note: String::new(),
    }
}

/// Prints to stderr every arrival of `job` (a job with an occurrence
/// missing): its occurrence and arrival (s after the span opened) and its
/// `ScheduledKey`, to tell a lost event from one that named another
/// occurrence.
fn trace_job(arrivals: &[Arrival], job: &str, start_us: i64) {
    let s = |us: i64| (us - start_us) as f64 / 1e6;
    let each: Vec<String> = (arrivals.iter())
        .filter(|a| a.key == job)
        .map(|a| {
            let occurrence = a
                .occurrence_us
                .map_or("–".into(), |o| format!("{:.3}", s(o)));
            let key = a.scheduled_key.unwrap_or(0);
            format!("{occurrence} (key {key}, arrived {:.3})", s(a.received_us))
        })
        .collect();
    eprintln!(
        "scale: job {job} with an occurrence missing; its arrivals: {}",
        each.join(", ")
    );
}
