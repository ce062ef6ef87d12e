//! Part 8, replicas sharing the jobs by shards (issue 19), on PostgreSQL
//! with Kafka: each run starts `scheduler-service` binaries as replicas of
//! one fresh schema and fresh topics (64 shards, 5 s leases, the
//! look-ahead `--replicas-look-ahead-secs`), and reads the run topic. Three
//! scenarios (`--replicas-scenarios`):
//!
//! - `share`: three replicas; `--replicas-jobs` one-shot jobs due uniformly
//!   within `--replicas-window-ms`, created through the replicas' gRPC APIs
//!   round-robin, all more than a loader period (half the look-ahead)
//!   before the first is due. Claim attempts per fired job (summed over
//!   the replicas; target ≤ 1.1), the replicas' armed timers summed 0.5 s
//!   before the first due time against the jobs (target ≤ 1.1×), shards
//!   per replica, and on the run topic each job exactly once and its
//!   lateness (arrival − `ScheduleTime`).
//! - `kill`: the same, the second replica killed (SIGKILL) in the middle
//!   of the window; the shards it held are read from `shard_leases` just
//!   before. Every job exactly once, and the jobs of those shards due after
//!   the kill at most a lease period plus 1 s late (target).
//! - `scale`: recurring jobs (`--replicas-recurring-jobs` every
//!   `--replicas-every-secs`) under one replica; replicas 2 to 4 start one
//!   `--replicas-step-secs` apart, then stop (SIGTERM) back to one; every
//!   occurrence of the span exactly once (none doubled, none lost), claim
//!   attempts per fired occurrence, rebalances.
//!
//! The smoke run does `share` alone, small (300 jobs within 2 s, a 6 s
//! look-ahead), for the kill waits out a lease and the scale steps take
//! their seconds. With `--plot`, the kill runs' lateness over the window:
//! `e2e-replicas-kill.svg`.

mod cluster;
mod plot;
mod scale;
mod share;

use std::fmt::Write as _;

use clap::ValueEnum;

use crate::{
    args::Options,
    report::{mark, ms, write_chart},
    support::stats::{Percentiles, median},
};
use cluster::LEASE_MS;
use scale::{ScaleOutcome, scale_run};
use share::{REPLICAS, ShareOutcome, share_run};

/// The scenarios of the part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Share,
    Kill,
    Scale,
}

const SHARE_HEADER: &str = "| scenario | run | jobs | created per s | shards owned | armed before due (Σ) | armed ÷ jobs | claim attempts | fired | claims per fired | arrived | duplicates | missing | p50 (ms) | p99 (ms) | max (ms) | load | note |\n\
|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn share_row(scenario: &str, run: usize, r: &ShareOutcome) -> String {
    let owned: Vec<String> = r.owned.iter().map(usize::to_string).collect();
    let mut note = r.note.clone();
    if r.overran {
        note = format!("creation ended within a loader period of the first due time; {note}");
    }
    format!(
        "| {scenario} | {run} | {} | {:.0} | {} | {:.0} | {:.3} | {:.0} | {:.0} | {:.3} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
        r.jobs,
        r.created_per_s,
        owned.join(" / "),
        r.armed,
        r.armed / r.jobs.max(1) as f64,
        r.counters.claim_attempts,
        r.counters.fired,
        r.claims_per_fired(),
        r.arrived,
        r.duplicates(),
        r.jobs.saturating_sub(r.arrived),
        ms(r.lateness.map(|l| l.p50_ms)),
        ms(r.lateness.map(|l| l.p99_ms)),
        ms(r.lateness.map(|l| l.max_ms)),
        r.load,
        note.trim_end_matches([';', ' '])
    )
}

const KILL_HEADER: &str = "| run | killed at (s into the window) | its shards | their jobs due after the kill | their p50 (ms) | their p99 (ms) | their max (ms) | max of all its shards' jobs (ms) | lease losses | rebalances |\n\
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

fn kill_row(run: usize, r: &ShareOutcome) -> Option<String> {
    let k = r.kill.as_ref()?;
    Some(format!(
        "| {run} | {:.2} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
        k.at_s,
        k.shards,
        k.jobs,
        ms(k.lateness.map(|l| l.p50_ms)),
        ms(k.lateness.map(|l| l.p99_ms)),
        ms(k.lateness.map(|l| l.max_ms)),
        ms(k.all.map(|l| l.max_ms)),
        r.counters.lease_losses,
        r.counters.rebalances
    ))
}

const SCALE_HEADER: &str = "| run | jobs | every (s) | span (s) | owed | arrived once | duplicates | missing | claim attempts | fired | claims per fired | rebalances | lease losses | p50 (ms) | p99 (ms) | max (ms) | load | note |\n\
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn scale_row(o: &Options, run: usize, r: &ScaleOutcome) -> String {
    let mut note = r.note.clone();
    if !r.missing.is_empty() {
        let at: Vec<String> = (r.missing.iter())
            .map(|(s, job)| format!("{s:.3} s ({job})"))
            .collect();
        note = format!("first missing: {}; {note}", at.join(", "));
    }
    format!(
        "| {run} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.0} | {} | {} | {} | {:.2} | {} |",
        o.replicas_recurring_jobs,
        o.replicas_every_secs,
        r.span_s,
        r.owed,
        r.arrived,
        r.duplicates + r.twice,
        r.owed.saturating_sub(r.arrived),
        r.counters.claim_attempts,
        r.counters.fired,
        r.claims_per_fired(),
        r.counters.rebalances,
        r.counters.lease_losses,
        ms(r.lateness.map(|l| l.p50_ms)),
        ms(r.lateness.map(|l| l.p99_ms)),
        ms(r.lateness.map(|l| l.max_ms)),
        r.load,
        note.trim_end_matches([';', ' '])
    )
}

