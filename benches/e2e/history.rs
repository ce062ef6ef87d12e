//! Part 5, run history: how fast a job's run history lists its first page
//! (ListJobRuns' store call), against the target of a job with 100 runs
//! listing its first page of 100 in under 5 ms on every store. On each of
//! `--history-stores`, opened in this process through the store API (a
//! fresh schema, folder or collection per run), `--history-jobs` one-shot
//! jobs get `--history-runs` runs each, written as the service writes them:
//! a job allowed 100 attempts is claimed and fails, again and again, each
//! failure recording its run in the same atomic step (`history::changes`). Each job's first page is then listed once, a
//! warm-up not counted (on MongoDB it flushes the job's run log into the
//! runs collection, so its time is shown apart), and ten times more, one
//! call at a time, round-robin over the jobs: p50, p99 and max. Every
//! listing must return all the job's runs (at most a page) and their total.
//! On PostgreSQL and the embedded store a pruning pass then keeps the newest
//! half of each job's runs (`prune_runs` in batches of 1,000 until one
//! falls short): its time and the runs it removed, which must be the rest.

use std::{fmt::Write as _, sync::Arc, time::Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use scheduler_service::{
    domain::{
        Job, JobId, JobSpec, JobType, PageRequest, PendingEvents, ResultStatus, history, now,
        report::RunReport,
        retry::{Attempts, RetryPolicy},
    },
    service::PRUNE_BATCH,
    store::{self, JobDB, RunRetention},
};
use test_support::unique;

use crate::{
    args::{Options, Store},
    load::JOB_DATA,
    report::mark,
    service::{drop_namespace, open_store},
    support::stats::{Latencies, Percentiles, median},
};

/// The page listed: the first, of 100 runs (ListJobRuns' largest).
const PAGE_SIZE: u32 = 100;
/// Timed listings of each job, after its warm-up.
const LISTINGS_PER_JOB: usize = 10;
/// Jobs given their runs at once.
const FILL_CONCURRENCY: usize = 8;
/// The target: a first page within this long.
const TARGET_MS: f64 = 5.0;

#[derive(Debug, Clone)]
struct Outcome {
    store: Store,
    /// Giving every job its runs (s).
    fill_s: f64,
    /// The slowest first (warm-up) listing of a job (ms).
    first_ms: f64,
    listings: usize,
    listing: Percentiles,
    prune: Option<Pruned>,
    note: String,
}

#[derive(Debug, Clone, Copy)]
struct Pruned {
    ms: f64,
    removed: u64,
    batches: usize,
}

const HEADER: &str = "| store | run | jobs × runs | fill (s) | first listing, slowest (ms) | listings | p50 (ms) | p99 (ms) | max (ms) | pruning (ms) | runs pruned | prune batches | note |\n\
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn row(o: &Options, r: &Outcome, label: &str) -> String {
    let (prune_ms, removed, batches) = r.prune.map_or_else(
        || ("–".into(), "–".into(), "–".into()),
        |p| {
            (
                format!("{:.1}", p.ms),
                p.removed.to_string(),
                p.batches.to_string(),
            )
        },
    );
    format!(
        "| {} | {label} | {} × {} | {:.1} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {prune_ms} | {removed} | {batches} | {} |",
        r.store.name(),
        o.history_jobs,
        o.history_runs,
        r.fill_s,
        r.first_ms,
        r.listings,
        r.listing.p50_ms,
        r.listing.p99_ms,
        r.listing.max_ms,
        r.note
    )
}

/// Runs the part on each store and prints its tables; false if a store
/// could not be filled, a listing was short or wrong, or pruning removed
/// other than the older half.
pub async fn history_part(o: &Options) -> bool {
    println!(
        "\n## Run history: the first page ({PAGE_SIZE} runs) of jobs with {} runs each\n\n{HEADER}",
        o.history_runs
    );
    let mut ok = true;
    let mut results = Vec::new();
    for run in 0..o.runs {
        for &store in &o.history_stores {
            match history_run(o, store).await {
                Ok(r) => {
                    println!("{}", row(o, &r, &format!("run {}", run + 1)));
                    results.push(r);
                }
                Err(err) => {
                    ok = false;
                    println!("| {} | (run {} failed: {err}) |", store.name(), run + 1);
                }
            }
        }
    }
    print_medians(o, &results);
    ok
}

