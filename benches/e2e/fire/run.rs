//! One run of the fire part: a fresh service on one configuration, a pilot
//! that measures its create rate, `--jobs` jobs created ahead with due times
//! spread over a window that opens once they are all in, then the wait for
//! their run events, with the CPU each process spent meanwhile.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use scheduler_service::{config::vars, grpc::proto::jobs_service_client::JobsServiceClient};
use test_support::unique;
use tonic::transport::Channel;

use super::{
    FireConfig, FireOutcome,
    disk_probe::{self, DiskSyncs},
    pg_waits::sample_pg_waits,
    reader::Reader,
};
use crate::{
    accounting::{CpuUse, cpu_by_group},
    args::{Options, Store},
    load::{Load, create_load},
    service::{Service, drop_namespace, log_dir, service_env, set, var},
    support::{now_us, proc::load_average, stats::Latencies},
};

/// When the jobs are due: the window's opening (Unix ms) and each job's
/// offset in it.
struct Window {
    open_ms: i64,
    offsets: Arc<Vec<i64>>,
    first_due_ms: i64,
}

/// One run: what it runs, and the store namespace it uses.
struct FireRun<'a> {
    o: &'a Options,
    config: FireConfig,
    run: usize,
    namespace: String,
}

/// What the machine spent while the jobs fired.
struct FiringCost {
    cpu_s: f64,
    written_mb: f64,
    cpu_use: CpuUse,
    pg_waits: Vec<(String, f64)>,
    disk_syncs: Option<DiskSyncs>,
}

/// Runs `config` once; the due times come from `seed`.
pub async fn fire_run(
    o: &Options,
    config: FireConfig,
    seed: u64,
    run: usize,
) -> Result<FireOutcome, String> {
    let load_avg = load_average();
    let this = FireRun {
        o,
        config,
        run,
        namespace: format!("e2e_{}", unique()),
    };
    let (service, env) = this.start_service().await?;
    let clients = service.clients(o.connections).await;
    let window = plan_window(o, &clients, seed).await?;
    let topic = var(&env, vars::TOPIC_JOB_RUN);
    let reader = Reader::start(topic, config.partitions, o.fetch_wait_ms, o.jobs)?;

    let due = window.offsets.clone();
    let open_ms = window.open_ms;
    let due_ms = Arc::new(move |i: usize| open_ms + due[i]);
    let load = create_load(&clients, o.jobs, o.concurrency, None, due_ms).await;
    let overran = now_us() / 1000 >= window.first_due_ms;
    let created = load.latencies_us.len();
    let created_per_s = created as f64 / load.elapsed.as_secs_f64();

    let cost = this
        .await_firings(&service, &window, &reader, created)
        .await;
    // Late duplicates, if any.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrived = reader.finish(window.first_due_ms);
    let note = notes(&load, service.warnings());
    let claimed: Vec<i64> = {
        let log = service.log.lock().expect("log state");
        log.fired_lateness_ms.iter().map(|ms| ms * 1000).collect()
    };
    service.stop().await;
    drop_namespace(config.store, &this.namespace).await;

    let claimed = Latencies::of_us(claimed.iter().copied()).map(|l| l.percentiles());
    Ok(FireOutcome {
        config,
        jobs: created,
        created_per_s,
        overran,
        arrived: arrived.jobs,
        duplicates: arrived.duplicates,
        early: arrived.early,
        p50_ms: arrived.lateness.map(|p| p.p50_ms),
        p99_ms: arrived.lateness.map(|p| p.p99_ms),
        max_ms: arrived.lateness.map(|p| p.max_ms),
        lateness_curve: arrived.lateness_curve,
        drain_ms: arrived.drain_ms,
        claim_start_p50_ms: arrived.claim_start.map(|p| p.p50_ms),
        claim_start_p99_ms: arrived.claim_start.map(|p| p.p99_ms),
        claimed_p50_ms: claimed.map(|p| p.p50_ms),
        claimed_p99_ms: claimed.map(|p| p.p99_ms),
        cpu_s: cost.cpu_s,
        written_mb: cost.written_mb,
        load: load_avg,
        note,
        run,
        cpu_use: Some(cost.cpu_use),
        pg_waits: cost.pg_waits,
        disk_syncs: cost.disk_syncs,
    })
}

/// The notes of a run: failed creates, service warnings.
fn notes(load: &Load, (warnings, first_warnings): (usize, Vec<String>)) -> String {
    let mut notes = Vec::new();
    if load.errors > 0 {
        notes.push(format!(
            "{} creates failed, first: {:?}",
            load.errors, load.first_error
        ));
    }
    if warnings > 0 {
        notes.push(format!(
            "{warnings} service warnings, first: {first_warnings:?}"
        ));
    }
    notes.join("; ")
}

