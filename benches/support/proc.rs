//! Readings of the machine and of processes from /proc, for the reports:
//! the CPU model, the load average, memory (VmRSS, VmHWM) and CPU time of a
//! process. Each reading is 0 or "unknown" where /proc does not give it, so
//! that a report is still printed.

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
