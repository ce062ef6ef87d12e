//! The `scheduler.v1.JobEvents` resources: the event stream as
//! Server-Sent Events, run results, and acknowledgements of a named
//! subscription. Each runs the RPC it mirrors, so the filters, the
//! subscriber bound, the stall rule and the lag notices are `Subscribe`'s.
//!
//! An event is sent as `event: <kind>` (`create`, `update`, `run`,
//! `dead_letter`, `delete`) with the event as JSON in `data` and, on a named
//! subscription, its sequence as the SSE `id`; a lag notice as
//! `event: lagged` with `{"missed": n}`; the end of a stream the service
//! ends (shutdown, a subscriber that did not read, an expired token) as
//! `event: error` with the error object.

use std::convert::Infallible;

use axum::{
    Extension, Json,
    extract::{Path, State},
    response::sse::{Event, KeepAlive, Sse},
};
use chrono::{DateTime, Utc};
use futures::{FutureExt, Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use tonic::{Code, Request};
use utoipa::{IntoParams, ToSchema};

use super::{
    Api,
    error::ApiError,
    extract::{Body, Params},
    model::{Job, JobStatus, JobType},
};
use crate::grpc::{
    auth::Caller,
    scheduler::v1::{self as wire, job_events_server::JobEvents, subscribe_response::Item},
};

/// What kind of change an event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A job was created.
    Create,
    /// A job was updated.
    Update,
    /// A job fired.
    Run,
    /// A job failed for good.
    DeadLetter,
    /// A job was retired.
    Delete,
}

impl EventKind {
    const ALL: [(EventKind, wire::EventKind, &'static str); 5] = [
        (EventKind::Create, wire::EventKind::Create, "create"),
        (EventKind::Update, wire::EventKind::Update, "update"),
        (EventKind::Run, wire::EventKind::Run, "run"),
        (
            EventKind::DeadLetter,
            wire::EventKind::DeadLetter,
            "dead_letter",
        ),
        (EventKind::Delete, wire::EventKind::Delete, "delete"),
    ];

    /// The kind a word names.
    fn parse(word: &str) -> Option<wire::EventKind> {
        Self::ALL
            .iter()
            .find(|(_, _, name)| *name == word)
            .map(|(_, kind, _)| *kind)
    }

    /// The word of a wire kind (`None`: unspecified).
    fn word(kind: i32) -> Option<&'static str> {
        Self::ALL
            .iter()
            .find(|(_, wire, _)| *wire as i32 == kind)
            .map(|(_, _, name)| *name)
    }
}

/// Which events to stream; empty lists mean every one.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Kinds, comma-separated (`create,update,run,dead_letter,delete`).
    pub kinds: Option<String>,
    /// Job types, comma-separated (`email,sms`).
    pub job_types: Option<String>,
    /// A durable subscription's name (embedded store only): resumes where
    /// the name left off.
    pub subscription: Option<String>,
}

/// The words of a comma-separated list, each parsed by `parse`.
fn words<T>(
    list: Option<&str>,
    field: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let words = list.unwrap_or_default().split(',').map(str::trim);
    words
        .filter(|word| !word.is_empty())
        .map(|word| {
            parse(word).ok_or_else(|| {
                ApiError::invalid(Some(field.into()), format!("unknown value {word:?}"))
            })
        })
        .collect()
}

impl TryFrom<EventsQuery> for wire::SubscribeRequest {
    type Error = ApiError;

    fn try_from(query: EventsQuery) -> Result<Self, ApiError> {
        let job_type = |word: &str| match word {
            "email" => Some(i32::from(JobType::Email)),
            "sms" => Some(i32::from(JobType::Sms)),
            _ => None,
        };
        Ok(wire::SubscribeRequest {
            kinds: words(query.kinds.as_deref(), "kinds", |w| {
                EventKind::parse(w).map(|k| k as i32)
            })?,
            job_types: words(query.job_types.as_deref(), "job_types", job_type)?,
            subscription: query.subscription.unwrap_or_default(),
        })
    }
}

/// One event of the stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    /// What changed.
    pub kind: EventKind,
    /// The job as the change left it.
    pub job: Option<Job>,
    /// A run event's fire token (the Kafka event's `ScheduledKey`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_key: Option<i64>,
    /// Its place in a named subscription's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// A recurring job's occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<DateTime<Utc>>,
    /// Every occurrence a catch-up run stands for.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub occurrences: Vec<DateTime<Utc>>,
}

/// The notice that events were missed (a subscriber that fell behind).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Lagged {
    /// How many.
    pub missed: u64,
}

/// A message of the stream as an SSE event.
fn sse_event(item: Result<wire::SubscribeResponse, tonic::Status>) -> Event {
    let event = match item.map(|response| response.item) {
        Ok(Some(Item::Event(event))) => job_event(event),
        Ok(Some(Item::Lagged(lagged))) => Event::default().event("lagged").json_data(Lagged {
            missed: lagged.missed,
        }),
        Ok(None) => return Event::default().comment("empty"),
        Err(status) => return error_event(ApiError::from(status)),
    };
    event.unwrap_or_else(|err| Event::default().comment(format!("unencodable: {err}")))
}

