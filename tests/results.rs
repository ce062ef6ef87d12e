//! Run results as the article's executors send them, end to end through the
//! Kafka-protocol test broker: keys in any case with the later duplicate
//! winning (as the Go scheduler reads them), in snappy-compressed batches
//! (as kafka-python sends them). And results that name their firing (the
//! run event's `ScheduledKey`), through Kafka and through `ReportResult`: a
//! late result of an earlier firing never finishes a later one, whether the
//! run timed out and was retried, the job was updated and fired again, or
//! the result is replayed.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    EventReader, advance, create_job, create_request, create_request_on, kafka_brokers,
    metric_value, scrape_metrics, spawn_app, spawn_app_on_clock, wait_for_status,
};
use rdkafka::{
    ClientConfig, ClientContext,
    producer::{FutureProducer, FutureRecord},
    statistics::Statistics,
    util::Timeout,
};
use scheduler_service::{
    broker::JobEvent,
    clock::ManualClock,
    config::vars,
    grpc::{
        proto,
        scheduler::v1::{ReportResultRequest, job_events_client::JobEventsClient},
    },
    telemetry::metrics,
};
use serde_json::{Value, json};

/// Bounds a hang only; the broker answers in milliseconds.
const TIMEOUT: Duration = Duration::from_secs(90);

/// What librdkafka's statistics said last: bytes sent to every broker, and
/// how many reports came.
#[derive(Clone, Default)]
struct SentBytes(Arc<Mutex<(u64, u64)>>);

impl ClientContext for SentBytes {
    fn stats(&self, statistics: Statistics) {
        let sent: u64 = statistics.brokers.values().map(|b| b.txbytes).sum();
        let mut last = self.0.lock().expect("stats lock");
        *last = (sent, last.1 + 1);
    }
}

impl SentBytes {
    fn reports(&self) -> u64 {
        self.0.lock().expect("stats lock").1
    }

    /// The bytes sent to the brokers, from a statistics report that began
    /// after this call.
    async fn settled(&self) -> u64 {
        let after = self.reports() + 1;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while self.reports() <= after {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no statistics report"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.0.lock().expect("stats lock").0
    }
}

/// A producer that sends snappy-compressed batches, as kafka-python
/// configured with `compression_type="snappy"` does, and reports what it
/// sent.
struct SnappyProducer {
    producer: FutureProducer<SentBytes>,
    sent: SentBytes,
}

impl SnappyProducer {
    fn new() -> Self {
        let sent = SentBytes::default();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("compression.type", "snappy")
            .set("message.timeout.ms", "10000")
            .set("statistics.interval.ms", "100")
            .create_with_context(sent.clone())
            .expect("snappy producer");
        SnappyProducer { producer, sent }
    }

    async fn send(&self, topic: &str, key: &str, payload: &str) {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(err, _)| err)
            .expect("result delivered");
    }
}

/// `fields` as Python's `json.dumps` writes a dict: in insertion order,
/// with `", "` and `": "` between them.
fn python_dumps(fields: &[(&str, Value)]) -> String {
    let pairs: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}: {value}", Value::from(*key)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A service instance, a reader of its run events and a snappy producer of
/// its results.
struct Setup {
    app: common::TestApp,
    runs: EventReader,
    producer: SnappyProducer,
}

impl Setup {
    async fn new() -> Self {
        Self::around(spawn_app(&[]).await)
    }

    /// A service with `overrides` on `clock`, which the test moves.
    async fn on_clock(overrides: &[(&str, &str)], clock: &ManualClock) -> Self {
        Self::around(spawn_app_on_clock(overrides, clock).await)
    }

    fn around(app: common::TestApp) -> Self {
        let runs = EventReader::new(&app.settings.topics.job_run.name);
        Setup {
            app,
            runs,
            producer: SnappyProducer::new(),
        }
    }

    /// The next run event of job `id`.
    async fn next_run(&self, id: &str) -> JobEvent {
        let (run, _) = self.runs.next_for(id, TIMEOUT).await;
        run.unwrap_or_else(|| panic!("job {id} fired")).event
    }

    /// Reports `status` for the firing `scheduled_key` of job `id` over
    /// gRPC; returns the outcome.
    async fn report_over_grpc(&self, id: &str, status: proto::JobStatus, key: i64) -> String {
        JobEventsClient::new(self.app.channel.clone())
            .report_result(ReportResultRequest {
                id: id.to_owned(),
                status: status.into(),
                scheduled_key: Some(key),
            })
            .await
            .expect("ReportResult")
            .into_inner()
            .outcome
    }

    /// Creates a job due now and returns its run event.
    async fn fired(&mut self, request: proto::CreateJobRequest) -> JobEvent {
        let id = create_job(&mut self.app.client, request).await;
        self.next_run(&id).await
    }

