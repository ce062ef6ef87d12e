//! Test harness: spawns the real service (port 0, a fresh database and fresh
//! topic names per test) against the Kafka-protocol broker and the
//! MongoDB-protocol server that `scripts/services.sh up` starts, and gives
//! tests a gRPC client, a reader of produced events and a result producer.
//!
//! Server addresses: `TEST_MONGODB_URI` (default `mongodb://127.0.0.1:27017/`),
//! `TEST_POSTGRES_URI` and `TEST_KAFKA_BROKERS` (default `127.0.0.1:9092`),
//! read by test-support, which the benchmarks share.
//!
//! `spawn_app` configures no auth key, so JobsService calls need no token.
//! [`TestAuth`] is a test auth service (an RSA key pair made at test time);
//! [`spawn_app_with_auth`] starts the service with its public key, and
//! [`TestApp::client_with`] makes clients that send a given `authorization`.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod embedded;
pub mod processes;

// The test servers and fresh names, shared with the benchmarks; each test
// binary uses some of them.
#[allow(unused_imports)]
pub use test_support::{kafka_brokers, mongodb_uri, postgres_uri, unique};

use std::{collections::HashMap, sync::Arc, time::Duration};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use scheduler_service::{
    broker::JobEvent,
    clock::{Clock, ManualClock},
    config::{Settings, vars},
    grpc::proto::{self, jobs_service_client::JobsServiceClient},
    startup::Application,
    telemetry::{init_tracing, metrics::Metrics},
};
use test_support::topic_vars;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// The port of the PostgreSQL test server.
pub fn postgres_port() -> u16 {
    let server: tokio_postgres::Config = postgres_uri().parse().expect("a PostgreSQL URI");
    server.get_ports().first().copied().unwrap_or(5432)
}

/// The PostgreSQL test server's URI with `port` instead of its port (a
/// [`Link`]'s, in front of it).
pub fn postgres_uri_on(port: u16) -> String {
    let uri = postgres_uri();
    let server = format!(":{}/", postgres_port());
    assert!(uri.contains(&server), "{uri} names its port");
    uri.replacen(&server, &format!(":{port}/"), 1)
}

/// The variables of a test instance: fresh database and topics, port 0,
/// with `overrides` applied.
pub fn test_vars(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let suffix = unique();
    let mut vars: HashMap<String, String> = [
        (vars::SERVER_HOST, "127.0.0.1".to_owned()),
        (vars::SERVER_PORT, "0".to_owned()),
        (vars::METRICS_PORT, "0".to_owned()),
        (vars::HTTP_PORT, "0".to_owned()),
        (vars::DATABASE_URI, mongodb_uri()),
        (vars::DATABASE_DB_NAME, format!("test_{suffix}")),
        // The MongoDB-protocol test server ignores database names: a fresh
        // collection isolates each test.
        (vars::DATABASE_COLLECTION, format!("jobs_{suffix}")),
        (vars::DATABASE_TIMEOUT_MS, "3000".to_owned()),
        (vars::KAFKA_BROKERS, kafka_brokers()),
        (vars::KAFKA_FETCH_WAIT_MAX_MS, "20".to_owned()),
        (vars::SHUTDOWN_GRACE_SECS, "5".to_owned()),
    ]
    .into_iter()
    .chain(topic_vars("test", &suffix))
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars.into_iter().collect()
}

/// The settings of a test instance: fresh database and topics, port 0.
pub fn test_settings(overrides: &[(&str, &str)]) -> Settings {
    let vars: HashMap<String, String> = test_vars(overrides).into_iter().collect();
    Settings::from_lookup(|name| vars.get(name).cloned()).expect("valid test settings")
}

/// The value of `name` in a list of variables.
pub fn var_of<'a>(vars: &'a [(String, String)], name: &str) -> &'a str {
    vars.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// A running service instance.
