//! Run results as the article's executors send them, end to end through the
//! Kafka-protocol test broker: keys in any case with the later duplicate
//! winning (as the Go scheduler reads them), in snappy-compressed batches
//! (as kafka-python sends them). And results that name their firing (the
//! run event's `ScheduledKey`), through Kafka and through `ReportResult`: a
//! late result of an earlier firing never finishes a later one, whether the
//! run timed out and was retried, the job was updated and fired again, or
//! the result is replayed. And messages that cannot be stored (malformed, a
//! store that refuses them, a store down for longer than the retry bound):
//! they go to the dead-letter topic with their reason, and the consumer
//! goes on.

mod common;
// The store contract's test jobs; this file uses their spec.
#[allow(dead_code)]
#[path = "store_contract/jobs.rs"]
mod jobs;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    EventReader, RawMessage, RawProducer, advance, create_job, create_request, create_request_on,
    kafka_brokers, metric_value, postgres_port, postgres_uri_on, scrape_metrics, spawn_app,
    spawn_app_on_clock, wait_for_status,
};
use rdkafka::{
    ClientConfig, ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
    statistics::Statistics,
    util::Timeout,
};
use scheduler_service::{
    broker::{JobEvent, dead_letter},
    clock::ManualClock,
    config::vars,
    domain::{Job, JobId, JobStatus, PendingEvents},
    grpc::{
        proto,
        scheduler::v1::{ReportResultRequest, job_events_client::JobEventsClient},
    },
    store::{JobDB, postgres::PgJobDB},
    telemetry::metrics,
};
use serde_json::{Value, json};
use test_support::{Link, ServerProcess, free_port};
use tokio_postgres::NoTls;

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
    /// The PostgreSQL schema of its jobs, if they are there, dropped by
    /// [`Setup::stop`].
    schema: Option<String>,
}

impl Setup {
    async fn new() -> Self {
        Self::with(&[]).await
    }

    /// A service with `overrides`.
    async fn with(overrides: &[(&str, &str)]) -> Self {
        Self::around(spawn_app(overrides).await)
    }

    /// A service with `overrides` whose jobs are in `schema` on PostgreSQL
    /// (dropped by [`Setup::stop`]), on `clock` if one is given (which the
    /// test moves).
    ///
    /// PostgreSQL rather than polodb for a stopped clock: a claim there is
    /// one `UPDATE … RETURNING`, whereas polodb at times answers the read
    /// that follows a claim with the job as it was before (under load), so
    /// that its run event is left to the relay, which waits for the clock
    /// to pass the relay's grace.
    async fn on_postgres(
        schema: &str,
        overrides: &[(&str, &str)],
        clock: Option<&ManualClock>,
    ) -> Self {
        let uri = common::postgres_uri();
        let mut all = vec![
            (vars::DATABASE_URI, uri.as_str()),
            (vars::DATABASE_DB_NAME, schema),
        ];
        all.extend_from_slice(overrides);
        let app = match clock {
            Some(clock) => spawn_app_on_clock(&all, clock).await,
            None => spawn_app(&all).await,
        };
        Setup {
            schema: Some(schema.to_owned()),
            ..Self::around(app)
        }
    }

    fn around(app: common::TestApp) -> Self {
        let runs = EventReader::new(&app.settings.topics.job_run.name);
        Setup {
            app,
            runs,
            producer: SnappyProducer::new(),
            schema: None,
        }
    }

    /// Stops the service and drops its schema, if it has one.
    async fn stop(self) {
        self.app.stop().await;
        if let Some(schema) = self.schema {
            drop_schema(&schema).await;
        }
    }

    /// The next run event of job `id`.
    async fn next_run(&self, id: &str) -> JobEvent {
        let (run, _) = self.runs.next_for(id, TIMEOUT).await;
        run.unwrap_or_else(|| panic!("job {id} fired")).event
    }

    /// The run event of the next firing of `earlier`'s job. Deliveries of
    /// `earlier`'s firing again are passed over: delivery is at least once
    /// (a run timing out before its firing's outbox entry is cleared owes
    /// the run event again), and consumers drop them by firing key.
    async fn next_firing(&self, earlier: &JobEvent) -> JobEvent {
        loop {
            let run = self.next_run(&earlier.id).await;
            if run.fire_token != earlier.fire_token {
                return run;
            }
        }
    }

