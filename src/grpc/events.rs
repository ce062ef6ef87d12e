//! The `scheduler.v1.JobEvents` handlers: job events streamed to executors
//! from the in-process hub, and run results reported back over gRPC, so that
//! the loop closes without Kafka.
//!
//! Subscribers are bounded so that they cannot exhaust the service. At most
//! `GRPC_MAX_SUBSCRIBERS` streams are open at once; one more is refused with
//! RESOURCE_EXHAUSTED. Each stream has a task that moves the events its
//! filter admits from the hub to the stream's buffer, and holds the
//! stream's place among the subscribers for as long as it runs. The task
//! ends, and frees the place, when the client goes away (even if no event
//! ever matches its filter), when the service stops (the stream ends with
//! UNAVAILABLE), or when the client takes no event for
//! `GRPC_SUBSCRIBER_STALL_SECS` while one waits for it (ABORTED). The buffer
//! holds the hub's own events, shared, not copies: each is made into its
//! message only as the stream sends it.
//!
//! A Subscribe that names a subscription is durable (on the embedded store
//! only): its events come from the store's event log, from where the name
//! left off, through [`Subscriptions`], and `Ack` records what the name has
//! handled. The bounds above apply to its streams alike.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::{
    Stream, StreamExt,
    stream::{self, PollNext},
};
use prost_types::Timestamp;
use tokio::sync::{
    Notify, OwnedSemaphorePermit, Semaphore,
    broadcast::{self, error::RecvError},
    mpsc::{self, error::SendTimeoutError},
    oneshot,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    convert::{parse_id, timestamp},
    proto,
    scheduler::v1::{self as events, subscribe_response::Item},
};
use crate::{
    broker::{
        EventKind,
        durable::{End, JoinError, Subscriptions},
        hub::{EventHub, HubEvent, Outgoing},
    },
    config::StreamSettings,
    domain::{
        AckOutcome, Error, EventFilter, Field, Job, JobType, ResultStatus,
        report::{ResultOutcome, RunReport},
    },
    service::JobService,
    telemetry::metrics::{Metrics, SubscriberDrop},
};

/// Events buffered per subscriber between the hub and its gRPC stream (the
/// hub's shared events: a subscriber that does not read holds pointers, not
/// copies). A burst beyond it waits in the hub, which keeps
/// [`crate::broker::hub::HUB_CAPACITY`] events for every subscriber.
const STREAM_BUFFER: usize = 64;

/// The gRPC face of the event hub and of run results.
#[derive(Clone)]
pub struct JobEventsGrpc {
    service: JobService,
    hub: EventHub,
    /// Named subscriptions: only over the embedded store's event log.
    subscriptions: Option<Subscriptions>,
    shutdown: CancellationToken,
    /// One permit per open subscriber stream.
    places: Arc<Semaphore>,
    max_subscribers: usize,
    stall: Duration,
}

impl JobEventsGrpc {
    /// Serves `hub`'s events, the named `subscriptions` (if the store keeps
    /// an event log) and `service`'s results; streams end at `shutdown`, and
    /// are bounded by `limits`.
    pub fn new(
        service: JobService,
        hub: EventHub,
        subscriptions: Option<Subscriptions>,
        shutdown: CancellationToken,
        limits: &StreamSettings,
    ) -> Self {
        JobEventsGrpc {
            service,
            hub,
            subscriptions,
            shutdown,
            places: Arc::new(Semaphore::new(limits.max_subscribers)),
            max_subscribers: limits.max_subscribers,
            stall: limits.subscriber_stall,
        }
    }
}

fn wire_kind(kind: EventKind) -> events::EventKind {
    match kind {
        EventKind::Create => events::EventKind::Create,
        EventKind::Update => events::EventKind::Update,
        EventKind::Run => events::EventKind::Run,
        EventKind::DeadLetter => events::EventKind::DeadLetter,
        EventKind::Delete => events::EventKind::Delete,
        EventKind::Result => events::EventKind::Result,
    }
}