/// The medians of each store's runs, and the target against them.
fn print_medians(o: &Options, results: &[Outcome]) {
    println!("\n### Medians of {} run(s)\n\n{HEADER}", o.runs);
    let mut targets = String::from("\n### Targets\n\n");
    for &store in &o.history_stores {
        let runs: Vec<&Outcome> = results.iter().filter(|r| r.store == store).collect();
        let Some(m) = median_outcome(&runs) else {
            continue;
        };
        println!("{}", row(o, &m, &format!("median of {}", runs.len())));
        let _ = writeln!(
            targets,
            "- {}: a job with {} runs lists its first page in under {TARGET_MS} ms (p99): {} (p99 {:.2} ms, max {:.2} ms)",
            store.name(),
            o.history_runs,
            mark(m.listing.p99_ms < TARGET_MS),
            m.listing.p99_ms,
            m.listing.max_ms
        );
    }
    print!("{targets}");
}

/// The median of each figure of `runs` (one store's) on its own.
fn median_outcome(runs: &[&Outcome]) -> Option<Outcome> {
    let first = runs.first()?;
    let f = |g: fn(&Outcome) -> f64| median(runs.iter().map(|r| g(r)).collect());
    let pruned: Vec<Pruned> = runs.iter().filter_map(|r| r.prune).collect();
    let prune = (!pruned.is_empty()).then(|| Pruned {
        ms: median(pruned.iter().map(|p| p.ms).collect()),
        removed: median(pruned.iter().map(|p| p.removed).collect()),
        batches: median(pruned.iter().map(|p| p.batches).collect()),
    });
    Some(Outcome {
        store: first.store,
        fill_s: f(|r| r.fill_s),
        first_ms: f(|r| r.first_ms),
        listings: first.listings,
        listing: Percentiles {
            p50_ms: f(|r| r.listing.p50_ms),
            p99_ms: f(|r| r.listing.p99_ms),
            max_ms: f(|r| r.listing.max_ms),
        },
        prune,
        note: first.note.clone(),
    })
}

/// One run on `store`: a fresh namespace filled, listed, pruned, dropped.
async fn history_run(o: &Options, store: Store) -> Result<Outcome, String> {
    let namespace = format!("e2e_history_{}", unique());
    let db = open_store(store, &namespace).await?;
    let measured = measure(o, store, &db).await;
    // The embedded store's file is removed with its folder: close it first.
    drop(db);
    drop_namespace(store, &namespace).await;
    measured
}

async fn measure(o: &Options, store: Store, db: &Arc<dyn JobDB>) -> Result<Outcome, String> {
    // As the service: a store works without its indexes, only scanning.
    let note = match db.ensure_indexes().await {
        Ok(()) => String::new(),
        Err(err) => {
            eprintln!("history ({}): cannot create indexes: {err}", store.name());
            "the server refused the indexes".to_owned()
        }
    };
    let start = Instant::now();
    let ids = fill(db.as_ref(), o.history_jobs, o.history_runs).await?;
    let fill_s = start.elapsed().as_secs_f64();
    let mut first_ms = 0.0f64;
    for &id in &ids {
        first_ms = first_ms.max(listing_us(db.as_ref(), id, o.history_runs).await? as f64 / 1000.0);
    }
    let mut timed = Vec::with_capacity(ids.len() * LISTINGS_PER_JOB);
    for _ in 0..LISTINGS_PER_JOB {
        for &id in &ids {
            timed.push(listing_us(db.as_ref(), id, o.history_runs).await?);
        }
    }
    let listing = Latencies::of_us(timed.iter().copied())
        .ok_or("no listing timed")?
        .percentiles();
    let prune = match store {
        Store::Postgres | Store::Embedded => Some(prune(db.as_ref(), o).await?),
        Store::MongoDb => None,
    };
    Ok(Outcome {
        store,
        fill_s,
        first_ms,
        listings: timed.len(),
        listing,
        prune,
        note,
    })
}

/// Stores `jobs` jobs of `runs` runs each; their ids.
async fn fill(db: &dyn JobDB, jobs: usize, runs: u32) -> Result<Vec<JobId>, String> {
    // Every run fired in the last hour and a half, a second apart.
    let start = now() - TimeDelta::minutes(90);
    futures::stream::iter(0..jobs)
        .map(|n| job_with_runs(db, n, runs, start))
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect()
        .await
}