    /// Reports `status` for the firing `scheduled_key` of job `id` over
    /// gRPC; returns the outcome.
    async fn report_over_grpc(&self, id: &str, status: proto::JobStatus, key: i64) -> String {
        JobEventsClient::new(self.app.channel.clone())
            .report_result(ReportResultRequest {
                id: id.to_owned(),
                status: status.into(),
                scheduled_key: Some(key),
                ..Default::default()
            })
            .await
            .expect("ReportResult")
            .into_inner()
            .outcome
    }

    /// Creates a job due now and returns its run event.
    /// Updates job `id` to the fields of `request` (due again).
    async fn reschedule(&mut self, id: &str, request: proto::CreateJobRequest) {
        self.app
            .client
            .update_job(proto::UpdateJobRequest {
                id: id.to_owned(),
                name: request.name,
                description: request.description,
                schedule_time: request.schedule_time,
                job_type: request.job_type,
                job_data: request.job_data,
                ..Default::default()
            })
            .await
            .expect("UpdateJob");
    }

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
        wait_for_metric(&self.app, name, &[], value).await;
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
    // The stale result is committed with the rest: the group's offset
    // reaches the end of the topic.
    Committed::of(&setup.app).wait_for_end().await;
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
    let schema = fresh_schema("retried");
    let mut setup = Setup::on_postgres(&schema, &overrides, Some(&clock)).await;
    let first = setup.fired(create_request_on(&clock, "retried", 0)).await;
    // No result within the run timeout: fired again under a new token.
    advance(&clock, 2_000);
    let second = setup.next_firing(&first).await;
    let late = result_of(&first, proto::JobStatus::Succeeded);
    a_late_result_is_stale(&mut setup, &first, &late, &second).await;
    setup.stop().await;
}

#[tokio::test]
async fn a_result_of_a_run_before_an_update_never_finishes_the_next_run() {
    let clock = ManualClock::at_wall_time();
    let overrides = [(vars::SCHEDULER_RUN_TIMEOUT_SECS, "1")];
    let schema = fresh_schema("updated");
    let mut setup = Setup::on_postgres(&schema, &overrides, Some(&clock)).await;
    let first = setup.fired(create_request_on(&clock, "updated", 0)).await;
    // The run times out as FAILED; the job is updated, due now, and fires.
    advance(&clock, 2_000);
    setup
        .assert_status(&first.id, proto::JobStatus::Failed)
        .await;
    setup
        .reschedule(&first.id, create_request_on(&clock, "updated again", 0))
        .await;
    let second = setup.next_firing(&first).await;
    let late = result_of(&first, proto::JobStatus::Succeeded);
    a_late_result_is_stale(&mut setup, &first, &late, &second).await;
    setup.stop().await;
}

#[tokio::test]
async fn a_replayed_result_is_a_duplicate_then_stale_after_the_next_firing() {
    let clock = ManualClock::at_wall_time();
    let schema = fresh_schema("replayed");
    let mut setup = Setup::on_postgres(&schema, &[], Some(&clock)).await;
    let first = setup.fired(create_request_on(&clock, "replayed", 0)).await;
    let message = result_of(&first, proto::JobStatus::Succeeded);
    setup.report(&first.id, &message).await;
    setup
        .assert_status(&first.id, proto::JobStatus::Succeeded)
        .await;
    // Redelivered while the firing is the job's: a duplicate, consumed.
    setup.report(&first.id, &message).await;
    setup.wait_for_metric(metrics::RESULTS_CONSUMED, 2.0).await;
    setup
        .reschedule(&first.id, create_request_on(&clock, "replayed again", 0))
        .await;
    let second = setup.next_firing(&first).await;
    // Replayed after the next firing (a consumer group reading the topic
    // from the start): stale.
    a_late_result_is_stale(&mut setup, &first, &message, &second).await;
    // The original, its redelivery, the current firing's result and its
    // repeat over gRPC (the consumer counts a result just after storing
    // it, so the job's status can be read before the count).
    setup.wait_for_metric(metrics::RESULTS_CONSUMED, 4.0).await;
    let text = scrape_metrics(setup.app.metrics_port).await;
    assert_eq!(metric_value(&text, metrics::RESULTS_CONSUMED, &[]), 4.0);
    assert_eq!(metric_value(&text, metrics::JOBS_SUCCEEDED, &[]), 1.0);
    setup.stop().await;
}

