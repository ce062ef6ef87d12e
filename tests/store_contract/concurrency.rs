//! Racing claimers: replicas (each with its own client and connections on a
//! server store; the one store of the process otherwise) claim the same due
//! jobs at once, one by one or in overlapping batches, from both ends; each
//! job is claimed exactly once, and nothing is left due.

use futures::{StreamExt, TryStreamExt, stream};
use tokio::{sync::Barrier, task::JoinHandle};

use super::support::*;

/// A replica's task in a race: the jobs it claimed.
type Claimer = JoinHandle<Result<Vec<Job>, StoreError>>;

cases!(
    many_concurrent_claimers_claim_each_job_exactly_once,
    concurrent_batch_claims_claim_each_job_exactly_once,
);

/// Waits for the `replicas` racing to claim `jobs` and checks that they
/// claimed each exactly once, each as a claim must leave it, and left
/// nothing due.
async fn each_claimed_once(store: &Store, jobs: &[Job], replicas: Vec<Claimer>) {
    let mut won = Vec::new();
    for handle in replicas {
        won.extend(handle.await.expect("join").expect("claims"));
    }
    let mut claimed_by: HashMap<JobId, usize> = HashMap::new();
    for job in &won {
        assert_eq!(job.status, JobStatus::Running);
        assert!(job.pending.run);
        assert_eq!(job.version, 1);
        *claimed_by.entry(job.id).or_default() += 1;
    }
    assert_eq!(won.len(), jobs.len(), "successful claims");
    assert_eq!(claimed_by.len(), jobs.len(), "distinct jobs claimed");
    for job in jobs {
        assert_eq!(claimed_by.get(&job.id), Some(&1), "{}", job.spec.name);
    }
    let due = store
        .scheduled_before(now())
        .await
        .expect("due")
        .all_readable();
    assert!(due.is_empty(), "{due:?}");
}

/// The requirement: several replicas race to claim every due job
/// one by one, half of them walking the jobs forwards and half backwards;
/// each job is claimed exactly once.
async fn many_concurrent_claimers_claim_each_job_exactly_once(store: &Store) {
    const JOBS: usize = 200;
    const REPLICAS: usize = 8;
    const IN_FLIGHT: usize = 4;

    let past = now() - TimeDelta::seconds(1);
    let jobs: Vec<Job> = (0..JOBS).map(|i| job(&format!("due {i}"), past)).collect();
    store.insert_all(&jobs).await;
    let due = Arc::new(
        store
            .scheduled_before(now())
            .await
            .expect("due")
            .all_readable(),
    );
    assert_eq!(due.len(), JOBS);

    let start = Arc::new(Barrier::new(REPLICAS));
    let mut replicas = Vec::new();
    for replica in 0..REPLICAS {
        let db = store.replica(IN_FLIGHT).await;
        let due = Arc::clone(&due);
        let start = Arc::clone(&start);
        replicas.push(tokio::spawn(async move {
            // Open the replica's connections before the race starts.
            let warm: Vec<_> = stream::iter(0..IN_FLIGHT)
                .map(|_| db.get(JobId::new()))
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            drop(warm);
            start.wait().await;
            let order: Vec<DueJob> = if replica % 2 == 0 {
                due.iter().copied().collect()
            } else {
                due.iter().rev().copied().collect()
            };
            let db = &db;
            let claims: Vec<Option<Job>> = stream::iter(order)
                .map(|d| async move { db.claim(d.id, d.fire_token, now()).await })
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            Ok::<_, StoreError>(claims.into_iter().flatten().collect::<Vec<Job>>())
        }));
    }
    each_claimed_once(store, &jobs, replicas).await;
    let running = store
        .running_before(now() + TimeDelta::seconds(1))
        .await
        .expect("running")
        .all_readable();
    assert_eq!(running.len(), JOBS);
    assert!(running.iter().all(|j| j.version == 1 && j.pending.run));
}

/// Two replicas cut the same due jobs into batches at different points and
/// in opposite orders, so that their batches overlap partly and meet on the
/// same jobs from both sides; each job is claimed exactly once. Several
/// rounds, each on new jobs, because an overlap that goes wrong need not go
/// wrong every time.
async fn concurrent_batch_claims_claim_each_job_exactly_once(store: &Store) {
    const JOBS: usize = 300;
    const BATCH: usize = 50;
    const REPLICAS: usize = 2;
    const ROUNDS: usize = 5;

    for round in 0..ROUNDS {
        let past = now() - TimeDelta::seconds(1);
        let jobs: Vec<Job> = (0..JOBS)
            .map(|i| job(&format!("due {round}.{i}"), past))
            .collect();
        store.insert_all(&jobs).await;
        let due: Arc<Vec<(JobId, i64)>> =
            Arc::new(jobs.iter().map(|j| (j.id, j.fire_token)).collect());

        let start = Arc::new(Barrier::new(REPLICAS));
        let mut replicas = Vec::new();
        for replica in 0..REPLICAS {
            let db = store.replica(2).await;
            let due = Arc::clone(&due);
            let start = Arc::clone(&start);
            replicas.push(tokio::spawn(async move {
                db.get(JobId::new()).await?;
                start.wait().await;
                let order: Vec<(JobId, i64)> = if replica == 0 {
                    due.iter().copied().collect()
                } else {
                    due.iter().rev().copied().collect()
                };
                let offset = replica * BATCH / 2;
                let mut batches = vec![order[..offset].to_vec()];
                batches.extend(order[offset..].chunks(BATCH).map(<[_]>::to_vec));
                let db = &db;
                let claims: Vec<Vec<Job>> = stream::iter(batches)
                    .map(|batch| async move { db.claim_many(&batch, now()).await })
                    .buffer_unordered(2)
                    .try_collect()
                    .await
                    .map_err(|err| err.error)?;
                Ok::<_, StoreError>(claims.into_iter().flatten().collect::<Vec<Job>>())
            }));
        }
        each_claimed_once(store, &jobs, replicas).await;
    }
}
