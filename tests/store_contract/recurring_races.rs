//! Recurring jobs raced: replicas claiming the same occurrences at once,
//! one by one and in batches, win each occurrence exactly once (a claim
//! writes occurrence N+1 conditioned on the job it read); and racing
//! creations with one client key make one job.

use futures::future::join_all;
use tokio::sync::Barrier;

use super::{
    recurring::{every_minute, state},
    support::*,
};

cases!(
    a_batch_naming_an_occurrence_twice_claims_it_once,
    racing_claimers_win_each_occurrence_once,
    racing_inserts_with_one_client_key_make_one_job,
);

async fn a_batch_naming_an_occurrence_twice_claims_it_once(store: &Store) {
    let jobs: Vec<Job> = (0..3)
        .map(|i| every_minute(&format!("job {i}"), None))
        .collect();
    store.insert_all(&jobs).await;
    // A stale re-arm beside the arming: the first job's firing twice.
    let mut firings: Vec<(JobId, i64)> = jobs.iter().map(|j| (j.id, j.fire_token)).collect();
    firings.push(firings[0]);
    let won = store.claim_many(&firings, now()).await.expect("claim_many");
    let mut ids: Vec<JobId> = won.iter().map(|job| job.id).collect();
    ids.sort_unstable();
    let mut expected: Vec<JobId> = jobs.iter().map(|job| job.id).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "each job claimed once: {won:?}");
    for job in &jobs {
        let stored = store.get(job.id).await.expect("get").expect("job");
        assert_eq!(state(&stored).runs, 1);
        assert_eq!(stored.version, job.version + 1);
    }
}

async fn racing_claimers_win_each_occurrence_once(store: &Store) {
    const JOBS: usize = 40;
    const REPLICAS: usize = 6;
    let jobs: Vec<Job> = (0..JOBS)
        .map(|i| every_minute(&format!("job {i}"), None))
        .collect();
    store.insert_all(&jobs).await;
    let firings: Vec<(JobId, i64)> = jobs.iter().map(|j| (j.id, j.fire_token)).collect();
    let start = Arc::new(Barrier::new(REPLICAS));
    let mut replicas = Vec::new();
    for replica in 0..REPLICAS {
        let db = store.replica(4).await;
        let start = start.clone();
        let mut firings = firings.clone();
        if replica % 2 == 1 {
            firings.reverse();
        }
        replicas.push(tokio::spawn(async move {
            start.wait().await;
            if replica % 3 == 0 {
                return db.claim_many(&firings, now()).await.map_err(|e| e.error);
            }
            let mut won = Vec::new();
            for (id, token) in firings {
                won.extend(db.claim(id, token, now()).await?);
            }
            Ok(won)
        }));
    }
    let mut won: HashMap<JobId, usize> = HashMap::new();
    for result in join_all(replicas).await {
        for job in result.expect("join").expect("claims") {
            *won.entry(job.id).or_default() += 1;
        }
    }
    for job in &jobs {
        assert_eq!(won.get(&job.id), Some(&1), "{}", job.spec.name);
        let stored = store.get(job.id).await.expect("get").expect("job");
        assert_eq!(state(&stored).runs, 1);
        assert_eq!(stored.version, 1);
    }
}

async fn racing_inserts_with_one_client_key_make_one_job(store: &Store) {
    const RACERS: usize = 8;
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = Vec::new();
    for i in 0..RACERS {
        let db = store.replica(2).await;
        let start = start.clone();
        racers.push(tokio::spawn(async move {
            let job = Job {
                client_key: Some("order-42".to_owned()),
                ..job(&format!("racer {i}"), now())
            };
            start.wait().await;
            (job.id, db.insert(&job).await)
        }));
    }
    let mut inserted = Vec::new();
    for racer in join_all(racers).await {
        match racer.expect("join") {
            (id, Ok(())) => inserted.push(id),
            (_, Err(StoreError::ClientKeyTaken(key))) => assert_eq!(key, "order-42"),
            (_, Err(other)) => panic!("{other:?}"),
        }
    }
    assert_eq!(inserted.len(), 1, "{inserted:?}");
    let found = store
        .get_by_client_key("order-42")
        .await
        .expect("by key")
        .expect("found");
    assert_eq!(found.id, inserted[0]);
}
