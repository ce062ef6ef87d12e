//! Part 2, fire-to-consume latency. `--jobs` jobs are created ahead with due
//! times uniform within one `--window-ms` window; a consumer assigned to
//! every partition of the run topic records, per job, its arrival time minus
//! the event's `ScheduleTime`. Reports p50/p99/max lateness and the drain
//! time, where the time goes (claim start from the event's `UpdatedAt`,
//! claim end from the service's "jobs fired" lines), the CPU by process, and
//! the target (p99 ≤ 250 ms); with `--plot`, the chart of the lateness
//! distributions. One configuration per store × fire concurrency ×
//! partitions.

mod disk_probe;
mod pg_waits;
mod plot;
pub mod reader;
mod run;

use std::fmt::Write as _;

use crate::{
    accounting::CpuUse,
    args::{Options, Store},
    report::{joined_notes, mark, ms, print_cpu_table, write_chart},
    support::stats::{Curve, median, median_of_some},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FireConfig {
    store: Store,
    fire_concurrency: usize,
    partitions: i32,
}

impl FireConfig {
    fn label(self) -> String {
        format!(
            "{} / {} / {}",
            self.store.name(),
            self.fire_concurrency,
            self.partitions
        )
    }
}

#[derive(Debug, Clone)]
struct FireOutcome {
    config: FireConfig,
    jobs: usize,
    created_per_s: f64,
    /// The last create returned after the first due time.
    overran: bool,
    arrived: usize,
    duplicates: usize,
    early: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// The distribution of the lateness, for the chart. Empty in a median:
    /// a distribution is one run's, and the chart draws the run whose p99
    /// is the median.
    lateness_curve: Curve,
    drain_ms: Option<f64>,
    /// UpdatedAt − ScheduleTime: lateness when the claim started.
    claim_start_p50_ms: Option<f64>,
    claim_start_p99_ms: Option<f64>,
    /// When the claim returned: each batch's latest (the service's "jobs
    /// fired" `max_lateness_ms`).
    claimed_p50_ms: Option<f64>,
    claimed_p99_ms: Option<f64>,
    cpu_s: f64,
    /// What the service sent to storage meanwhile (the embedded store's
    /// pages; PostgreSQL writes in its own processes).
    written_mb: f64,
    load: f64,
    note: String,
    run: usize,
    cpu_use: Option<CpuUse>,
    /// Shares of the samples of the service's PostgreSQL sessions, by
    /// state and wait event (`--pg-waits`).
    pg_waits: Vec<(String, f64)>,
    /// What the disk's syncs took meanwhile (`--disk-probe`).
    disk_syncs: Option<disk_probe::DiskSyncs>,
}

const FIRE_HEADER: &str = "| store | fire concurrency | run partitions | jobs | created per s | arrived | dup | p50 (ms) | p99 (ms) | max (ms) | drain (ms) | claim start p50 / p99 (ms) | claimed p50 / p99 (ms) | service CPU (s) | service wrote (MB) | load | note |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn fire_row(f: &FireOutcome, note: &str) -> String {
    let mut notes = vec![joined_notes([note, &f.note])];
    if f.overran {
        notes.push("creation overran the first due time".into());
    }
    if f.early > 0 {
        notes.push(format!("{} arrived early", f.early));
    }
    format!(
        "| {} | {} | {} | {} | {:.0} | {} ({:.1} %) | {} | {} | {} | {} | {} | {} / {} | {} / {} | {:.2} | {:.1} | {:.2} | {} |",
        f.config.store.name(),
        f.config.fire_concurrency,
        f.config.partitions,
        f.jobs,
        f.created_per_s,
        f.arrived,
        100.0 * f.arrived as f64 / f.jobs.max(1) as f64,
        f.duplicates,
        ms(f.p50_ms),
        ms(f.p99_ms),
        ms(f.max_ms),
        ms(f.drain_ms),
        ms(f.claim_start_p50_ms),
        ms(f.claim_start_p99_ms),
        ms(f.claimed_p50_ms),
        ms(f.claimed_p99_ms),
        f.cpu_s,
        f.written_mb,
        f.load,
        joined_notes(notes.iter().map(String::as_str))
    )
}

/// Every configuration of the options, in order.
fn configs(o: &Options) -> Vec<FireConfig> {
    let mut configs = Vec::new();
    for &store in &o.fire_stores {
        for &fire_concurrency in &o.fire_concurrency {
            for &partitions in &o.partitions {
                configs.push(FireConfig {
                    store,
                    fire_concurrency,
                    partitions,
                });
            }
        }
    }
    configs.sort();
    configs
}

