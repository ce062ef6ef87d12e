//! The `scheduler.v1.JobEvents` handlers: job events streamed to executors
//! from the in-process hub, and run results reported back over gRPC, so that
//! the loop closes without Kafka.

use std::{collections::HashSet, pin::Pin};

use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{convert::parse_id, proto, scheduler::v1 as events};
use crate::{
    broker::{EventKind, hub::EventHub},
    domain::{Error, Field, JobType, ResultStatus},
    service::JobService,
    store::ResultOutcome,
};

/// Events buffered per subscriber between the hub and its gRPC stream.
const STREAM_BUFFER: usize = 256;

/// The gRPC face of the event hub and of run results.
#[derive(Clone)]
pub struct JobEventsGrpc {
    service: JobService,
    hub: EventHub,
    shutdown: CancellationToken,
}

impl JobEventsGrpc {
    /// Serves `hub`'s events and `service`'s results; streams end at `shutdown`.
    pub fn new(service: JobService, hub: EventHub, shutdown: CancellationToken) -> Self {
        JobEventsGrpc {
            service,
            hub,
            shutdown,
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

type EventStream = Pin<Box<dyn Stream<Item = Result<events::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl events::job_events_server::JobEvents for JobEventsGrpc {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<events::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = Filter::try_from(request.into_inner())?;
        let mut events_in = self.hub.subscribe();
        let (events_out, stream) = mpsc::channel(STREAM_BUFFER);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    () = shutdown.cancelled() => return,
                    received = events_in.recv() => match received {
                        Ok(event) if filter.admits(event.kind, event.job.spec.job_type) => {
                            events::subscribe_response::Item::Event(events::JobEvent {
                                kind: wire_kind(event.kind).into(),
                                scheduled_key: event.job.fire_token,
                                job: Some(proto::Job::from(event.job.clone())),
                            })
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "an event subscriber fell behind");
                            events::subscribe_response::Item::Lagged(events::Lagged { missed })
                        }
                        Err(RecvError::Closed) => return,
                    },
                };
                let response = events::SubscribeResponse { item: Some(item) };
                if events_out.send(Ok(response)).await.is_err() {
                    return; // the subscriber went away
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
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
        let outcome = match self.service.record_result(id, result).await? {
            ResultOutcome::Stored => "stored",
            ResultOutcome::Duplicate => "duplicate",
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
