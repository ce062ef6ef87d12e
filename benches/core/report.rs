//! What one run of a configuration measured ([`Outcome`], handed from the
//! child process to the parent as JSON), and the markdown the parent prints:
//! a row per run and per median, the ratios to the peer and the issue's
//! targets. BENCHMARKS.md quotes these tables.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

use crate::{
    config::Subject,
    support::stats::{Curve, median, median_of_some},
};

/// One configuration's measurements (one process, one run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub subject: String,
    pub jobs: usize,
    /// Time to add all jobs.
    pub add_ms: f64,
    /// Whether the last add finished after the first due time.
    pub add_overran: bool,
    /// Firings seen by the end of the window plus the grace period.
    pub fired: usize,
    /// Firings owed: one per job, or for cron jobs one per job and round.
    #[serde(default)]
    pub owed: usize,
    /// Cron jobs: the firings of each round (period), in order.
    #[serde(default)]
    pub fired_per_round: Vec<usize>,
    /// Cron jobs: seconds between two firings of a job (0: one-shot jobs).
    #[serde(default)]
    pub period_s: u32,
    /// Lateness percentiles over the firings seen (ms).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The lateness distribution, for the charts (`--plot`). Empty in a
    /// median: a distribution is one run's, and a chart draws the run whose
    /// p99 is the median.
    #[serde(default)]
    pub lateness_curve: Curve,
    /// Firings before their due time.
    pub early: usize,
    /// Peer only: lateness against the requested (millisecond) due time, as
    /// the peer keeps due times in whole seconds.
    pub requested_p50_ms: Option<f64>,
    pub requested_p99_ms: Option<f64>,
    pub requested_early: usize,
    /// VmHWM at the end.
    pub peak_rss_mb: f64,
    /// VmHWM at the end − VmRSS just before the subject was started: the
    /// peak memory the scheduler itself added, without the process and the
    /// bench's own arrays.
    pub peak_added_mb: f64,
    /// (VmRSS after the add phase − VmRSS before) / jobs.
    pub bytes_per_pending: f64,
    /// User + system CPU time of the whole process.
    pub cpu_s: f64,
    /// The machine's 1-minute load average when the run started.
    pub load: f64,
}

impl Outcome {
    /// The share of the firings owed that happened.
    pub fn fired_share(&self) -> f64 {
        self.fired as f64 / self.owed.max(1) as f64
    }
}

/// "per minute: 100.0 %, 100.0 %": each round's share of the jobs fired.
fn per_round(o: &Outcome) -> String {
    let shares: Vec<String> = o
        .fired_per_round
        .iter()
        .map(|&f| format!("{:.1} %", 100.0 * f as f64 / o.jobs.max(1) as f64))
        .collect();
    let period = if o.period_s == 60 {
        "minute".to_owned()
    } else {
        format!("{} s", o.period_s)
    };
    format!("fired per {period}: {}", shares.join(", "))
}

/// The median of each figure independently.
pub fn median_outcome(runs: &[Outcome]) -> Outcome {
    let f = |g: fn(&Outcome) -> f64| median(runs.iter().map(g).collect());
    let o = |g: fn(&Outcome) -> Option<f64>| median_of_some(runs.iter().map(g).collect());
    let u = |g: fn(&Outcome) -> usize| median(runs.iter().map(g).collect());
    Outcome {
        subject: runs[0].subject.clone(),
        jobs: runs[0].jobs,
        add_ms: f(|r| r.add_ms),
        add_overran: runs.iter().any(|r| r.add_overran),
        fired: u(|r| r.fired),
        owed: u(|r| r.owed),
        fired_per_round: (0..runs[0].fired_per_round.len())
            .map(|k| {
                median(
                    runs.iter()
                        .map(|r| r.fired_per_round.get(k).copied().unwrap_or(0))
                        .collect(),
                )
            })
            .collect(),
        period_s: runs[0].period_s,
        p50_ms: o(|r| r.p50_ms),
        p99_ms: o(|r| r.p99_ms),
        max_ms: o(|r| r.max_ms),
        lateness_curve: Curve::default(),
        early: u(|r| r.early),
        requested_p50_ms: o(|r| r.requested_p50_ms),
        requested_p99_ms: o(|r| r.requested_p99_ms),
        requested_early: u(|r| r.requested_early),
        peak_rss_mb: f(|r| r.peak_rss_mb),
        peak_added_mb: f(|r| r.peak_added_mb),
        bytes_per_pending: f(|r| r.bytes_per_pending),
        cpu_s: f(|r| r.cpu_s),
        load: f(|r| r.load),
    }
}

