//! Scale-out with the service as child processes on PostgreSQL: replicas
//! share the shards through the store's leases (see
//! `src/service/ownership.rs`), each arms and claims only the jobs of its
//! own, and every job fires exactly once while shards move: when a fourth
//! replica joins, when one is killed, and when one is cut off from the
//! store (a [`Link`] between it and PostgreSQL) and comes back.
//!
//! Each test waits for the shares to settle by the replicas' own gauges
//! (`scheduler_shards_owned`), creates jobs due after the loaders have
//! seen them (more than a loader period ahead, so that no replica borrows
//! another's job), and reads every run event on the topic, up to end
//! markers written after the replicas stopped.

mod common;

use std::{collections::HashMap, path::Path, time::Duration};

use common::{
    EventReader, ReceivedEvent, create_request, kafka_brokers, postgres_port, postgres_uri_on,
    processes::{LogDir, ServiceProcess},
    test_vars, var_of,
};
use scheduler_service::{config::vars, telemetry::metrics};
use test_support::Link;
use tokio_postgres::NoTls;

/// Shards of every test: four replicas own four each.
const SHARDS: f64 = 16.0;
/// A bound on a hang while shares settle, not a timing assertion.
const SETTLE: Duration = Duration::from_secs(60);

/// The variables of these tests: PostgreSQL, 16 shards, leases of `lease_ms`,
/// a look-ahead of 4 s (the loader runs every 2 s), 3 partitions.
fn env(lease_ms: &str) -> Vec<(String, String)> {
    test_vars(&[
        (vars::DATABASE_URI, &common::postgres_uri()),
        (vars::SCHEDULER_SHARDS, "16"),
        (vars::SCHEDULER_SHARD_LEASE_MS, lease_ms),
        (vars::SCHEDULER_LOOK_AHEAD_SECS, "4"),
        (vars::TOPIC_JOB_RUN_PARTITIONS, "3"),
    ])
}

async fn start(env: &[(String, String)], dir: &Path, count: usize) -> Vec<ServiceProcess> {
    let mut replicas = Vec::new();
    for _ in 0..count {
        replicas.push(ServiceProcess::start(env, dir).await);
    }
    replicas
}

/// Each replica's value of the series `name` (without labels).
async fn each(replicas: &[&ServiceProcess], name: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for replica in replicas {
        values.push(replica.metric(name, &[]).await);
    }
    values
}

/// The shards each replica owns, by its gauge.
async fn shares(replicas: &[&ServiceProcess]) -> Vec<f64> {
    each(replicas, metrics::SHARDS_OWNED).await
}

/// Waits until the replicas own every shard between them, each at most
/// `most`; returns their shares.
async fn settled(replicas: &[&ServiceProcess], most: f64) -> Vec<f64> {
    shares_when(replicas, |owned| {
        owned.iter().sum::<f64>() == SHARDS && owned.iter().all(|&n| n <= most)
    })
    .await
}

