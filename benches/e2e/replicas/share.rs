//! The share and kill scenarios: three replicas share `--replicas-jobs`
//! one-shot jobs due uniformly within `--replicas-window-ms`, created
//! through their gRPC APIs round-robin and all in more than a loader period
//! (half the look-ahead) before the first is due, so that each is armed by
//! its shard's owner and no other (nothing is borrowed). With `kill`, the
//! second replica is killed (SIGKILL) in the middle of the window, the
//! shards it held read from the store's `shard_leases` just before.

use std::{collections::HashMap, sync::Arc, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};
use scheduler_service::grpc::proto::jobs_service_client::JobsServiceClient;
use tonic::transport::Channel;

use super::cluster::{Cluster, Counters, shard_of};
use crate::{
    args::Options,
    fire::reader::{Arrival, Reader},
    load::create_load,
    support::{
        now_us,
        proc::load_average,
        stats::{Latencies, Percentiles},
    },
};

/// Replicas of the share and kill scenarios.
pub const REPLICAS: usize = 3;
/// The replica the kill scenario kills.
const VICTIM: &str = "r2";
/// gRPC connections to each replica.
const CONNECTIONS_PER_REPLICA: usize = 2;

/// One run's figures.
#[derive(Debug, Clone)]
pub struct ShareOutcome {
    pub jobs: usize,
    pub created_per_s: f64,
    /// The creation ended less than a loader period before the first due
    /// time: some jobs may have been borrowed.
    pub overran: bool,
    /// Shards each replica owned 0.5 s before the first due time.
    pub owned: Vec<usize>,
    /// The replicas' armed timers, summed, 0.5 s before the first due time.
    pub armed: f64,
    /// Summed over the replicas (the killed one's read just before).
    pub counters: Counters,
    /// Distinct jobs on the run topic.
    pub arrived: usize,
    pub messages: usize,
    /// Lateness of each job's first arrival: arrival − `ScheduleTime`.
    pub lateness: Option<Percentiles>,
    pub kill: Option<Killed>,
    /// (due time − window opening in s, lateness in ms, of the killed
    /// replica's shards) of each job's first arrival, for the chart.
    pub points: Vec<(f64, f64, bool)>,
    pub load: f64,
    pub note: String,
}

impl ShareOutcome {
    /// Messages beyond the first of their job.
    pub fn duplicates(&self) -> usize {
        self.messages - self.arrived
    }

    /// Claim attempts per fired job.
    pub fn claims_per_fired(&self) -> f64 {
        self.counters.claim_attempts / self.counters.fired.max(1.0)
    }
}

/// What the kill did to the victim's jobs.
#[derive(Debug, Clone)]
pub struct Killed {
    /// When, in s after the window opened.
    pub at_s: f64,
    /// The shards it held just before.
    pub shards: usize,
    /// Jobs of those shards due after the kill, and their lateness.
    pub jobs: usize,
    pub lateness: Option<Percentiles>,
    /// Every job of those shards (those it held unpublished when it died
    /// included): their lateness.
    pub all: Option<Percentiles>,
}

/// When the jobs are due.
struct Window {
    open_ms: i64,
    offsets: Arc<Vec<i64>>,
}

/// One run of the share scenario, or of the kill scenario with `kill`.
pub async fn share_run(o: &Options, kill: bool, seed: u64) -> Result<ShareOutcome, String> {
    let load = load_average();
    let mut cluster = Cluster::new(o, o.replicas_look_ahead_secs);
    let outcome = share_in(o, &mut cluster, kill, seed).await;
    cluster.finish().await;
    outcome.map(|mut outcome| {
        outcome.load = load;
        outcome
    })
}

