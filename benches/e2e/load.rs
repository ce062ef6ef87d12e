//! The client side that the create and fire parts share: the CreateJob load
//! generator (a fixed number of calls, a given number in flight over a set
//! of connections) and a count of the events a topic holds.

use std::{
    collections::HashSet,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use scheduler_service::grpc::proto::{self, jobs_service_client::JobsServiceClient};
use test_support::{kafka_brokers, unique};
use tonic::transport::Channel;

/// The payload of every job the benchmarks create.
pub const JOB_DATA: &str = r#"{"SourceAddress":"a@example.com","DestinationAddress":"b@example.com","Subject":"s","Message":"m"}"#;

/// The due time of call `i`, Unix ms.
pub type DueMs = Arc<dyn Fn(usize) -> i64 + Send + Sync>;

/// The request of call `i`.
pub type MakeRequest = Arc<dyn Fn(usize) -> proto::CreateJobRequest + Send + Sync>;

/// What a batch of CreateJob calls gave.
#[derive(Default)]
pub struct Load {
    /// Latency of each successful call, µs.
    pub latencies_us: Vec<i64>,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

pub fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).expect("nanos"),
    }
}

/// Sends CreateJob calls `0..n` (the job of call `i` due at `due_ms(i)`),
/// `concurrency` at a time spread over `clients`, until all are done or
/// `deadline` (no new call after it).
pub async fn create_load(
    clients: &[JobsServiceClient<Channel>],
    n: usize,
    concurrency: usize,
    deadline: Option<Instant>,
    due_ms: DueMs,
) -> Load {
    let request = Arc::new(move |i: usize| proto::CreateJobRequest {
        name: format!("e2e-{i}"),
        description: "end-to-end benchmark".into(),
        schedule_time: Some(timestamp_ms(due_ms(i))),
        job_type: proto::JobType::Email.into(),
        job_data: JOB_DATA.into(),
        ..Default::default()
    });
    create_requests(clients, n, concurrency, deadline, request).await
}

/// As [`create_load`], the request of call `i` being `request(i)`.
pub async fn create_requests(
    clients: &[JobsServiceClient<Channel>],
    n: usize,
    concurrency: usize,
    deadline: Option<Instant>,
    request: MakeRequest,
) -> Load {
    let clients: Arc<[JobsServiceClient<Channel>]> = clients.into();
    let call = move |worker: usize, i: usize| {
        let mut client = clients[worker % clients.len()].clone();
        let request = request(i);
        async move {
            client
                .create_job(request)
                .await
                .map(|_| ())
                .map_err(|status| status.to_string())
        }
    };
    call_load(n, concurrency, deadline, call).await
}

/// Makes calls `0..n`, `concurrency` at a time, until all are done or
/// `deadline` (no new call after it): in-flight slot `w` makes call `i` as
/// `call(w, i)`. The latency of each call that succeeded, and the errors.
pub async fn call_load<F, Fut>(
    n: usize,
    concurrency: usize,
    deadline: Option<Instant>,
    call: F,
) -> Load
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| tokio::spawn(worker(w, next.clone(), n, deadline, call.clone())))
        .collect();
    let mut load = Load::default();
    for worker in workers {
        let part = worker.await.expect("worker");
        load.latencies_us.extend(part.latencies_us);
        load.errors += part.errors;
        load.first_error = load.first_error.or(part.first_error);
    }
    load.elapsed = start.elapsed();
    load
}

/// One call in flight (slot `w`): takes the next call number until all are
/// taken or the deadline passed.
async fn worker<F, Fut>(
    w: usize,
    next: Arc<AtomicUsize>,
    n: usize,
    deadline: Option<Instant>,
    call: F,
) -> Load
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut load = Load::default();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        let t = Instant::now();
        match call(w, i).await {
            Ok(()) => load.latencies_us.push(t.elapsed().as_micros() as i64),
            Err(err) => {
                load.errors += 1;
                load.first_error.get_or_insert(err);
            }
        }
    }
    load
}

/// The events on a topic and the distinct jobs they name, read from the
/// beginning of every partition until nothing came for a second (30 s at
/// most).
pub fn topic_events(topic: &str) -> Option<(usize, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("e2e-count-{}", unique()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let partitions = metadata.topics().first()?.partitions().len();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, i32::try_from(p).ok()?, Offset::Beginning)
            .ok()?;
    }
    consumer.assign(&assignment).ok()?;
    let (mut events, mut keys) = (0, HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            events += 1;
            keys.insert(message.key().unwrap_or_default().to_vec());
            last = Instant::now();
        }
    }
    Some((events, keys.len()))
}
