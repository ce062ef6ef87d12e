//! Benchmark of computing a schedule's next occurrence
//! (`src/domain/schedule`): `Timing::next_after`, and the same after
//! parsing the stored text form, against the peer, croner 3's
//! `find_next_occurrence` on a `DateTime<Tz>` as tokio-cron-scheduler 0.15
//! calls it, and croner 4's own (the matcher the schedule module uses on
//! wall-clock times, here with croner's DST rules instead of the module's).
//! The issue's target: at most 2 µs for the next occurrence.
//!
//! Every subject answers the same questions: the next occurrence after
//! each of a list of instants spread over 2024 (transitions included), for
//! five cases (expressions and zones, `cases.rs`). A round times `--calls`
//! calls in a loop (the mean) for each subject in turn; the table gives the
//! median of the rounds' means, and percentiles of calls timed one by one
//! in a last pass. It also counts how many answers differ from the peer's:
//! none in UTC (checked: the run fails otherwise), and on transitions where
//! the DST policies decide differently from croner's rules.
//!
//! ```text
//! cargo bench --bench schedule                    # 200,000 calls a subject and case, 5 rounds
//! cargo bench --bench schedule -- --smoke         # 2,000 calls, 1 round (CI)
//! cargo bench --bench schedule -- --calls 1000000 --rounds 9
//! ```
//!
//! Without any argument (as `cargo test --all-targets` runs it) it runs
//! `--smoke`.

mod cases;
mod measure;

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Parser;

use cases::{CASES, Case, Subject, instants};
use measure::{figures, mean_ns, median};

/// Benchmark of the next-occurrence computation of recurring schedules
/// against croner as tokio-cron-scheduler uses it.
#[derive(Parser, Debug)]
#[command(name = "schedule")]
struct Args {
    /// The CI configuration: 2,000 calls, one round.
    #[arg(long)]
    smoke: bool,
    /// Calls per subject, case and round [default: 200000].
    #[arg(long)]
    calls: Option<usize>,
    /// Rounds, the subjects interleaved [default: 5].
    #[arg(long)]
    rounds: Option<usize>,
}

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`; with no argument at all (as
    // `cargo test --all-targets` runs a bench) this is the smoke run.
    let bare = std::env::args_os().len() <= 1;
    let args = Args::parse_from(std::env::args_os().filter(|a| a != "--bench"));
    let smoke = args.smoke || bare;
    let calls = args
        .calls
        .unwrap_or(if smoke { 2_000 } else { 200_000 })
        .max(1);
    let rounds = args.rounds.unwrap_or(if smoke { 1 } else { 5 }).max(1);
    let instants = instants(calls.min(20_000));
    println!(
        "{calls} calls a subject and case, {rounds} rounds, over {} instants of 2024\n",
        instants.len()
    );
    println!("| expression | zone | subject | mean | p50 | p99 | max | answers ≠ peer |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    let mut agree = true;
    for case in &CASES {
        agree &= run_case(case, &instants, calls, rounds);
    }
    if agree {
        ExitCode::SUCCESS
    } else {
        eprintln!("in UTC every subject must give the peer's answers");
        ExitCode::FAILURE
    }
}

/// Measures every subject on `case` and prints their rows; false when a
/// subject disagrees with the peer in UTC.
fn run_case(case: &Case, instants: &[DateTime<Utc>], calls: usize, rounds: usize) -> bool {
    let subjects = Subject::all(case);
    let mut means = vec![Vec::new(); subjects.len()];
    for _ in 0..rounds {
        for (mean, (_, subject)) in means.iter_mut().zip(&subjects) {
            mean.push(mean_ns(subject, instants, calls));
        }
    }
    let peer = subjects
        .iter()
        .find(|(_, s)| matches!(s, Subject::Peer(..)))
        .map(|(_, s)| s)
        .expect("a peer");
    let mut agree = true;
    for ((name, subject), mean) in subjects.iter().zip(means) {
        let differ = instants
            .iter()
            .filter(|t| seconds(subject.next(**t)) != seconds(peer.next(**t)))
            .count();
        agree &= case.zone != "UTC" || differ == 0;
        let each = figures(subject, instants, calls);
        println!(
            "| `{}` | {} | {name} | {} | {} | {} | {} | {differ} of {} |",
            case.expression,
            case.zone,
            ns(median(mean)),
            ns(each.p50_ns as f64),
            ns(each.p99_ns as f64),
            ns(each.max_ns as f64),
            instants.len()
        );
    }
    agree
}

/// An answer to the second: croner 3 keeps the sub-second part of the
/// instant it starts from (10:15:00.500 after 10:07:13.500), which
/// tokio-cron-scheduler drops.
fn seconds(answer: Option<DateTime<Utc>>) -> Option<i64> {
    answer.map(|t| t.timestamp())
}

/// A time in ns as µs with two decimals.
fn ns(value: f64) -> String {
    format!("{:.2} µs", value / 1000.0)
}
