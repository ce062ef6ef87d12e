//! The parent process: runs each configuration in a fresh process of this
//! binary (`--one`, so that peak RSS figures do not mix), interleaving the
//! runs, and prints every run, the medians, the ratios to the peer and the
//! targets; with `--plot`, it draws the charts.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, ExitCode, Stdio},
};

use crate::{
    config::{Config, Subject},
    plot,
    report::{HEADER, Outcome, median_outcome, ratios, row, targets},
    support::proc::machine,
};

/// Every run of each configuration, by (jobs, subject).
pub type Runs = BTreeMap<(usize, Subject), Vec<Outcome>>;

/// The medians of each configuration's runs, by (jobs, subject).
pub type Medians = BTreeMap<(usize, Subject), Outcome>;

/// Runs the matrix (its one-shot configurations, then its recurring ones,
/// each with its own report); fails if any part failed.
pub fn matrix(configs: &[Config], runs: usize, smoke: bool, plot: Option<&Path>) -> ExitCode {
    let (once, cron): (Vec<Config>, Vec<Config>) = configs.iter().partition(|c| c.cron.is_none());
    let mut ok = true;
    for part in [once, cron] {
        if !part.is_empty() {
            ok &= report_part(&part, runs, smoke, plot);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs configurations of one kind, prints their report and draws their
/// charts into `plot`; false if a run failed, a chart could not be written
/// or, in the smoke configuration, a core subject missed a firing.
fn report_part(configs: &[Config], runs: usize, smoke: bool, plot: Option<&Path>) -> bool {
    eprintln!(
        "{} configurations × {runs} run(s), each in a fresh process; {}",
        configs.len(),
        machine()
    );
    println!("{HEADER}");
    let (results, mut failed) = run_all(configs, runs);
    let medians: Medians = results
        .iter()
        .map(|(key, runs)| (*key, median_outcome(runs)))
        .collect();
    println!("\n## Medians of {runs} run(s)\n\n{HEADER}");
    for (key, m) in &medians {
        let all = &results[key];
        let overran = all.iter().filter(|o| o.add_overran).count();
        let note = if overran > 0 {
            format!(
                "median of {}; add overran the margin in {overran}",
                all.len()
            )
        } else {
            format!("median of {}", all.len())
        };
        println!("{}", row(m, Some(note)));
    }
    print!("{}", ratios(&medians));
    print!("{}", targets(&medians));
    if let Some(dir) = plot {
        match plot::draw(dir, &results, &medians) {
            Ok(files) => files
                .iter()
                .for_each(|f| eprintln!("chart: {}", f.display())),
            Err(err) => {
                eprintln!("cannot draw the charts: {err}");
                failed = true;
            }
        }
    }

    if smoke {
        for m in medians.values() {
            if Subject::parse(&m.subject).is_some_and(Subject::is_core) && m.fired != m.owed {
                eprintln!("smoke: {} fired {} of {}", m.subject, m.fired, m.owed);
                failed = true;
            }
        }
    }
    !failed
}

/// Every run, printed as it ends, and whether any failed. Runs are
/// interleaved (all configurations once, then again) so that a noisy spell
/// of the machine does not hit all runs of one configuration.
fn run_all(configs: &[Config], runs: usize) -> (Runs, bool) {
    let mut results = Runs::new();
    let mut failed = false;
    for run in 0..runs {
        for config in configs {
            let config = Config {
                seed: config.seed + run as u64,
                ..*config
            };
            match run_child(&config) {
                Some(outcome) => {
                    println!("{}", row(&outcome, Some(format!("run {}", run + 1))));
                    results
                        .entry((config.jobs, config.subject))
                        .or_default()
                        .push(outcome);
                }
                None => {
                    failed = true;
                    println!(
                        "| {} | {} | (run {} failed) |",
                        config.subject.name(),
                        config.jobs,
                        run + 1
                    );
                }
            }
        }
    }
    (results, failed)
}

/// One run of `config` in a fresh process of this binary: its `RESULT` line.
fn run_child(config: &Config) -> Option<Outcome> {
    let exe = std::env::current_exe()
        .map_err(|e| eprintln!("cannot find this binary: {e}"))
        .ok()?;
    let out = Command::new(exe)
        .args(config.args())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| eprintln!("cannot run {}: {e}", config.subject.name()))
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|json| serde_json::from_str::<Outcome>(json).ok())
}