/// Stores job `n`, due at `start`, and gives it `runs` runs, as the
/// service would: each attempt claimed a second after the last, then
/// failed, its run's record written with the failure. Its id.
async fn job_with_runs(
    db: &dyn JobDB,
    n: usize,
    runs: u32,
    start: DateTime<Utc>,
) -> Result<JobId, String> {
    let mut job = stored(db, n, start).await?;
    for k in 0..runs {
        let at = start + TimeDelta::seconds(i64::from(k));
        let running = db
            .claim(job.id, job.fire_token, at)
            .await
            .map_err(|e| format!("claim of job {}: {e}", job.id))?
            .ok_or_else(|| format!("claim of job {} lost", job.id))?;
        job = failed(db, &running, at + TimeDelta::milliseconds(500)).await?;
    }
    Ok(job.id)
}

/// A one-shot job due at `start`, allowed 100 attempts without backoff,
/// its create event long delivered, stored.
async fn stored(db: &dyn JobDB, n: usize, start: DateTime<Utc>) -> Result<Job, String> {
    let policy = RetryPolicy::new(100, 0, 0, 1.0, 0.0).map_err(|e| e.to_string())?;
    let spec = JobSpec {
        name: format!("e2e-history-{n}"),
        description: "end-to-end benchmark".into(),
        schedule_time: start,
        job_type: JobType::Email,
        job_data: JOB_DATA.into(),
    };
    let job = Job {
        pending: PendingEvents::NONE,
        attempts: Attempts::fresh(Some(policy)),
        ..Job::new_scheduled(spec, now())
    };
    db.insert(&job)
        .await
        .map_err(|e| format!("insert of job {n}: {e}"))?;
    Ok(job)
}

/// `running` after its executor reported a failure at `at`: written with
/// its run's end (and, attempts left, the retry's SCHEDULED job).
async fn failed(db: &dyn JobDB, running: &Job, at: DateTime<Utc>) -> Result<Job, String> {
    let report = RunReport::of(ResultStatus::Failed, Some(running.fire_token))
        .with_details(
            Some("e2e history: failed on purpose".into()),
            Some("e2e-bench".into()),
            false,
            None,
        )
        .map_err(|e| e.to_string())?;
    let next = running
        .take_report(&report, &RetryPolicy::NONE, at)
        .map_err(|refused| format!("job {} refused its report: {refused:?}", running.id))?;
    let runs = history::changes(running, &next, Some(&report), at);
    let written = db
        .replace_if(&next, running.version, &runs)
        .await
        .map_err(|e| format!("result of job {}: {e}", running.id))?;
    if written {
        Ok(next)
    } else {
        Err(format!(
            "result of job {} lost its version check",
            running.id
        ))
    }
}

/// Lists job `id`'s first page as ListJobRuns does (`store::runs_of`: the
/// job, then its runs) and checks it holds all its `runs` runs (at most a
/// page) and their total; the call's time in µs.
async fn listing_us(db: &dyn JobDB, id: JobId, runs: u32) -> Result<i64, String> {
    let size = u64::from(PAGE_SIZE);
    let page = PageRequest::new(1, i64::from(PAGE_SIZE), size).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let listed = store::runs_of(db, id, page)
        .await
        .map_err(|e| format!("runs of job {id}: {e}"))?
        .ok_or_else(|| format!("job {id} is gone"))?;
    let us = i64::try_from(t.elapsed().as_micros()).unwrap_or(i64::MAX);
    let expected = runs.min(PAGE_SIZE) as usize;
    if listed.runs.len() != expected || listed.total != u64::from(runs) {
        return Err(format!(
            "job {id}: listed {} runs of {} in all, expected {expected} of {runs}",
            listed.runs.len(),
            listed.total
        ));
    }
    Ok(us)
}

/// The retention duty's pass keeping the newest half of each job's runs:
/// batches until one falls short. Fails if it removed other than the rest.
async fn prune(db: &dyn JobDB, o: &Options) -> Result<Pruned, String> {
    let keep = o.history_runs / 2;
    let retention = RunRetention {
        per_job: keep,
        // Far in the past: only the count per job removes runs.
        fired_before: now() - TimeDelta::days(365),
        limit: PRUNE_BATCH,
    };
    let t = Instant::now();
    let (mut removed, mut batches) = (0, 0);
    loop {
        let n = db
            .prune_runs(retention)
            .await
            .map_err(|e| format!("pruning: {e}"))?;
        removed += n;
        batches += 1;
        if n < PRUNE_BATCH as u64 {
            break;
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let expected = (o.history_jobs * (o.history_runs - keep) as usize) as u64;
    if removed != expected {
        return Err(format!(
            "pruning removed {removed} runs, expected {expected}"
        ));
    }
    Ok(Pruned {
        ms,
        removed,
        batches,
    })
}
