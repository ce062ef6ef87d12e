//! What the benchmark binaries share: argument parsing helpers, the clock,
//! and readings of the machine and of processes from /proc.

use std::time::{SystemTime, UNIX_EPOCH};

/// The arguments without the `--bench` that `cargo bench` appends, and
/// whether to run the smoke configuration: asked for with `--smoke`, or no
/// arguments at all (as `cargo test --all-targets` runs a bench binary).
pub fn bench_args(args: &[String]) -> (bool, Vec<&str>) {
    let smoke = args.is_empty() || args.iter().any(|a| a == "--smoke");
    let args = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    (smoke, args)
}

/// A number, `_` allowed as a digit separator.
pub fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.replace('_', "")
        .parse()
        .map_err(|_| format!("not a number: {s}"))
}

/// A comma-separated list of numbers.
pub fn numbers<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',').map(number).collect()
}

/// "N CPUs (model)", for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} CPUs ({cpu})")
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// A field of /proc/<pid>/status (`pid` may be `self`), in KiB.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process (`pid` may be `self`), in seconds.
pub fn cpu_seconds(pid: &str) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// User + system CPU time in the text of a /proc/<pid>/stat, in seconds.
pub fn stat_cpu_seconds(stat: &str) -> f64 {
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // utime and stime (fields 14 and 15 of stat) are 11 and 12 after the
    // name; 100 clock ticks per second on Linux.
    ticks(11)
        .zip(ticks(12))
        .map_or(0.0, |(u, s)| (u + s) as f64 / 100.0)
}

/// The wall clock in Unix microseconds.
pub fn now_us() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_micros()).expect("µs fit i64")
}
