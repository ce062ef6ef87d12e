//! Part 3, restart recovery: `--recovery-jobs` SCHEDULED jobs in each of
//! `--recovery-stores` (PostgreSQL and the embedded store), inserted once
//! through the store API (`JobDB::insert`, owing no event), due 10 to 50
//! minutes ahead within a one-hour look-ahead window. Each run starts the
//! binary on that schema or folder and measures the time from spawning it
//! to its log line "armed scheduled jobs from the store" (and the part of it
//! between its first and that log line), and its peak RSS once it listens;
//! then stops it (SIGTERM). A baseline run on an empty store gives the fixed
//! start-up cost and memory. Beside it, the store query (`scheduled_before`)
//! and the arming (`Timer::arm_if_vacant` per job) are timed alone in this
//! process.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use scheduler_service::{
    config::vars,
    domain::{Job, JobSpec, JobType, PendingEvents, now},
    timer::Timer,
};
use test_support::unique;
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Options, Store},
    load::JOB_DATA,
    report::joined_notes,
    service::{Service, drop_namespace, embedded_dir, fill_store, open_store, service_env, set},
    support::{
        now_us,
        proc::load_average,
        stats::{median, median_of_some},
    },
};

#[derive(Debug, Clone)]
struct RecoveryOutcome {
    jobs: usize,
    armed: usize,
    /// Spawn → the "armed" log line reached this process.
    to_armed_ms: f64,
    /// The service's first log line → its "armed" line (its own timestamps).
    logged_ms: Option<f64>,
    /// `scheduled_before` alone, from this process.
    query_ms: f64,
    /// Arming the listed jobs into a fresh `Timer`, in this process.
    arm_ms: f64,
    peak_rss_mb: f64,
    rss_mb: f64,
    load: f64,
    note: String,
}

const RECOVERY_HEADER: &str = "| SCHEDULED jobs | armed | start to armed (ms) | first log to armed (ms) | store query alone (ms) | arming alone (ms) | peak RSS (MB) | RSS (MB) | load | note |\n\
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn recovery_row(r: &RecoveryOutcome, note: &str) -> String {
    format!(
        "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {} |",
        r.jobs,
        r.armed,
        r.to_armed_ms,
        r.logged_ms
            .map_or_else(|| "–".into(), |v| format!("{v:.0}")),
        r.query_ms,
        r.arm_ms,
        r.peak_rss_mb,
        r.rss_mb,
        r.load,
        joined_notes([note, &r.note])
    )
}

/// Runs the part on each store and prints its tables; false if a job was
/// not stored or not armed.
pub async fn recovery_part(o: &Options) -> bool {
    let mut ok = true;
    for &store in &o.recovery_stores {
        ok &= recovery_of(o, store).await;
    }
    ok
}

/// SCHEDULED job `i` of `n`, due 10 to 50 minutes after `base_ms` (spread
/// evenly over the 40 minutes), as a job whose create event was delivered
/// long ago.
fn due_job(i: usize, n: usize, base_ms: i64) -> Job {
    let due_ms = base_ms + 600_000 + (i as i64 * 2_400_000) / n.max(1) as i64;
    let spec = JobSpec {
        name: format!("e2e-recovery-{i}"),
        description: "end-to-end benchmark".into(),
        schedule_time: DateTime::from_timestamp_millis(due_ms).expect("valid time"),
        job_type: JobType::Email,
        job_data: JOB_DATA.into(),
    };
    Job {
        pending: PendingEvents::NONE,
        ..Job::new_scheduled(spec, now())
    }
}

async fn recovery_of(o: &Options, store: Store) -> bool {
    let n = o.recovery_jobs;
    let schema = format!("e2e_recovery_{}", unique());
    let empty = format!("e2e_empty_{}", unique());
    let title = match store {
        Store::Embedded => "embedded store",
        _ => "PostgreSQL",
    };
    let base_ms = now_us() / 1000;
    let label = format!("recovery ({title})");
    let inserted = match fill_store(store, &schema, n, &label, |i| due_job(i, n, base_ms)).await {
        Ok((inserted, _)) => inserted,
        Err(err) => {
            println!("\n## Restart recovery ({title}): {err}");
            return false;
        }
    };
    println!(
        "\n## Restart recovery ({title}, {inserted} SCHEDULED jobs due within the one-hour look-ahead window)\n\n{RECOVERY_HEADER}"
    );
    let mut env = service_env(o, store, &empty);
    set(&mut env, vars::SCHEDULER_LOOK_AHEAD_SECS, 3600);
    let mut ok = true;
    // Baseline on an empty namespace; it also creates the topics that the
    // restarts then find, as a restarted service does.
    match recovery_run(&o.service_bin, &env, 0, None).await {
        Ok(r) => println!("{}", recovery_row(&r, "baseline: empty store")),
        Err(err) => {
            ok = false;
            println!("| 0 | (baseline failed: {err}) |");
        }
    }
    set(&mut env, vars::DATABASE_DB_NAME, &schema);
    if store == Store::Embedded {
        set(
            &mut env,
            vars::DATA_DIR,
            embedded_dir(&schema).to_string_lossy(),
        );
    }
    let mut results = Vec::new();
    for run in 0..o.runs {
        match recovery_run(&o.service_bin, &env, inserted, Some((store, &schema))).await {
            Ok(r) => {
                println!("{}", recovery_row(&r, &format!("run {}", run + 1)));
                ok &= r.armed == inserted;
                results.push(r);
            }
            Err(err) => {
                ok = false;
                println!("| {inserted} | (run {} failed: {err}) |", run + 1);
            }
        }
    }
    drop_namespace(store, &schema).await;
    drop_namespace(store, &empty).await;
    print_median(inserted, &results);
    ok && inserted == n
}