async fn share_in(
    o: &Options,
    cluster: &mut Cluster,
    kill: bool,
    seed: u64,
) -> Result<ShareOutcome, String> {
    for k in 1..=REPLICAS {
        cluster.start(o, &format!("r{k}")).await?;
    }
    cluster.await_balance(Duration::from_secs(20)).await?;
    let clients = cluster.clients(CONNECTIONS_PER_REPLICA).await;
    let window = plan_window(o, &clients, seed).await?;
    let reader = Reader::start(cluster.run_topic(), 1, o.fetch_wait_ms, o.replicas_jobs)?;
    let (offsets, open_ms) = (window.offsets.clone(), window.open_ms);
    let due_ms = Arc::new(move |i: usize| open_ms + offsets[i]);
    let created = create_load(&clients, o.replicas_jobs, o.concurrency, None, due_ms).await;
    if created.errors > 0 {
        return Err(format!(
            "{} creates failed: {:?}",
            created.errors, created.first_error
        ));
    }
    let overran = now_us() / 1000 > window.open_ms - loader_period_ms(o);
    sleep_until_ms(window.open_ms - 500).await;
    let (armed, owned) = (cluster.armed().await?, cluster.owned().await?);
    let victim = if kill {
        sleep_until_ms(window.open_ms + o.replicas_window_ms / 2).await;
        let shards = cluster.leases_of(VICTIM).await?;
        let at_us = now_us();
        cluster.kill(VICTIM).await?;
        Some((shards, at_us))
    } else {
        None
    };
    let deadline_ms = window.open_ms + o.replicas_window_ms + (o.grace_secs * 1000.0) as i64;
    while reader.jobs_seen() < o.replicas_jobs && now_us() / 1000 <= deadline_ms {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late duplicates, if any.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counters = cluster.counters().await?;
    let (warnings, first) = cluster.warnings();
    let arrivals = reader.stop_reading();
    let mut outcome = tally(&arrivals, window.open_ms, victim.as_ref());
    outcome.jobs = created.latencies_us.len();
    outcome.created_per_s = outcome.jobs as f64 / created.elapsed.as_secs_f64();
    outcome.overran = overran;
    outcome.owned = owned;
    outcome.armed = armed;
    outcome.counters = counters;
    if warnings > 0 {
        outcome.note = format!("{warnings} service warnings, first: {first:?}");
    }
    Ok(outcome)
}

/// Half the look-ahead: how often a replica's window loader runs, in ms.
fn loader_period_ms(o: &Options) -> i64 {
    i64::try_from(o.replicas_look_ahead_secs).unwrap_or(i64::MAX / 2000) * 500
}

async fn sleep_until_ms(at_ms: i64) {
    let wait = u64::try_from(at_ms - now_us() / 1000).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// Pilot: 100 jobs due in a day, which warm the connections and give the
/// create rate; from it, a window that opens a loader period and
/// `--lead-secs` after the creation is expected to end (at 1.5 × the
/// pilot's time per job).
async fn plan_window(
    o: &Options,
    clients: &[JobsServiceClient<Channel>],
    seed: u64,
) -> Result<Window, String> {
    let n = o.replicas_jobs;
    let pilot = n.clamp(1, 100);
    let far = now_us() / 1000 + 24 * 3600 * 1000;
    let p = create_load(clients, pilot, o.concurrency, None, Arc::new(move |_| far)).await;
    if p.errors > 0 {
        return Err(format!("pilot creates failed: {:?}", p.first_error));
    }
    let expected_ms = 1.5 * n as f64 / pilot as f64 * p.elapsed.as_secs_f64() * 1000.0;
    let open_ms = now_us() / 1000
        + expected_ms.ceil() as i64
        + loader_period_ms(o)
        + (o.lead_secs * 1000.0) as i64;
    let mut rng = StdRng::seed_from_u64(seed);
    let offsets = (0..n)
        .map(|_| rng.random_range(0..o.replicas_window_ms))
        .collect();
    Ok(Window {
        open_ms,
        offsets: Arc::new(offsets),
    })
}

/// What the arrivals say: distinct jobs, messages, the lateness of each
/// job's first arrival, and with `victim` (the shards the killed replica
/// held, and when it was killed, Unix µs) that of its jobs due after it.
fn tally(arrivals: &[Arrival], open_ms: i64, victim: Option<&(Vec<u16>, i64)>) -> ShareOutcome {
    let mut first: HashMap<&str, &Arrival> = HashMap::new();
    for a in arrivals {
        first.entry(a.key.as_str()).or_insert(a);
    }
    let of_victim = |a: &Arrival| {
        victim.is_some_and(|(shards, _)| shard_of(&a.key).is_some_and(|s| shards.contains(&s)))
    };
    let points: Vec<(f64, f64, bool)> = first
        .values()
        .filter_map(|a| {
            let due = a.schedule_us?;
            let late_ms = (a.received_us - due) as f64 / 1000.0;
            Some(((due - open_ms * 1000) as f64 / 1e6, late_ms, of_victim(a)))
        })
        .collect();
    let lateness_us = |keep: &dyn Fn(&Arrival) -> bool| {
        let values: Vec<i64> = (first.values())
            .filter(|a| keep(a))
            .filter_map(|a| a.schedule_us.map(|s| a.received_us - s))
            .collect();
        (
            values.len(),
            Latencies::of_us(values.into_iter()).map(|l| l.percentiles()),
        )
    };
    let kill = victim.map(|(shards, at_us)| {
        let after = |a: &Arrival| of_victim(a) && a.schedule_us.is_some_and(|s| s >= *at_us);
        let (jobs, lateness) = lateness_us(&after);
        let all = lateness_us(&of_victim).1;
        Killed {
            at_s: (at_us - open_ms * 1000) as f64 / 1e6,
            shards: shards.len(),
            jobs,
            lateness,
            all,
        }
    });
    ShareOutcome {
        jobs: 0,
        created_per_s: 0.0,
        overran: false,
        owned: Vec::new(),
        armed: 0.0,
        counters: Counters::default(),
        arrived: first.len(),
        messages: arrivals.len(),
        lateness: lateness_us(&|_| true).1,
        kill,
        points,
        load: 0.0,
        note: String::new(),
    }
}
