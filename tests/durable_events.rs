//! Named (durable) subscriptions of `scheduler.v1.JobEvents` in embedded
//! mode: events kept in the embedded store's event log reach a named
//! subscriber that was away (disconnected, or the service was killed and
//! restarted), each once if it acknowledges them; one name's streams share
//! the events, different names each get them all; the log's retention
//! tells a returning name what it missed; anonymous subscribers stay live
//! only. With Kafka and another store, named subscriptions are refused.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::{
    create_job, create_jobs, create_request,
    embedded::{
        ack, channel_to, embedded_vars, job_id, next_event, next_item, spawn_embedded, subscribe,
        try_ack, wait_until_running,
    },
    processes::{LogDir, ServiceProcess},
};
use scheduler_service::{
    config::vars,
    grpc::{
        proto::jobs_service_client::JobsServiceClient,
        scheduler::v1::{
            EventKind, JobEvent, SubscribeRequest, SubscribeResponse,
            job_events_client::JobEventsClient, subscribe_response::Item,
        },
    },
    telemetry::metrics,
};
use tonic::{Code, Streaming, transport::Channel};

/// Reads events, acknowledging each, until every job of `ids` has had its
/// run event; returns the events read.
async fn runs_of(
    stream: &mut Streaming<SubscribeResponse>,
    channel: &Channel,
    name: &str,
    ids: &[String],
) -> Vec<JobEvent> {
    let mut read = Vec::new();
    let mut ran = HashSet::new();
    while ids.iter().any(|id| !ran.contains(id)) {
        let event = next_event(stream).await;
        assert_eq!(ack(channel, name, event.sequence).await, "acked");
        if event.kind == EventKind::Run as i32 {
            ran.insert(job_id(&event));
        }
        read.push(event);
    }
    read
}

/// Checks that `events` hold each job's events in order (sequence numbers
/// rising, create before run) and each run once.
fn each_run_once_in_order(events: &[JobEvent]) {
    let mut by_job: HashMap<String, Vec<(u64, i32)>> = HashMap::new();
    for event in events {
        by_job
            .entry(job_id(event))
            .or_default()
            .push((event.sequence, event.kind));
    }
    for (id, seen) in &by_job {
        assert!(seen.is_sorted(), "{id}: in order: {seen:?}");
        let runs = seen
            .iter()
            .filter(|(_, kind)| *kind == EventKind::Run as i32)
            .count();
        assert_eq!(runs, 1, "{id}: one run: {seen:?}");
        let kinds: Vec<i32> = seen.iter().map(|(_, kind)| *kind).collect();
        assert!(
            kinds.ends_with(&[EventKind::Create as i32, EventKind::Run as i32])
                || kinds == [EventKind::Run as i32],
            "{id}: create, then run: {seen:?}"
        );
    }
}

#[tokio::test]
async fn after_a_kill_9_while_a_named_subscriber_is_away_it_receives_every_run_once_in_order() {
    let dir = LogDir::fresh();
    let env = embedded_vars(&dir.path().join("data"));
    let mut service = ServiceProcess::start(&env, dir.path()).await;
    let channel = channel_to(service.port).await;
    let mut client = JobsServiceClient::new(channel.clone());
    // The executor handles a first job, acknowledges its events, and goes away.
    let mut stream = subscribe(&channel, &[], "executors").await;
    let first = create_job(&mut client, create_request("first", 0)).await;
    let handled = runs_of(
        &mut stream,
        &channel,
        "executors",
        std::slice::from_ref(&first),
    )
    .await;
    drop(stream);
    // Meanwhile jobs are created and fire; the service is killed (some of
    // their outbox entries may still be owed: the relay logs them after the
    // restart), and restarted.
    let ids = create_jobs(&mut client, "while away", 10, 500, 100).await;
    wait_until_running(&mut client, &ids).await;
    service.kill_9();
    service.restart().await;
    // The executor comes back under its name: every run, each once, in order.
    let channel = channel_to(service.port).await;
    let mut stream = subscribe(&channel, &[], "executors").await;
    let mut events = runs_of(&mut stream, &channel, "executors", &ids).await;
    assert!(service.terminate().await.success(), "graceful exit");
    while let Some(Item::Event(event)) = next_item(&mut stream).await {
        events.push(event);
    }
    let last_handled = handled.iter().map(|e| e.sequence).max();
    assert!(
        events.iter().all(|e| Some(e.sequence) > last_handled),
        "nothing acknowledged comes again"
    );
    assert!(events.iter().all(|e| ids.contains(&job_id(e))));
    each_run_once_in_order(&events);
}

#[tokio::test]
async fn a_named_subscriber_that_reconnects_gets_what_it_did_not_acknowledge_then_what_came() {
    let dir = LogDir::fresh();
    let mut app = spawn_embedded(dir.path(), &[]).await;
    let mut stream = subscribe(&app.channel, &[EventKind::Run], "resumer").await;
    let ids = create_jobs(&mut app.client, "resumed", 2, 0, 100).await;
    let (one, two) = (next_event(&mut stream).await, next_event(&mut stream).await);
    assert!(one.sequence > 0 && one.sequence < two.sequence);
    assert_eq!(
        [job_id(&one), job_id(&two)],
        [ids[0].clone(), ids[1].clone()]
    );
    assert_eq!(ack(&app.channel, "resumer", one.sequence).await, "acked");
    assert_eq!(
        ack(&app.channel, "resumer", one.sequence).await,
        "duplicate"
    );
    drop(stream);
    let third = create_job(&mut app.client, create_request("meanwhile", 0)).await;
    let mut stream = subscribe(&app.channel, &[EventKind::Run], "resumer").await;
    // (Different jobs: their order is not promised across a reconnection.)
    let mut got = [next_event(&mut stream).await, next_event(&mut stream).await];
    got.sort_by_key(|event| event.sequence);
    assert_eq!(
        (got[0].sequence, job_id(&got[0])),
        (two.sequence, ids[1].clone())
    );
    assert_eq!(job_id(&got[1]), third);
    // A sequence number the log never gave is refused.
    let beyond = try_ack(&app.channel, "resumer", 1_000_000)
        .await
        .expect_err("beyond the log");
    assert_eq!(beyond.code(), Code::InvalidArgument, "{beyond:?}");
    app.stop().await;
    let after_stop = next_item(&mut stream).await;
    assert!(after_stop.is_none(), "nothing more: {after_stop:?}");
}

