//! `--disk-probe`: how long the machine's disk took to make a small write
//! durable while the jobs fired. A PostgreSQL commit waits for its WAL to be
//! flushed (`fdatasync`), so one slow flush holds up every claim committing
//! meanwhile; on a virtual disk such stalls come and go with the host's
//! other tenants. The probe writes 8 KiB (a WAL page) and syncs it every
//! 5 ms, in a file beside the service's logs (same file system as the
//! store's data on the machines this is run on), so that each run's
//! lateness can be read against what the disk did in that run. It adds at
//! most 200 syncs a second, a small share of a burst's commits.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::support::stats::Latencies;

/// A sync slower than this is a stall.
pub const STALL_MS: f64 = 50.0;

/// What the disk did during one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskSyncs {
    pub syncs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Syncs slower than [`STALL_MS`].
    pub stalls: usize,
    /// Their time added up.
    pub stalled_ms: f64,
}

/// Starts probing in a thread of its own (a sync blocks), until `running`
/// turns false.
pub fn start(dir: PathBuf, running: Arc<AtomicBool>) -> JoinHandle<io::Result<DiskSyncs>> {
    std::thread::spawn(move || {
        let path = dir.join(format!("disk-probe-{}", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let probed = probe(&file, &running);
        std::fs::remove_file(&path)?;
        probed
    })
}

/// Writes and syncs a page every 5 ms, cycling through 16 MiB (a WAL
/// segment), and sums up the sync times.
fn probe(file: &File, running: &AtomicBool) -> io::Result<DiskSyncs> {
    const PAGE: u64 = 8192;
    const SPAN: u64 = 16 << 20;
    let page = vec![0x5a_u8; PAGE as usize];
    let mut took_us = Vec::new();
    let mut offset = 0;
    while running.load(Ordering::Relaxed) {
        let start = Instant::now();
        file.write_all_at(&page, offset)?;
        file.sync_data()?;
        took_us.push(i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX));
        offset = (offset + PAGE) % SPAN;
        std::thread::sleep(Duration::from_millis(5));
    }
    let stalls: Vec<f64> = took_us
        .iter()
        .map(|&us| us as f64 / 1000.0)
        .filter(|&ms| ms > STALL_MS)
        .collect();
    let p = Latencies::of_us(took_us.iter().copied())
        .ok_or_else(|| io::Error::other("the run ended before the first sync"))?
        .percentiles();
    Ok(DiskSyncs {
        syncs: took_us.len(),
        p50_ms: p.p50_ms,
        p99_ms: p.p99_ms,
        max_ms: p.max_ms,
        stalls: stalls.len(),
        stalled_ms: stalls.iter().fold(0.0, |sum, ms| sum + ms),
    })
}
