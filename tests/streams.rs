//! Streams, connections and metrics cannot exhaust the service:
//! `JobEvents.Subscribe` streams are bounded in number, a subscriber that
//! does not read is dropped with a status and its place freed, a
//! subscriber's task ends with its client and at shutdown, connections are
//! bounded in streams and closed when they stop answering pings, and
//! made-up method paths do not create metric series. On the embedded store
//! and the in-process bus: no external server.
//!
//! Timeouts here only bound a hang; no test asserts how long anything took.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{TestApp, create_request, jobs_service_health, metric_value, scrape_metrics};
use futures::{StreamExt, stream};
use scheduler_service::{
    config::{Settings, vars},
    grpc::{
        proto::{self, jobs_service_client::JobsServiceClient},
        scheduler::v1::{
            EventKind, SubscribeRequest, SubscribeResponse, job_events_client::JobEventsClient,
        },
    },
    telemetry::metrics,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Status, Streaming,
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint},
};

/// Bounds a wait that should end; reaching it fails the test.
const HANG: Duration = Duration::from_secs(60);

/// The service on the embedded store in a fresh directory (kept as long as
/// the returned one), with `overrides`.
async fn spawn(overrides: &[(&str, &str)]) -> (TempDir, TestApp) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_string_lossy().into_owned();
    let mut env = vec![
        (vars::DATA_DIR, data_dir.as_str()),
        (vars::SERVER_HOST, "127.0.0.1"),
        (vars::SERVER_PORT, "0"),
        (vars::METRICS_PORT, "0"),
        (vars::HTTP_PORT, "0"),
        (vars::SHUTDOWN_GRACE_SECS, "10"),
    ];
    env.extend_from_slice(overrides);
    // The last value of a name wins: the overrides.
    let settings = Settings::from_lookup(|name| {
        env.iter()
            .rev()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .expect("valid settings");
    (dir, common::spawn_app_with(settings).await)
}

/// A connection of its own to `app` on which a stream takes at most 16 KiB
/// that the client has not read: a subscriber that does not read fills up
/// after a few events.
async fn narrow_channel(app: &TestApp) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{}", app.port))
        .expect("a URI")
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(1024 * 1024)
        .connect()
        .await
        .expect("connects to the service")
}

