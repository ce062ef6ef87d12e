//! What one configuration of the core bench is: the subject measured (the
//! timer, the firing path, the peer, the baseline or the prototype) and its
//! input (one-shot jobs over a window, or recurring cron jobs), and how a
//! configuration is handed to the fresh process that runs it (`--one`).

use std::time::Duration;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// The bare timer: `Timer::arm` per job, firings read off its channel.
    Timer,
    /// The bare timer armed through `Timer::arm_many`, 1,024 jobs per call.
    TimerMany,
    /// The firing path: `MemoryJobDB::insert` + `Timer::arm` per job, firings
    /// run in batches by `JobService::run_firing` (the firing loop, in batches)
    /// (claim, publish of the run event, clearing of the outbox entry).
    Service,
    /// As `Service`, but jobs are added through `JobService::create`
    /// (validation, insert, arm, publish of the create event, outbox cleared).
    ServiceCreate,
    /// The peer: tokio-cron-scheduler 0.15 one-shot jobs.
    Peer,
    /// The baseline: one task owning a tokio-util `DelayQueue`.
    DelayQueue,
    /// Not the product: a prototype of the timer with its driver on a
    /// dedicated thread (condvar waits with microsecond deadlines instead of
    /// tokio's millisecond timer), same data structures as `Timer`.
    ProtoThreadTimer,
}

impl Subject {
    pub const ALL: [Subject; 7] = [
        Subject::Timer,
        Subject::TimerMany,
        Subject::Service,
        Subject::ServiceCreate,
        Subject::Peer,
        Subject::DelayQueue,
        Subject::ProtoThreadTimer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Subject::Timer => "timer",
            Subject::TimerMany => "timer-many",
            Subject::Service => "service",
            Subject::ServiceCreate => "service-create",
            Subject::Peer => "tokio-cron-scheduler",
            Subject::DelayQueue => "delay-queue",
            Subject::ProtoThreadTimer => "proto-thread-timer",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Subject::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether it runs recurring cron jobs (`--schedule cron`).
    pub fn runs_cron(self) -> bool {
        matches!(self, Subject::Timer | Subject::Service | Subject::Peer)
    }

    /// The product's own subjects, as against the peer, the baseline and
    /// the prototype.
    pub fn is_core(self) -> bool {
        !matches!(
            self,
            Subject::Peer | Subject::DelayQueue | Subject::ProtoThreadTimer
        )
    }
}

/// The recurring input (`--schedule cron`): job i runs the 6-field cron
/// expression that fires every `period_s` seconds at second
/// `i mod period_s` of each period (`"{s} * * * * *"` for a period of a
/// minute), so that the jobs fire every period, spread over its seconds
/// rather than all in one. The firings of `rounds` whole periods, from the
/// first whole second `margin` after the start, are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cron {
    /// Seconds between two firings of a job: a divisor of 60.
    pub period_s: u32,
    /// Periods measured.
    pub rounds: u32,
}

impl Cron {
    /// Job `i`'s expression (6 fields, with seconds).
    pub fn expression(&self, i: usize) -> String {
        let second = i % self.period_s as usize;
        if self.period_s == 60 {
            format!("{second} * * * * *")
        } else {
            format!("{second}-59/{} * * * * *", self.period_s)
        }
    }

    /// The second of its period at which job `i` fires.
    pub fn offset_s(&self, i: usize) -> i64 {
        (i % self.period_s as usize) as i64
    }
}

/// One configuration's input.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub subject: Subject,
    pub jobs: usize,
    /// Width of the window the due times are spread over.
    pub window: Duration,
    /// From the start of the add phase to the opening of the window.
    pub margin: Duration,
    /// How long after the window closes firings are still waited for.
    pub grace: Duration,
    pub seed: u64,
    /// Recurring cron jobs instead of one-shot jobs (`window` unused).
    pub cron: Option<Cron>,
}

impl Config {
    /// The arguments that run this configuration alone (`--one`).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--one".into(),
            "--subject".into(),
            self.subject.name().into(),
            "--jobs".into(),
            self.jobs.to_string(),
            "--window-secs".into(),
            self.window.as_secs_f64().to_string(),
            "--margin-secs".into(),
            self.margin.as_secs_f64().to_string(),
            "--grace-secs".into(),
            self.grace.as_secs_f64().to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ];
        if let Some(cron) = self.cron {
            args.extend([
                "--schedule".into(),
                "cron".into(),
                "--period-secs".into(),
                cron.period_s.to_string(),
                "--rounds".into(),
                cron.rounds.to_string(),
            ]);
        }
        args
    }
}
