//! `--plot DIR`: the core bench's charts, from this matrix's runs. Per job
//! count N, `core-lateness-N.svg`: the lateness distribution of each subject
//! run at N (its run with the median p99), as a share of all its jobs, so
//! that jobs never fired show as a curve that stops short of 100 %; and
//! `core-cost-N.svg`: the time to add a job and the memory per pending job
//! (medians as bars, each run a dot).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use plotters::style::RGBColor;

use crate::{
    config::Subject,
    matrix::{Medians, Runs},
    report::Outcome,
    support::{
        plot::{Bar, BarChart, LatencyChart, Line, PALETTE, Panel, count, figures, number},
        stats::median_run,
    },
};

/// Draws both charts for every job count of `results` into `dir`; the
/// files written.
pub fn draw(dir: &Path, results: &Runs, medians: &Medians) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let counts: BTreeSet<usize> = results.keys().map(|&(n, _)| n).collect();
    let mut files = Vec::new();
    for n in counts {
        let at_n: Vec<(Subject, &[Outcome])> = results
            .iter()
            .filter(|((jobs, _), _)| *jobs == n)
            .map(|(&(_, subject), runs)| (subject, runs.as_slice()))
            .collect();
        // Recurring runs (`--schedule cron`) get charts of their own.
        let cron = at_n
            .iter()
            .flat_map(|(_, runs)| runs.iter())
            .any(|o| o.period_s > 0);
        let prefix = if cron { "core-cron" } else { "core" };
        let lateness = dir.join(format!("{prefix}-lateness-{n}.svg"));
        lateness_chart(n, &at_n).write(&lateness)?;
        let cost = dir.join(format!("{prefix}-cost-{n}.svg"));
        cost_chart(n, &at_n, medians).write(&cost)?;
        files.extend([lateness, cost]);
    }
    Ok(files)
}

/// Each subject's colour, the same in every chart.
fn color(subject: Subject) -> RGBColor {
    PALETTE[match subject {
        Subject::Timer => 0,
        Subject::Peer => 1,
        Subject::Service => 2,
        Subject::DelayQueue => 3,
        Subject::ProtoThreadTimer => 4,
        Subject::TimerMany => 5,
        Subject::ServiceCreate => 6,
    }]
}

/// "100,000 one-shot jobs", or "100,000 cron jobs every minute, 2 rounds".
fn what(n: usize, at_n: &[(Subject, &[Outcome])]) -> String {
    let first = at_n.first().and_then(|(_, runs)| runs.first());
    match first.filter(|o| o.period_s > 0) {
        None => format!("{} one-shot jobs", count(n)),
        Some(o) if o.period_s == 60 => format!(
            "{} cron jobs every minute, {} minutes",
            count(n),
            o.fired_per_round.len()
        ),
        Some(o) => format!(
            "{} cron jobs every {} s, {} rounds",
            count(n),
            o.period_s,
            o.fired_per_round.len()
        ),
    }
}

fn lateness_chart(n: usize, at_n: &[(Subject, &[Outcome])]) -> LatencyChart {
    let lines = at_n
        .iter()
        .filter_map(|&(subject, runs)| {
            let run = median_run(runs, |r| r.p99_ms)?;
            let fired = run.fired_share();
            let label = format!(
                "{}: {}; {} % fired",
                subject.name(),
                figures(run.p50_ms, run.p99_ms, run.max_ms),
                number(100.0 * fired)
            );
            Some(Line::new(label, color(subject), &run.lateness_curve, fired))
        })
        .collect();
    let runs = at_n.first().map_or(0, |(_, runs)| runs.len());
    LatencyChart {
        title: format!("Firing lateness, {}", what(n, at_n)),
        x_desc: "lateness: firing time − due time (log scale)".into(),
        y_desc: "jobs fired within it".into(),
        note: format!(
            "Each subject's run with the median p99 (of {runs}); share of all its jobs, so a curve that stops short of 100 % lost the rest."
        ),
        lines,
    }
}

fn cost_chart(n: usize, at_n: &[(Subject, &[Outcome])], medians: &Medians) -> BarChart {
    let bars = |figure: fn(&Outcome) -> f64| -> Vec<Bar> {
        at_n.iter()
            .filter_map(|&(subject, runs)| {
                Some(Bar {
                    label: subject.name().into(),
                    color: color(subject),
                    value: figure(medians.get(&(n, subject))?),
                    runs: runs.iter().map(figure).collect(),
                })
            })
            .collect()
    };
    let runs = at_n.first().map_or(0, |(_, runs)| runs.len());
    BarChart {
        title: format!("Cost of scheduling {}", what(n, at_n)),
        note: format!(
            "Bars: medians of {runs} run(s), dots: each run. Memory: RSS growth over the add phase ÷ jobs."
        ),
        panels: vec![
            Panel {
                title: "time to add a job (µs)".into(),
                bars: bars(|o| o.add_ms * 1000.0 / o.jobs.max(1) as f64),
            },
            Panel {
                title: "memory per pending job (bytes)".into(),
                bars: bars(|o| o.bytes_per_pending),
            },
        ],
    }
}
