//! What the parts' markdown tables share: how a figure and the
//! notes are written in a cell, a target's verdict, and the table of CPU
//! time by process group; and what their charts share (`--plot`): a store's
//! colour, and how a chart is written.

use std::{fmt::Write as _, path::Path};

use plotters::style::RGBColor;

use crate::{accounting::CpuUse, args::Store, support::plot::PALETTE};

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

/// Each store's colour, the same in every chart.
pub fn store_color(store: Store) -> RGBColor {
    PALETTE[match store {
        Store::Postgres => 0,
        Store::MongoDb => 1,
        Store::Embedded => 2,
    }]
}

/// Writes the chart `name` into `dir` (created if need be) with `write`,
/// and says where; false, with the reason, if it could not.
pub fn write_chart(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> bool {
    let path = dir.join(name);
    let written = std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| write(&path));
    match written {
        Ok(()) => {
            eprintln!("chart: {}", path.display());
            true
        }
        Err(err) => {
            eprintln!("cannot draw the chart: {err}");
            false
        }
    }
}
