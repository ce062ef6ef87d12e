//! `--plot DIR`: the kill scenario's chart, `e2e-replicas-kill.svg`: the
//! lateness at the consumer over the window, the highest of each 100 ms of
//! due times, for the jobs of the shards the killed replica held and for
//! the others, with the kill and the end of its lease period marked.

use std::collections::BTreeMap;

use super::{
    cluster::LEASE_MS,
    share::{REPLICAS, ShareOutcome},
};
use crate::{
    args::Options,
    support::{
        plot::{PALETTE, Series, TimeChart, count, figures},
        stats::Percentiles,
    },
};

/// Due times binned per this many seconds.
const BIN_S: f64 = 0.1;

/// The chart of one kill run (`run`, numbered `number`); `None` if it has
/// no kill.
pub fn kill_chart(o: &Options, run: &ShareOutcome, number: usize) -> Option<TimeChart> {
    let kill = run.kill.as_ref()?;
    let lease_s = LEASE_MS as f64 / 1000.0;
    let victim = highest_per_bin(run, true);
    let others = highest_per_bin(run, false);
    let p = |l: Option<Percentiles>| {
        figures(
            l.map(|l| l.p50_ms),
            l.map(|l| l.p99_ms),
            l.map(|l| l.max_ms),
        )
    };
    Some(TimeChart {
        title: format!(
            "{} replicas, {} jobs due within {} s, one killed in the middle",
            REPLICAS,
            count(run.jobs),
            o.replicas_window_ms / 1000
        ),
        x_desc: "due time, s after the window opened".into(),
        y_desc: "lateness at the consumer (highest per 100 ms, log)".into(),
        note: format!("Run {number} of {}.", o.runs),
        series: vec![
            Series {
                label: format!(
                    "jobs of the {} shards the killed replica held; the {} due after the kill: {}",
                    kill.shards,
                    count(kill.jobs),
                    p(kill.lateness)
                ),
                color: PALETTE[1],
                points: victim,
            },
            Series {
                label: format!("the other shards' jobs (every job: {})", p(run.lateness)),
                color: PALETTE[0],
                points: others,
            },
        ],
        marks: vec![
            (kill.at_s, " killed (SIGKILL)".into()),
            (kill.at_s + lease_s, " + lease period".into()),
        ],
    })
}

/// The highest lateness (ms) per [`BIN_S`] of due time, of the jobs of the
/// killed replica's shards (`victim`) or of the others, at each bin's
/// middle.
fn highest_per_bin(run: &ShareOutcome, victim: bool) -> Vec<(f64, f64)> {
    let mut bins: BTreeMap<i64, f64> = BTreeMap::new();
    for &(due_s, late_ms, of_victim) in &run.points {
        if of_victim == victim {
            let bin = (due_s / BIN_S).floor() as i64;
            let top = bins.entry(bin).or_insert(f64::MIN);
            *top = top.max(late_ms);
        }
    }
    bins.into_iter()
        .map(|(bin, ms)| ((bin as f64 + 0.5) * BIN_S, ms))
        .collect()
}
