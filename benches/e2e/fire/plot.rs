//! `--plot DIR`: the fire part's chart, `e2e-fire-latency-<jobs>.svg`: the
//! fire-to-consume lateness distribution of each configuration (its run
//! with the median p99), as a share of all the jobs created, so that jobs
//! that never arrived show as a curve that stops short of 100 %.

use std::collections::BTreeSet;

use super::{FireConfig, FireOutcome};
use crate::{
    args::{Options, Store},
    report::store_color,
    support::{
        plot::{LatencyChart, Line, PALETTE, count, figures, number},
        stats::median_run,
    },
};

/// The chart of `results`, a line per configuration. A store's colour is
/// the one the create chart gives it, unless a store has several
/// configurations.
pub fn chart(o: &Options, configs: &[FireConfig], results: &[FireOutcome]) -> LatencyChart {
    let stores: BTreeSet<Store> = configs.iter().map(|c| c.store).collect();
    let by_store = stores.len() == configs.len();
    let lines = configs
        .iter()
        .enumerate()
        .filter_map(|(i, &config)| {
            let runs: Vec<&FireOutcome> = results.iter().filter(|r| r.config == config).collect();
            let run = median_run(&runs, |r| r.p99_ms)?;
            let arrived = run.arrived as f64 / run.jobs.max(1) as f64;
            let color = if by_store {
                store_color(config.store)
            } else {
                PALETTE[i % PALETTE.len()]
            };
            let label = format!(
                "{} (fire concurrency {}, {} partition{}): {}; {} % arrived",
                config.store.name(),
                config.fire_concurrency,
                config.partitions,
                if config.partitions == 1 { "" } else { "s" },
                figures(run.p50_ms, run.p99_ms, run.max_ms),
                number(100.0 * arrived)
            );
            Some(Line::new(label, color, &run.lateness_curve, arrived))
        })
        .collect();
    LatencyChart {
        title: format!(
            "Fire to consume, {} jobs due within {} ms",
            count(o.jobs),
            count(o.window_ms.unsigned_abs() as usize)
        ),
        x_desc: "lateness: arrival at the consumer − due time (log scale)".into(),
        y_desc: "jobs arrived within it".into(),
        note: format!(
            "Each configuration's run with the median p99 (of {}); share of all the jobs created.",
            o.runs
        ),
        lines,
    }
}