/// Waits until the metric `name` with `labels` of `app` reaches `value`.
async fn wait_for_metric(app: &common::TestApp, name: &str, labels: &[(&str, &str)], value: f64) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let text = scrape_metrics(app.metrics_port).await;
        if metric_value(&text, name, labels) >= value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} {labels:?} never reached {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next `count` messages of the dead-letter topic of `app`.
async fn dead_letters(app: &common::TestApp, count: usize) -> Vec<RawMessage> {
    dead_letters_on(&kafka_brokers(), app, count).await
}

/// The next `count` messages of the dead-letter topic of `app` on the
/// broker at `brokers`.
async fn dead_letters_on(brokers: &str, app: &common::TestApp, count: usize) -> Vec<RawMessage> {
    let reader = EventReader::on(brokers, &app.settings.topics.job_run_result_dead_letter);
    let mut read = Vec::new();
    while read.len() < count {
        let message = reader.next_raw(TIMEOUT).await;
        read.push(message.unwrap_or_else(|| panic!("dead letters: {read:?}")));
    }
    read
}

/// Checks that `letter` is `payload`, sent as `key` to offset `offset` of
/// `app`'s result topic, dead for a reason that starts with `reason`.
fn assert_dead_letter(
    app: &common::TestApp,
    letter: &RawMessage,
    (key, payload, offset): (&str, &[u8], i64),
    reason: &str,
) {
    assert_eq!((letter.key.as_str(), &letter.payload[..]), (key, payload));
    let header = |name| letter.headers.get(name).map(String::as_str);
    let why = header(dead_letter::REASON).unwrap_or_default();
    assert!(why.starts_with(reason), "reason {why:?}, not {reason:?}");
    let topic = app.settings.topics.job_run_result.as_str();
    assert_eq!(header(dead_letter::ORIGINAL_TOPIC), Some(topic));
    assert_eq!(header(dead_letter::ORIGINAL_PARTITION), Some("0"));
    assert_eq!(
        header(dead_letter::ORIGINAL_OFFSET),
        Some(offset.to_string().as_str())
    );
}

/// A fresh name for a test's PostgreSQL schema.
fn fresh_schema(prefix: &str) -> String {
    format!("{prefix}_{}", JobId::new().to_hex())
}

/// Drops a test's PostgreSQL `schema`.
async fn drop_schema(schema: &str) {
    raw_postgres()
        .await
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop the schema");
}

/// A plain connection to the PostgreSQL test server.
async fn raw_postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&common::postgres_uri(), NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// RUNNING jobs named `names`, stored in `schema` on PostgreSQL.
async fn running_jobs<const N: usize>(schema: &str, names: [&str; N]) -> [Job; N] {
    let db = PgJobDB::connect(&common::postgres_uri(), schema, TIMEOUT)
        .await
        .expect("connect the store");
    db.ensure_indexes().await.expect("ensure_indexes");
    let jobs = names.map(|name| Job {
        status: JobStatus::Running,
        pending: PendingEvents::NONE,
        ..jobs::job(name, jobs::now())
    });
    for job in &jobs {
        db.insert(job).await.expect("insert");
    }
    jobs
}

/// Two RUNNING jobs stored in `schema`, the first corrupted behind the
/// store's back (a status no job has), so that storing its result fails
/// however often it is tried.
async fn running_jobs_one_corrupt(schema: &str) -> [Job; 2] {
    let jobs = running_jobs(schema, ["corrupt", "fine"]).await;
    let corrupted = raw_postgres()
        .await
        .execute(
            &format!("UPDATE \"{schema}\".jobs SET status = 42 WHERE id = $1"),
            &[&jobs[0].id.bytes().as_slice()],
        )
        .await
        .expect("corrupt the row");
    assert_eq!(corrupted, 1);
    jobs
}

#[tokio::test]
async fn a_malformed_message_and_a_result_the_store_refuses_are_dead_letters() {
    let schema = fresh_schema("dead_letters");
    let [corrupt, fine] = running_jobs_one_corrupt(&schema).await;
    let mut setup = Setup::on_postgres(&schema, &[], None).await;
    let group = Committed::of(&setup.app);
    let topic = setup.app.settings.topics.job_run_result.clone();
    let producer = RawProducer::new();
    let malformed = b"this is not a result";
    let traced = [(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )];
    producer
        .send_with_headers(&topic, "x", malformed, &traced)
        .await;
    let refused = format!(r#"{{"Id":"{}","Status":4}}"#, corrupt.id);
    let corrupt_id = corrupt.id.to_hex();
    producer.send(&topic, &corrupt_id, refused.as_bytes()).await;
    // The consumer goes on: a result after them is stored.
    let fine_id = fine.id.to_hex();
    setup
        .report(&fine_id, &format!(r#"{{"Id":"{fine_id}","Status":4}}"#))
        .await;
    setup
        .assert_status(&fine_id, proto::JobStatus::Succeeded)
        .await;
    group.wait_for(3).await;

    let letters = dead_letters(&setup.app, 2).await;
    assert_dead_letter(&setup.app, &letters[0], ("x", malformed, 0), "malformed: ");
    assert_eq!(
        letters[0].headers.get("traceparent").map(String::as_str),
        Some(traced[0].1),
        "the message's own headers are kept"
    );
    let refused = (corrupt_id.as_str(), refused.as_bytes(), 1);
    assert_dead_letter(&setup.app, &letters[1], refused, "store error: ");
    let text = scrape_metrics(setup.app.metrics_port).await;
    let dead = |reason| metric_value(&text, metrics::RESULTS_DEAD_LETTERED, &[("reason", reason)]);
    assert_eq!((dead("malformed"), dead("store_error")), (1.0, 1.0));
    setup.stop().await;
}

#[tokio::test]
async fn a_result_the_store_cannot_take_while_cut_off_is_a_dead_letter_and_later_ones_are_stored() {
    let link = Link::to(postgres_port()).await.expect("link");
    let uri = postgres_uri_on(link.port);
    let schema = fresh_schema("cut_off");
    // A store call fails after 2 s (a connection made on a loaded machine
    // before the cut must not), and a result is retried for 5 s: at least
    // two failed attempts before it is a dead letter.
    let overrides = [
        (vars::DATABASE_URI, uri.as_str()),
        (vars::DATABASE_TIMEOUT_MS, "2000"),
        (vars::RUN_RESULT_RETRY_SECS, "5"),
    ];
    let mut setup = Setup::on_postgres(&schema, &overrides, None).await;
    let held = setup.fired(create_request("held", 0)).await;
    let later = setup.fired(create_request("later", 0)).await;
    let group = Committed::of(&setup.app);

    // The database is cut off for longer than the retry bound.
    link.cut();
    let result = result_of(&held, proto::JobStatus::Succeeded);
    setup.report(&held.id, &result).await;
    let letters = dead_letters(&setup.app, 1).await;
    let sent = (held.id.as_str(), result.as_bytes(), 0);
    assert_dead_letter(&setup.app, &letters[0], sent, "store unavailable for ");
    group.wait_for(1).await;

    // The database is back: the next result is stored, and the dead letter
    // changed nothing until it is produced again.
    link.restore();
    let later_result = result_of(&later, proto::JobStatus::Failed);
    setup.report(&later.id, &later_result).await;
    setup
        .assert_status(&later.id, proto::JobStatus::Failed)
        .await;
    group.wait_for(2).await;
    setup
        .assert_status(&held.id, proto::JobStatus::Running)
        .await;
    setup.report(&held.id, &result).await;
    setup
        .assert_status(&held.id, proto::JobStatus::Succeeded)
        .await;

    let text = scrape_metrics(setup.app.metrics_port).await;
    let dead = |reason| metric_value(&text, metrics::RESULTS_DEAD_LETTERED, &[("reason", reason)]);
    assert_eq!(dead("store_unavailable"), 1.0);
    let failed = [("operation", "store_result"), ("kind", "unavailable")];
    assert!(
        metric_value(&text, metrics::STORE_ERRORS, &failed) >= 2.0,
        "retried before it was a dead letter"
    );
    setup.stop().await;
}

/// The offsets that a service's run-result consumer group committed, read
/// as another client of the group sees them.
struct Committed {
    reader: Arc<BaseConsumer>,
    topic: String,
}

impl Committed {
    fn of(app: &common::TestApp) -> Self {
        Self::on(&kafka_brokers(), app)
    }

    /// The same, of a service on the broker at `brokers`.
    fn on(brokers: &str, app: &common::TestApp) -> Self {
        let reader = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &app.settings.topics.consumer_group_id)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a client of the group");
        Committed {
            reader: Arc::new(reader),
            topic: app.settings.topics.job_run_result.clone(),
        }
    }

    /// The offset committed on the topic's one partition, if any (asked
    /// on a blocking thread, while the service runs on the test's).
    async fn offset(&self) -> Option<i64> {
        let (reader, topic) = (self.reader.clone(), self.topic.clone());
        let ask = move || {
            let mut partition = TopicPartitionList::new();
            partition.add_partition(&topic, 0);
            let committed = reader
                .committed_offsets(partition, Timeout::After(Duration::from_secs(10)))
                .ok()?;
            match committed.find_partition(&topic, 0)?.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            }
        };
        tokio::task::spawn_blocking(ask)
            .await
            .expect("the committed offsets are asked")
    }

    /// Waits until the group committed every message the topic's one
    /// partition holds now.
    async fn wait_for_end(&self) {
        let (reader, topic) = (self.reader.clone(), self.topic.clone());
        let ask = move || reader.fetch_watermarks(&topic, 0, Duration::from_secs(10));
        let (_, end) = tokio::task::spawn_blocking(ask)
            .await
            .expect("the watermarks are asked")
            .expect("the topic's watermarks");
        self.wait_for(end).await;
    }

    /// Waits until the group committed `offset`: every message before it
    /// is dealt with.
    async fn wait_for(&self, offset: i64) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let committed = self.offset().await;
            if committed == Some(offset) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "committed {committed:?}, never {offset}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// Several threads: the links relay on the test's runtime, and a Kafka
// client of the test blocks its thread while it closes (leaving the group
// through the broker's link).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_the_broker_does_not_take_is_retried_and_committed_only_once_taken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_port = free_port().expect("a free port");
    let broker = Link::to(broker_port).await.expect("link");
    let _kafka = ServerProcess::kafka_behind(dir.path(), broker_port, broker.port).await;
    let brokers = format!("127.0.0.1:{}", broker.port);
    let database = Link::to(postgres_port()).await.expect("link");
    let uri = postgres_uri_on(database.port);
    let schema = fresh_schema("not_taken");
    let [job] = running_jobs(&schema, ["not taken"]).await;
    let app = spawn_app(&[
        (vars::KAFKA_BROKERS, &brokers),
        (vars::KAFKA_MESSAGE_TIMEOUT_MS, "1000"),
        (vars::DATABASE_URI, &uri),
        (vars::DATABASE_DB_NAME, &schema),
        // The first failed attempt after 2 s; the dead letter after 6, once
        // the test has cut the broker off too.
        (vars::DATABASE_TIMEOUT_MS, "2000"),
        (vars::RUN_RESULT_RETRY_SECS, "6"),
    ])
    .await;
    let group = Committed::on(&brokers, &app);

    // The store is cut off while the consumer holds the result, and the
    // broker too: the result is a dead letter that the broker does not take.
    database.cut();
    let (id, result) = (
        job.id.to_hex(),
        format!(r#"{{"Id":"{}","Status":4}}"#, job.id),
    );
    let topic = &app.settings.topics.job_run_result;
    RawProducer::on(&brokers)
        .send(topic, &id, result.as_bytes())
        .await;
    let held = [("operation", "store_result"), ("kind", "unavailable")];
    wait_for_metric(&app, metrics::STORE_ERRORS, &held, 1.0).await;
    broker.cut();
    let dead_topic = app.settings.topics.job_run_result_dead_letter.as_str();
    let not_taken = [("topic", dead_topic)];
    wait_for_metric(&app, metrics::EVENTS_FAILED, &not_taken, 1.0).await;

    // The broker is back: the same result is on the dead-letter topic, and
    // only then committed.
    broker.restore();
    let letters = dead_letters_on(&brokers, &app, 1).await;
    let sent = (id.as_str(), result.as_bytes(), 0);
    assert_dead_letter(&app, &letters[0], sent, "store unavailable for ");
    group.wait_for(1).await;
    let text = scrape_metrics(app.metrics_port).await;
    let dead = [("reason", "store_unavailable")];
    assert_eq!(
        metric_value(&text, metrics::RESULTS_DEAD_LETTERED, &dead),
        1.0
    );
    database.restore();
    app.stop().await;
    drop_schema(&schema).await;
}
