//! The replicas of one run: `scheduler-service` binaries sharing one fresh
//! PostgreSQL schema and one set of fresh topics, each with its own gRPC
//! and metrics ports and its own name in the shard leases (`r1`, `r2`, …);
//! their metrics, scraped and summed (the counters of a replica that went
//! away read just before it went); and the shard leases as the store holds
//! them.

use std::time::{Duration, Instant};

use scheduler_service::{
    config::vars,
    domain::{JobId, shard::ShardCount},
    grpc::proto::jobs_service_client::JobsServiceClient,
    telemetry::metrics::{
        ARMED_TIMERS, CLAIM_ATTEMPTS, JOBS_FIRED, SHARD_LEASE_LOSSES, SHARD_REBALANCES,
        SHARDS_OWNED,
    },
};
use test_support::{free_port, postgres_uri, scrape_metrics, unique};
use tonic::transport::Channel;

use crate::{
    args::{Options, Store},
    service::{Service, drop_namespace, service_env, set, var},
};

/// SCHEDULER_SHARDS of every run (the service's default, set explicitly so
/// that the bench computes a job's shard with the same count).
pub const SHARDS: u16 = 64;
/// SCHEDULER_SHARD_LEASE_MS of every run (the service's default).
pub const LEASE_MS: i64 = 5000;

/// The shard of job `id` (hex ObjectId, the run event's key), as the
/// service computes it (`domain::shard`: the id's last three bytes,
/// big-endian, modulo [`SHARDS`]).
pub fn shard_of(id: &str) -> Option<u16> {
    let count = ShardCount::new(SHARDS)?;
    Some(count.of(&JobId::parse_str(id).ok()?))
}

/// One replica: its name in the leases, the process, its metrics port.
struct Replica {
    name: String,
    service: Service,
    metrics_port: u16,
}

/// The counters the part sums over replicas.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub claim_attempts: f64,
    pub fired: f64,
    pub rebalances: f64,
    pub lease_losses: f64,
}

impl Counters {
    fn add(&mut self, other: Counters) {
        self.claim_attempts += other.claim_attempts;
        self.fired += other.fired;
        self.rebalances += other.rebalances;
        self.lease_losses += other.lease_losses;
    }
}

/// The replicas of one run, live ones in the order started.
pub struct Cluster {
    env: Vec<(String, String)>,
    namespace: String,
    live: Vec<Replica>,
    /// Counters of the replicas stopped or killed, read just before.
    gone: Counters,
}

impl Cluster {
    /// No replica yet: the variables they will share (a fresh schema and
    /// topics, `look_ahead_secs`, one run-topic partition).
    pub fn new(o: &Options, look_ahead_secs: u64) -> Cluster {
        let namespace = format!("e2e_{}", unique());
        let mut env = service_env(o, Store::Postgres, &namespace);
        set(&mut env, vars::SCHEDULER_SHARDS, SHARDS);
        set(&mut env, vars::SCHEDULER_SHARD_LEASE_MS, LEASE_MS);
        set(&mut env, vars::SCHEDULER_LOOK_AHEAD_SECS, look_ahead_secs);
        set(&mut env, vars::TOPIC_JOB_RUN_PARTITIONS, 1);
        Cluster {
            env,
            namespace,
            live: Vec::new(),
            gone: Counters::default(),
        }
    }

    /// The run topic.
    pub fn run_topic(&self) -> &str {
        var(&self.env, vars::TOPIC_JOB_RUN)
    }

    /// Names of the live replicas, in the order started.
    pub fn names(&self) -> Vec<String> {
        self.live.iter().map(|r| r.name.clone()).collect()
    }

