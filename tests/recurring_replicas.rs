//! Recurring jobs with the service as child processes on PostgreSQL, on
//! the real clock: three replicas sharing the jobs' shards fire every
//! occurrence once, under a `ScheduledKey` of its own, and publish it once
//! (one acknowledged publish per occurrence); and a service
//! killed (SIGKILL) during a burst of occurrences and restarted accounts
//! for every occurrence once, the missed ones in catch-up runs.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use common::{
    EventReader, kafka_brokers,
    processes::{LogDir, ServiceProcess, wait_for_total_metric},
    test_vars, var_of,
};
use scheduler_service::{config::vars, grpc::proto, telemetry::metrics::EVENTS_PUBLISHED};

/// Jobs of the three-replica test, and runs of each: the size by
/// default, a thousand jobs every second for a minute (about 75 s on a
/// debug build); `RECURRING_REPLICAS_JOBS` and `RECURRING_REPLICAS_RUNS`
/// change it.
fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .map_or(default, |value| value.parse().expect("a count"))
}

/// What a stalled run is missing: how many occurrences arrived, the jobs
/// with fewer than `runs_each` (and how many each has), and those with none.
fn shortfall(
    occurrences: &HashSet<(String, Option<String>)>,
    ids: &HashSet<String>,
    runs_each: usize,
) -> String {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (id, _) in occurrences {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let short: Vec<_> = seen.iter().filter(|(_, n)| **n < runs_each).collect();
    let none: Vec<_> = ids
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .collect();
    format!(
        "not every occurrence fired: {} occurrences of {}; short: {short:?}; none: {none:?}",
        occurrences.len(),
        ids.len() * runs_each
    )
}

/// A run event as read: its occurrence, its fire token (the
/// `ScheduledKey`) and its (partition, offset) on the topic.
type Published = (String, i64, (i32, i64));

#[tokio::test]
async fn three_replicas_on_postgres_fire_each_occurrence_once_and_publish_it_once() {
    let (jobs, runs_each) = (
        size("RECURRING_REPLICAS_JOBS", 1000),
        size("RECURRING_REPLICAS_RUNS", 60),
    );
    let dir = LogDir::fresh();
    let env = test_vars(&[
        (vars::DATABASE_URI, &common::postgres_uri()),
        // A short window: each replica's loader looks every second.
        (vars::SCHEDULER_LOOK_AHEAD_SECS, "2"),
        (vars::TOPIC_JOB_RUN_PARTITIONS, "3"),
    ]);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(ServiceProcess::start(&env, dir.path()).await);
    }
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(replica.client().await);
    }
    let runs = EventReader::on_partitions(&kafka_brokers(), var_of(&env, vars::TOPIC_JOB_RUN), 3);

    // Every second, five runs each; every occurrence runs (catch-up `each`,
    // overlap `run`: no result is sent).
    let recurrence = proto::Recurrence {
        cron_expression: "* * * * * *".to_owned(),
        max_runs: i64::try_from(runs_each).expect("a count"),
        catch_up: "each".to_owned(),
        catch_up_max: 1000,
        overlap: "run".to_owned(),
        ..Default::default()
    };
    let mut ids = HashSet::new();
    for i in 0..jobs {
        let reply = clients[i % 3]
            .create_job(proto::CreateJobRequest {
                name: format!("every second {i}"),
                job_type: proto::JobType::Sms.into(),
                job_data: "{}".to_owned(),
                recurrence: Some(recurrence.clone()),
                ..Default::default()
            })
            .await
            .expect("CreateJob");
        ids.insert(reply.into_inner().id);
    }

    let (mut events, mut occurrences) = (Vec::new(), HashSet::new());
    while occurrences.len() < jobs * runs_each {
        // A bound on a hang, not a timing assertion.
        let event = runs
            .next(Duration::from_secs(90))
            .await
            .unwrap_or_else(|| panic!("{}", shortfall(&occurrences, &ids, runs_each)));
        occurrences.insert((event.event.id.clone(), event.event.occurrence.clone()));
        events.push(event);
    }
    // The run events the replicas' producers had acknowledged, once they
    // are all counted (a reader may see the last ones first).
    let acknowledged = wait_for_total_metric(
        &replicas,
        EVENTS_PUBLISHED,
        &[("topic", var_of(&env, vars::TOPIC_JOB_RUN))],
        (jobs * runs_each) as f64,
    )
    .await;
    for mut replica in replicas {
        assert!(replica.terminate().await.success(), "graceful exit");
    }
    events.extend(runs.rest().await);

    let by_job = published_by_job(&events);
    assert_eq!(by_job.keys().cloned().collect::<HashSet<_>>(), ids);
    for (id, fired) in &by_job {
        assert_fired_once_each(id, fired, runs_each);
    }
    // The service's publishes the broker acknowledged: one per occurrence.
    // A copy on the topic beyond them is the producer's (a batch it sent
    // again that the broker stored twice), which consumers drop by its key.
    assert_eq!(
        acknowledged,
        (jobs * runs_each) as f64,
        "acknowledged publishes"
    );
    if events.len() > jobs * runs_each {
        eprintln!(
            "{} copies on the topic beyond the acknowledged publishes",
            events.len() - jobs * runs_each
        );
    }
}

