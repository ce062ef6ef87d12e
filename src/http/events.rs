//! The `scheduler.v1.JobEvents` resources: the event stream as
//! Server-Sent Events, run results, and acknowledgements of a named
//! subscription. Each runs the RPC it mirrors, so the filters, the
//! subscriber bound, the stall rule and the lag notices are `Subscribe`'s.
//!
//! An event is sent as `event: <kind>` (`create`, `update`, `run`,
//! `dead_letter`, `delete`, `result`) with the event as JSON in `data` and, on a named
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
use futures::{FutureExt, Stream, StreamExt, stream};
use serde::{
    Deserialize, Serialize,
    de::{DeserializeOwned, IntoDeserializer},
};
use tonic::{Code, Request};
use utoipa::{IntoParams, ToSchema};

use super::{
    Api,
    error::ApiError,
    extract::{Body, Params},
    model::{EventKind, JobEvent, JobStatus, JobType, Lagged},
};
use crate::grpc::{
    auth::Caller,
    scheduler::v1::{self as wire, job_events_server::JobEvents, subscribe_response::Item},
};

/// Which events to stream; empty lists mean every one.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Kinds, comma-separated (`create,update,run,dead_letter,delete,result`).
    pub kinds: Option<String>,
    /// Job types, comma-separated (`email,sms`).
    pub job_types: Option<String>,
    /// A durable subscription's name (embedded store only): resumes where
    /// the name left off.
    pub subscription: Option<String>,
}

/// The words of a comma-separated list as wire numbers of `T`'s enum
/// (`kinds=create,run`); a word `T` does not know names `field`.
fn words<T: DeserializeOwned + Into<i32>>(
    list: Option<&str>,
    field: &str,
) -> Result<Vec<i32>, ApiError> {
    let words = list.unwrap_or_default().split(',').map(str::trim);
    words
        .filter(|word| !word.is_empty())
        .map(|word| {
            let parsed: Result<T, serde::de::value::Error> =
                T::deserialize(word.into_deserializer());
            parsed
                .map(Into::into)
                .map_err(|err| ApiError::invalid(Some(field.into()), err.to_string()))
        })
        .collect()
}

impl TryFrom<EventsQuery> for wire::SubscribeRequest {
    type Error = ApiError;

    fn try_from(query: EventsQuery) -> Result<Self, ApiError> {
        Ok(wire::SubscribeRequest {
            kinds: words::<EventKind>(query.kinds.as_deref(), "kinds")?,
            job_types: words::<JobType>(query.job_types.as_deref(), "job_types")?,
            subscription: query.subscription.unwrap_or_default(),
        })
    }
}

/// A message of the stream as an SSE event.
fn sse_event(item: Result<wire::SubscribeResponse, tonic::Status>) -> Event {
    let event = match item.map(|response| response.item) {
        Ok(Some(Item::Event(event))) => job_event(event),
        Ok(Some(Item::Lagged(lagged))) => Event::default()
            .event("lagged")
            .json_data(Lagged::from(lagged)),
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
    let event = JobEvent::from(event);
    let sequence = event.sequence;
    let sse = Event::default().event(event.kind.word()).json_data(event)?;
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
