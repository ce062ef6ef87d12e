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

use std::{collections::HashSet, pin::Pin, sync::Arc, time::Duration};

use futures::{
    Stream, StreamExt,
    stream::{self, PollNext},
};
use tokio::sync::{
    OwnedSemaphorePermit, Semaphore,
    broadcast::{self, error::RecvError},
    mpsc::{self, error::SendTimeoutError},
    oneshot,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    convert::parse_id,
    proto,
    scheduler::v1::{self as events, subscribe_response::Item},
};
use crate::{
    broker::{
        EventKind,
        hub::{EventHub, HubEvent},
    },
    config::StreamSettings,
    domain::{Error, Field, JobType, ResultStatus},
    service::JobService,
    store::ResultOutcome,
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
    shutdown: CancellationToken,
    /// One permit per open subscriber stream.
    places: Arc<Semaphore>,
    max_subscribers: usize,
    stall: Duration,
}

impl JobEventsGrpc {
    /// Serves `hub`'s events and `service`'s results; streams end at
    /// `shutdown`, and are bounded by `limits`.
    pub fn new(
        service: JobService,
        hub: EventHub,
        shutdown: CancellationToken,
        limits: &StreamSettings,
    ) -> Self {
        JobEventsGrpc {
            service,
            hub,
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
    }
}

/// What a subscriber asked for; empty sets mean everything.
struct Filter {
    kinds: HashSet<i32>,
    job_types: HashSet<i32>,
}

impl TryFrom<events::SubscribeRequest> for Filter {
    type Error = Status;

    fn try_from(request: events::SubscribeRequest) -> Result<Self, Status> {
        for kind in &request.kinds {
            if !matches!(events::EventKind::try_from(*kind), Ok(k) if k != events::EventKind::Unspecified)
            {
                return Err(Status::invalid_argument(format!(
                    "invalid kinds: unknown event kind {kind}"
                )));
            }
        }
        for job_type in &request.job_types {
            if JobType::from_i32(*job_type).is_none() {
                return Err(
                    Error::invalid(Field::JobType, format!("unknown job type {job_type}")).into(),
                );
            }
        }
        Ok(Filter {
            kinds: request.kinds.into_iter().collect(),
            job_types: request.job_types.into_iter().collect(),
        })
    }
}

impl Filter {
    fn admits(&self, kind: EventKind, job_type: JobType) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&(wire_kind(kind) as i32)))
            && (self.job_types.is_empty() || self.job_types.contains(&job_type.as_i32()))
    }
}

/// What a subscriber's buffer holds: an event of the hub (shared), or how
/// many the subscriber missed.
enum Outgoing {
    Event(Arc<HubEvent>),
    Lagged(u64),
}

impl From<Outgoing> for events::SubscribeResponse {
    fn from(outgoing: Outgoing) -> Self {
        let item = match outgoing {
            Outgoing::Event(event) => Item::Event(events::JobEvent {
                kind: wire_kind(event.kind).into(),
                scheduled_key: event.job.fire_token,
                job: Some(proto::Job::from(event.job.clone())),
            }),
            Outgoing::Lagged(missed) => Item::Lagged(events::Lagged { missed }),
        };
        events::SubscribeResponse { item: Some(item) }
    }
}

/// Why a subscriber's task ended.
enum End {
    /// The client went away: it cancelled, or its connection closed.
    Left,
    /// The client took no event for the stall limit while one waited.
    Stalled,
    /// The service is stopping.
    Stopping,
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
    filter: Filter,
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
        let (metrics, stall) = (self.metrics.clone(), self.stall.as_secs());
        let status = match self.forward().await {
            End::Left => return,
            End::Stalled => {
                tracing::warn!(stall_secs = stall, "dropped a subscriber that did not read");
                metrics.subscriber_dropped(SubscriberDrop::Stalled);
                Status::aborted(format!(
                    "subscriber did not read for {stall} s (its buffer stayed full); \
                     subscribe again"
                ))
            }
            End::Stopping => {
                metrics.subscriber_dropped(SubscriberDrop::Shutdown);
                Status::unavailable("the service is shutting down; subscribe again")
            }
        };
        // The stream may be gone already: then nobody is left to tell.
        let _ = ending.send(status);
        drop(place);
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

type EventStream = Pin<Box<dyn Stream<Item = Result<events::SubscribeResponse, Status>> + Send>>;

/// A subscriber's gRPC stream: its buffered events, or, as soon as the
/// service ended it, the status that says why (ahead of any event still
/// buffered; tonic ends the response at that status).
fn outlet(events: mpsc::Receiver<Outgoing>, ending: oneshot::Receiver<Status>) -> EventStream {
    // No status comes when the task ended because the client left.
    let ending = stream::once(ending).filter_map(|ended| std::future::ready(ended.ok().map(Err)));
    let events = ReceiverStream::new(events).map(|outgoing| Ok(outgoing.into()));
    Box::pin(stream::select_with_strategy(
        ending,
        events,
        |(): &mut ()| PollNext::Left,
    ))
}

#[tonic::async_trait]
impl events::job_events_server::JobEvents for JobEventsGrpc {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<events::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = Filter::try_from(request.into_inner())?;
        let permit = self.places.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(max = self.max_subscribers, "subscriber refused: too many");
            Status::resource_exhausted(format!(
                "too many subscribers (at most {}); retry with backoff",
                self.max_subscribers
            ))
        })?;
        let metrics = self.service.metrics().clone();
        let place = Place::take(metrics.clone(), permit);
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
        Ok(Response::new(outlet(events, ended)))
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
        let recorded = self
            .service
            .record_result(id, result, request.scheduled_key)
            .await?;
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
