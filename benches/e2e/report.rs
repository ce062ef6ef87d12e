//! What the three benchmarks' markdown tables share: how a figure and the
//! notes are written in a cell, a target's verdict, and the table of CPU
//! time by process group.

use std::fmt::Write as _;

use crate::accounting::CpuUse;

/// Milliseconds to one decimal, or a dash for a figure not measured.
pub fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1}"))
}

/// The non-empty notes, joined for a table cell.
pub fn joined_notes<'a>(notes: impl IntoIterator<Item = &'a str>) -> String {
    notes
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A target's verdict.
pub fn mark(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

const CPU_HEADER: &str = "| configuration | run | wall (s) | CPU available (s) | scheduler-service | postgres | broker (tansu) | polodb | benchmark client | other | idle |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// Prints the CPU table under `title`: a row per (configuration, run, use).
pub fn print_cpu_table<'a>(
    title: &str,
    rows: impl IntoIterator<Item = (String, usize, &'a CpuUse)>,
) {
    println!("\n### {title}\n\n{CPU_HEADER}");
    for (label, run, c) in rows {
        println!("{}", cpu_row(&label, run, c));
    }
}

fn cpu_row(label: &str, run: usize, c: &CpuUse) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let available = c.wall_s * cores;
    let used: f64 = c.by_group.iter().sum();
    let mut row = format!("| {label} | {run} | {:.2} | {available:.2} |", c.wall_s);
    for g in c.by_group {
        let _ = write!(row, " {g:.2} |");
    }
    let _ = write!(row, " {:.2} |", (available - used).max(0.0));
    row
}
