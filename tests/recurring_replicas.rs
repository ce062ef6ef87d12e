//! Three replicas (child processes) on one PostgreSQL store, on the real
//! clock, racing on the same recurring jobs: every occurrence is published
//! exactly once, each with its own `ScheduledKey`.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::{EventReader, kafka_brokers, processes::ServiceProcess, test_vars, var_of};
use scheduler_service::{config::vars, grpc::proto};

const JOBS: usize = 60;
const RUNS: usize = 5;

#[tokio::test]
async fn three_replicas_on_postgres_publish_each_occurrence_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = test_vars(&[
        (vars::DATABASE_URI, &common::postgres_uri()),
        // A short window so that every replica arms every occurrence.
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
        max_runs: i64::try_from(RUNS).expect("small"),
        catch_up: "each".to_owned(),
        catch_up_max: 1000,
        overlap: "run".to_owned(),
        ..Default::default()
    };
    let mut ids = HashSet::new();
    for i in 0..JOBS {
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

    let mut events = Vec::new();
    while events.len() < JOBS * RUNS {
        // A bound on a hang, not a timing assertion.
        let event = runs
            .next(Duration::from_secs(90))
            .await
            .expect("every occurrence fires");
        events.push(event);
    }
    for mut replica in replicas {
        assert!(replica.terminate().await.success(), "graceful exit");
    }
    events.extend(runs.rest().await);

    let mut by_job: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for received in &events {
        let event = &received.event;
        let occurrence = event.occurrence.clone().expect("Occurrence");
        by_job
            .entry(event.id.clone())
            .or_default()
            .push((occurrence, event.fire_token));
    }
    assert_eq!(by_job.keys().cloned().collect::<HashSet<_>>(), ids);
    for (id, fired) in &by_job {
        let occurrences: HashSet<&String> = fired.iter().map(|(o, _)| o).collect();
        let keys: HashSet<i64> = fired.iter().map(|(_, k)| *k).collect();
        assert_eq!(fired.len(), RUNS, "job {id}: {fired:?}");
        assert_eq!(
            occurrences.len(),
            RUNS,
            "job {id}: an occurrence twice: {fired:?}"
        );
        assert_eq!(keys.len(), RUNS, "job {id}: a key twice: {fired:?}");
    }
}