/// Waits until the replicas' shares pass `check`; returns them.
async fn shares_when(replicas: &[&ServiceProcess], check: impl Fn(&[f64]) -> bool) -> Vec<f64> {
    let waited = tokio::time::timeout(SETTLE, async {
        loop {
            let owned = shares(replicas).await;
            if check(&owned) {
                return owned;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    match waited.await {
        Ok(owned) => owned,
        Err(_) => panic!("shares never settled: {:?}", shares(replicas).await),
    }
}

/// Creates `count` jobs through the replicas in turn, due uniformly from
/// `first_in_ms` over `spread_ms`; returns their ids.
async fn create_round_robin(
    replicas: &[&ServiceProcess],
    prefix: &str,
    count: usize,
    first_in_ms: i64,
    spread_ms: i64,
) -> Vec<String> {
    let mut clients = Vec::new();
    for replica in replicas {
        clients.push(replica.client().await);
    }
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let in_ms = first_in_ms + spread_ms * i64::try_from(i).unwrap_or(0) / count as i64;
        let request = create_request(&format!("{prefix}-{i}"), in_ms);
        let n = clients.len();
        let reply = clients[i % n].create_job(request).await;
        ids.push(reply.expect("CreateJob").into_inner().id);
    }
    ids
}

/// The shard of the job with this id (hex): its counter modulo 16, as
/// the service computes it.
fn shard_of(id: &str) -> u16 {
    let counter = u32::from_str_radix(&id[18..], 16).expect("an ObjectId in hex");
    u16::try_from(counter % 16).expect("below 16")
}

/// Which replica (by gRPC port) holds each shard's lease, read from the
/// store's table.
async fn owners(env: &[(String, String)]) -> HashMap<u16, u16> {
    let (client, connection) = tokio_postgres::connect(&common::postgres_uri(), NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    let schema = var_of(env, vars::DATABASE_DB_NAME);
    let rows = client
        .query(
            &format!("SELECT shard, owner FROM \"{schema}\".shard_leases"),
            &[],
        )
        .await
        .expect("the leases");
    rows.iter()
        .map(|row| {
            let shard: i16 = row.get(0);
            let owner: String = row.get(1);
            let port = owner.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
            (shard as u16, port.expect("owner named <host>:<port>"))
        })
        .collect()
}

/// Checks that each replica fired (since `before`, its earlier counts)
/// exactly the jobs of `ids` in the shards it owns: only owners armed and
/// claimed them.
async fn assert_fired_by_owners(
    env: &[(String, String)],
    replicas: &[&ServiceProcess],
    ids: &[String],
    before: &[f64],
) {
    let owners = owners(env).await;
    let after = each(replicas, metrics::JOBS_FIRED).await;
    for ((replica, after), before) in replicas.iter().zip(after).zip(before) {
        let own = ids
            .iter()
            .filter(|id| owners.get(&shard_of(id)) == Some(&replica.port))
            .count();
        assert_eq!(
            after - before,
            own as f64,
            "replica {} fired its jobs",
            replica.port
        );
    }
}

/// Reads the run events of `ids` (a bound of a minute and a half on a hang).
async fn fired(runs: &EventReader, ids: &[String]) -> HashMap<String, Vec<ReceivedEvent>> {
    let by_job = runs
        .collect(ids.len(), Duration::from_secs(90), Duration::ZERO)
        .await;
    let missing: Vec<&String> = ids.iter().filter(|id| !by_job.contains_key(*id)).collect();
    assert!(missing.is_empty(), "jobs that never fired: {missing:?}");
    by_job
}

/// Stops every replica still running, reads what is left on the topic,
/// and checks that each job of `ids` fired exactly once and nothing else did.
async fn assert_each_fired_once(
    runs: &EventReader,
    mut by_job: HashMap<String, Vec<ReceivedEvent>>,
    replicas: Vec<ServiceProcess>,
    ids: &[String],
) {
    for mut replica in replicas {
        assert!(replica.terminate().await.success(), "graceful exit");
    }
    for event in runs.rest().await {
        by_job.entry(event.key.clone()).or_default().push(event);
    }
    assert_eq!(by_job.len(), ids.len(), "run events of other jobs");
    let doubled: Vec<(&String, usize)> = by_job
        .iter()
        .map(|(id, events)| (id, events.len()))
        .filter(|&(_, n)| n != 1)
        .collect();
    assert!(doubled.is_empty(), "not exactly once: {doubled:?}");
}

#[tokio::test]
async fn three_replicas_share_the_shards_a_fourth_takes_its_part_and_each_job_fires_once() {
    let dir = LogDir::fresh();
    let env = env("3000");
    let mut replicas = start(&env, dir.path(), 3).await;
    let runs = EventReader::on_partitions(&kafka_brokers(), var_of(&env, vars::TOPIC_JOB_RUN), 3);
    let three: Vec<&ServiceProcess> = replicas.iter().collect();
    let owned = settled(&three, 6.0).await;
    assert!(
        owned.iter().all(|&n| n >= 1.0),
        "each owns a share: {owned:?}"
    );

    // Due 6 to 8 s ahead: the owner's loader arms each, nobody else does.
    let first = create_round_robin(&three, "three", 300, 6_000, 2_000).await;
    let mut by_job = fired(&runs, &first).await;
    assert_fired_by_owners(&env, &three, &first, &[0.0; 3]).await;
    let before = each(&three, metrics::JOBS_FIRED).await;

    replicas.push(ServiceProcess::start(&env, dir.path()).await);
    let four: Vec<&ServiceProcess> = replicas.iter().collect();
    assert_eq!(settled(&four, 4.0).await, [4.0; 4], "16 shards, 4 each");
    let second = create_round_robin(&four, "four", 300, 6_000, 2_000).await;
    by_job.extend(fired(&runs, &second).await);
    let before = [before, vec![0.0]].concat();
    assert_fired_by_owners(&env, &four, &second, &before).await;
    let ids = [first, second].concat();
    assert_each_fired_once(&runs, by_job, replicas, &ids).await;
}

#[tokio::test]
async fn a_killed_replicas_shards_move_to_the_others_and_each_job_fires_once() {
    let dir = LogDir::fresh();
    let env = env("2000");
    let mut replicas = start(&env, dir.path(), 3).await;
    let runs = EventReader::on_partitions(&kafka_brokers(), var_of(&env, vars::TOPIC_JOB_RUN), 3);
    let three: Vec<&ServiceProcess> = replicas.iter().collect();
    let owned = settled(&three, 6.0).await;
    let ids = create_round_robin(&three, "kill", 300, 4_000, 6_000).await;

    // Killed before any of its jobs is due: its shards' jobs are armed in
    // no survivor until its leases expire.
    let mut killed = replicas.remove(0);
    killed.kill_9();
    let by_job = fired(&runs, &ids).await;
    let survivors: Vec<&ServiceProcess> = replicas.iter().collect();
    assert_eq!(settled(&survivors, 8.0).await.iter().sum::<f64>(), SHARDS);
    assert!(
        owned[0] >= 1.0,
        "the killed replica owned shards: {owned:?}"
    );
    assert_each_fired_once(&runs, by_job, replicas, &ids).await;
}

#[tokio::test]
async fn a_replica_cut_off_from_the_store_stops_arming_and_gets_its_share_back() {
    let dir = LogDir::fresh();
    let env = env("2000");
    let link = Link::to(postgres_port()).await.expect("link");
    let via_link = postgres_uri_on(link.port);
    let mut cut_env = env.clone();
    cut_env.retain(|(name, _)| name != vars::DATABASE_URI && name != vars::DATABASE_TIMEOUT_MS);
    cut_env.push((vars::DATABASE_URI.to_owned(), via_link));
    cut_env.push((vars::DATABASE_TIMEOUT_MS.to_owned(), "1000".to_owned()));
    let cut = ServiceProcess::start(&cut_env, dir.path()).await;
    let other = ServiceProcess::start(&env, dir.path()).await;
    let runs = EventReader::on_partitions(&kafka_brokers(), var_of(&env, vars::TOPIC_JOB_RUN), 3);
    assert_eq!(settled(&[&cut, &other], 8.0).await, [8.0, 8.0]);

    // Cut off, it lets its leases go when they may have expired; the other
    // takes them when they have.
    link.cut();
    shares_when(&[&cut, &other], |owned| owned == [0.0, SHARDS]).await;
    assert!(cut.metric(metrics::SHARD_LEASE_LOSSES, &[]).await >= 8.0);
    let alone = create_round_robin(&[&other], "alone", 200, 3_000, 2_000).await;
    let mut by_job = fired(&runs, &alone).await;

    link.restore();
    assert_eq!(settled(&[&cut, &other], 8.0).await, [8.0, 8.0]);
    let back = create_round_robin(&[&cut, &other], "back", 200, 6_000, 2_000).await;
    by_job.extend(fired(&runs, &back).await);
    let ids = [alone, back].concat();
    assert_each_fired_once(&runs, by_job, vec![cut, other], &ids).await;
}