#[tokio::test]
async fn one_names_streams_share_the_events_and_each_other_name_gets_them_all() {
    let dir = LogDir::fresh();
    let mut app = spawn_embedded(dir.path(), &[]).await;
    let mut shared = [
        subscribe(&app.channel, &[EventKind::Run], "shared").await,
        subscribe(&app.channel, &[EventKind::Run], "shared").await,
    ];
    let mut other = subscribe(&app.channel, &[EventKind::Run], "other").await;
    let ids = create_jobs(&mut app.client, "shared", 10, 0, 50).await;
    // Nothing is acknowledged until every run arrived: each goes to the
    // stream with fewer unacknowledged events.
    let mut at: [Vec<JobEvent>; 2] = [Vec::new(), Vec::new()];
    while at[0].len() + at[1].len() < ids.len() {
        let [first, second] = &mut shared;
        let (event, index) = tokio::select! {
            event = next_event(first) => (event, 0),
            event = next_event(second) => (event, 1),
        };
        at[index].push(event);
    }
    for event in at.iter().flatten() {
        assert_eq!(ack(&app.channel, "shared", event.sequence).await, "acked");
    }
    let mut others = Vec::new();
    for _ in &ids {
        others.push(job_id(&next_event(&mut other).await));
    }
    assert!(!at[0].is_empty() && !at[1].is_empty(), "shared: {at:?}");
    let mut delivered: Vec<String> = at.iter().flatten().map(job_id).collect();
    let (mut ids, mut others) = (ids, others);
    for list in [&mut delivered, &mut ids, &mut others] {
        list.sort();
    }
    assert_eq!(delivered, ids, "each run to one stream of the name");
    assert_eq!(others, ids, "every run to the other name");
    // At shutdown the streams end: nothing was delivered twice.
    app.stop().await;
    for stream in shared.iter_mut().chain([&mut other]) {
        let after_stop = next_item(stream).await;
        assert!(after_stop.is_none(), "nothing more: {after_stop:?}");
    }
}

#[tokio::test]
async fn a_name_back_after_the_retention_removed_its_events_learns_how_many_it_missed() {
    let dir = LogDir::fresh();
    let mut app = spawn_embedded(dir.path(), &[(vars::EVENTS_RETENTION, "4,7d")]).await;
    let mut stream = subscribe(&app.channel, &[], "late").await;
    let first = create_job(&mut app.client, create_request("first", 0)).await;
    runs_of(&mut stream, &app.channel, "late", &[first]).await;
    drop(stream);
    // 6 jobs more: 12 events; of the 14, the retention keeps the last 4.
    let ids = create_jobs(&mut app.client, "trimmed", 6, 0, 20).await;
    let trimmed = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let text = app.metrics.render(0);
            if common::metric_value(&text, metrics::EVENT_LOG_TRIMMED, &[]) >= 10.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    trimmed.await.expect("the retention removes 10 events");
    let mut stream = subscribe(&app.channel, &[], "late").await;
    // The 2 acknowledged were not missed; 8 were.
    match next_item(&mut stream).await {
        Some(Item::Lagged(lagged)) => assert_eq!(lagged.missed, 8),
        other => panic!("expected a Lagged notice first, got {other:?}"),
    }
    let mut kept = Vec::new();
    for _ in 0..4 {
        let event = next_event(&mut stream).await;
        assert!(ids.contains(&job_id(&event)));
        kept.push(event.sequence);
    }
    assert_eq!(kept, [11, 12, 13, 14], "the oldest kept, on");
    app.stop().await;
}

#[tokio::test]
async fn an_anonymous_subscriber_gets_only_events_published_while_it_listens() {
    let dir = LogDir::fresh();
    let mut app = spawn_embedded(dir.path(), &[]).await;
    // A named subscriber shows when the first job's run is published.
    let mut witness = subscribe(&app.channel, &[EventKind::Run], "witness").await;
    let before = create_job(&mut app.client, create_request("before", 0)).await;
    assert_eq!(job_id(&next_event(&mut witness).await), before);
    let mut live = subscribe(&app.channel, &[EventKind::Run], "").await;
    let after = create_job(&mut app.client, create_request("after", 0)).await;
    let event = next_event(&mut live).await;
    assert_eq!(job_id(&event), after, "the earlier run is not replayed");
    assert!(event.sequence > 0, "its place in the log, all the same");
    app.stop().await;
}

#[tokio::test]
async fn with_kafka_and_another_store_a_named_subscription_is_refused() {
    let app = common::spawn_app(&[]).await;
    let refused = JobEventsClient::new(app.channel.clone())
        .subscribe(SubscribeRequest {
            subscription: "executors".into(),
            ..SubscribeRequest::default()
        })
        .await
        .expect_err("no event log");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("consumer group"), "{refused:?}");
    let ack = try_ack(&app.channel, "executors", 1)
        .await
        .expect_err("no event log");
    assert_eq!(ack.code(), Code::FailedPrecondition, "{ack:?}");
    app.stop().await;
}