/// Subscribes on `channel` to events of `kinds` (none: every kind).
async fn subscribe(
    channel: &Channel,
    kinds: &[EventKind],
) -> Result<Streaming<SubscribeResponse>, Status> {
    JobEventsClient::new(channel.clone())
        .subscribe(SubscribeRequest {
            kinds: kinds.iter().map(|kind| *kind as i32).collect(),
            ..SubscribeRequest::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Reads `stream` until it ends with a status (within [`HANG`]).
async fn final_status(stream: &mut Streaming<SubscribeResponse>) -> Status {
    tokio::time::timeout(HANG, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended with OK"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ends")
}

/// A CreateJob request due in a day, with an email message of `size` bytes.
fn big_job(name: &str, size: usize) -> proto::CreateJobRequest {
    let mut request = create_request(name, 86_400_000);
    request.job_data = serde_json::json!({
        "SourceAddress": "a@example.com",
        "DestinationAddress": "b@example.com",
        "Subject": "s",
        "Message": "m".repeat(size),
    })
    .to_string();
    request
}

/// Creates `count` such jobs, 8 calls at a time: `count` create events.
async fn create_big_jobs(client: &JobsServiceClient<Channel>, count: usize, size: usize) {
    stream::iter(0..count)
        .map(|i| {
            let mut client = client.clone();
            async move {
                client
                    .create_job(big_job(&format!("big-{i}"), size))
                    .await
                    .expect("CreateJob");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

/// The value of a series of `app`'s metrics now.
async fn metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&scrape_metrics(app.metrics_port).await, name, labels)
}

/// Waits until a series of `app`'s metrics reads `value`.
async fn until_metric(app: &TestApp, name: &str, labels: &[(&str, &str)], value: f64) {
    let reached = tokio::time::timeout(HANG, async {
        while metric(app, name, labels).await != value {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{name} {labels:?} never read {value}");
}

/// The calls that must keep working beside the subscribers: create, get,
/// list and the health check.
async fn assert_calls_answer(app: &TestApp) {
    let answered = tokio::time::timeout(HANG, async {
        let mut client = app.client.clone();
        let id = common::create_job(&mut client, create_request("beside", 86_400_000)).await;
        client
            .get_job(proto::GetJobRequest { id })
            .await
            .expect("GetJob");
        client
            .list_jobs(proto::ListJobsRequest {
                page: 1,
                size: 10,
                ..Default::default()
            })
            .await
            .expect("ListJobs");
        jobs_service_health(&app.channel).await
    })
    .await
    .expect("the calls answer");
    assert_eq!(
        answered,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[tokio::test]
async fn a_thousand_subscribers_that_never_read_leave_memory_bounded_and_calls_answering() {
    let (_dir, app) = spawn(&[
        (vars::GRPC_MAX_SUBSCRIBERS, "1000"),
        (vars::GRPC_SUBSCRIBER_STALL_SECS, "3600"),
    ])
    .await;
    // 20 connections of 50 streams (at most 200 a connection by default).
    let mut never_read = Vec::new();
    for _ in 0..20 {
        let channel = narrow_channel(&app).await;
        for _ in 0..50 {
            never_read.push(subscribe(&channel, &[]).await.expect("a subscriber"));
        }
    }
    let refused = subscribe(&app.channel, &[])
        .await
        .expect_err("one more than GRPC_MAX_SUBSCRIBERS");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("too many subscribers"),
        "{refused:?}"
    );
    assert_eq!(metric(&app, metrics::SUBSCRIBERS, &[]).await, 1000.0);

    let rss = "process_resident_memory_bytes";
    let before = metric(&app, rss, &[]).await;
    // 200 events of 16 KiB for each of 1000 subscribers: 3.2 GB if each
    // subscriber kept a copy of every event it has not sent.
    create_big_jobs(&app.client, 200, 16 * 1024).await;
    assert_calls_answer(&app).await;
    let grown = metric(&app, rss, &[]).await - before;
    println!("resident memory grew by {:.0} MiB", grown / 1024.0 / 1024.0);
    assert!(
        grown < 512.0 * 1024.0 * 1024.0,
        "resident memory grew by {grown} bytes"
    );

    // Their places come back when their clients leave.
    drop(never_read);
    until_metric(&app, metrics::SUBSCRIBERS, &[], 0.0).await;
    subscribe(&app.channel, &[])
        .await
        .expect("places are free again");
    app.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_dropped_with_a_status_and_its_place_freed() {
    let (_dir, app) = spawn(&[
        (vars::GRPC_MAX_SUBSCRIBERS, "1"),
        (vars::GRPC_SUBSCRIBER_STALL_SECS, "1"),
    ])
    .await;
    let mut stalled = subscribe(&narrow_channel(&app).await, &[])
        .await
        .expect("the one subscriber");
    common::create_job(&mut app.client.clone(), big_job("first", 10)).await;
    let first = tokio::time::timeout(HANG, stalled.message()).await;
    assert!(
        matches!(first, Ok(Ok(Some(_)))),
        "it reads one event: {first:?}"
    );
    let refused = subscribe(&app.channel, &[])
        .await
        .expect_err("its place is taken");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // Then it stops reading while events keep coming, until the service
    // drops it.
    let stop_events = CancellationToken::new();
    let events = tokio::spawn({
        let (mut client, stop) = (app.client.clone(), stop_events.clone());
        async move {
            for i in 0.. {
                if stop.is_cancelled() {
                    break;
                }
                common::create_job(&mut client, big_job(&format!("flow-{i}"), 4096)).await;
            }
        }
    });
    let stalled_label = [("reason", "stalled")];
    until_metric(&app, metrics::SUBSCRIBERS_DROPPED, &stalled_label, 1.0).await;
    stop_events.cancel();
    events.await.expect("events were created");

    subscribe(&app.channel, &[])
        .await
        .expect("its place is free again");
    // It learns why once it reads again, after what was on its way to it.
    let status = final_status(&mut stalled).await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("did not read for 1 s"),
        "{status:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_subscriber_whose_filter_matches_nothing_ends_when_its_client_leaves() {
    let (_dir, app) = spawn(&[(vars::GRPC_MAX_SUBSCRIBERS, "1")]).await;
    let runs_only = subscribe(&app.channel, &[EventKind::Run])
        .await
        .expect("the one subscriber");
    // Create events for jobs due in a day: its filter admits none.
    create_big_jobs(&app.client, 5, 10).await;
    assert_eq!(metric(&app, metrics::SUBSCRIBERS, &[]).await, 1.0);

    drop(runs_only);
    until_metric(&app, metrics::SUBSCRIBERS, &[], 0.0).await;
    subscribe(&app.channel, &[EventKind::Run])
        .await
        .expect("its place is free again");
    app.stop().await;
}

/// A subscriber on its own narrow connection to `app`, stuck: events far
/// beyond what its connection's window, the server's send buffer and its
/// buffer hold are published while it does not read, so its task waits for
/// room.
async fn stuck_subscriber(app: &TestApp) -> Streaming<SubscribeResponse> {
    let stuck = subscribe(&narrow_channel(app).await, &[])
        .await
        .expect("a subscriber");
    create_big_jobs(&app.client, 300, 4096).await;
    stuck
}

#[tokio::test]
async fn at_shutdown_a_stuck_subscriber_learns_that_the_service_is_stopping() {
    let (_dir, app) = spawn(&[
        (vars::GRPC_SUBSCRIBER_STALL_SECS, "3600"),
        (vars::SHUTDOWN_GRACE_SECS, "30"),
    ])
    .await;
    let mut stuck = stuck_subscriber(&app).await;

    let stopping = tokio::spawn(app.stop());
    // It reads again: what was on its way, then why the stream ended.
    let status = final_status(&mut stuck).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    tokio::time::timeout(HANG, stopping)
        .await
        .expect("the service stops")
        .expect("the service stopped cleanly");
}

#[tokio::test]
async fn shutdown_ends_the_task_of_a_subscriber_whose_client_never_reads_again() {
    let (_dir, app) = spawn(&[
        (vars::GRPC_SUBSCRIBER_STALL_SECS, "3600"),
        // The unread stream cannot end gracefully: the service closes
        // its connection after the grace period.
        (vars::SHUTDOWN_GRACE_SECS, "1"),
    ])
    .await;
    let stuck = stuck_subscriber(&app).await;
    let recorded = app.metrics.clone();

    tokio::time::timeout(HANG, app.stop())
        .await
        .expect("the service stops");
    let text = recorded.render(0);
    assert_eq!(metric_value(&text, metrics::SUBSCRIBERS, &[]), 0.0);
    let shutdown = [("reason", "shutdown")];
    assert_eq!(
        metric_value(&text, metrics::SUBSCRIBERS_DROPPED, &shutdown),
        1.0
    );
    drop(stuck); // held, unread, until here
}

/// A call with an empty message to `path`; the code it is answered with.
async fn call_path(channel: Channel, path: String) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let path = PathAndQuery::try_from(path).expect("a path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(tonic::Request::new(()), path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn ten_thousand_made_up_methods_are_counted_as_one_unknown_method() {
    let (_dir, app) = spawn(&[]).await;
    let codes: Vec<Code> = stream::iter(0..10_000)
        .map(|i| {
            let service = ["proto.JobsService", "scheduler.v1.JobEvents"][i % 2];
            call_path(app.channel.clone(), format!("/{service}/MadeUp{i}"))
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let other = codes.iter().find(|code| **code != Code::Unimplemented);
    assert!(other.is_none(), "a made-up method answered {other:?}");
    app.client
        .clone()
        .list_jobs(proto::ListJobsRequest {
            page: 1,
            size: 10,
            ..Default::default()
        })
        .await
        .expect("ListJobs answers beside them");

    let text = scrape_metrics(app.metrics_port).await;
    let unknown = [("method", "unknown"), ("code", "UNIMPLEMENTED")];
    assert_eq!(
        metric_value(&text, metrics::RPC_REQUESTS, &unknown),
        10_000.0
    );
    let methods: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| {
            line.strip_prefix(metrics::RPC_REQUESTS)?
                .split_once("method=\"")
        })
        .filter_map(|(_, rest)| rest.split_once('"').map(|(method, _)| method))
        .collect();
    assert_eq!(methods, BTreeSet::from(["ListJobs", "unknown"]));
    let series = text.lines().filter(|line| !line.starts_with('#')).count();
    assert!(series < 1_000, "{series} series:\n{text}");
    app.stop().await;
}

/// One HTTP/2 frame: its type, flags and payload.
struct Frame {
    kind: u8,
    flags: u8,
    payload: Vec<u8>,
}

/// HTTP/2 frame types and flags (RFC 9113, section 6).
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// Reads HTTP/2 frames until the peer closes the connection.
async fn frames_until_closed(socket: &mut tokio::net::TcpStream) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut header = [0u8; 9];
    while socket.read_exact(&mut header).await.is_ok() {
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
        let mut payload = vec![0; length as usize];
        if socket.read_exact(&mut payload).await.is_err() {
            break;
        }
        frames.push(Frame {
            kind: header[3],
            flags: header[4],
            payload,
        });
    }
    frames
}

/// The value of the setting `id` in a SETTINGS frame's payload.
fn setting(payload: &[u8], id: u16) -> Option<u32> {
    payload.chunks_exact(6).find_map(|entry| {
        (u16::from_be_bytes([entry[0], entry[1]]) == id)
            .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
    })
}

#[tokio::test]
async fn connections_are_bounded_in_streams_and_closed_when_they_do_not_answer_pings() {
    let (_dir, app) = spawn(&[
        (vars::GRPC_MAX_STREAMS_PER_CONNECTION, "7"),
        (vars::GRPC_KEEPALIVE_INTERVAL_SECS, "1"),
        (vars::GRPC_KEEPALIVE_TIMEOUT_SECS, "1"),
    ])
    .await;
    // A client that opens HTTP/2 (its preface and empty SETTINGS), then
    // never answers anything, as a vanished peer would.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connects");
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface sent");
    let frames = tokio::time::timeout(HANG, frames_until_closed(&mut socket))
        .await
        .expect("the service closes the connection");
    let settings = frames
        .iter()
        .find(|frame| frame.kind == SETTINGS && frame.flags & ACK == 0)
        .expect("the service's SETTINGS");
    assert_eq!(
        setting(&settings.payload, SETTINGS_MAX_CONCURRENT_STREAMS),
        Some(7)
    );
    assert!(
        frames
            .iter()
            .any(|frame| frame.kind == PING && frame.flags & ACK == 0),
        "the service pinged before closing"
    );
    assert_calls_answer(&app).await;
    app.stop().await;
}