    /// Sends `message` as the result of job `id`.
    async fn report(&self, id: &str, message: &str) {
        let topic = &self.app.settings.topics.job_run_result;
        self.producer.send(topic, id, message).await;
    }

    /// Waits until the unlabelled metric `name` reaches `value`.
    async fn wait_for_metric(&self, name: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let text = scrape_metrics(self.app.metrics_port).await;
            if metric_value(&text, name, &[]) >= value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never reached {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn assert_status(&mut self, id: &str, wanted: proto::JobStatus) {
        assert_eq!(
            wait_for_status(&mut self.app.client, id, wanted, TIMEOUT).await,
            wanted,
            "job {id}"
        );
    }
}

#[tokio::test]
async fn the_email_executors_snappy_echo_with_a_lower_case_status_succeeds_the_job() {
    let mut setup = Setup::new().await;
    // A long, repetitive message body, so that snappy shrinks the batch and
    // librdkafka sends it compressed (it sends a batch that would not shrink
    // as it is).
    let body = "Welcome aboard! ".repeat(2048);
    let request = proto::CreateJobRequest {
        job_data: json!({
            "SourceAddress": "a@example.com",
            "DestinationAddress": "b@example.com",
            "Subject": "Hi",
            "Message": body,
        })
        .to_string(),
        ..create_request("welcome", 0)
    };
    let run = setup.fired(request).await;
    assert_eq!(run.status, proto::JobStatus::Running as i32);

    // The executor sets `status` on the event it received and sends the
    // object back: both keys, the lower-case one last.
    let message = python_dumps(&[
        ("Id", json!(run.id)),
        ("Status", json!(run.status)),
        ("JobData", json!(run.job_data)),
        ("status", json!(proto::JobStatus::Succeeded as i32)),
    ]);
    assert!(message.starts_with(&format!(
        r#"{{"Id": "{}", "Status": 3, "JobData": "{{"#,
        run.id
    )));
    assert!(message.ends_with(r#"}", "status": 4}"#));
    setup.report(&run.id, &message).await;
    let sent = setup.producer.sent.settled().await;
    assert!(
        sent < message.len() as u64 / 4,
        "{sent} bytes sent for a {}-byte message: not compressed",
        message.len()
    );

    setup
        .assert_status(&run.id, proto::JobStatus::Succeeded)
        .await;
    setup.app.stop().await;
}

#[tokio::test]
async fn result_keys_in_any_case_finish_jobs_and_the_later_duplicate_wins() {
    let mut setup = Setup::new().await;
    let shouted = setup.fired(create_request("shouted", 0)).await;
    let echoed = setup.fired(create_request("echoed", 0)).await;
    let twice = setup.fired(create_request("twice", 0)).await;

    let message = python_dumps(&[("id", json!(shouted.id)), ("STATUS", json!(5))]);
    setup.report(&shouted.id, &message).await;
    // The whole run event sent back (its ScheduledKey too), `status` added.
    let whole = serde_json::to_string(&echoed).expect("event JSON");
    let whole = format!(
        "{}, \"status\": 4}}",
        whole.strip_suffix('}').expect("an object")
    );
    setup.report(&echoed.id, &whole).await;
    // 4 then 3: the later 3 is not a result and the message is skipped;
    // had the first value won, the job would be SUCCEEDED and the next
    // result refused.
    for message in [
        python_dumps(&[
            ("Id", json!(twice.id)),
            ("Status", json!(4)),
            ("status", json!(3)),
        ]),
        python_dumps(&[("iD", json!(twice.id)), ("sTaTuS", json!(5))]),
    ] {
        setup.report(&twice.id, &message).await;
    }

    for (job, status) in [
        (&shouted, proto::JobStatus::Failed),
        (&echoed, proto::JobStatus::Succeeded),
        (&twice, proto::JobStatus::Failed),
    ] {
        setup.assert_status(&job.id, status).await;
    }
    setup.app.stop().await;
}

/// A result message that names its firing, as an executor sends it when it
/// echoes the run event's `ScheduledKey`.
fn result_of(run: &JobEvent, status: proto::JobStatus) -> String {
    json!({"Id": run.id, "Status": status as i32, "ScheduledKey": run.fire_token}).to_string()
}

/// What every case below checks once the job runs `current` and a result of
/// the earlier firing `late` (SUCCEEDED, `late_message` on Kafka) comes in:
/// through Kafka and through `ReportResult` it is stale and changes nothing,
/// and the current firing's result (FAILED) is stored. The late result is
/// sent first, on the one partition of the topic, so the current result
/// being stored shows that it was handled; had it been stored, the job
/// would be SUCCEEDED and the current result refused.
async fn a_late_result_is_stale(
    setup: &mut Setup,
    late: &JobEvent,
    late_message: &str,
    current: &JobEvent,
) {
    assert_ne!(late.fire_token, current.fire_token, "a new firing");
    let id = &current.id;
    setup.report(id, late_message).await;
    let over_grpc = setup
        .report_over_grpc(id, proto::JobStatus::Succeeded, late.fire_token)
        .await;
    assert_eq!(over_grpc, "stale");
    setup
        .report(id, &result_of(current, proto::JobStatus::Failed))
        .await;
    setup.assert_status(id, proto::JobStatus::Failed).await;
    let again = setup
        .report_over_grpc(id, proto::JobStatus::Failed, current.fire_token)
        .await;
    assert_eq!(again, "duplicate", "the current firing's result, again");
    let text = scrape_metrics(setup.app.metrics_port).await;
    let skipped = |reason| metric_value(&text, metrics::RESULTS_SKIPPED, &[("reason", reason)]);
    assert_eq!(skipped("stale"), 2.0, "one through Kafka, one over gRPC");
    assert_eq!(
        metric_value(&text, metrics::JOBS_FAILED, &[("reason", "result")]),
        1.0
    );
}

#[tokio::test]
async fn a_result_of_a_timed_out_run_never_finishes_its_retry() {
    let clock = ManualClock::at_wall_time();
    let overrides = [
        // (The sweeper looks four times per timeout, in real time.)
        (vars::SCHEDULER_RUN_TIMEOUT_SECS, "1"),
        (vars::SCHEDULER_RUN_TIMEOUT_POLICY, "retry"),
    ];
    let mut setup = Setup::on_clock(&overrides, &clock).await;
    let first = setup.fired(create_request_on(&clock, "retried", 0)).await;
    // No result within the run timeout: fired again under a new token.
    advance(&clock, 2_000);
    let second = setup.next_run(&first.id).await;
    let late = result_of(&first, proto::JobStatus::Succeeded);
    a_late_result_is_stale(&mut setup, &first, &late, &second).await;
    setup.app.stop().await;
}

#[tokio::test]
async fn a_result_of_a_run_before_an_update_never_finishes_the_next_run() {
    let clock = ManualClock::at_wall_time();
    let overrides = [(vars::SCHEDULER_RUN_TIMEOUT_SECS, "1")];
    let mut setup = Setup::on_clock(&overrides, &clock).await;
    let first = setup.fired(create_request_on(&clock, "updated", 0)).await;
    // The run times out as FAILED; the job is updated, due now, and fires.
    advance(&clock, 2_000);
    setup
        .assert_status(&first.id, proto::JobStatus::Failed)
        .await;
    let again = create_request_on(&clock, "updated again", 0);
    setup
        .app
        .client
        .update_job(proto::UpdateJobRequest {
            id: first.id.clone(),
            name: again.name,
            description: again.description,
            schedule_time: again.schedule_time,
            job_type: again.job_type,
            job_data: again.job_data,
            ..Default::default()
        })
        .await
        .expect("UpdateJob of a failed job");
    let second = setup.next_run(&first.id).await;
    let late = result_of(&first, proto::JobStatus::Succeeded);
    a_late_result_is_stale(&mut setup, &first, &late, &second).await;
    setup.app.stop().await;
}

#[tokio::test]
async fn a_replayed_result_is_a_duplicate_then_stale_after_the_next_firing() {
    let clock = ManualClock::at_wall_time();
    let mut setup = Setup::on_clock(&[], &clock).await;
    let first = setup.fired(create_request_on(&clock, "replayed", 0)).await;
    let message = result_of(&first, proto::JobStatus::Succeeded);
    setup.report(&first.id, &message).await;
    setup
        .assert_status(&first.id, proto::JobStatus::Succeeded)
        .await;
    // Redelivered while the firing is the job's: a duplicate, consumed.
    setup.report(&first.id, &message).await;
    setup.wait_for_metric(metrics::RESULTS_CONSUMED, 2.0).await;
    let again = create_request_on(&clock, "replayed again", 0);
    setup
        .app
        .client
        .update_job(proto::UpdateJobRequest {
            id: first.id.clone(),
            name: again.name,
            description: again.description,
            schedule_time: again.schedule_time,
            job_type: again.job_type,
            job_data: again.job_data,
            ..Default::default()
        })
        .await
        .expect("UpdateJob of a finished job");
    let second = setup.next_run(&first.id).await;
    // Replayed after the next firing (a consumer group reading the topic
    // from the start): stale.
    a_late_result_is_stale(&mut setup, &first, &message, &second).await;
    let text = scrape_metrics(setup.app.metrics_port).await;
    // The original, its redelivery, the current firing's result and its
    // repeat over gRPC.
    assert_eq!(metric_value(&text, metrics::RESULTS_CONSUMED, &[]), 4.0);
    assert_eq!(metric_value(&text, metrics::JOBS_SUCCEEDED, &[]), 1.0);
    setup.app.stop().await;
}
