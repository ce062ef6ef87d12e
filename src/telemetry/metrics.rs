//! Prometheus metrics: one [`Metrics`] per service instance (its own
//! registry, so that instances side by side in one process — the tests —
//! count apart), and the HTTP endpoint `/metrics` that serves them.
//!
//! Every name is listed in [`NAMES`]; the Grafana dashboard and the docs use
//! exactly these.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use prometheus::{Encoder, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

use super::recent::{MinuteSummary, RecentFirings};

/// gRPC calls handled, by `method` (e.g. `CreateJob`; a method the service
/// does not have is `unknown`) and `code` (e.g. `OK`).
pub const RPC_REQUESTS: &str = "scheduler_rpc_requests_total";
/// gRPC call latency in seconds, by `method` and `code`.
pub const RPC_DURATION: &str = "scheduler_rpc_duration_seconds";
/// HTTP API calls answered, by `route` (the resource's path pattern, e.g.
/// `/v1/jobs/{id}`), `method` (e.g. `GET`) and `status` (e.g. `200`).
pub const HTTP_REQUESTS: &str = "scheduler_http_requests_total";
/// HTTP API call latency in seconds (to the answer's head: an event
/// stream's life is not counted), by `route`, `method` and `status`.
pub const HTTP_DURATION: &str = "scheduler_http_duration_seconds";
/// Jobs created.
pub const JOBS_CREATED: &str = "scheduler_jobs_created_total";
/// Jobs fired (claimed and made RUNNING).
pub const JOBS_FIRED: &str = "scheduler_jobs_fired_total";
/// Claims this replica asked the store for, one per job: with
/// [`JOBS_FIRED`], how often replicas race for the same job (each claim
/// that fired nothing was lost to another replica, or to a change).
pub const CLAIM_ATTEMPTS: &str = "scheduler_claim_attempts_total";
/// Runs that ended SUCCEEDED.
pub const JOBS_SUCCEEDED: &str = "scheduler_jobs_succeeded_total";
/// Jobs that ended FAILED, by `reason`: `result` (the executor said so),
/// `misfire` (too late under `skip-if-late`), `run_timeout` (no result in time).
pub const JOBS_FAILED: &str = "scheduler_jobs_failed_total";
/// Failed runs scheduled to run again under their retry policy.
pub const RETRIES_SCHEDULED: &str = "scheduler_retries_scheduled_total";
/// Runs started, by attempt: `first`, or `retry` (the second attempt on).
pub const RUN_ATTEMPTS: &str = "scheduler_run_attempts_total";
/// Jobs that failed for good and owe a dead-letter event.
pub const JOBS_DEAD_LETTERED: &str = "scheduler_jobs_dead_lettered_total";
/// Runs removed from the history by its retention (`RUNS_RETENTION`).
pub const RUNS_PRUNED: &str = "scheduler_runs_pruned_total";
/// Finished jobs removed with their runs by `JOB_RETENTION`.
pub const JOBS_EXPIRED: &str = "scheduler_jobs_expired_total";
/// Firing time minus schedule time, in seconds.
pub const FIRE_LATENESS: &str = "scheduler_fire_lateness_seconds";
/// Jobs armed in the in-memory timer now.
pub const ARMED_TIMERS: &str = "scheduler_armed_timers";
/// Events the broker acknowledged, by `topic`.
pub const EVENTS_PUBLISHED: &str = "scheduler_events_published_total";
/// A run event's acknowledgement by the broker minus the time its firing
/// was due (a recurring job's occurrence), in seconds: how late executors
/// can read it. Counts every publish, the relay's after an outage too.
pub const RUN_PUBLISH_LATENESS: &str = "scheduler_run_publish_lateness_seconds";
/// Events the broker did not take (they stay owed in the outbox), by `topic`.
pub const EVENTS_FAILED: &str = "scheduler_events_failed_total";
/// Run results read and applied (stored or recognised as a duplicate).
pub const RESULTS_CONSUMED: &str = "scheduler_results_consumed_total";
/// Run results skipped, by `reason`: `malformed`, `unknown_job`,
/// `not_running`, `stale` (a result of a firing that is not the job's
/// current one).
pub const RESULTS_SKIPPED: &str = "scheduler_results_skipped_total";
/// Run results sent to the dead-letter topic, by `reason`: `malformed`,
/// `store_error` (the store refused it), `store_unavailable` (the store
/// could not take it within `RUN_RESULT_RETRY_SECS`).
pub const RESULTS_DEAD_LETTERED: &str = "scheduler_results_dead_lettered_total";
/// Store calls that failed, by `operation` (the `JobDB` method) and `kind`
/// (`unavailable`: trying again may cure it; `corrupt`; `other`).
pub const STORE_ERRORS: &str = "scheduler_store_errors_total";
/// Run results waiting in the topic, by `partition` (from the consumer's
/// statistics; Kafka only).
pub const CONSUMER_LAG: &str = "scheduler_consumer_lag";
/// `JobEvents.Subscribe` streams open now.
pub const SUBSCRIBERS: &str = "scheduler_subscribers";
/// Subscriber streams the service ended, by `reason`: `stalled` (took no
/// event for `GRPC_SUBSCRIBER_STALL_SECS`), `shutdown`.
pub const SUBSCRIBERS_DROPPED: &str = "scheduler_subscribers_dropped_total";
/// Shards this replica owns now (every shard on the embedded store).
pub const SHARDS_OWNED: &str = "scheduler_shards_owned";
/// Changes of the shards this replica owns (a share taken, given up or
/// lost).
pub const SHARD_REBALANCES: &str = "scheduler_shard_rebalances_total";
/// Shard leases this replica lost without giving them up: another replica
/// took them after they expired, or the store could not renew them in time.
pub const SHARD_LEASE_LOSSES: &str = "scheduler_shard_lease_losses_total";
/// Events subscribers missed because they fell behind the hub.
pub const SUBSCRIBER_EVENTS_MISSED: &str = "scheduler_subscriber_events_missed_total";
/// Events the embedded store's event log removed under `EVENTS_RETENTION`.
pub const EVENT_LOG_TRIMMED: &str = "scheduler_event_log_trimmed_total";