pub struct TestApp {
    /// Its settings (topic names, database name).
    pub settings: Settings,
    /// A connected gRPC client.
    pub client: JobsServiceClient<Channel>,
    /// A channel to the server, for reflection and health clients.
    pub channel: Channel,
    /// The port of its gRPC server, for connections of a test's own.
    pub port: u16,
    /// The port of its Prometheus endpoint.
    pub metrics_port: u16,
    /// The port of its HTTP/JSON API.
    pub http_port: u16,
    /// Its metrics, readable after it stopped too.
    pub metrics: std::sync::Arc<Metrics>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl TestApp {
    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("service task");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// A client of this instance that sends `authorization` (a token, bare
    /// or `Bearer <token>`) with every call, or nothing with `None`.
    pub fn client_with(&self, authorization: Option<&str>) -> AuthClient {
        JobsServiceClient::with_interceptor(
            self.channel.clone(),
            Authorization(authorization.map(|value| value.parse().expect("ASCII metadata"))),
        )
    }
}

/// A JobsService client that sends an `authorization` entry.
pub type AuthClient = JobsServiceClient<InterceptedService<Channel, Authorization>>;

/// Adds its `authorization` value, if any, to every call.
#[derive(Clone)]
pub struct Authorization(Option<MetadataValue<Ascii>>);

impl Interceptor for Authorization {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A test auth service: an RSA key pair made at test time (no key is
/// committed), its public key in a temporary PEM file, and RS256 signing.
pub struct TestAuth {
    private_pem: String,
    public_pem: String,
    dir: tempfile::TempDir,
}

impl TestAuth {
    /// A fresh 2048-bit key pair (a few seconds in a debug build).
    pub fn new() -> Self {
        use rsa::{
            RsaPrivateKey,
            pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding},
            rand_core::OsRng,
        };
        let key = RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key");
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("private PEM")
            .to_string();
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("public PEM");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("auth-public.pem"), &public_pem).expect("key file");
        TestAuth {
            private_pem,
            public_pem,
            dir,
        }
    }

    /// The PEM file of the public key, for `AUTH_PUBLIC_KEY_FILE`.
    pub fn public_key_file(&self) -> String {
        self.dir
            .path()
            .join("auth-public.pem")
            .to_string_lossy()
            .into_owned()
    }

    /// The public key, PEM.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// `claims` signed with RS256.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.private_pem.as_bytes())
            .expect("encoding key");
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            claims,
            &key,
        )
        .expect("signed token")
    }

    /// A token with this `role`, valid for ten minutes.
    pub fn token(&self, role: &str) -> String {
        self.sign(&serde_json::json!({
            "sub": "tester",
            "role": role,
            "exp": chrono::Utc::now().timestamp() + 600,
        }))
    }
}

/// Builds and starts the service with `test_settings(overrides)`.
pub async fn spawn_app(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_with(test_settings(overrides)).await
}

/// Builds and starts the service checking tokens against `auth`'s key.
pub async fn spawn_app_with_auth(auth: &TestAuth, overrides: &[(&str, &str)]) -> TestApp {
    let key_file = auth.public_key_file();
    let mut all = vec![(vars::AUTH_PUBLIC_KEY_FILE, key_file.as_str())];
    all.extend_from_slice(overrides);
    spawn_app(&all).await
}

/// Builds and starts the service with these settings.
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    init_tracing(settings.environment);
    let app = Application::build(settings.clone())
        .await
        .expect("service builds");
    run(app, settings).await
}

/// Builds and starts the service with `test_settings(overrides)` on
/// `clock`: nothing falls due until the test moves the clock, so that what
/// fires, and in which order, never depends on how fast the machine runs.
pub async fn spawn_app_on_clock(overrides: &[(&str, &str)], clock: &ManualClock) -> TestApp {
    spawn_app_with_on_clock(test_settings(overrides), clock).await
}

/// Builds and starts the service with these settings on `clock` (a
/// restart: the same settings, the same store).
pub async fn spawn_app_with_on_clock(settings: Settings, clock: &ManualClock) -> TestApp {
    init_tracing(settings.environment);
    let app = Application::build_with_clock(settings.clone(), Arc::new(clock.clone()))
        .await
        .expect("service builds");
    run(app, settings).await
}

/// Runs a built service and connects a client to it.
async fn run(app: Application, settings: Settings) -> TestApp {
    let port = app.port();
    let metrics_port = app.metrics_port();
    let http_port = app.http_port();
    let metrics = app.service().metrics().clone();
    let shutdown = app.shutdown_token();
    let handle = tokio::spawn(async move {
        app.run_until_stopped().await.expect("service runs");
    });
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("valid URI")
        .connect()
        .await
        .expect("connects to the service");
    TestApp {
        settings,
        client: JobsServiceClient::new(channel.clone()),
        channel,
        port,
        metrics_port,
        http_port,
        metrics,
        shutdown,
        handle: Some(handle),
    }
}

/// A CreateJobRequest due `in_ms` milliseconds from now.
pub fn create_request(name: &str, in_ms: i64) -> proto::CreateJobRequest {
    proto::CreateJobRequest {
        name: name.to_owned(),
        description: format!("{name} description"),
        schedule_time: Some(timestamp_in(in_ms)),
        job_type: proto::JobType::Email.into(),
        job_data: r#"{"SourceAddress":"a@example.com","DestinationAddress":"b@example.com","Subject":"s","Message":"m"}"#.to_owned(),
        ..Default::default()
    }
}

