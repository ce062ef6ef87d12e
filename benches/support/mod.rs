//! What the two benchmark binaries (`core` and `e2e`) share and the tests do
//! not: their command lines' common ground, the wall clock, readings of the
//! machine and of processes from /proc ([`proc`]), percentiles and medians
//! of what they measure ([`stats`]), and the charts they draw ([`plot`]). What the benchmarks share with
//! the tests (test servers, child processes) is in the test-support crate.
//!
//! Each bench includes this folder with `#[path]`: it is a module of both
//! binaries, not a target of its own.

pub mod plot;
pub mod proc;
pub mod stats;

use std::{
    ffi::OsString,
    time::{SystemTime, UNIX_EPOCH},
};

/// The end of each bench's `--help`: what no argument at all runs.
pub const BARE_RUN_HELP: &str =
    "Without any argument (as `cargo test --all-targets` runs it) it runs --smoke.";

/// This process's arguments without the `--bench` that `cargo bench`
/// appends, and whether there were none at all: `cargo test --all-targets`
/// runs a bench binary so, and then it runs its smoke configuration.
pub fn bench_args() -> (Vec<OsString>, bool) {
    let all: Vec<OsString> = std::env::args_os().collect();
    let bare = all.len() <= 1;
    let args = all.into_iter().filter(|a| a != "--bench").collect();
    (args, bare)
}

/// A number, `_` allowed as a digit separator (a clap value parser).
pub fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.replace('_', "")
        .parse()
        .map_err(|_| format!("not a number: {s}"))
}

/// The wall clock in Unix microseconds.
pub fn now_us() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_micros()).expect("µs fit i64")
}