/// Every metric name the service exports (besides the `process_*` ones).
pub const NAMES: &[&str] = &[
    RPC_REQUESTS,
    RPC_DURATION,
    HTTP_REQUESTS,
    HTTP_DURATION,
    JOBS_CREATED,
    JOBS_FIRED,
    CLAIM_ATTEMPTS,
    JOBS_SUCCEEDED,
    JOBS_FAILED,
    RETRIES_SCHEDULED,
    RUN_ATTEMPTS,
    JOBS_DEAD_LETTERED,
    RUNS_PRUNED,
    JOBS_EXPIRED,
    FIRE_LATENESS,
    ARMED_TIMERS,
    EVENTS_PUBLISHED,
    RUN_PUBLISH_LATENESS,
    EVENTS_FAILED,
    RESULTS_CONSUMED,
    RESULTS_SKIPPED,
    RESULTS_DEAD_LETTERED,
    STORE_ERRORS,
    CONSUMER_LAG,
    SUBSCRIBERS,
    SUBSCRIBERS_DROPPED,
    SUBSCRIBER_EVENTS_MISSED,
    EVENT_LOG_TRIMMED,
    SHARDS_OWNED,
    SHARD_REBALANCES,
    SHARD_LEASE_LOSSES,
];

/// Why a job ended FAILED without an executor saying so, or because it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The executor reported FAILED.
    Result,
    /// Too late to run under the misfire policy.
    Misfire,
    /// No result within the run timeout (policy `fail`).
    RunTimeout,
}

impl FailReason {
    fn label(self) -> &'static str {
        match self {
            FailReason::Result => "result",
            FailReason::Misfire => "misfire",
            FailReason::RunTimeout => "run_timeout",
        }
    }
}

