//! End-to-end benchmark of the service as it ships: the `scheduler-service`
//! binary runs as a child process (a fresh one per run, JSON logs piped back
//! here) against the servers of `scripts/services.sh up`: the Kafka-protocol
//! broker, the MongoDB-protocol server and PostgreSQL. Each run uses a fresh
//! collection or schema and fresh topics.
//!
//! Eight parts, a module each:
//!
//! - `create`: CreateJob load. `--concurrency` calls in flight over
//!   `--connections` HTTP/2 connections, `--requests` calls (after a warm-up
//!   of a tenth, at most 100, not counted), jobs due a day later so that
//!   nothing fires; per store (`--stores mongodb,postgres,embedded`). A run stops
//!   issuing calls after `--max-secs` (the MongoDB-protocol server is slow).
//!   Reports calls per second, latency p50/p99/max, the service's CPU time
//!   and peak RSS, and the create events on the topic.
//! - `fire`: fire-to-consume latency. `--jobs` jobs are created ahead (after
//!   a pilot of 100 that measures the create rate) with due times uniform
//!   within one `--window-ms` window that opens `--lead-secs` after the
//!   expected end of the creation; a consumer assigned directly to every
//!   partition of the run topic (`fetch.wait.max.ms` = `--fetch-wait-ms`)
//!   records, per job, its arrival time minus the event's `ScheduleTime`.
//!   Reports p50/p99/max lateness and the drain time (last arrival − first
//!   due). Where the time goes: the event's `UpdatedAt` is the time the claim
//!   started (claim-start lateness), and the service's "jobs fired" log
//!   lines give the lateness when each batch's claim returned (claimed
//!   lateness, each batch's latest); arrival minus that is publish plus
//!   consume. Configurations: `--fire-stores`,
//!   `--fire-concurrency` (SCHEDULER_FIRE_CONCURRENCY) × `--partitions`
//!   (TOPIC_JOB_RUN_PARTITIONS); the service's KAFKA_FETCH_WAIT_MAX_MS is set
//!   to `--fetch-wait-ms` too (it only paces the run-result consumer).
//! - `recovery`: restart recovery with `--recovery-jobs` SCHEDULED jobs in
//!   each of `--recovery-stores` (PostgreSQL and the embedded store),
//!   inserted once through the store API (`JobDB::insert`, owing no event),
//!   due 10 to 50 minutes ahead within a one-hour look-ahead window. Each
//!   run starts the binary on that schema or folder and measures the time
//!   from spawning it to its log line "armed scheduled jobs from the store"
//!   (and the part of it between its first and that log line), and its peak
//!   RSS (VmHWM) once it listens; then stops it (SIGTERM). A baseline run on an
//!   empty store gives the fixed start-up cost and memory. Beside it, the
//!   store query (`scheduled_before`) and the arming (`Timer::arm_if_vacant`
//!   per job) are timed alone in this process.
//! - `recurring`: `--recurring-jobs` jobs created through CreateJob with a
//!   `Recurrence` every `--recurring-every-secs`, anchors spread over one
//!   period, on each of `--recurring-stores`; the occurrences due in
//!   `--recurring-secs` are counted on the run topic by `ScheduledKey`
//!   (each exactly once) with their lateness against the occurrence.
//! - `history`: run history listing, on each of `--history-stores`
//!   (PostgreSQL, the embedded store and the MongoDB-protocol server), the
//!   stores opened in this process. `--history-jobs` one-shot jobs get
//!   `--history-runs` runs each through the store API (each attempt claimed
//!   and failed, its run started and ended with the job, as the service
//!   writes them); then each job's first page (100 runs) is listed once
//!   (a warm-up, shown apart) and ten times more, one call at a time:
//!   p50/p99/max against the target of under 5 ms. On PostgreSQL and the
//!   embedded store a pruning pass (`prune_runs`, batches of 1,000) then
//!   keeps the newest half of each job's runs: its time and runs removed.
//! - `api`: the HTTP/JSON API against gRPC: `--requests` CreateJob calls
//!   over each face of one service on the embedded store, `--concurrency`
//!   in flight, one face after the other in the same run (after a warm-up
//!   of both); calls per second and p50/p99 of each, and HTTP over gRPC.
//! - `console`: the web console's pages on a large store. On each of
//!   `--console-stores` (PostgreSQL and the embedded store),
//!   `--console-jobs` jobs inserted once through the store API, a mix the
//!   console's filters tell apart (one-shot email and sms jobs due over the
//!   next hours, some succeeded, failed or running, a tenth recurring, a few
//!   hundred paused, one name in 97 matching the name search); the binary
//!   starts on it and each page's HTTP requests are made as
//!   `console/app.js` makes them, those it awaits together at once: the
//!   overview (5: the counts, the firings, three listings), the jobs
//!   list's first and last page, a name search and a filter combination,
//!   and a job's page. Each page once as a warm-up,
//!   then 10 times (smoke 2): p50 and max of the page's wait (until its last
//!   answer). Every answer must be 200 and agree with the set.
//! - `replicas`: replicas sharing the jobs by shards, on PostgreSQL, each a
//!   child process of one fresh schema and topics (64 shards, 5 s leases),
//!   in `--replicas-scenarios`: `share`, three replicas and
//!   `--replicas-jobs` one-shot jobs due within `--replicas-window-ms`,
//!   created through them round-robin more than half the look-ahead
//!   (`--replicas-look-ahead-secs`) ahead: claim attempts per fired job
//!   summed over the replicas, their armed timers summed before the first
//!   due time against the jobs, shards per replica, each job exactly once
//!   on the run topic and its lateness; `kill`, the same with one replica
//!   killed (SIGKILL) in the middle of the window: the lateness of the jobs
//!   of the shards it held; `scale`, `--replicas-recurring-jobs` recurring
//!   jobs every `--replicas-every-secs` while replicas start one
//!   `--replicas-step-secs` apart from one to four and stop (SIGTERM) back
//!   to one: every occurrence exactly once, claims per fired occurrence,
//!   rebalances. Smoke: `share` alone, 300 jobs within 2 s, look-ahead 6 s.
//!
//! ```text
//! cargo bench --bench e2e                      # every part, 3 runs each
//! cargo bench --bench e2e -- --smoke           # tiny, well under a minute, for CI
//! cargo bench --bench e2e -- --parts create --stores postgres --concurrency 64 --requests 20000
//! cargo bench --bench e2e -- --parts fire --jobs 10000 --fire-concurrency 64,256 --partitions 1,4
//! cargo bench --bench e2e -- --parts recovery --recovery-stores embedded,postgres --recovery-jobs 100000
//! cargo bench --bench e2e -- --parts create,fire --fire-stores postgres,embedded --plot docs/benchmarks
//! cargo bench --bench e2e -- --parts recurring --recurring-jobs 10000 --recurring-every-secs 10
//! cargo bench --bench e2e -- --parts history --history-stores postgres,embedded --history-jobs 50
//! cargo bench --bench e2e -- --parts api --requests 20000 --concurrency 64
//! cargo bench --bench e2e -- --parts console --console-stores postgres,embedded --console-jobs 100000
//! cargo bench --bench e2e -- --parts replicas --replicas-scenarios share,kill,scale --plot docs/benchmarks
//! ```
//!
//! With `--plot DIR`, the create, fire and replicas parts also draw their
//! charts there as SVG (`e2e-create-throughput.svg`,
//! `e2e-fire-latency-<jobs>.svg`, `e2e-replicas-kill.svg`): calls per
//! second and p99 latency per store, the fire-to-consume lateness
//! distribution of each configuration, and the lateness over the window of
//! a run where a replica is killed.
//!
//! Without any argument (as `cargo test --all-targets` runs it) it runs
//! `--smoke`. It exits with failure when a call fails, a fired job does not
//! arrive, a recovery does not arm every job, a run history listing or
//! pruning pass is wrong, a console page's answer is not 200 or
//! disagrees with the jobs stored, or a job or an occurrence of the
//! replicas part does not arrive exactly once.
//!
//! Server addresses as in the tests (test-support reads them):
//! `TEST_MONGODB_URI`, `TEST_POSTGRES_URI`, `TEST_KAFKA_BROKERS`. Service
//! logs are kept under `target/tmp/e2e/` (one file per run).
//!
//! The other modules: `args` (the command line), `service` (the binary as a
//! child and its log), `load` (the CreateJob load generator), `accounting`
//! (CPU by process) and `report` (what the tables and charts share).