/// Runs the part and prints its tables; false if a job did not arrive.
pub async fn fire_part(o: &Options) -> bool {
    let configs = configs(o);
    println!(
        "\n## Fire to consume ({} jobs due within {} ms, consumer fetch.wait.max.ms {})\n\n{FIRE_HEADER}",
        o.jobs, o.window_ms, o.fetch_wait_ms
    );
    let mut results: Vec<FireOutcome> = Vec::new();
    let mut ok = true;
    for run in 0..o.runs {
        for &config in &configs {
            let seed = o.seed + run as u64;
            match run::fire_run(o, config, seed, run + 1).await {
                Ok(outcome) => {
                    println!("{}", fire_row(&outcome, &format!("run {}", run + 1)));
                    if outcome.arrived < outcome.jobs {
                        ok = false;
                    }
                    results.push(outcome);
                }
                Err(err) => {
                    ok = false;
                    println!(
                        "| {} | {} | {} | (run {} failed: {err}) |",
                        config.store.name(),
                        config.fire_concurrency,
                        config.partitions,
                        run + 1
                    );
                }
            }
        }
    }
    println!("\n### Medians of {} run(s)\n\n{FIRE_HEADER}", o.runs);
    let mut medians = Vec::new();
    for &config in &configs {
        let runs: Vec<&FireOutcome> = results.iter().filter(|r| r.config == config).collect();
        if !runs.is_empty() {
            let m = median_outcome(config, &runs);
            println!("{}", fire_row(&m, &format!("median of {}", runs.len())));
            medians.push(m);
        }
    }
    print!("{}", targets(&medians));
    print_cpu_table(
        "CPU time by process from 200 ms before the window opened until the last arrival (s)",
        results
            .iter()
            .filter_map(|r| Some((r.config.label(), r.run, r.cpu_use.as_ref()?))),
    );
    print_pg_waits(&results);
    print_disk_syncs(&results);
    if let Some(dir) = &o.plot {
        ok &= write_chart(dir, &format!("e2e-fire-latency-{}.svg", o.jobs), |path| {
            plot::chart(o, &configs, &results).write(path)
        });
    }
    ok
}

/// The median of each figure of `runs` on its own.
fn median_outcome(config: FireConfig, runs: &[&FireOutcome]) -> FireOutcome {
    let f = |g: fn(&FireOutcome) -> f64| median(runs.iter().map(|r| g(r)).collect());
    let u = |g: fn(&FireOutcome) -> usize| median(runs.iter().map(|r| g(r)).collect());
    let p =
        |g: fn(&FireOutcome) -> Option<f64>| median_of_some(runs.iter().map(|r| g(r)).collect());
    let overran = runs.iter().filter(|r| r.overran).count();
    FireOutcome {
        config,
        jobs: runs[0].jobs,
        created_per_s: f(|r| r.created_per_s),
        overran: overran > 0,
        arrived: u(|r| r.arrived),
        duplicates: u(|r| r.duplicates),
        early: u(|r| r.early),
        p50_ms: p(|r| r.p50_ms),
        p99_ms: p(|r| r.p99_ms),
        max_ms: p(|r| r.max_ms),
        lateness_curve: Curve::default(),
        drain_ms: p(|r| r.drain_ms),
        claim_start_p50_ms: p(|r| r.claim_start_p50_ms),
        claim_start_p99_ms: p(|r| r.claim_start_p99_ms),
        claimed_p50_ms: p(|r| r.claimed_p50_ms),
        claimed_p99_ms: p(|r| r.claimed_p99_ms),
        cpu_s: f(|r| r.cpu_s),
        written_mb: f(|r| r.written_mb),
        load: f(|r| r.load),
        note: if overran > 0 {
            format!("{overran} of {} runs overran", runs.len())
        } else {
            String::new()
        },
        run: 0,
        cpu_use: None,
        pg_waits: Vec::new(),
        disk_syncs: None,
    }
}

/// The target, checked against the medians: every job arrives, p99 ≤ 250 ms.
fn targets(medians: &[FireOutcome]) -> String {
    let mut targets = String::from("\n### Targets\n\n");
    for m in medians {
        let c = m.config;
        let _ = writeln!(
            targets,
            "- {} / fire concurrency {} / {} partition(s): all {} arrive: {} ({}); p99 lateness ≤ 250 ms: {} ({} ms)",
            c.store.name(),
            c.fire_concurrency,
            c.partitions,
            m.jobs,
            mark(m.arrived == m.jobs),
            m.arrived,
            mark(m.p99_ms.is_some_and(|p| p <= 250.0)),
            ms(m.p99_ms)
        );
    }
    targets
}

/// `--pg-waits`: what the service's PostgreSQL sessions did in each run.
fn print_pg_waits(results: &[FireOutcome]) {
    if results.iter().all(|r| r.pg_waits.is_empty()) {
        return;
    }
    println!(
        "\n### The service's PostgreSQL sessions during the firing (share of samples every 10 ms, by state and wait event)\n"
    );
    for r in results.iter().filter(|r| !r.pg_waits.is_empty()) {
        let waits: Vec<String> = r
            .pg_waits
            .iter()
            .map(|(k, v)| format!("{k} {:.0} %", v * 100.0))
            .collect();
        println!("- {} run {}: {}", r.config.label(), r.run, waits.join(", "));
    }
}

/// `--disk-probe`: what a small write's sync took in each run, beside the
/// run's p99, so that a run held up by the disk shows as one.
fn print_disk_syncs(results: &[FireOutcome]) {
    if results.iter().all(|r| r.disk_syncs.is_none()) {
        return;
    }
    println!(
        "\n### The disk during the firing (8 KiB written and synced every 5 ms)\n\n\
         | configuration | run | p99 lateness (ms) | syncs | sync p50 (ms) | sync p99 (ms) | sync max (ms) | syncs over {} ms | their time (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|",
        disk_probe::STALL_MS
    );
    for r in results {
        if let Some(d) = r.disk_syncs {
            println!(
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {} | {:.0} |",
                r.config.label(),
                r.run,
                ms(r.p99_ms),
                d.syncs,
                d.p50_ms,
                d.p99_ms,
                d.max_ms,
                d.stalls,
                d.stalled_ms
            );
        }
    }
}
