//! The command line of the core bench, parsed with clap: the matrix of
//! subjects × job counts to run (each configuration in a fresh process), or
//! one configuration in this process (`--one`, which is how the matrix runs
//! each of them). The flags are those BENCHMARKS.md documents.

use std::{path::PathBuf, time::Duration};

use clap::{CommandFactory, Parser, ValueEnum, error::ErrorKind};

use crate::{
    config::{Config, Cron, Subject},
    support::{BARE_RUN_HELP, bench_args, number},
};

/// Benchmark of the scheduling core (the timer and the firing path) against
/// tokio-cron-scheduler and a bare tokio-util DelayQueue; see BENCHMARKS.md.
#[derive(Parser, Debug)]
#[command(
    name = "core",
    args_override_self = true,
    after_help = BARE_RUN_HELP
)]
struct Args {
    /// The CI configuration: 1,000 jobs over 1 s (200 for the peer), one run.
    #[arg(long)]
    smoke: bool,
    /// Job counts, one configuration each [default: 10000,100000,1000000].
    #[arg(long, value_name = "N[,N..]", value_delimiter = ',', value_parser = number::<usize>)]
    jobs: Vec<usize>,
    /// Job counts for tokio-cron-scheduler [default: those of --jobs].
    #[arg(long, value_name = "N[,N..]", value_delimiter = ',', value_parser = number::<usize>)]
    peer_jobs: Option<Vec<usize>>,
    /// Width of the window the due times are spread over [default: 10].
    #[arg(long, value_name = "S", value_parser = number::<f64>)]
    window_secs: Option<f64>,
    /// From the start of the add phase to the opening of the window
    /// [default: 2 + 3e-6 × jobs].
    #[arg(long, value_name = "S", value_parser = number::<f64>)]
    margin_secs: Option<f64>,
    /// How long after the window closes firings are still waited for.
    #[arg(long, value_name = "S", value_parser = number::<f64>, default_value = "10")]
    grace_secs: f64,
    /// Runs of each configuration, interleaved [default: 3].
    #[arg(long, value_name = "K", value_parser = number::<usize>)]
    runs: Option<usize>,
    /// Seed of the due times; run k uses seed + k − 1.
    #[arg(long, value_name = "X", value_parser = number::<u64>, default_value = "7")]
    seed: u64,
    /// Core subjects [default: timer,timer-many,service,service-create].
    #[arg(long, value_name = "SUBJECT,..|none", value_parser = core_subjects)]
    core: Option<Subjects>,
    /// Peers [default: tokio-cron-scheduler,delay-queue,proto-thread-timer].
    #[arg(long, value_name = "SUBJECT,..|none", value_parser = peer_subjects)]
    peer: Option<Subjects>,
    /// Measure one configuration in this process (with --subject and one
    /// --jobs value), e.g. under a profiler.
    #[arg(long)]
    one: bool,
    /// The subject of --one.
    #[arg(long, value_name = "NAME", value_parser = subject)]
    subject: Option<Subject>,
    /// Also draw the charts of BENCHMARKS.md into DIR (created if need
    /// be), as SVG: per job count N, core-lateness-N.svg and core-cost-N.svg.
    #[arg(long, value_name = "DIR", conflicts_with = "one")]
    plot: Option<PathBuf>,
    /// One-shot jobs over a window, or recurring cron jobs that fire every
    /// --period-secs (subjects timer, service and tokio-cron-scheduler;
    /// jobs [default: 100000]).
    #[arg(long, value_enum, default_value = "once")]
    schedule: Kind,
    /// cron: seconds between two firings of a job, a divisor of 60
    /// [default: 60, smoke 1].
    #[arg(long, value_name = "S", value_parser = period)]
    period_secs: Option<u32>,
    /// cron: periods measured [default: 2].
    #[arg(long, value_name = "K", value_parser = number::<u32>)]
    rounds: Option<u32>,
}

/// What the jobs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// One-shot jobs due at random over --window-secs.
    Once,
    /// Recurring 6-field cron jobs (see `config::Cron`).
    Cron,
}

/// A cron period: a divisor of 60 seconds.
fn period(s: &str) -> Result<u32, String> {
    number::<u32>(s).and_then(|p| {
        if p > 0 && 60 % p == 0 {
            Ok(p)
        } else {
            Err(format!("{p} does not divide 60"))
        }
    })
}

/// A list of subjects given on the command line.
#[derive(Debug, Clone)]
struct Subjects(Vec<Subject>);

fn subject(name: &str) -> Result<Subject, String> {
    Subject::parse(name).ok_or_else(|| format!("unknown subject {name}"))
}

fn subjects(s: &str, core: bool) -> Result<Subjects, String> {
    if s == "none" {
        return Ok(Subjects(Vec::new()));
    }
    s.split(',')
        .map(|name| {
            Subject::parse(name)
                .filter(|s| s.is_core() == core)
                .ok_or_else(|| format!("unknown {} {name}", if core { "core" } else { "peer" }))
        })
        .collect::<Result<_, _>>()
        .map(Subjects)
}

fn core_subjects(s: &str) -> Result<Subjects, String> {
    subjects(s, true)
}

fn peer_subjects(s: &str) -> Result<Subjects, String> {
    subjects(s, false)
}

