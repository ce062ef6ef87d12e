use super::*;
use crate::{
    broker::hub::HubEvent,
    domain::{EventKind, Job, JobId, JobSpec, JobType, now},
    store::{JobDB, embedded::EmbeddedJobDB},
};

/// The embedded store feeding a hub, and named subscriptions over it.
fn subscriptions(dir: &std::path::Path) -> (EmbeddedJobDB, Subscriptions) {
    let db = EmbeddedJobDB::open(dir).unwrap();
    let hub = EventHub::new(64);
    let logged = hub.clone();
    let sink = Box::new(move |events: Vec<_>| events.into_iter().for_each(|e| logged.send(e)));
    assert!(db.on_append(sink).is_ok());
    let subscriptions = Subscriptions::new(
        Arc::new(db.clone()),
        hub,
        CancellationToken::new(),
        Duration::from_secs(30),
        Metrics::new(),
    );
    (db, subscriptions)
}

/// Creates `count` jobs and fires them: a create and a run event each,
/// logged job after job.
async fn publish(db: &EmbeddedJobDB, count: usize) -> Vec<JobId> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let spec = JobSpec {
            name: "shared".into(),
            description: String::new(),
            schedule_time: now(),
            job_type: JobType::Email,
            job_data: "{}".into(),
        };
        let job = Job::new_scheduled(spec, now());
        db.insert(&job).await.unwrap();
        db.claim(job.id, job.fire_token, now()).await.unwrap();
        db.clear_pending_many(&[(job.id, 1)]).await.unwrap();
        ids.push(job.id);
    }
    ids
}

async fn member(subscriptions: &Subscriptions, name: &str) -> mpsc::Receiver<Outgoing> {
    let (out, events) = mpsc::channel(64);
    let joined = subscriptions
        .join(name, EventFilter::default(), out)
        .await
        .unwrap();
    // (The room notices only matter to a full buffer.)
    drop(joined);
    events
}

/// The next event a member receives (a bound of 90 s on a hang).
async fn next(events: &mut mpsc::Receiver<Outgoing>) -> Arc<HubEvent> {
    let received = tokio::time::timeout(Duration::from_secs(90), events.recv()).await;
    match received.expect("an event in time").expect("open") {
        Outgoing::Event(event) => event,
        Outgoing::Lagged(missed) => panic!("lagged {missed}"),
    }
}

#[tokio::test]
async fn one_name_shares_its_events_and_a_leaving_members_go_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (db, subscriptions) = subscriptions(dir.path());
    let (mut a, mut b) = (
        member(&subscriptions, "workers").await,
        member(&subscriptions, "workers").await,
    );
    publish(&db, 4).await;
    let mut at: HashMap<u64, &str> = HashMap::new();
    let mut jobs: HashMap<JobId, &str> = HashMap::new();
    let mut at_b = Vec::new();
    for _ in 0..8 {
        let (event, who) = tokio::select! {
            event = next(&mut a) => (event, "a"),
            event = next(&mut b) => (event, "b"),
        };
        assert!(at.insert(event.sequence, who).is_none(), "each event once");
        // A job's events go to one member while they are unacknowledged.
        assert_eq!(*jobs.entry(event.job.id).or_insert(who), who);
        if who == "b" {
            at_b.push(event.sequence);
        }
    }
    assert_eq!(at.len(), 8);
    assert!(!at_b.is_empty() && at_b.len() < 8, "shared: {at:?}");
    // b leaves without acknowledging: its events go to a, in order.
    drop(b);
    let mut again = Vec::new();
    for _ in 0..at_b.len() {
        again.push(next(&mut a).await.sequence);
    }
    assert_eq!(again, at_b);
}

#[tokio::test]
async fn a_name_resumes_after_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (db, subscriptions) = subscriptions(dir.path());
    let mut first = member(&subscriptions, "resumer").await;
    let ids = publish(&db, 2).await;
    for expected in 1..=4 {
        assert_eq!(next(&mut first).await.sequence, expected);
    }
    for sequence in [1, 2] {
        assert_eq!(
            subscriptions.ack("resumer", sequence).await.unwrap(),
            AckOutcome::Acked
        );
    }
    drop(first);
    let more = publish(&db, 1).await;
    let mut second = member(&subscriptions, "resumer").await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = next(&mut second).await;
        seen.push((event.sequence, event.kind, event.job.id));
    }
    assert_eq!(
        seen,
        [
            (3, EventKind::Create, ids[1]),
            (4, EventKind::Run, ids[1]),
            (5, EventKind::Create, more[0]),
            (6, EventKind::Run, more[0])
        ]
    );
    assert_eq!(
        subscriptions.ack("resumer", 1).await.unwrap(),
        AckOutcome::Duplicate
    );
}

#[tokio::test]
async fn streams_of_one_name_must_share_its_filter() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, subscriptions) = subscriptions(dir.path());
    let _open = member(&subscriptions, "strict").await;
    let runs = EventFilter {
        kinds: [EventKind::Run].into(),
        ..EventFilter::default()
    };
    let (out, _events) = mpsc::channel(1);
    let refused = subscriptions.join("strict", runs, out).await;
    assert!(matches!(refused, Err(JoinError::FilterDiffers(_))));
}
