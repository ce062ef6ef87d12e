//! Where the machine's CPU went while a benchmark measured: the CPU time of
//! every live process from /proc, summed by group (the service, PostgreSQL,
//! the broker, polodb, this benchmark, the rest), before and after a phase;
//! and the load averages printed at the start.

use std::time::Duration;

use crate::support::proc::stat_cpu_seconds;

/// The groups, in the order of the arrays below and of the CPU table.
const GROUPS: usize = 6;

/// The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them.
pub fn load_averages() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time (user + system, s) of every live process, summed by group:
/// scheduler-service, postgres, tansu, polodb, this benchmark, the rest.
pub fn cpu_by_group() -> [f64; GROUPS] {
    let mut groups = [0.0; GROUPS];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("", |(comm, _)| comm);
        let group = match comm {
            c if c.starts_with("scheduler-serv") => 0,
            "postgres" => 1,
            "tansu" => 2,
            "polodb" => 3,
            c if c.starts_with("e2e-") => 4,
            _ => 5,
        };
        groups[group] += stat_cpu_seconds(&stat);
    }
    groups
}

/// CPU used by each group of processes over a measured phase.
#[derive(Debug, Clone)]
pub struct CpuUse {
    pub wall_s: f64,
    pub by_group: [f64; GROUPS],
}

impl CpuUse {
    pub fn between(before: &[f64; GROUPS], after: &[f64; GROUPS], wall: Duration) -> Self {
        let mut by_group = [0.0; GROUPS];
        for (i, g) in by_group.iter_mut().enumerate() {
            // Processes that ended meanwhile would make a group negative.
            *g = (after[i] - before[i]).max(0.0);
        }
        CpuUse {
            wall_s: wall.as_secs_f64(),
            by_group,
        }
    }
}