/// The kind of a wire number, unless it is unknown or unspecified.
fn domain_kind(kind: i32) -> Option<EventKind> {
    match events::EventKind::try_from(kind).ok()? {
        events::EventKind::Create => Some(EventKind::Create),
        events::EventKind::Update => Some(EventKind::Update),
        events::EventKind::Run => Some(EventKind::Run),
        events::EventKind::DeadLetter => Some(EventKind::DeadLetter),
        events::EventKind::Delete => Some(EventKind::Delete),
        events::EventKind::Result => Some(EventKind::Result),
        events::EventKind::Unspecified => None,
    }
}

/// What a subscriber asked for: its filter (empty sets mean everything).
fn filter_of(request: &events::SubscribeRequest) -> Result<EventFilter, Status> {
    let kinds = request
        .kinds
        .iter()
        .map(|kind| {
            domain_kind(*kind).ok_or_else(|| {
                Status::invalid_argument(format!("invalid kinds: unknown event kind {kind}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let job_types = request
        .job_types
        .iter()
        .map(|job_type| {
            JobType::from_i32(*job_type).ok_or_else(|| {
                Status::from(Error::invalid(
                    Field::JobType,
                    format!("unknown job type {job_type}"),
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(EventFilter { kinds, job_types })
}

/// Longest subscription name, in bytes.
const SUBSCRIPTION_MAX_BYTES: usize = 128;

/// A subscription name as a request gives it: `None` when empty
/// (anonymous); at most [`SUBSCRIPTION_MAX_BYTES`], no control character.
fn subscription_name(name: &str) -> Result<Option<&str>, Status> {
    if name.is_empty() {
        return Ok(None);
    }
    if name.len() > SUBSCRIPTION_MAX_BYTES || name.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "invalid subscription: at most {SUBSCRIPTION_MAX_BYTES} bytes, no control character"
        )));
    }
    Ok(Some(name))
}

impl From<Outgoing> for events::SubscribeResponse {
    fn from(outgoing: Outgoing) -> Self {
        let item = match outgoing {
            Outgoing::Event(event) => {
                let (occurrence, occurrences) = occurrences_of(&event.job);
                Item::Event(events::JobEvent {
                    kind: wire_kind(event.kind).into(),
                    scheduled_key: event.job.current_fire_token(),
                    job: Some(proto::Job::from(event.job.clone())),
                    sequence: event.sequence,
                    occurrence,
                    occurrences,
                })
            }
            Outgoing::Lagged(missed) => Item::Lagged(events::Lagged { missed }),
        };
        events::SubscribeResponse { item: Some(item) }
    }
}

/// A recurring job's occurrence (its run in flight's, else the next) and,
/// on a catch-up run, every occurrence the run stands for, as the Kafka
/// events' `Occurrence` and `Occurrences` say them.
fn occurrences_of(job: &Job) -> (Option<Timestamp>, Vec<Timestamp>) {
    let Some(rec) = &job.recurrence else {
        return (None, Vec::new());
    };
    let run = rec.run.as_ref();
    let occurrence = run.map(|run| run.occurrence).or(rec.next);
    let stands_for = run.map_or(&[][..], |run| run.stands_for.as_slice());
    (
        occurrence.map(timestamp),
        stands_for.iter().copied().map(timestamp).collect(),
    )
}

/// The status that ends a stream the service ended (none: the client left),
/// counted in the metrics.
fn end_status(end: End, stall: Duration, metrics: &Metrics) -> Option<Status> {
    let stall = stall.as_secs();
    match end {
        End::Left => None,
        End::Stalled => {
            tracing::warn!(stall_secs = stall, "dropped a subscriber that did not read");
            metrics.subscriber_dropped(SubscriberDrop::Stalled);
            Some(Status::aborted(format!(
                "subscriber did not read for {stall} s (its buffer stayed full); \
                 subscribe again"
            )))
        }
        End::Stopping => {
            metrics.subscriber_dropped(SubscriberDrop::Shutdown);
            Some(Status::unavailable(
                "the service is shutting down; subscribe again",
            ))
        }
    }
}

/// A subscriber's place among the open streams, counted in the gauge while
/// it is held.
struct Place {
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Place {
    fn take(metrics: Arc<Metrics>, permit: OwnedSemaphorePermit) -> Place {
        metrics.subscriber_opened();
        Place {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.metrics.subscriber_closed();
    }
}

/// The task between the hub and one subscriber's stream.
struct Subscriber {
    filter: EventFilter,
    events_in: broadcast::Receiver<Arc<HubEvent>>,
    events_out: mpsc::Sender<Outgoing>,
    stall: Duration,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Subscriber {
    /// Forwards events until the stream ends, holding `place` meanwhile;
    /// tells the stream why the service ended it through `ending`.
    async fn serve(self, place: Place, ending: oneshot::Sender<Status>) {
        let (metrics, stall) = (self.metrics.clone(), self.stall);
        let end = self.forward().await;
        tell_end(end_status(end, stall, &metrics), ending, place);
    }

    /// Moves the events the filter admits into the stream's buffer. Every
    /// wait also watches the service's shutdown, and the client's leaving.
    async fn forward(mut self) -> End {
        loop {
            let outgoing = tokio::select! {
                () = self.shutdown.cancelled() => return End::Stopping,
                () = self.events_out.closed() => return End::Left,
                received = self.events_in.recv() => match received {
                    Ok(event) if self.filter.admits(event.kind, event.job.spec.job_type) => {
                        Outgoing::Event(event)
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "an event subscriber fell behind");
                        self.metrics.subscriber_missed(missed);
                        Outgoing::Lagged(missed)
                    }
                    // The hub is gone only when the service is.
                    Err(RecvError::Closed) => return End::Stopping,
                },
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return End::Stopping,
                sent = self.events_out.send_timeout(outgoing, self.stall) => match sent {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => return End::Stalled,
                    Err(SendTimeoutError::Closed(_)) => return End::Left,
                },
            }
        }
    }
}

/// Tells a stream why the service ended it (`status`; none when its client
/// left), then frees its `place`.
fn tell_end(status: Option<Status>, ending: oneshot::Sender<Status>, place: Place) {
    if let Some(status) = status {
        // The stream may be gone already: then nobody is left to tell.
        let _ = ending.send(status);
    }
    drop(place);
}

type EventStream = Pin<Box<dyn Stream<Item = Result<events::SubscribeResponse, Status>> + Send>>;

/// A subscriber's gRPC stream: its buffered events, or, as soon as the
/// service ended it, the status that says why (ahead of any event still
/// buffered; tonic ends the response at that status). `room` (a named
/// subscription's group) is notified as each event is taken.
fn outlet(
    events: mpsc::Receiver<Outgoing>,
    ending: oneshot::Receiver<Status>,
    room: Option<Arc<Notify>>,
) -> EventStream {
    // No status comes when the task ended because the client left.
    let ending = stream::once(ending).filter_map(|ended| std::future::ready(ended.ok().map(Err)));
    let events = ReceiverStream::new(events).map(move |outgoing| {
        if let Some(room) = &room {
            room.notify_one();
        }
        Ok(outgoing.into())
    });
    Box::pin(stream::select_with_strategy(
        ending,
        events,
        |(): &mut ()| PollNext::Left,
    ))
}

impl JobEventsGrpc {
    /// A place among the open streams, or RESOURCE_EXHAUSTED.
    fn take_place(&self) -> Result<Place, Status> {
        let permit = self.places.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(max = self.max_subscribers, "subscriber refused: too many");
            Status::resource_exhausted(format!(
                "too many subscribers (at most {}); retry with backoff",
                self.max_subscribers
            ))
        })?;
        Ok(Place::take(self.service.metrics().clone(), permit))
    }

    /// The named subscriptions, or FAILED_PRECONDITION when the store keeps
    /// no event log.
    fn named(&self) -> Result<&Subscriptions, Status> {
        self.subscriptions.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "named subscriptions need the embedded store's event log (no DATABASE_URI); \
                 with Kafka, read the topics with a consumer group instead",
            )
        })
    }

    /// A stream of the named subscription `name`: its group delivers the
    /// events, and tells how the stream ended.
    async fn subscribe_named(
        &self,
        name: &str,
        filter: EventFilter,
    ) -> Result<Response<EventStream>, Status> {
        let subscriptions = self.named()?;
        let place = self.take_place()?;
        let (events_out, events) = mpsc::channel(STREAM_BUFFER);
        let joined =
            subscriptions
                .join(name, filter, events_out)
                .await
                .map_err(|err| match err {
                    JoinError::FilterDiffers(_) => Status::failed_precondition(err.to_string()),
                    JoinError::Store(err) => Error::from(err).into(),
                    JoinError::Stopping => Status::unavailable(err.to_string()),
                })?;
        let (ending, ended) = oneshot::channel();
        let (metrics, stall) = (self.service.metrics().clone(), self.stall);
        tokio::spawn(async move {
            // The group gone without a word: the service is stopping.
            let end = joined.ended.await.unwrap_or(End::Stopping);
            tell_end(end_status(end, stall, &metrics), ending, place);
        });
        Ok(Response::new(outlet(events, ended, Some(joined.room))))
    }
}

#[tonic::async_trait]
impl events::job_events_server::JobEvents for JobEventsGrpc {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<events::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let filter = filter_of(&request)?;
        if let Some(name) = subscription_name(&request.subscription)? {
            return self.subscribe_named(name, filter).await;
        }
        let place = self.take_place()?;
        let metrics = self.service.metrics().clone();
        let (events_out, events) = mpsc::channel(STREAM_BUFFER);
        let (ending, ended) = oneshot::channel();
        let subscriber = Subscriber {
            filter,
            events_in: self.hub.subscribe(),
            events_out,
            stall: self.stall,
            shutdown: self.shutdown.clone(),
            metrics,
        };
        tokio::spawn(subscriber.serve(place, ending));
        Ok(Response::new(outlet(events, ended, None)))
    }

    async fn ack(
        &self,
        request: Request<events::AckRequest>,
    ) -> Result<Response<events::AckResponse>, Status> {
        let request = request.into_inner();
        let name = subscription_name(&request.subscription)?.ok_or_else(|| {
            Status::invalid_argument("invalid subscription: required (the name subscribed with)")
        })?;
        let outcome = self
            .named()?
            .ack(name, request.sequence)
            .await
            .map_err(Error::from)?;
        let outcome = match outcome {
            AckOutcome::Acked => "acked",
            AckOutcome::Duplicate => "duplicate",
            AckOutcome::Beyond { last } => {
                return Err(Status::invalid_argument(format!(
                    "invalid sequence: {} is not an event of the log (the latest is {last})",
                    request.sequence
                )));
            }
        };
        Ok(Response::new(events::AckResponse {
            outcome: outcome.to_owned(),
        }))
    }

    async fn report_result(
        &self,
        request: Request<events::ReportResultRequest>,
    ) -> Result<Response<events::ReportResultResponse>, Status> {
        let request = request.into_inner();
        let id = parse_id(&request.id)?;
        let result = ResultStatus::from_i32(request.status).ok_or_else(|| {
            Status::invalid_argument(
                "invalid status: must be JOB_STATUS_SUCCEEDED or JOB_STATUS_FAILED",
            )
        })?;
        let report = RunReport::of(result, request.scheduled_key).with_details(
            request.error,
            request.executor,
            request.r#final,
            request.retry_after_ms,
        )?;
        let recorded = self.service.record_result(id, &report).await?;
        let outcome = match recorded {
            ResultOutcome::Stored => "stored",
            ResultOutcome::Duplicate => "duplicate",
            ResultOutcome::Stale(_) => "stale",
            ResultOutcome::Ignored(status) => {
                return Err(Status::failed_precondition(format!(
                    "job {id} is {status:?}, not running"
                )));
            }
            ResultOutcome::UnknownJob => return Err(Error::NotFound(id).into()),
        };
        Ok(Response::new(events::ReportResultResponse {
            outcome: outcome.to_owned(),
        }))
    }
}