/// The medians of the runs, if any succeeded.
fn print_median(jobs: usize, results: &[RecoveryOutcome]) {
    if results.is_empty() {
        return;
    }
    let f = |g: fn(&RecoveryOutcome) -> f64| median(results.iter().map(g).collect());
    let m = RecoveryOutcome {
        jobs,
        armed: median(results.iter().map(|r| r.armed).collect()),
        to_armed_ms: f(|r| r.to_armed_ms),
        logged_ms: median_of_some(results.iter().map(|r| r.logged_ms).collect()),
        query_ms: f(|r| r.query_ms),
        arm_ms: f(|r| r.arm_ms),
        peak_rss_mb: f(|r| r.peak_rss_mb),
        rss_mb: f(|r| r.rss_mb),
        load: f(|r| r.load),
        note: String::new(),
    };
    println!(
        "\n### Medians of {} run(s)\n\n{RECOVERY_HEADER}\n{}",
        results.len(),
        recovery_row(&m, &format!("median of {}", results.len()))
    );
}

/// Starts the service on `env` and times its start-up load. With `alone`
/// (the store and namespace the service used), then times the load's two
/// steps alone in this process once the service has stopped.
async fn recovery_run(
    bin: &Path,
    env: &[(String, String)],
    jobs: usize,
    alone: Option<(Store, &str)>,
) -> Result<RecoveryOutcome, String> {
    let load = load_average();
    let (service, spawned) = Service::start(bin, env, "recovery").await?;
    // The armed line is written before the port is bound; give the reader
    // thread a moment in case it has not been through it yet.
    let mut armed = None;
    for _ in 0..500 {
        armed = service.log.lock().expect("log state").armed;
        if armed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (armed_at, armed_ts, armed) =
        armed.ok_or("no \"armed scheduled jobs from the store\" log line")?;
    let first_ts = service.log.lock().expect("log state").first.map(|f| f.1);
    let peak_rss_mb = service.peak_rss_mb();
    let rss_mb = service.rss_mb();
    let (warnings, first_warnings) = service.warnings();
    service.stop().await;
    let (query_ms, arm_ms) = match alone {
        Some((store, namespace)) => load_alone(store, namespace).await?,
        None => (0.0, 0.0),
    };
    Ok(RecoveryOutcome {
        jobs,
        armed,
        to_armed_ms: (armed_at - spawned).as_secs_f64() * 1000.0,
        logged_ms: first_ts.map(|f| (armed_ts - f).num_microseconds().unwrap_or(0) as f64 / 1000.0),
        query_ms,
        arm_ms,
        peak_rss_mb,
        rss_mb,
        load,
        note: if warnings > 0 {
            format!("{warnings} service warnings, first: {first_warnings:?}")
        } else {
            String::new()
        },
    })
}

/// The two steps of the start-up load, alone in this process: the store
/// query and the arming of what it listed (ms each).
async fn load_alone(store: Store, namespace: &str) -> Result<(f64, f64), String> {
    let db = open_store(store, namespace).await?;
    let horizon = Utc::now() + chrono::Duration::hours(1);
    let t = Instant::now();
    let due = db
        .scheduled_before(horizon)
        .await
        .map_err(|e| e.to_string())?
        .found;
    let query_ms = t.elapsed().as_secs_f64() * 1000.0;
    let shutdown = CancellationToken::new();
    let (timer, _firings) = Timer::start(shutdown.clone());
    let t = Instant::now();
    for job in &due {
        timer.arm_if_vacant(job.id, job.schedule_time, job.fire_token);
    }
    let arm_ms = t.elapsed().as_secs_f64() * 1000.0;
    shutdown.cancel();
    Ok((query_ms, arm_ms))
}
