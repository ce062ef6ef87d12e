//! The service in embedded mode (no database, no broker: the embedded store
//! in a test's folder, events to gRPC subscribers) and a client of its
//! `scheduler.v1.JobEvents`: subscribe (anonymous or named), read, ack.

use std::{collections::HashMap, path::Path, time::Duration};

use scheduler_service::{
    config::{Settings, vars},
    grpc::proto::{self, jobs_service_client::JobsServiceClient},
    grpc::scheduler::v1::{
        AckRequest, EventKind, JobEvent, SubscribeRequest, SubscribeResponse,
        job_events_client::JobEventsClient, subscribe_response::Item,
    },
};
use tonic::{Streaming, transport::Channel};

/// Settings with no database and no broker: embedded mode in `dir`.
pub fn embedded_vars(dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            vars::DATA_DIR.to_owned(),
            dir.to_string_lossy().into_owned(),
        ),
        (vars::SHUTDOWN_GRACE_SECS.to_owned(), "2".to_owned()),
    ]
}

/// The service in embedded mode in `dir`, in this process, with `extra`
/// variables.
pub async fn spawn_embedded(dir: &Path, extra: &[(&str, &str)]) -> super::TestApp {
    let mut map: HashMap<String, String> = embedded_vars(dir).into_iter().collect();
    map.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut settings = Settings::from_lookup(|name| map.get(name).cloned()).expect("settings");
    settings.server.host = [127, 0, 0, 1].into();
    settings.server.port = 0;
    settings.server.http_port = 0;
    settings.observability.metrics_port = 0;
    super::spawn_app_with(settings).await
}

/// A channel to the service on `port`.
pub async fn channel_to(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Subscribes to `kinds` (all when empty), as `subscription` (anonymous
/// when empty).
pub async fn subscribe(
    channel: &Channel,
    kinds: &[EventKind],
    subscription: &str,
) -> Streaming<SubscribeResponse> {
    JobEventsClient::new(channel.clone())
        .subscribe(SubscribeRequest {
            kinds: kinds.iter().map(|k| *k as i32).collect(),
            job_types: vec![],
            subscription: subscription.to_owned(),
        })
        .await
        .expect("Subscribe")
        .into_inner()
}

/// The next item of a stream (a bound of 90 s on a hang); `None` once the
/// stream has ended (cleanly or with a status).
pub async fn next_item(stream: &mut Streaming<SubscribeResponse>) -> Option<Item> {
    let message = tokio::time::timeout(Duration::from_secs(90), stream.message())
        .await
        .expect("an item or the end of the stream within 90 s");
    match message {
        Ok(Some(message)) => Some(message.item.expect("an item")),
        Ok(None) | Err(_) => None,
    }
}

/// The next event of a stream (a `Lagged` notice fails the test).
pub async fn next_event(stream: &mut Streaming<SubscribeResponse>) -> JobEvent {
    match next_item(stream).await {
        Some(Item::Event(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The id of an event's job.
pub fn job_id(event: &JobEvent) -> String {
    event.job.as_ref().expect("the job").id.clone()
}

/// Acknowledges `sequence` for `subscription`: the outcome, or the status.
pub async fn try_ack(
    channel: &Channel,
    subscription: &str,
    sequence: u64,
) -> Result<String, tonic::Status> {
    let request = AckRequest {
        subscription: subscription.to_owned(),
        sequence,
    };
    let reply = JobEventsClient::new(channel.clone()).ack(request).await?;
    Ok(reply.into_inner().outcome)
}

/// Acknowledges `sequence` for `subscription`; the outcome.
pub async fn ack(channel: &Channel, subscription: &str, sequence: u64) -> String {
    try_ack(channel, subscription, sequence).await.expect("Ack")
}

/// Waits until every job of `ids` is RUNNING (a minute each at most).
pub async fn wait_until_running(client: &mut JobsServiceClient<Channel>, ids: &[String]) {
    for id in ids {
        let status = super::wait_for_status(
            client,
            id,
            proto::JobStatus::Running,
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(status, proto::JobStatus::Running, "{id} fired");
    }
}
