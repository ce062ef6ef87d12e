//! The instruments of [`super::Metrics`], grouped by concern, each group
//! registering its own in the service's registry.

use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::*;

/// The calls of one API (gRPC, HTTP): how many, how long.
#[derive(Debug)]
pub(super) struct Calls {
    pub(super) requests: IntCounterVec,
    pub(super) duration: HistogramVec,
}

/// Jobs' lives: created, fired, ended, armed.
#[derive(Debug)]
pub(super) struct Jobs {
    pub(super) created: IntCounter,
    pub(super) fired: IntCounter,
    pub(super) claim_attempts: IntCounter,
    pub(super) succeeded: IntCounter,
    pub(super) failed: IntCounterVec,
    pub(super) retries: IntCounter,
    pub(super) attempts: IntCounterVec,
    pub(super) dead_lettered: IntCounter,
    pub(super) runs_pruned: IntCounter,
    pub(super) expired: IntCounter,
    pub(super) fire_lateness: Histogram,
    pub(super) armed_timers: IntGauge,
}

/// The shards this replica owns, and how they moved.
#[derive(Debug)]
pub(super) struct Sharding {
    pub(super) owned: IntGauge,
    pub(super) rebalances: IntCounter,
    pub(super) lease_losses: IntCounter,
}

/// Events handed to the broker.
#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) published: IntCounterVec,
    pub(super) run_lateness: Histogram,
    pub(super) failed: IntCounterVec,
}

/// Run results read from the broker.
#[derive(Debug)]
pub(super) struct Results {
    pub(super) consumed: IntCounter,
    pub(super) skipped: IntCounterVec,
    pub(super) dead_lettered: IntCounterVec,
    pub(super) consumer_lag: IntGaugeVec,
}

/// JobEvents subscribers and the embedded event log.
#[derive(Debug)]
pub(super) struct Streams {
    pub(super) subscribers: IntGauge,
    pub(super) dropped: IntCounterVec,
    pub(super) events_missed: IntCounter,
    pub(super) log_trimmed: IntCounter,
}

impl Calls {
    /// The gRPC calls.
    pub(super) fn grpc(r: &Registry) -> Self {
        let labels = &["method", "code"];
        Calls {
            requests: counters(r, RPC_REQUESTS, "gRPC calls handled", labels),
            duration: register(
                r,
                HistogramVec::new(
                    latency(RPC_DURATION, "gRPC call latency in seconds"),
                    labels,
                ),
            ),
        }
    }

    /// The HTTP API's calls.
    pub(super) fn http(r: &Registry) -> Self {
        let labels = &["route", "method", "status"];
        Calls {
            requests: counters(r, HTTP_REQUESTS, "HTTP API calls answered", labels),
            duration: register(
                r,
                HistogramVec::new(
                    latency(HTTP_DURATION, "HTTP API call latency in seconds"),
                    labels,
                ),
            ),
        }
    }

    /// One call with these label values ended after `elapsed`.
    pub(super) fn handled(&self, labels: &[&str], elapsed: Duration) {
        self.requests.with_label_values(labels).inc();
        self.duration
            .with_label_values(labels)
            .observe(elapsed.as_secs_f64());
    }
}

impl Jobs {
    pub(super) fn register(r: &Registry) -> Self {
        let attempts = counters(
            r,
            RUN_ATTEMPTS,
            "Runs started, by attempt (first, retry)",
            &["attempt"],
        );
        // Both series from the start, so that a rate of retries reads 0.
        for label in ["first", "retry"] {
            attempts.with_label_values(&[label]);
        }
        Jobs {
            attempts,
            created: counter(r, JOBS_CREATED, "Jobs created"),
            fired: counter(r, JOBS_FIRED, "Jobs fired (claimed and made RUNNING)"),
            claim_attempts: counter(r, CLAIM_ATTEMPTS, "Claims asked of the store, one per job"),
            succeeded: counter(r, JOBS_SUCCEEDED, "Runs that ended SUCCEEDED"),
            failed: counters(
                r,
                JOBS_FAILED,
                "Jobs that ended FAILED, by reason",
                &["reason"],
            ),
            retries: counter(
                r,
                RETRIES_SCHEDULED,
                "Failed runs scheduled to run again under their retry policy",
            ),
            dead_lettered: counter(
                r,
                JOBS_DEAD_LETTERED,
                "Jobs that failed for good and owe a dead-letter event",
            ),
            runs_pruned: counter(
                r,
                RUNS_PRUNED,
                "Runs removed from the history by its retention",
            ),
            expired: counter(
                r,
                JOBS_EXPIRED,
                "Finished jobs removed with their runs by JOB_RETENTION",
            ),
            fire_lateness: register(
                r,
                Histogram::with_opts(latency(
                    FIRE_LATENESS,
                    "Firing time minus schedule time, in seconds",
                )),
            ),
            armed_timers: register(
                r,
                IntGauge::new(ARMED_TIMERS, "Jobs armed in the in-memory timer"),
            ),
        }
    }
}

impl Sharding {
    pub(super) fn register(r: &Registry) -> Self {
        Sharding {
            owned: register(
                r,
                IntGauge::new(SHARDS_OWNED, "Shards this replica owns now"),
            ),
            rebalances: counter(
                r,
                SHARD_REBALANCES,
                "Changes of the shards this replica owns",
            ),
            lease_losses: counter(
                r,
                SHARD_LEASE_LOSSES,
                "Shard leases lost without giving them up",
            ),
        }
    }
}

impl Delivery {
    pub(super) fn register(r: &Registry) -> Self {
        Delivery {
            published: counters(
                r,
                EVENTS_PUBLISHED,
                "Events the broker acknowledged",
                &["topic"],
            ),
            run_lateness: register(
                r,
                Histogram::with_opts(latency(
                    RUN_PUBLISH_LATENESS,
                    "Run event acknowledged by the broker minus its due time, in seconds",
                )),
            ),
            failed: counters(
                r,
                EVENTS_FAILED,
                "Events the broker did not take (they stay in the outbox)",
                &["topic"],
            ),
        }
    }
}

impl Results {
    pub(super) fn register(r: &Registry) -> Self {
        Results {
            consumed: counter(r, RESULTS_CONSUMED, "Run results read and applied"),
            skipped: counters(
                r,
                RESULTS_SKIPPED,
                "Run results skipped, by reason",
                &["reason"],
            ),
            dead_lettered: counters(
                r,
                RESULTS_DEAD_LETTERED,
                "Run results sent to the dead-letter topic, by reason",
                &["reason"],
            ),
            consumer_lag: register(
                r,
                IntGaugeVec::new(
                    Opts::new(CONSUMER_LAG, "Run results waiting in the topic"),
                    &["topic", "partition"],
                ),
            ),
        }
    }
}

impl Streams {
    pub(super) fn register(r: &Registry) -> Self {
        Streams {
            subscribers: register(
                r,
                IntGauge::new(SUBSCRIBERS, "JobEvents.Subscribe streams open"),
            ),
            dropped: counters(
                r,
                SUBSCRIBERS_DROPPED,
                "Subscriber streams the service ended, by reason",
                &["reason"],
            ),
            events_missed: counter(
                r,
                SUBSCRIBER_EVENTS_MISSED,
                "Events subscribers missed because they fell behind",
            ),
            log_trimmed: counter(
                r,
                EVENT_LOG_TRIMMED,
                "Events the event log removed under its retention",
            ),
        }
    }
}