/// What to run.
pub enum Mode {
    One(Config),
    Matrix {
        configs: Vec<Config>,
        runs: usize,
        smoke: bool,
        /// Where to draw the charts, if anywhere.
        plot: Option<PathBuf>,
    },
}

/// The mode this process's arguments ask for; exits with a usage error (2)
/// on arguments it cannot run.
pub fn parse() -> Mode {
    let (args, bare) = bench_args();
    let args = Args::parse_from(args);
    args.mode(bare)
        .unwrap_or_else(|msg| Args::command().error(ErrorKind::InvalidValue, msg).exit())
}

impl Args {
    fn mode(self, bare: bool) -> Result<Mode, String> {
        let smoke = bare || self.smoke;
        let cron = (self.schedule == Kind::Cron).then(|| self.cron(smoke));
        let jobs = self.jobs(smoke, cron.is_some());
        if self.one {
            let subject = self.subject.ok_or("--one needs --subject")?;
            let [n] = jobs[..] else {
                return Err("--one needs exactly one --jobs value".into());
            };
            return Ok(Mode::One(self.config(smoke, cron)(subject, n)));
        }
        let mut configs = self.configs(smoke, cron, &jobs)?;
        if bare {
            // `cargo test --all-targets`: the recurring smoke too.
            let cron = Args::parse_from(["core", "--schedule", "cron"]);
            configs.extend(cron.configs(true, Some(cron.cron(true)), &cron.jobs(true, true))?);
        }
        Ok(Mode::Matrix {
            configs,
            runs: self.runs.unwrap_or(if smoke { 1 } else { 3 }).max(1),
            smoke,
            plot: self.plot,
        })
    }

    /// The recurring input of `--schedule cron`.
    fn cron(&self, smoke: bool) -> Cron {
        Cron {
            period_s: self.period_secs.unwrap_or(if smoke { 1 } else { 60 }),
            rounds: self.rounds.unwrap_or(2),
        }
    }

    /// The job counts of the core subjects.
    fn jobs(&self, smoke: bool, cron: bool) -> Vec<usize> {
        if !self.jobs.is_empty() {
            self.jobs.clone()
        } else if smoke {
            vec![1_000]
        } else if cron {
            vec![100_000]
        } else {
            vec![10_000, 100_000, 1_000_000]
        }
    }

    /// How a configuration of `subject` at `jobs` is built from the flags.
    fn config(&self, smoke: bool, cron: Option<Cron>) -> impl Fn(Subject, usize) -> Config {
        let window = self.window_secs.unwrap_or(if smoke { 1.0 } else { 10.0 });
        let margin = self.margin_secs.or(smoke.then_some(0.5));
        let (grace, seed) = (self.grace_secs, self.seed);
        move |subject, jobs: usize| Config {
            subject,
            jobs,
            window: Duration::from_secs_f64(window),
            // The window opens after the add phase: by default 2 s + 3 µs per
            // job (2.03 s at 10k, 2.3 s at 100k, 5 s at 1M), the same for every
            // subject at a given N; for cron jobs, whose adds parse an
            // expression, 2 s + 20 µs per job (4 s at 100k).
            margin: Duration::from_secs_f64(
                margin.unwrap_or(2.0 + if cron.is_some() { 2e-5 } else { 3e-6 } * jobs as f64),
            ),
            // A recurring smoke stops 1 s after its last round.
            grace: Duration::from_secs_f64(if smoke && cron.is_some() {
                grace.min(1.0)
            } else {
                grace
            }),
            seed,
            cron,
        }
    }

    /// Every configuration of the matrix, sorted by (jobs, subject).
    fn configs(
        &self,
        smoke: bool,
        cron: Option<Cron>,
        jobs: &[usize],
    ) -> Result<Vec<Config>, String> {
        let (core, peers) = self.subjects(cron.is_some());
        if let Some(s) = cron.and(core.iter().chain(&peers).find(|s| !s.runs_cron())) {
            return Err(format!("{} has no --schedule cron", s.name()));
        }
        let config = self.config(smoke, cron);
        let peer_jobs = self
            .peer_jobs
            .clone()
            .or(smoke.then(|| vec![200]))
            .unwrap_or_else(|| jobs.to_vec());
        let mut configs = Vec::new();
        for &n in jobs {
            for &s in core
                .iter()
                .chain(peers.iter().filter(|&&s| s != Subject::Peer))
            {
                configs.push(config(s, n));
            }
        }
        if peers.contains(&Subject::Peer) {
            configs.extend(peer_jobs.iter().map(|&n| config(Subject::Peer, n)));
        }
        configs.sort_by_key(|c| (c.jobs, c.subject));
        Ok(configs)
    }

    /// The core subjects and the peers asked for, or the defaults.
    fn subjects(&self, cron: bool) -> (Vec<Subject>, Vec<Subject>) {
        let core = self.core.clone().map_or_else(
            || {
                Subject::ALL
                    .into_iter()
                    .filter(|s| s.is_core() && (!cron || s.runs_cron()))
                    .collect()
            },
            |s| s.0,
        );
        let peers = self.peer.clone().map_or_else(
            || {
                if cron {
                    vec![Subject::Peer]
                } else {
                    vec![
                        Subject::Peer,
                        Subject::DelayQueue,
                        Subject::ProtoThreadTimer,
                    ]
                }
            },
            |s| s.0,
        );
        (core, peers)
    }
}