/// Why the service ended a subscriber's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberDrop {
    /// It took no event for the stall limit while events waited for it.
    Stalled,
    /// The service is stopping.
    Shutdown,
}

impl SubscriberDrop {
    fn label(self) -> &'static str {
        match self {
            SubscriberDrop::Stalled => "stalled",
            SubscriberDrop::Shutdown => "shutdown",
        }
    }
}

/// The service's instruments, grouped by concern, and the registry that
/// holds them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Calls,
    http: Calls,
    jobs: Jobs,
    delivery: Delivery,
    results: Results,
    store_errors: IntCounterVec,
    streams: Streams,
    shards: Sharding,
    /// The last hour's firings and outcomes by minute (the console's charts).
    recent: RecentFirings,
}

/// Buckets of the latency histograms, in seconds: 250 µs to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

impl Metrics {
    /// Fresh instruments in a fresh registry (with the process collector on
    /// Linux).
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let metrics = Metrics {
            calls: Calls::grpc(&r),
            http: Calls::http(&r),
            jobs: Jobs::register(&r),
            delivery: Delivery::register(&r),
            results: Results::register(&r),
            store_errors: counters(
                &r,
                STORE_ERRORS,
                "Store calls that failed, by operation and kind",
                &["operation", "kind"],
            ),
            streams: Streams::register(&r),
            shards: Sharding::register(&r),
            recent: RecentFirings::default(),
            registry: r,
        };
        #[cfg(target_os = "linux")]
        if let Err(err) = metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %err, "process metrics unavailable");
        }
        Arc::new(metrics)
    }

    /// One gRPC call ended with `code` after `elapsed`.
    pub fn rpc_handled(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.calls.handled(&[method, code_label(code)], elapsed);
    }

    /// One HTTP API call of `route` answered `status` after `elapsed`.
    pub fn http_handled(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http
            .handled(&[route, method, &status.to_string()], elapsed);
    }

    /// A job was created.
    pub fn job_created(&self) {
        self.jobs.created.inc();
    }

    /// The store was asked to claim `jobs` jobs.
    pub fn claims_asked(&self, jobs: usize) {
        self.jobs.claim_attempts.inc_by(jobs as u64);
    }

    /// This replica now owns `owned` shards; `lost` of those it had were
    /// lost without giving them up. Counts a rebalance when `changed`.
    pub fn shards_moved(&self, owned: usize, lost: usize, changed: bool) {
        self.shards
            .owned
            .set(i64::try_from(owned).unwrap_or(i64::MAX));
        self.shards.lease_losses.inc_by(lost as u64);
        if changed {
            self.shards.rebalances.inc();
        }
    }

    /// A job fired `lateness_ms` after its schedule time (negative: early),
    /// starting its `attempt`-th attempt.
    pub fn job_fired(&self, lateness_ms: i64, attempt: u32) {
        self.jobs.fired.inc();
        let label = if attempt > 1 { "retry" } else { "first" };
        self.jobs.attempts.with_label_values(&[label]).inc();
        // Lateness is never negative in practice; an early firing counts as 0.
        let late_ms = lateness_ms.max(0).unsigned_abs();
        #[allow(clippy::cast_precision_loss)]
        self.jobs.fire_lateness.observe(late_ms as f64 / 1000.0);
        self.recent.fired(late_ms, Utc::now());
    }

    /// The firings and outcomes of the last hour, by minute, oldest first.
    pub fn last_hour(&self) -> Vec<MinuteSummary> {
        self.recent.last_hour(Utc::now())
    }

    /// The broker acknowledged a run event `lateness_ms` after the firing
    /// was due (an early one counts as 0).
    pub fn run_published(&self, lateness_ms: i64) {
        #[allow(clippy::cast_precision_loss)]
        let seconds = lateness_ms.max(0) as f64 / 1000.0;
        self.delivery.run_lateness.observe(seconds);
    }

    /// A run ended SUCCEEDED.
    pub fn job_succeeded(&self) {
        self.jobs.succeeded.inc();
        self.recent.ended(true, Utc::now());
    }

    /// A failed run's next attempt was scheduled.
    pub fn retry_scheduled(&self) {
        self.jobs.retries.inc();
        self.recent.ended(false, Utc::now());
    }

    /// A job failed for good and owes its dead-letter event.
    pub fn job_dead_lettered(&self) {
        self.jobs.dead_lettered.inc();
    }

    /// The history's retention removed `count` runs.
    pub fn runs_pruned(&self, count: u64) {
        self.jobs.runs_pruned.inc_by(count);
    }

    /// A finished job was removed by `JOB_RETENTION`.
    pub fn job_expired(&self) {
        self.jobs.expired.inc();
    }

    /// A job ended FAILED.
    pub fn job_failed(&self, reason: FailReason) {
        self.jobs.failed.with_label_values(&[reason.label()]).inc();
        self.recent.ended(false, Utc::now());
    }

    /// The broker acknowledged an event on `topic`.
    pub fn event_published(&self, topic: &str) {
        self.delivery.published.with_label_values(&[topic]).inc();
    }

    /// The broker did not take an event for `topic`.
    pub fn event_failed(&self, topic: &str) {
        self.delivery.failed.with_label_values(&[topic]).inc();
    }

    /// A run result was applied.
    pub fn result_consumed(&self) {
        self.results.consumed.inc();
    }

    /// A run result was skipped for `reason`.
    pub fn result_skipped(&self, reason: &'static str) {
        self.results.skipped.with_label_values(&[reason]).inc();
    }

    /// A run result that could not be stored for `reason` went to the
    /// dead-letter topic.
    pub fn result_dead_lettered(&self, reason: &'static str) {
        self.results
            .dead_lettered
            .with_label_values(&[reason])
            .inc();
    }

    /// A store call `operation` failed with an error of `kind`.
    pub fn store_failed(&self, operation: &'static str, kind: &'static str) {
        self.store_errors
            .with_label_values(&[operation, kind])
            .inc();
    }

    /// The run-result consumer's lag on one partition.
    pub fn set_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.results
            .consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// A subscriber's stream opened.
    pub fn subscriber_opened(&self) {
        self.streams.subscribers.inc();
    }

    /// A subscriber's stream ended.
    pub fn subscriber_closed(&self) {
        self.streams.subscribers.dec();
    }

    /// The service ended a subscriber's stream for `reason`.
    pub fn subscriber_dropped(&self, reason: SubscriberDrop) {
        self.streams
            .dropped
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// A subscriber fell behind and missed `missed` events.
    pub fn subscriber_missed(&self, missed: u64) {
        self.streams.events_missed.inc_by(missed);
    }

    /// The event log's retention removed `removed` events.
    pub fn events_trimmed(&self, removed: u64) {
        self.streams.log_trimmed.inc_by(removed);
    }

    /// The metrics in the Prometheus text format, with the armed-timer gauge
    /// set to `armed` (read at scrape time, as it changes all the time).
    pub fn render(&self, armed: usize) -> String {
        self.jobs
            .armed_timers
            .set(i64::try_from(armed).unwrap_or(i64::MAX));
        let mut text = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(error = %err, "cannot encode metrics");
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// Registers `collector` (built from constant, valid options) in `registry`.
/// A registered counter.
fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help))
}

/// A registered family of counters with these labels.
fn counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

/// The options of a latency histogram, in seconds.
fn latency(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> C {
    // Names and label sets are constants of this module, distinct and valid:
    // a failure here is a programming error caught by the first test.
    let collector = collector.expect("valid metric options");
    registry
        .register(Box::new(collector.clone()))
        .expect("distinct metric names");
    collector
}

/// The canonical upper-case name of a gRPC code, as gRPC's own metrics use.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

mod endpoint;
mod groups;
#[cfg(test)]
mod tests;

pub use endpoint::MetricsEndpoint;
use groups::{Calls, Delivery, Jobs, Results, Sharding, Streams};