/// Runs the part's scenarios and prints their tables and targets; false
/// if a job or an occurrence did not arrive exactly once, or a run failed.
pub async fn replicas_part(o: &Options) -> bool {
    let mut ok = true;
    let mut targets = String::from("\n### Targets\n\n");
    for scenario in [Scenario::Share, Scenario::Kill] {
        if o.replicas_scenarios.contains(&scenario) {
            ok &= share_scenario(o, scenario == Scenario::Kill, &mut targets).await;
        }
    }
    if o.replicas_scenarios.contains(&Scenario::Scale) {
        ok &= scale_scenario(o, &mut targets).await;
    }
    print!("{targets}");
    ok
}

/// The share or kill scenario, `--runs` times.
async fn share_scenario(o: &Options, kill: bool, targets: &mut String) -> bool {
    let name = if kill { "kill" } else { "share" };
    println!(
        "\n## Replicas: {name} ({REPLICAS} replicas, {} jobs due within {} ms, look-ahead {} s)\n\n{SHARE_HEADER}",
        o.replicas_jobs, o.replicas_window_ms, o.replicas_look_ahead_secs
    );
    let (mut runs, mut ok) = (Vec::new(), true);
    for run in 1..=o.runs {
        match share_run(o, kill, o.seed + run as u64 - 1).await {
            Ok(r) => {
                println!("{}", share_row(name, run, &r));
                ok &= r.arrived == r.jobs && r.duplicates() == 0;
                runs.push(r);
            }
            Err(err) => {
                ok = false;
                println!("| {name} | {run} | (failed: {err}) |");
            }
        }
    }
    if kill {
        println!("\n### The killed replica's jobs\n\n{KILL_HEADER}");
        for (i, r) in runs.iter().enumerate() {
            println!("{}", kill_row(i + 1, r).unwrap_or_default());
        }
        ok &= plot_kill(o, &runs);
    }
    share_targets(name, &runs, kill, targets);
    ok
}

/// The share or kill targets over `runs` (every run must meet them).
fn share_targets(name: &str, runs: &[ShareOutcome], kill: bool, targets: &mut String) {
    if runs.is_empty() {
        return;
    }
    let claims = median(runs.iter().map(ShareOutcome::claims_per_fired).collect());
    let armed = median(
        runs.iter()
            .map(|r| r.armed / r.jobs.max(1) as f64)
            .collect(),
    );
    let once = runs
        .iter()
        .all(|r| r.arrived == r.jobs && r.duplicates() == 0);
    let _ = writeln!(
        targets,
        "- {name}: claim attempts per fired job ≤ 1.1: {} (median {claims:.3}); armed timers ≤ 1.1 × the jobs: {} (median {armed:.3}); every job exactly once in every run: {}",
        mark(claims <= 1.1),
        mark(armed <= 1.1),
        mark(once)
    );
    if kill {
        let worst = (runs.iter())
            .filter_map(|r| r.kill.as_ref()?.all.map(|l: Percentiles| l.max_ms))
            .fold(0.0, f64::max);
        let bound = LEASE_MS as f64 + 1000.0;
        let _ = writeln!(
            targets,
            "- kill: every job of the killed replica's shards at most a lease period + 1 s late ({bound:.0} ms): {} (highest of the runs {worst:.0} ms)",
            mark(worst <= bound)
        );
    }
}

/// `--plot`: the chart of the first kill run.
fn plot_kill(o: &Options, runs: &[ShareOutcome]) -> bool {
    let (Some(dir), Some(run)) = (&o.plot, runs.first()) else {
        return true;
    };
    write_chart(dir, "e2e-replicas-kill.svg", |path| {
        plot::kill_chart(o, run, 1).map_or(Ok(()), |chart| chart.write(path))
    })
}

/// The scale scenario, `--runs` times.
async fn scale_scenario(o: &Options, targets: &mut String) -> bool {
    println!(
        "\n## Replicas: scale (one to four and back, one every {} s, {} recurring jobs every {} s, look-ahead {} s)\n\n{SCALE_HEADER}",
        o.replicas_step_secs,
        o.replicas_recurring_jobs,
        o.replicas_every_secs,
        o.replicas_look_ahead_secs
    );
    let (mut runs, mut shares, mut ok) = (Vec::new(), Vec::new(), true);
    for run in 1..=o.runs {
        match scale_run(o).await {
            Ok(r) => {
                println!("{}", scale_row(o, run, &r));
                ok &= r.arrived == r.owed && r.duplicates + r.twice == 0;
                shares.push(format!("- run {run}: {}", r.shares.join(" → ")));
                runs.push(r);
            }
            Err(err) => {
                ok = false;
                println!("| {run} | (failed: {err}) |");
            }
        }
    }
    println!(
        "\n### Shards owned after each step\n\n{}",
        shares.join("\n")
    );
    if !runs.is_empty() {
        let once = runs
            .iter()
            .all(|r| r.arrived == r.owed && r.duplicates + r.twice == 0);
        let claims = median(runs.iter().map(ScaleOutcome::claims_per_fired).collect());
        let _ = writeln!(
            targets,
            "- scale: no occurrence doubled or lost in any run: {} (claim attempts per fired occurrence, median {claims:.3})",
            mark(once)
        );
    }
    ok
}
