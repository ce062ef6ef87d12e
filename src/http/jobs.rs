//! The job resources: each runs the `proto.JobsService` RPC it mirrors
//! (named in its doc), after the same token check, so that the HTTP API
//! and gRPC cannot differ in what they accept or answer.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use tonic::Request;

use super::{
    Api,
    error::ApiError,
    extract::{Body, Params},
    model::{
        CreateJob, Created, Done, Job, JobCounts, JobFields, JobsPage, JobsQuery, PageQuery,
        Preview, PreviewRequest, RunsPage,
    },
};
use crate::grpc::proto::{self, jobs_service_server::JobsService};

/// The header that makes a creation idempotent (its value is the job's
/// client key).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The client key a creation asks for: the body's `client_key` or the
/// `Idempotency-Key` header, which must agree when both are given.
fn client_key(headers: &HeaderMap, body: &mut CreateJob) -> Result<(), ApiError> {
    let Some(header) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(());
    };
    let key = header.to_str().map_err(|_| {
        ApiError::invalid(
            Some("client_key".into()),
            "the Idempotency-Key header must be visible ASCII",
        )
    })?;
    match &body.client_key {
        Some(given) if given != key => Err(ApiError::invalid(
            Some("client_key".into()),
            "client_key and the Idempotency-Key header differ",
        )),
        _ => {
            body.client_key = Some(key.to_owned());
            Ok(())
        }
    }
}

/// Creates a job (CreateJob).
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJob,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes the creation idempotent: the job's client key")),
    responses((status = 201, description = "Created", body = Created,
        headers(("Location" = String, description = "The job's resource")))))]
pub async fn create_job(
    State(api): State<Api>,
    headers: HeaderMap,
    mut body: CreateJob,
) -> Result<impl IntoResponse, ApiError> {
    client_key(&headers, &mut body)?;
    let request = Request::new(proto::CreateJobRequest::from(body));
    let created = api.jobs.create_job(request).await?.into_inner();
    let location = format!("/v1/jobs/{}", created.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(Created { id: created.id }),
    ))
}

/// A job (GetJob).
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$")),
    responses((status = 200, description = "The job", body = Job)))]
pub async fn get_job(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = api.jobs.get_job(Request::new(proto::GetJobRequest { id }));
    Ok(Json(job.await?.into_inner().into()))
}

/// A page of jobs, by schedule time (ListJobs).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobsQuery),
    responses((status = 200, description = "A page of jobs", body = JobsPage)))]
pub async fn list_jobs(
    State(api): State<Api>,
    Params(query): Params<JobsQuery>,
) -> Result<Json<JobsPage>, ApiError> {
    let (page, size) = api.page(query.page, query.size);
    let request = query.into_request(page, size);
    let listed = api.jobs.list_jobs(Request::new(request)).await?;
    Ok(Json(listed.into_inner().into()))
}

/// How many jobs there are, in all and by status, type, schedule kind
/// and paused (CountJobs).
#[utoipa::path(get, path = "/v1/stats/jobs", tag = "jobs",
    responses((status = 200, description = "The counts", body = JobCounts)))]
pub async fn count_jobs(State(api): State<Api>) -> Result<Json<JobCounts>, ApiError> {
    let counted = api
        .jobs
        .count_jobs(Request::new(proto::CountJobsRequest {}));
    Ok(Json(counted.await?.into_inner().into()))
}

/// Replaces a job's fields (UpdateJob).
#[utoipa::path(put, path = "/v1/jobs/{id}", tag = "jobs", request_body = JobFields,
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$")),
    responses((status = 200, description = "Updated", body = Done)))]
pub async fn update_job(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(body): Body<JobFields>,
) -> Result<Json<Done>, ApiError> {
    let request = Request::new(body.into_request(id));
    let message = api.jobs.update_job(request).await?.into_inner().message;
    Ok(Json(Done { message }))
}

/// Deletes a job and its runs (DeleteJob).
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$")),
    responses((status = 200, description = "Deleted", body = Done)))]
pub async fn delete_job(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    let request = Request::new(proto::DeleteJobRequest { id });
    let message = api.jobs.delete_job(request).await?.into_inner().message;
    Ok(Json(Done { message }))
}

/// Pauses a recurring job (PauseJob).
#[utoipa::path(post, path = "/v1/jobs/{id}/pause", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$")),
    responses((status = 200, description = "The paused job", body = Job)))]
pub async fn pause_job(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = api
        .jobs
        .pause_job(Request::new(proto::PauseJobRequest { id }));
    Ok(Json(job.await?.into_inner().into()))
}

/// Resumes a paused recurring job (ResumeJob).
#[utoipa::path(post, path = "/v1/jobs/{id}/resume", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$")),
    responses((status = 200, description = "The resumed job", body = Job)))]
pub async fn resume_job(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = api
        .jobs
        .resume_job(Request::new(proto::ResumeJobRequest { id }));
    Ok(Json(job.await?.into_inner().into()))
}

/// Fires a recurring job now, out of its schedule (TriggerJob).
#[utoipa::path(post, path = "/v1/jobs/{id}/trigger", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$")),
    responses((status = 200, description = "The job, firing", body = Job)))]
pub async fn trigger_job(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = api
        .jobs
        .trigger_job(Request::new(proto::TriggerJobRequest { id }));
    Ok(Json(job.await?.into_inner().into()))
}

/// Runs a finished job again now, with fresh attempts (RerunJob).
#[utoipa::path(post, path = "/v1/jobs/{id}/rerun", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$")),
    responses((status = 200, description = "The job, scheduled now", body = Job)))]
pub async fn rerun_job(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = api
        .jobs
        .rerun_job(Request::new(proto::RerunJobRequest { id }));
    Ok(Json(job.await?.into_inner().into()))
}

/// A job's runs, newest first, the run in flight first (ListJobRuns).
#[utoipa::path(get, path = "/v1/jobs/{id}/runs", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (24 hex digits)", pattern = "^[0-9a-fA-F]{24}$"), PageQuery),
    responses((status = 200, description = "A page of runs", body = RunsPage)))]
pub async fn list_runs(
    State(api): State<Api>,
    Path(id): Path<String>,
    Params(page): Params<PageQuery>,
) -> Result<Json<RunsPage>, ApiError> {
    let (page, size) = api.page(page.page, page.size);
    let request = proto::ListJobRunsRequest { id, page, size };
    let listed = api.jobs.list_job_runs(Request::new(request)).await?;
    Ok(Json(listed.into_inner().into()))
}

/// The next occurrences of a schedule, or of a job's (PreviewSchedule).
#[utoipa::path(post, path = "/v1/preview", tag = "jobs", request_body = PreviewRequest,
    responses((status = 200, description = "The next occurrences", body = Preview)))]
pub async fn preview(
    State(api): State<Api>,
    Body(body): Body<PreviewRequest>,
) -> Result<Json<Preview>, ApiError> {
    let request = Request::new(proto::PreviewScheduleRequest::from(body));
    let previewed = api.jobs.preview_schedule(request).await?;
    Ok(Json(previewed.into_inner().into()))
}