/// Creates the job `request` describes; returns its id. A failed call
/// fails the test.
pub async fn create_job(
    client: &mut JobsServiceClient<Channel>,
    request: impl tonic::IntoRequest<proto::CreateJobRequest>,
) -> String {
    client
        .create_job(request)
        .await
        .expect("CreateJob")
        .into_inner()
        .id
}

/// Creates `count` jobs named `<prefix>-<i>`, job `i` due
/// `first_in_ms + i × step_ms` milliseconds from now; returns their ids in
/// that order. Any failed call fails the test.
pub async fn create_jobs(
    client: &mut JobsServiceClient<Channel>,
    prefix: &str,
    count: i64,
    first_in_ms: i64,
    step_ms: i64,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let request = create_request(&format!("{prefix}-{i}"), first_in_ms + i * step_ms);
        let reply = client.create_job(request).await;
        ids.push(
            reply
                .unwrap_or_else(|status| panic!("CreateJob {prefix}-{i}: {status:?}"))
                .into_inner()
                .id,
        );
    }
    ids
}

/// A protobuf timestamp `in_ms` milliseconds from now.
pub fn timestamp_in(in_ms: i64) -> prost_types::Timestamp {
    timestamp(chrono::Utc::now() + chrono::Duration::milliseconds(in_ms))
}

/// A CreateJobRequest due `in_ms` milliseconds from `clock`'s now.
pub fn create_request_on(clock: &ManualClock, name: &str, in_ms: i64) -> proto::CreateJobRequest {
    proto::CreateJobRequest {
        schedule_time: Some(timestamp(
            clock.now() + chrono::Duration::milliseconds(in_ms),
        )),
        ..create_request(name, 0)
    }
}

/// Moves `clock` by `ms` milliseconds.
pub fn advance(clock: &ManualClock, ms: i64) {
    clock.advance(chrono::Duration::milliseconds(ms));
}

/// `t` as a protobuf timestamp.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// One event read from a topic.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// The message key (the job id).
    pub key: String,
    /// The decoded payload.
    pub event: JobEvent,
    /// The message headers.
    pub headers: HashMap<String, String>,
    /// When the test received it.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Where it is on the topic: (partition, offset).
    pub position: (i32, i64),
}

/// One message read as it is: its key (as text), payload and headers.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The message key, as text (lossy).
    pub key: String,
    /// The payload's bytes (none: empty).
    pub payload: Vec<u8>,
    /// The message headers, their values as text (lossy).
    pub headers: HashMap<String, String>,
    /// Where it is on the topic: (partition, offset).
    pub position: (i32, i64),
}

/// Longest wait for an event that must come (a bound on a hang, not a
/// timing assertion).
const EVENT_HANG: Duration = Duration::from_secs(90);

/// Reads a topic from its beginning, partition 0, without a consumer group.
///
/// It reads every offset of each partition in order, and reads again from
/// the first one missing when a fetch skips some: the test broker (tansu
/// 0.6) advances a partition's high watermark before it stores the batch,
/// so while several producers write one partition a fetch can return a
/// later batch, already stored, without an earlier one still being stored.
/// A reader that took that answer would never see the earlier batch.
pub struct EventReader {
    consumer: StreamConsumer,
    brokers: String,
    topic: String,
    partitions: i32,
    next_offsets: std::sync::Mutex<HashMap<i32, Gap>>,
}

/// A partition's next offset, and how often a fetch skipped past it.
#[derive(Debug, Default)]
struct Gap {
    next: i64,
    skips: u32,
}

/// Fetches that skip one offset before the reader takes it as a hole the
/// broker keeps (an offset taken by a batch it failed to store): about five
/// seconds of reading it again.
const SKIPS_BEFORE_A_HOLE: u32 = 100;

/// The payload of an end marker: an event of a job that does not exist.
fn end_marker(key: &str) -> Vec<u8> {
    serde_json::to_vec(&JobEvent {
        id: key.to_owned(),
        name: String::new(),
        description: String::new(),
        schedule_time: String::new(),
        created_at: String::new(),
        updated_at: String::new(),
        status: 0,
        job_type: 0,
        job_data: String::new(),
        fire_token: 0,
        occurrence: None,
        occurrences: None,
        attempt: None,
        last_error: None,
    })
    .expect("JSON")
}

impl EventReader {
    /// Starts reading `topic` of the shared test broker from offset 0.
    pub fn new(topic: &str) -> Self {
        Self::on(&kafka_brokers(), topic)
    }