pub const HEADER: &str = "| subject | jobs | add all (ms) | added per s | fired | p50 (ms) | p99 (ms) | max (ms) | peak RSS (MB) | peak added (MB) | bytes per pending job | CPU (s) | load | note |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.2}"))
}

/// A table row of `o`, with `note` first in its note column.
pub fn row(o: &Outcome, note: Option<String>) -> String {
    let mut notes: Vec<String> = note.into_iter().collect();
    if o.add_overran {
        notes.push("last add after first due time".into());
    }
    if o.early > 0 {
        notes.push(format!("{} fired early", o.early));
    }
    if !o.fired_per_round.is_empty() {
        notes.push(per_round(o));
    }
    if o.subject == Subject::Peer.name() && o.period_s == 0 {
        notes.push(format!(
            "lateness vs its whole-second due time; vs requested: p50 {} p99 {}, {} early",
            ms(o.requested_p50_ms),
            ms(o.requested_p99_ms),
            o.requested_early
        ));
    }
    format!(
        "| {} | {} | {:.1} | {:.0} | {} ({:.1} %) | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.2} | {:.1} | {} |",
        o.subject,
        o.jobs,
        o.add_ms,
        o.jobs as f64 / (o.add_ms / 1000.0),
        o.fired,
        100.0 * o.fired_share(),
        ms(o.p50_ms),
        ms(o.p99_ms),
        ms(o.max_ms),
        o.peak_rss_mb,
        o.peak_added_mb,
        o.bytes_per_pending,
        o.cpu_s,
        o.load,
        notes.join("; ")
    )
}

/// How many times better each core subject is than the peer, per N.
pub fn ratios(medians: &BTreeMap<(usize, Subject), Outcome>) -> String {
    let mut out = String::from(
        "\n## Against tokio-cron-scheduler (peer ÷ core; > 1 means the core is better)\n\n\
         | core subject | jobs | add time | fired share (core ÷ peer) | p50 | p99 | max | peak RSS | peak added |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let ratio = |peer: Option<f64>, core: Option<f64>| match (peer, core) {
        (Some(p), Some(c)) if c > 0.0 => format!("{:.1}×", p / c),
        _ => "–".into(),
    };
    for ((n, subject), core) in medians {
        let Some(peer) = medians.get(&(*n, Subject::Peer)) else {
            continue;
        };
        if !subject.is_core() {
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            subject.name(),
            n,
            ratio(Some(peer.add_ms), Some(core.add_ms)),
            ratio(Some(core.fired as f64), Some(peer.fired as f64)),
            ratio(peer.p50_ms, core.p50_ms),
            ratio(peer.p99_ms, core.p99_ms),
            ratio(peer.max_ms, core.max_ms),
            ratio(Some(peer.peak_rss_mb), Some(core.peak_rss_mb)),
            ratio(Some(peer.peak_added_mb), Some(core.peak_added_mb)),
        );
    }
    out
}