    /// Starts replica `name` and waits until it listens.
    pub async fn start(&mut self, o: &Options, name: &str) -> Result<(), String> {
        let metrics_port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let mut env = self.env.clone();
        set(&mut env, vars::METRICS_PORT, metrics_port);
        set(&mut env, vars::SCHEDULER_REPLICA_ID, name);
        let (service, _) =
            Service::start(&o.service_bin, &env, &format!("replicas-{name}")).await?;
        // The metrics endpoint may be bound a moment after the gRPC port.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(err) = scrape_metrics(metrics_port).await {
            if Instant::now() >= deadline {
                return Err(format!("{name}: {err}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.live.push(Replica {
            name: name.to_owned(),
            service,
            metrics_port,
        });
        Ok(())
    }

    /// `per_replica` gRPC clients on each live replica, interleaved (client
    /// `i` on replica `i mod replicas`), so that the load's in-flight slots
    /// take them round-robin.
    pub async fn clients(&self, per_replica: usize) -> Vec<JobsServiceClient<Channel>> {
        let mut each = Vec::new();
        for r in &self.live {
            each.push(r.service.clients(per_replica).await);
        }
        (0..per_replica)
            .flat_map(|k| each.iter().map(move |c| c[k].clone()))
            .collect()
    }

    /// The value of metric `name` on each live replica (summed over its
    /// label sets).
    pub async fn each(&self, name: &str) -> Result<Vec<f64>, String> {
        let mut values = Vec::new();
        for r in &self.live {
            values.push(metric(&scrape_metrics(r.metrics_port).await?, name));
        }
        Ok(values)
    }

    /// The shards each live replica owns.
    pub async fn owned(&self) -> Result<Vec<usize>, String> {
        Ok(self
            .each(SHARDS_OWNED)
            .await?
            .into_iter()
            .map(|v| v as usize)
            .collect())
    }

    /// Jobs armed in the live replicas' timers, summed.
    pub async fn armed(&self) -> Result<f64, String> {
        Ok(self.each(ARMED_TIMERS).await?.iter().sum())
    }

    /// The counters of every replica of the run: the live ones now, the
    /// others as read before they went.
    pub async fn counters(&self) -> Result<Counters, String> {
        let mut sum = self.gone;
        for r in &self.live {
            sum.add(counters_of(r.metrics_port).await?);
        }
        Ok(sum)
    }

    /// Waits until the live replicas own every shard between them, each
    /// its fair share at most and none without; their shares.
    pub async fn await_balance(&self, limit: Duration) -> Result<Vec<usize>, String> {
        let deadline = Instant::now() + limit;
        let fair = usize::from(SHARDS).div_ceil(self.live.len().max(1));
        loop {
            let owned = self.owned().await?;
            let sum: usize = owned.iter().sum();
            if sum == usize::from(SHARDS) && owned.iter().all(|&n| n > 0 && n <= fair) {
                return Ok(owned);
            }
            if Instant::now() >= deadline {
                return Err(format!("shards not balanced after {limit:?}: {owned:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The shards whose unexpired lease `name` holds, as the store says.
    pub async fn leases_of(&self, name: &str) -> Result<Vec<u16>, String> {
        let (client, connection) = tokio_postgres::connect(&postgres_uri(), tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        tokio::spawn(connection);
        let sql = format!(
            "SELECT shard FROM \"{}\".shard_leases WHERE owner = $1 AND expires_at > now() \
             ORDER BY shard",
            self.namespace
        );
        let rows = client
            .query(&sql, &[&name])
            .await
            .map_err(|e| format!("shard leases: {e}"))?;
        Ok(rows
            .iter()
            .filter_map(|row| u16::try_from(row.get::<_, i16>(0)).ok())
            .collect())
    }

    /// Takes replica `name` out of the live ones, its counters read first.
    async fn take(&mut self, name: &str) -> Result<Service, String> {
        let i = (self.live.iter())
            .position(|r| r.name == name)
            .ok_or_else(|| format!("no live replica {name}"))?;
        let counters = counters_of(self.live[i].metrics_port).await?;
        self.gone.add(counters);
        Ok(self.live.remove(i).service)
    }

    /// Kills replica `name` with SIGKILL (its counters read just before).
    pub async fn kill(&mut self, name: &str) -> Result<(), String> {
        self.take(name).await?.kill().await;
        Ok(())
    }

    /// Stops replica `name` with SIGTERM, waiting for its exit (its
    /// counters read just before).
    pub async fn stop(&mut self, name: &str) -> Result<(), String> {
        self.take(name).await?.stop().await;
        Ok(())
    }

    /// Warnings the live replicas logged since they listen: how many, and
    /// the first three.
    pub fn warnings(&self) -> (usize, Vec<String>) {
        self.live.iter().map(|r| r.service.warnings()).fold(
            (0, Vec::new()),
            |(n, mut first), (m, some)| {
                first.extend(some);
                first.truncate(3);
                (n + m, first)
            },
        )
    }

    /// Stops every live replica and drops the schema.
    pub async fn finish(self) {
        for r in self.live {
            r.service.stop().await;
        }
        drop_namespace(Store::Postgres, &self.namespace).await;
    }
}

async fn counters_of(port: u16) -> Result<Counters, String> {
    let text = scrape_metrics(port).await?;
    Ok(Counters {
        claim_attempts: metric(&text, CLAIM_ATTEMPTS),
        fired: metric(&text, JOBS_FIRED),
        rebalances: metric(&text, SHARD_REBALANCES),
        lease_losses: metric(&text, SHARD_LEASE_LOSSES),
    })
}

/// The sum of the samples of metric `name` in a Prometheus text page.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.chars().next()? {
                ' ' => rest,
                '{' => rest.split_once("} ")?.1,
                _ => return None,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}