    /// Starts reading `topic` of the broker at `brokers` from offset 0.
    pub fn on(brokers: &str, topic: &str) -> Self {
        Self::on_partitions(brokers, topic, 1)
    }

    /// Starts reading partitions `0..partitions` of `topic` from offset 0.
    pub fn on_partitions(brokers: &str, topic: &str, partitions: i32) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("test-reader-{}", unique()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        EventReader {
            consumer,
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            partitions,
            next_offsets: std::sync::Mutex::default(),
        }
    }

    /// Whether a message at `offset` of `partition` is the next one in
    /// order; if it skipped some, the partition is read again from the
    /// first missing offset (see the type's doc).
    async fn in_order(&self, partition: i32, offset: i64) -> bool {
        let missing = {
            let mut offsets = self.next_offsets.lock().expect("not poisoned");
            let gap = offsets.entry(partition).or_default();
            if offset < gap.next {
                // Fetched again after a seek: already taken.
                return false;
            }
            if offset == gap.next || gap.skips >= SKIPS_BEFORE_A_HOLE {
                if offset > gap.next {
                    eprintln!(
                        "event reader: partition {partition} has no offsets {}..{offset}",
                        gap.next
                    );
                }
                *gap = Gap {
                    next: offset + 1,
                    skips: 0,
                };
                return true;
            }
            if gap.skips == 0 {
                eprintln!(
                    "event reader: a fetch of partition {partition} skipped from {} to {offset}; reading again",
                    gap.next
                );
            }
            gap.skips += 1;
            gap.next
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.consumer
            .seek(
                &self.topic,
                partition,
                Offset::Offset(missing),
                Duration::from_secs(10),
            )
            .expect("seek back to a skipped offset");
        false
    }

    /// The next event, or `None` after `timeout`.
    pub async fn next(&self, timeout: Duration) -> Option<ReceivedEvent> {
        let message = self.next_raw(timeout).await?;
        let event: JobEvent = serde_json::from_slice(&message.payload).expect("event JSON");
        Some(ReceivedEvent {
            key: message.key,
            event,
            headers: message.headers,
            received_at: chrono::Utc::now(),
            position: message.position,
        })
    }

    /// The next message as it is (any payload), or `None` after `timeout`.
    pub async fn next_raw(&self, timeout: Duration) -> Option<RawMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_) => return None,
                Ok(Err(err)) => {
                    // The topic may still be propagating; try again.
                    eprintln!("event reader: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Ok(Ok(message)) => message,
            };
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| {
                            let value = String::from_utf8_lossy(header.value.unwrap_or_default());
                            (header.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let raw = RawMessage {
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                payload: message.payload().unwrap_or_default().to_vec(),
                headers,
                position: (message.partition(), message.offset()),
            };
            drop(message);
            if self.in_order(raw.position.0, raw.position.1).await {
                return Some(raw);
            }
        }
    }

    /// Reads events until `expected` distinct jobs were seen or `timeout`
    /// passes, then `settle` longer to catch late duplicates. Returns every
    /// event read, grouped by job id.
    pub async fn collect(
        &self,
        expected: usize,
        timeout: Duration,
        settle: Duration,
    ) -> HashMap<String, Vec<ReceivedEvent>> {
        let mut by_job: HashMap<String, Vec<ReceivedEvent>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while by_job.len() < expected {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(event) => by_job.entry(event.key.clone()).or_default().push(event),
                None => break,
            }
        }
        while let Some(event) = self.next(settle).await {
            by_job.entry(event.key.clone()).or_default().push(event);
        }
        by_job
    }

    /// Every event from where the reader is to the end of its partitions:
    /// it writes an end marker to each partition and reads up to the
    /// markers (a partition keeps its order). After the service stopped (its
    /// firings finished, its producer flushed), this is everything it
    /// published that was not read yet: a check that nothing else was
    /// published needs no waiting window.
    pub async fn rest(&self) -> Vec<ReceivedEvent> {
        let marker = format!("end-{}", unique());
        let producer = RawProducer::on(&self.brokers);
        for partition in 0..self.partitions {
            producer
                .send_to_partition(&self.topic, partition, &marker, &end_marker(&marker))
                .await;
        }
        let mut rest = Vec::new();
        let mut markers = 0;
        while markers < self.partitions {
            let event = self
                .next(EVENT_HANG)
                .await
                .expect("the end markers are read");
            if event.key == marker {
                markers += 1;
            } else {
                rest.push(event);
            }
        }
        rest
    }

