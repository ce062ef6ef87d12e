//! The `JobsService` handlers: convert the request, call the service, convert
//! the answer. No business rule lives here.

use tonic::{Request, Response, Status};

use chrono::TimeDelta;

use super::{
    convert::{filter_of, parse_id},
    history::Paging,
    proto,
    recurrence::{DEFAULT_PREVIEW_COUNT, new_job, occurrence_message, recurrence_spec, update_of},
};
use crate::clock::span;
use crate::{
    domain::{Error, Field, PageRequest},
    service::{JobService, PREVIEW_MAX},
};

/// The gRPC face of [`JobService`].
#[derive(Clone)]
pub struct JobsGrpc {
    service: JobService,
}

impl JobsGrpc {
    /// Serves `service` over gRPC.
    pub fn new(service: JobService) -> Self {
        JobsGrpc { service }
    }

    /// The shortest interval a recurring job may have.
    fn min_interval(&self) -> TimeDelta {
        span(self.service.settings().min_interval)
    }
}

#[tonic::async_trait]
impl proto::jobs_service_server::JobsService for JobsGrpc {
    async fn create_job(
        &self,
        request: Request<proto::CreateJobRequest>,
    ) -> Result<Response<proto::CreateJobResponse>, Status> {
        let new = new_job(
            request.into_inner(),
            self.min_interval(),
            &self.service.settings().retry,
            self.service.clock().now_ms(),
        )?;
        let job = self.service.create_job(new).await?;
        Ok(Response::new(proto::CreateJobResponse {
            id: job.id.to_hex(),
        }))
    }

    async fn get_job(
        &self,
        request: Request<proto::GetJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        let job = self.service.get(id).await?;
        Ok(Response::new(job.into()))
    }

    async fn list_jobs(
        &self,
        request: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        let req = request.into_inner();
        let page = PageRequest::new(req.page, req.size, self.service.settings().max_page_size)?;
        let filter = filter_of(&req)?;
        let listed = self.service.list(page, &filter).await?;
        let paging = Paging::of(page, listed.total);
        Ok(Response::new(proto::ListJobsResponse {
            total_count: paging.total_count,
            total_pages: paging.total_pages,
            page: paging.page,
            size: paging.size,
            has_more: paging.has_more,
            jobs: listed.jobs.into_iter().map(Into::into).collect(),
        }))
    }

    async fn count_jobs(
        &self,
        _request: Request<proto::CountJobsRequest>,
    ) -> Result<Response<proto::CountJobsResponse>, Status> {
        Ok(Response::new(self.service.tally().await?.into()))
    }

    async fn list_job_runs(
        &self,
        request: Request<proto::ListJobRunsRequest>,
    ) -> Result<Response<proto::ListJobRunsResponse>, Status> {
        let req = request.into_inner();
        let id = parse_id(&req.id)?;
        let page = PageRequest::new(req.page, req.size, self.service.settings().max_page_size)?;
        let listed = self.service.runs(id, page).await?;
        let paging = Paging::of(page, listed.total);
        Ok(Response::new(proto::ListJobRunsResponse {
            total_count: paging.total_count,
            total_pages: paging.total_pages,
            page: paging.page,
            size: paging.size,
            has_more: paging.has_more,
            runs: listed.runs.into_iter().map(Into::into).collect(),
        }))
    }

    async fn update_job(
        &self,
        request: Request<proto::UpdateJobRequest>,
    ) -> Result<Response<proto::UpdateJobResponse>, Status> {
        let now = self.service.clock().now_ms();
        let update = update_of(
            request.into_inner(),
            self.min_interval(),
            &self.service.settings().retry,
            now,
        )?;
        let id = update.id;
        let (spec, recurrence, retry) = (update.spec, update.recurrence, update.retry);
        self.service
            .update_job(id, spec, recurrence, retry, Some(now))
            .await?;
        Ok(Response::new(proto::UpdateJobResponse {
            message: format!("job {id} updated"),
        }))
    }

    async fn delete_job(
        &self,
        request: Request<proto::DeleteJobRequest>,
    ) -> Result<Response<proto::DeleteJobResponse>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        self.service.delete(id).await?;
        Ok(Response::new(proto::DeleteJobResponse {
            message: format!("job {id} deleted"),
        }))
    }

    async fn pause_job(
        &self,
        request: Request<proto::PauseJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        Ok(Response::new(
            self.service.set_paused(id, true).await?.into(),
        ))
    }

    async fn resume_job(
        &self,
        request: Request<proto::ResumeJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        Ok(Response::new(
            self.service.set_paused(id, false).await?.into(),
        ))
    }

    async fn trigger_job(
        &self,
        request: Request<proto::TriggerJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        Ok(Response::new(self.service.trigger(id).await?.into()))
    }

    async fn rerun_job(
        &self,
        request: Request<proto::RerunJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        Ok(Response::new(self.service.rerun(id).await?.into()))
    }

    async fn preview_schedule(
        &self,
        request: Request<proto::PreviewScheduleRequest>,
    ) -> Result<Response<proto::PreviewScheduleResponse>, Status> {
        let req = request.into_inner();
        let count = match req.count {
            0 => DEFAULT_PREVIEW_COUNT,
            n => usize::try_from(n).map_err(|_| {
                Error::invalid(
                    Field::Count,
                    format!("must be from 1 to {PREVIEW_MAX}, got {n}"),
                )
            })?,
        };
        let preview = match (req.id.is_empty(), req.recurrence) {
            (false, None) => self.service.preview_job(parse_id(&req.id)?, count).await?,
            (true, Some(msg)) => {
                let now = self.service.clock().now_ms();
                let spec = recurrence_spec(msg, self.min_interval(), now)?;
                self.service.preview(&spec.timing, count)?
            }
            _ => Err(Error::invalid(Field::Id, "set either id or recurrence"))?,
        };
        Ok(Response::new(proto::PreviewScheduleResponse {
            occurrences: preview.occurrences.iter().map(occurrence_message).collect(),
            description: preview.description,
        }))
    }
}