fn mark(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The targets, checked against the medians.
pub fn targets(medians: &BTreeMap<(usize, Subject), Outcome>) -> String {
    let mut out = String::from("\n## Targets\n\n");
    for ((n, subject), m) in medians {
        if !subject.is_core() {
            continue;
        }
        if m.period_s > 0 {
            targets_cron(
                &mut out,
                subject.name(),
                m,
                medians.get(&(*n, Subject::Peer)),
            );
            continue;
        }
        if *n == 1_000_000 {
            targets_at_1m(&mut out, subject.name(), m);
        }
        if *n == 100_000 {
            targets_at_100k(
                &mut out,
                subject.name(),
                m,
                medians.get(&(*n, Subject::Peer)),
            );
        }
    }
    out
}

/// At 1M pending jobs: all fired, p99 ≤ 5 ms, ≤ 200 B a job, ≥ 1M a second.
fn targets_at_1m(out: &mut String, name: &str, m: &Outcome) {
    let rate = m.jobs as f64 / (m.add_ms / 1000.0);
    let _ = writeln!(
        out,
        "- {name} @ 1M: 100 % fired: {} ({} of {})",
        mark(m.fired == m.jobs),
        m.fired,
        m.jobs
    );
    let _ = writeln!(
        out,
        "- {name} @ 1M: lateness p99 ≤ 5 ms: {} ({} ms)",
        mark(m.p99_ms.is_some_and(|p| p <= 5.0)),
        ms(m.p99_ms)
    );
    let _ = writeln!(
        out,
        "- {name} @ 1M: ≤ 200 bytes per pending job: {} ({:.0} B)",
        mark(m.bytes_per_pending <= 200.0),
        m.bytes_per_pending
    );
    let _ = writeln!(
        out,
        "- {name} @ 1M: ≥ 1,000,000 jobs scheduled per s: {} ({rate:.0}/s)",
        mark(rate >= 1_000_000.0)
    );
}

/// At 100k: p99 below go-quartz's, and 10× tokio-cron-scheduler.
fn targets_at_100k(out: &mut String, name: &str, m: &Outcome, peer: Option<&Outcome>) {
    let _ = writeln!(
        out,
        "- {name} @ 100k: lateness p99 < 1.2 ms (go-quartz): {} ({} ms)",
        mark(m.p99_ms.is_some_and(|p| p < 1.2)),
        ms(m.p99_ms)
    );
    let Some(peer) = peer else {
        return;
    };
    let x = |p: Option<f64>, c: Option<f64>| match (p, c) {
        (Some(p), Some(c)) if c > 0.0 => p / c,
        _ => f64::NAN,
    };
    let figures = [
        ("add time", x(Some(peer.add_ms), Some(m.add_ms))),
        (
            "fired",
            x(Some(m.fired as f64), Some(peer.fired.max(1) as f64)),
        ),
        ("p99", x(peer.p99_ms, m.p99_ms)),
        ("peak RSS", x(Some(peer.peak_rss_mb), Some(m.peak_rss_mb))),
        (
            "peak RSS added",
            x(Some(peer.peak_added_mb), Some(m.peak_added_mb)),
        ),
    ];
    for (what, r) in figures {
        let _ = writeln!(
            out,
            "- {name} @ 100k: ≥ 10× tokio-cron-scheduler on {what}: {} ({r:.1}×)",
            mark(r >= 10.0)
        );
    }
    // A fired-share ratio is capped at 1 ÷ the peer's share, so also say
    // how many jobs each lost outright.
    let _ = writeln!(
        out,
        "- {name} @ 100k: jobs that never fired: {} against tokio-cron-scheduler's {} ({:.1} %)",
        m.jobs - m.fired,
        peer.jobs - peer.fired,
        100.0 * (peer.jobs - peer.fired) as f64 / peer.jobs as f64
    );
}

/// Recurring cron jobs: every job fired in every round with p99 < 5 ms, the
/// timer at most 64 B per armed job; the peer's figures beside.
fn targets_cron(out: &mut String, name: &str, m: &Outcome, peer: Option<&Outcome>) {
    let n = m.jobs;
    let every_round = !m.fired_per_round.is_empty() && m.fired_per_round.iter().all(|&f| f == n);
    let _ = writeln!(
        out,
        "- {name} @ {n} cron jobs: every job fired in every round: {} ({}); p99 < 5 ms: {} ({} ms)",
        mark(every_round),
        per_round(m),
        mark(m.p99_ms.is_some_and(|p| p < 5.0)),
        ms(m.p99_ms)
    );
    if name == Subject::Timer.name() {
        let _ = writeln!(
            out,
            "- {name} @ {n} cron jobs: ≤ 64 bytes per armed job: {} ({:.0} B)",
            mark(m.bytes_per_pending <= 64.0),
            m.bytes_per_pending
        );
    }
    if let Some(peer) = peer {
        let _ = writeln!(
            out,
            "- tokio-cron-scheduler @ {} cron jobs: {} fired ({:.1} %), p50 {} ms, p99 {} ms, {:.0} B per job ({})",
            peer.jobs,
            peer.fired,
            100.0 * peer.fired_share(),
            ms(peer.p50_ms),
            ms(peer.p99_ms),
            peer.bytes_per_pending,
            per_round(peer)
        );
    }
}