    /// Reads events until one for each of `job_ids` arrived, in any order
    /// (jobs due close together may fire in either), or `timeout` passes;
    /// the ids none arrived for.
    pub async fn missing_of(&self, job_ids: &[&str], timeout: Duration) -> Vec<String> {
        let mut missing: Vec<String> = job_ids.iter().map(|id| id.to_string()).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(received) = self.next(left).await else {
                break;
            };
            missing.retain(|id| *id != received.key);
        }
        missing
    }

    /// Reads events until one for `job_id` arrives (or `timeout`); returns it
    /// and the events for other jobs read on the way.
    pub async fn next_for(
        &self,
        job_id: &str,
        timeout: Duration,
    ) -> (Option<ReceivedEvent>, Vec<ReceivedEvent>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                None => return (None, others),
                Some(received) if received.key == job_id => return (Some(received), others),
                Some(received) => others.push(received),
            }
        }
    }
}

/// Produces raw messages to a topic (run results in tests).
pub struct RawProducer {
    producer: FutureProducer,
}

impl RawProducer {
    /// A producer to the shared test broker.
    pub fn new() -> Self {
        Self::on(&kafka_brokers())
    }

    /// A producer to the broker at `brokers`.
    pub fn on(brokers: &str) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("message.timeout.ms", "10000")
            .create()
            .expect("producer");
        RawProducer { producer }
    }

    /// Sends `payload` to `topic` and waits for the acknowledgement.
    pub async fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        self.send_with_headers(topic, key, payload, &[]).await;
    }

    /// Sends `payload` to one partition of `topic` and waits for the
    /// acknowledgement.
    pub async fn send_to_partition(&self, topic: &str, partition: i32, key: &str, payload: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(key)
                    .payload(payload),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(err, _)| err)
            .expect("message delivered");
    }

    /// Sends `payload` with these headers and waits for the acknowledgement.
    pub async fn send_with_headers(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) {
        let headers = headers
            .iter()
            .fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(*value),
                })
            });
        self.producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(err, _)| err)
            .expect("message delivered");
    }
}

/// The services that reflection v1 lists on `channel` (no token sent).
pub async fn reflected_services(channel: &Channel) -> Vec<String> {
    use tonic_reflection::pb::v1;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let response = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner()
        .message()
        .await
        .expect("stream")
        .expect("a response");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection response {response:?}");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

/// The health status of `proto.JobsService` on `channel` (no token sent).
pub async fn jobs_service_health(
    channel: &Channel,
) -> tonic_health::pb::health_check_response::ServingStatus {
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "proto.JobsService".to_owned(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status()
}

/// Job `id` as GetJob answers it; a failed call fails the test.
pub async fn get_job(client: &mut JobsServiceClient<Channel>, id: &str) -> proto::Job {
    client
        .get_job(proto::GetJobRequest { id: id.to_owned() })
        .await
        .expect("GetJob")
        .into_inner()
}

/// Polls `GetJob` until the job has `status` or `timeout` passes; returns the
/// last status seen. An UNAVAILABLE answer (a database coming back, whose
/// driver has not yet found it again) is polled past; any other error fails
/// the test.
pub async fn wait_for_status(
    client: &mut JobsServiceClient<Channel>,
    id: &str,
    status: proto::JobStatus,
    timeout: Duration,
) -> proto::JobStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = client
            .get_job(proto::GetJobRequest { id: id.to_owned() })
            .await;
        let late = tokio::time::Instant::now() >= deadline;
        match answer {
            Ok(job) if job.get_ref().status() == status || late => {
                return job.into_inner().status();
            }
            Err(err) if err.code() != tonic::Code::Unavailable || late => {
                panic!("GetJob: {err:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The body of `GET /metrics` on `port` (see [`test_support::scrape_metrics`]).
pub async fn scrape_metrics(port: u16) -> String {
    test_support::scrape_metrics(port)
        .await
        .expect("the metrics endpoint answers")
}

/// The body of `GET /metrics` on `port` once the series `name{labels}` is
/// at least `least` (or when `timeout` passed): a service counts a result
/// just after the change a test waits for, so a test reads the counters
/// once the last of them moved.
pub async fn scrape_when(
    port: u16,
    (name, labels): (&str, &[(&str, &str)]),
    least: f64,
    timeout: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let text = scrape_metrics(port).await;
        if metric_value(&text, name, labels) >= least || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the series `name{labels}` (labels in any order, all of
/// them) in a Prometheus text exposition; 0 when the series is absent (a
/// counter that never moved).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut got: Vec<String> = series_labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            got.sort();
            (series_name == name && got == wanted).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}