/// Each job's run events as read, with their place on the topic: copies of
/// one event at different offsets were produced twice, at one offset read
/// twice.
fn published_by_job(events: &[common::ReceivedEvent]) -> HashMap<String, Vec<Published>> {
    let mut by_job: HashMap<String, Vec<Published>> = HashMap::new();
    for received in events {
        let event = &received.event;
        let occurrence = event.occurrence.clone().expect("Occurrence");
        by_job.entry(event.id.clone()).or_default().push((
            occurrence,
            event.fire_token,
            received.position,
        ));
    }
    by_job
}

/// Every one of a job's `runs_each` occurrences fired once: on the topic,
/// under one key of its own (its copies, if any, under that same key).
fn assert_fired_once_each(id: &str, fired: &[Published], runs_each: usize) {
    let mut keys_by_occurrence: HashMap<&String, HashSet<i64>> = HashMap::new();
    for (occurrence, key, _) in fired {
        keys_by_occurrence
            .entry(occurrence)
            .or_default()
            .insert(*key);
    }
    let keys: HashSet<i64> = fired.iter().map(|(_, key, _)| *key).collect();
    assert_eq!(
        keys_by_occurrence.len(),
        runs_each,
        "job {id}: occurrences missing: {fired:?}"
    );
    assert!(
        keys_by_occurrence.values().all(|keys| keys.len() == 1),
        "job {id}: an occurrence fired twice: {fired:?}"
    );
    assert_eq!(keys.len(), runs_each, "job {id}: a key twice: {fired:?}");
}

/// The occurrences each run event stands for, by job, one entry per firing
/// (a run event delivered twice, after a crash, has the same key).
fn covered_by_job(
    events: &[common::ReceivedEvent],
) -> HashMap<String, HashMap<i64, Vec<DateTime<Utc>>>> {
    let time = |text: &str| text.parse::<DateTime<Utc>>().expect("an RFC 3339 time");
    let mut by_job: HashMap<String, HashMap<i64, Vec<DateTime<Utc>>>> = HashMap::new();
    for received in events {
        let event = &received.event;
        let covered = match &event.occurrences {
            Some(list) => list.iter().map(|t| time(t)).collect(),
            None => vec![time(event.occurrence.as_deref().expect("Occurrence"))],
        };
        by_job
            .entry(event.id.clone())
            .or_default()
            .insert(event.fire_token, covered);
    }
    by_job
}

#[tokio::test]
async fn a_killed_service_accounts_for_every_occurrence_once_after_its_restart() {
    const JOBS: usize = 20;
    let dir = LogDir::fresh();
    let env = test_vars(&[(vars::DATABASE_URI, &common::postgres_uri())]);
    let mut service = ServiceProcess::start(&env, dir.path()).await;
    let mut client = service.client().await;
    let runs = EventReader::new(var_of(&env, vars::TOPIC_JOB_RUN));
    // Every second; catch-up `once` (the default); every occurrence runs
    // while the service is up (overlap `run`: no result is sent).
    let recurrence = proto::Recurrence {
        cron_expression: "* * * * * *".to_owned(),
        overlap: "run".to_owned(),
        ..Default::default()
    };
    for i in 0..JOBS {
        client
            .create_job(proto::CreateJobRequest {
                name: format!("burst {i}"),
                job_type: proto::JobType::Sms.into(),
                job_data: "{}".to_owned(),
                recurrence: Some(recurrence.clone()),
                ..Default::default()
            })
            .await
            .expect("CreateJob");
    }
    let mut events = Vec::new();
    while events.len() < 2 * JOBS {
        events.push(runs.next(Duration::from_secs(90)).await.expect("runs"));
    }
    service.kill_9();
    // Down while several occurrences pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    service.restart().await;
    // After the restart each job's first run is a catch-up run.
    let mut caught_up = HashSet::new();
    while caught_up.len() < JOBS {
        let received = runs
            .next(Duration::from_secs(90))
            .await
            .expect("catch-up runs");
        if received
            .event
            .occurrences
            .as_ref()
            .is_some_and(|o| o.len() >= 2)
        {
            caught_up.insert(received.event.id.clone());
        }
        events.push(received);
    }
    assert!(service.terminate().await.success(), "graceful exit");
    events.extend(runs.rest().await);

    let by_job = covered_by_job(&events);
    assert_eq!(by_job.len(), JOBS);
    for (id, firings) in by_job {
        let mut covered: Vec<DateTime<Utc>> = firings.into_values().flatten().collect();
        covered.sort_unstable();
        let first = covered[0];
        let every_second: Vec<DateTime<Utc>> = (0..covered.len())
            .map(|i| first + TimeDelta::seconds(i64::try_from(i).expect("small")))
            .collect();
        // Each occurrence once (no two firings stand for one), none lost
        // (every second from the first to the last).
        assert_eq!(covered, every_second, "job {id}");
    }
}