/// Pilot: the create rate of this service (jobs due in a day), which also
/// warms connections and prepared statements; from it, a window that opens
/// `--lead-secs` after the creation is expected to end.
async fn plan_window(
    o: &Options,
    clients: &[JobsServiceClient<Channel>],
    seed: u64,
) -> Result<Window, String> {
    let n = o.jobs;
    let pilot = n.clamp(1, 100);
    let far = now_us() / 1000 + 24 * 3600 * 1000;
    let p = create_load(clients, pilot, o.concurrency, None, Arc::new(move |_| far)).await;
    if p.errors > 0 {
        return Err(format!("pilot creates failed: {:?}", p.first_error));
    }
    let rate = pilot as f64 / p.elapsed.as_secs_f64();
    let expected_create = Duration::from_secs_f64(n as f64 / rate * 1.5);
    let open_ms =
        (now_us() / 1000) + (expected_create.as_secs_f64() + o.lead_secs).ceil() as i64 * 1000;
    let mut rng = StdRng::seed_from_u64(seed);
    let offsets: Arc<Vec<i64>> =
        Arc::new((0..n).map(|_| rng.random_range(0..o.window_ms)).collect());
    let first_due_ms = open_ms + offsets.iter().copied().min().unwrap_or(0);
    Ok(Window {
        open_ms,
        offsets,
        first_due_ms,
    })
}

impl FireRun<'_> {
    /// Starts a fresh service on this run's configuration; returns it and
    /// its variables.
    async fn start_service(&self) -> Result<(Service, Vec<(String, String)>), String> {
        let config = self.config;
        let mut env = service_env(self.o, config.store, &self.namespace);
        set(
            &mut env,
            vars::SCHEDULER_FIRE_CONCURRENCY,
            config.fire_concurrency,
        );
        set(&mut env, vars::TOPIC_JOB_RUN_PARTITIONS, config.partitions);
        // Long enough that every job is armed when it is created, whatever
        // the creation time.
        set(&mut env, vars::SCHEDULER_LOOK_AHEAD_SECS, 3600);
        let name = format!("fire-{}", config.store.name());
        let (service, _) = Service::start(&self.o.service_bin, &env, &name).await?;
        Ok((service, env))
    }

    /// Waits until every created job arrived or the window and the grace
    /// period passed, measuring the CPU from 200 ms before the window opens.
    async fn await_firings(
        &self,
        service: &Service,
        window: &Window,
        reader: &Reader,
        created: usize,
    ) -> FiringCost {
        let (o, config) = (self.o, self.config);
        let wait = (window.open_ms - 200 - now_us() / 1000).max(0);
        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
        let cpu_before = service.cpu_seconds();
        let written_before = service.written_mb();
        let groups_before = cpu_by_group();
        let cpu_from = Instant::now();
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = (o.pg_waits && config.store == Store::Postgres)
            .then(|| tokio::spawn(sample_pg_waits(self.namespace.clone(), sampling.clone())));
        let disk = o
            .disk_probe
            .then(|| disk_probe::start(log_dir(), sampling.clone()));
        let perf = o.perf.as_ref().and_then(|file| start_perf(file, self.run));
        let deadline_ms =
            window.open_ms + o.window_ms + Duration::from_secs_f64(o.grace_secs).as_millis() as i64;
        while reader.jobs_seen() < created && now_us() / 1000 <= deadline_ms {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cpu_s = service.cpu_seconds() - cpu_before;
        let written_mb = service.written_mb() - written_before;
        let cpu_use = CpuUse::between(&groups_before, &cpu_by_group(), cpu_from.elapsed());
        if let Some(perf) = perf {
            stop_perf(perf).await;
        }
        sampling.store(false, Ordering::Relaxed);
        let pg_waits = match sampler {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let disk_syncs = match disk {
            // Joined off the runtime: the probe may be inside a sync.
            Some(probe) => match tokio::task::spawn_blocking(move || probe.join()).await {
                Ok(Ok(Ok(syncs))) => Some(syncs),
                Ok(Ok(Err(e))) => {
                    eprintln!("fire: the disk probe failed: {e}");
                    None
                }
                _ => None,
            },
            None => None,
        };
        FiringCost {
            cpu_s,
            written_mb,
            cpu_use,
            pg_waits,
            disk_syncs,
        }
    }
}

/// `perf record -a -g` of the whole machine into `<file>-<run>`.
fn start_perf(file: &str, run: usize) -> Option<Child> {
    Command::new("perf")
        .args(["record", "-a", "-g", "-F", "499", "-o"])
        .arg(format!("{file}-{run}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("fire: cannot start perf: {e}"))
        .ok()
}

/// SIGINT, so that perf writes its data, then waits for it.
async fn stop_perf(mut perf: Child) {
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(perf.id().to_string())
        .status();
    let _ = tokio::task::spawn_blocking(move || perf.wait()).await;
}