mod accounting;
mod api;
mod args;
mod console;
mod create;
mod fire;
mod history;
mod load;
mod recovery;
mod recurring;
mod replicas;
mod report;
mod service;
#[path = "../support/mod.rs"]
mod support;

use std::process::ExitCode;

use args::{Options, Part};

fn main() -> ExitCode {
    let options = args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("e2e: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if runtime.block_on(run(options)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(o: Options) -> bool {
    eprintln!(
        "e2e: {} run(s) per configuration (console: its own visits per page); {}; load average {}",
        o.runs,
        support::proc::machine(),
        accounting::load_averages()
    );
    eprintln!(
        "e2e: {}service logs in {}",
        if o.smoke { "smoke configuration; " } else { "" },
        service::log_dir().display()
    );
    let mut ok = true;
    if o.parts.contains(&Part::Create) {
        ok &= create::create_part(&o).await;
    }
    if o.parts.contains(&Part::Fire) {
        ok &= fire::fire_part(&o).await;
    }
    if o.parts.contains(&Part::Recovery) {
        ok &= recovery::recovery_part(&o).await;
    }
    if o.parts.contains(&Part::Recurring) {
        ok &= recurring::recurring_part(&o).await;
    }
    if o.parts.contains(&Part::History) {
        ok &= history::history_part(&o).await;
    }
    if o.parts.contains(&Part::Api) {
        ok &= api::api_part(&o).await;
    }
    if o.parts.contains(&Part::Console) {
        ok &= console::console_part(&o).await;
    }
    if o.parts.contains(&Part::Replicas) {
        ok &= replicas::replicas_part(&o).await;
    }
    ok
}
