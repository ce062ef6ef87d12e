//! The claim protocol under contention, in one process: many claimers race
//! for the same due jobs and exactly one claim per job may win. PostgreSQL
//! is covered in `tests/postgres_store.rs`; MongoDB here when `MONGODB_URI`
//! names a real MongoDB (the MongoDB-protocol test server does not make
//! conditional updates atomic across connections).

mod common;

use std::{sync::Arc, time::Duration};

use scheduler_service::{
    domain::{Job, JobSpec, JobType, now},
    store::{JobDB, memory::MemoryJobDB, mongo::MongoJobDB},
};

const JOBS: usize = 200;
const CLAIMERS: usize = 8;

/// Inserts `JOBS` due jobs, lets `CLAIMERS` stores race to claim each of them
/// (half walk the jobs forwards, half backwards), and checks that exactly one
/// claim per job won.
async fn exactly_one_claim_per_job(stores: Vec<Arc<dyn JobDB>>) {
    let jobs: Vec<Job> = (0..JOBS)
        .map(|i| {
            Job::new_scheduled(
                JobSpec {
                    name: format!("claim-{i}"),
                    description: String::new(),
                    schedule_time: now(),
                    job_type: JobType::Email,
                    job_data: "{}".into(),
                },
                now(),
            )
        })
        .collect();
    for job in &jobs {
        stores[0].insert(job).await.expect("insert");
    }
    let jobs = Arc::new(jobs);
    let claimers = stores.into_iter().enumerate().map(|(n, store)| {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let order: Vec<&Job> = if n % 2 == 0 {
                jobs.iter().collect()
            } else {
                jobs.iter().rev().collect()
            };
            let mut won = Vec::new();
            for job in order {
                if let Some(claimed) = store
                    .claim(job.id, job.fire_token, now())
                    .await
                    .expect("claim")
                {
                    won.push(claimed.id);
                }
            }
            won
        })
    });
    let mut winners = Vec::new();
    for claimer in futures::future::join_all(claimers).await {
        winners.extend(claimer.expect("claimer task"));
    }
    assert_eq!(winners.len(), JOBS, "claims won in all");
    winners.sort_unstable();
    winners.dedup();
    assert_eq!(winners.len(), JOBS, "each job claimed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_memory_store_lets_one_claimer_win_each_job() {
    let store: Arc<dyn JobDB> = Arc::new(MemoryJobDB::new());
    exactly_one_claim_per_job(vec![store; CLAIMERS]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_mongodb_lets_one_claimer_win_each_job() {
    let Ok(uri) = std::env::var("MONGODB_URI") else {
        eprintln!("skipped: MONGODB_URI is not set to a real MongoDB");
        return;
    };
    let collection = format!("claims_{}", common::unique());
    let mut stores: Vec<Arc<dyn JobDB>> = Vec::new();
    for _ in 0..CLAIMERS {
        // A client (and connection pool) per claimer, like separate replicas.
        let store = MongoJobDB::connect(
            &uri,
            "scheduler_claims_test",
            &collection,
            Duration::from_secs(5),
            None,
        )
        .await
        .expect("connect");
        stores.push(Arc::new(store));
    }
    exactly_one_claim_per_job(stores).await;
}