/// The event that ends a stream the service ended.
fn error_event(err: ApiError) -> Event {
    let event = Event::default().event("error");
    match serde_json::to_string(&err) {
        Ok(json) => event.data(json),
        Err(_) => event.data(err.message),
    }
}

fn job_event(event: wire::JobEvent) -> Result<Event, axum::Error> {
    let word = EventKind::word(event.kind).unwrap_or("unspecified");
    let sequence = (event.sequence != 0).then_some(event.sequence);
    let time = |ts: prost_types::Timestamp| {
        DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
    };
    let json = JobEvent {
        kind: EventKind::ALL
            .iter()
            .find(|(_, _, name)| *name == word)
            .map_or(EventKind::Update, |(kind, _, _)| *kind),
        job: event.job.map(Into::into),
        scheduled_key: (event.scheduled_key != 0).then_some(event.scheduled_key),
        sequence,
        occurrence: event.occurrence.and_then(time),
        occurrences: event.occurrences.into_iter().filter_map(time).collect(),
    };
    let sse = Event::default().event(word).json_data(json)?;
    Ok(match sequence {
        Some(sequence) => sse.id(sequence.to_string()),
        None => sse,
    })
}

/// Streams job events as they happen (Subscribe), as Server-Sent Events.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "A stream of events \
        (`event: create|update|run|dead_letter|delete` with a JobEvent, \
        `event: lagged` with a Lagged, `event: error` with an ApiError)",
        content_type = "text/event-stream", body = JobEvent)))]
pub async fn subscribe(
    State(api): State<Api>,
    caller: Option<Extension<Caller>>,
    Params(query): Params<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let request = wire::SubscribeRequest::try_from(query)?;
    let events = api.events.subscribe(Request::new(request)).await?;
    let events = events.into_inner().map(sse_event);
    // A token's stream ends when the token does, as over gRPC.
    let expiry = match caller.map(|Extension(caller)| caller.expires) {
        Some(at) => tokio::time::sleep_until(at).boxed(),
        None => futures::future::pending::<()>().boxed(),
    };
    let stream = stream::unfold(Some(events.take_until(expiry)), |events| async move {
        let mut events = events?;
        match events.next().await {
            Some(event) => Some((Ok(event), Some(events))),
            None => events.take_result().map(|()| {
                let expired = ApiError::new(Code::Unauthenticated, "token expired");
                (Ok(error_event(expired)), None)
            }),
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A run's result, as an executor reports it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReportResult {
    /// `succeeded` or `failed`.
    pub status: JobStatus,
    /// The firing the result belongs to (the run event's `ScheduledKey`).
    #[serde(default)]
    pub scheduled_key: Option<i64>,
    /// What went wrong (at most 4 KiB).
    #[serde(default)]
    pub error: Option<String>,
    /// Who ran it (at most 4 KiB).
    #[serde(default)]
    pub executor: Option<String>,
    /// A failure that no retry would mend.
    #[serde(default, rename = "final")]
    pub is_final: bool,
    /// The delay before a retry, when the executor knows it.
    #[serde(default)]
    pub retry_after_ms: Option<i64>,
}

/// What became of a result or an acknowledgement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Outcome {
    /// In one word (`stored`, `stale`, `duplicate`, ...).
    pub outcome: String,
}

/// Reports a run's result (ReportResult).
#[utoipa::path(post, path = "/v1/jobs/{id}/result", tag = "events",
    request_body = ReportResult,
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$")),
    responses((status = 200, description = "What became of the result", body = Outcome)))]
pub async fn report_result(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(body): Body<ReportResult>,
) -> Result<Json<Outcome>, ApiError> {
    let request = wire::ReportResultRequest {
        id,
        status: body.status.into(),
        scheduled_key: body.scheduled_key,
        error: body.error,
        executor: body.executor,
        r#final: body.is_final,
        retry_after_ms: body.retry_after_ms,
    };
    let answer = api.events.report_result(Request::new(request)).await?;
    Ok(Json(Outcome {
        outcome: answer.into_inner().outcome,
    }))
}

/// What a named subscription has handled.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Ack {
    /// The sequence of the last event handled.
    pub sequence: u64,
}

/// Records what a named subscription has handled (Ack).
#[utoipa::path(post, path = "/v1/subscriptions/{name}/ack", tag = "events",
    request_body = Ack,
    params(("name" = String, Path, description = "The subscription's name")),
    responses((status = 200, description = "What became of the acknowledgement", body = Outcome)))]
pub async fn ack(
    State(api): State<Api>,
    Path(name): Path<String>,
    Body(body): Body<Ack>,
) -> Result<Json<Outcome>, ApiError> {
    let request = wire::AckRequest {
        subscription: name,
        sequence: body.sequence,
    };
    let answer = api.events.ack(Request::new(request)).await?;
    Ok(Json(Outcome {
        outcome: answer.into_inner().outcome,
    }))
}
