//! Benchmark of the scheduling core: the in-memory timer and the firing path
//! (claim in `MemoryJobDB`, publish through `NullProducer`), measured on the
//! same input as the peer, tokio-cron-scheduler, and as a bare tokio-util
//! `DelayQueue` (the baseline: what the hardware and tokio's timer allow).
//!
//! N one-shot jobs are due uniformly at random over a window (10 s by
//! default) that opens `margin` after the add phase starts; the scheduler is
//! started before the first job is added. For each configuration it measures
//! the time to add all jobs, how many fired by the end of the window plus a
//! grace period (10 s; it stops early once all fired), the lateness of each
//! firing (firing time minus due time, wall clock, microseconds), the peak RSS
//! (VmHWM) and the RSS growth per pending job (VmRSS after the add phase minus
//! before, divided by N).
//!
//! A prototype timer driven from a dedicated thread (`proto-thread-timer`,
//! not the product) shows what a fix of the millisecond lateness floor of
//! tokio's timer would give; BENCHMARKS.md discusses it.
//!
//! With `--schedule cron`, the jobs are recurring: N cron jobs that each
//! fire every minute (`cron`), for the timer re-armed by the domain's next
//! occurrence, the firing path and the peer.
//!
//! Every configuration runs in a fresh process (the binary re-executes itself
//! with `--one`), so that peak RSS figures do not mix. See BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench core                          # the whole matrix, 3 runs each
//! cargo bench --bench core -- --smoke               # a few seconds, for CI
//! cargo bench --bench core -- --jobs 100000 --window-secs 10 --peer tokio-cron-scheduler
//! cargo bench --bench core -- --jobs 100000 --core timer,service \
//!   --peer tokio-cron-scheduler,delay-queue --plot docs/benchmarks   # and the charts
//! cargo bench --bench core -- --schedule cron --jobs 100000 --rounds 2   # recurring
//! ```
//!
//! Modules: `args` (the command line), `config` (subjects and their input),
//! `matrix` (the parent process), `measure` (the child: one configuration),
//! `subjects`, `cron` and `proto_timer` (what is measured), `report` (the tables),
//! `plot` (the charts, `--plot DIR`).

mod args;
mod config;
mod cron;
mod matrix;
mod measure;
mod plot;
mod proto_timer;
mod report;
mod subjects;
#[path = "../support/mod.rs"]
mod support;

use std::process::ExitCode;

use args::Mode;

fn main() -> ExitCode {
    match args::parse() {
        Mode::One(config) => {
            let outcome = measure::run_one(config);
            println!("RESULT {}", serde_json::to_string(&outcome).expect("json"));
            println!("{}", report::HEADER);
            println!("{}", report::row(&outcome, None));
            // Skip tearing down millions of entries.
            std::process::exit(0);
        }
        Mode::Matrix {
            configs,
            runs,
            smoke,
            plot,
        } => matrix::matrix(&configs, runs, smoke, plot.as_deref()),
    }
}
