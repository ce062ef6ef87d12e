//! Run results as the article's executors send them, end to end through the
//! Kafka-protocol test broker: keys in any case with the later duplicate
//! winning (as the Go scheduler reads them), in snappy-compressed batches
//! (as kafka-python sends them).

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{EventReader, create_job, create_request, kafka_brokers, spawn_app, wait_for_status};
use rdkafka::{
    ClientConfig, ClientContext,
    producer::{FutureProducer, FutureRecord},
    statistics::Statistics,
    util::Timeout,
};
use scheduler_service::{broker::JobEvent, grpc::proto};
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
        let app = spawn_app(&[]).await;
        let runs = EventReader::new(&app.settings.topics.job_run.name);
        Setup {
            app,
            runs,
            producer: SnappyProducer::new(),
        }
    }

    /// Creates a job due now and returns its run event.
    async fn fired(&mut self, request: proto::CreateJobRequest) -> JobEvent {
        let id = create_job(&mut self.app.client, request).await;
        let (run, _) = self.runs.next_for(&id, TIMEOUT).await;
        run.unwrap_or_else(|| panic!("job {id} fired")).event
    }

    /// Sends `message` as the result of job `id`.
    async fn report(&self, id: &str, message: &str) {
        let topic = &self.app.settings.topics.job_run_result;
        self.producer.send(topic, id, message).await;
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
