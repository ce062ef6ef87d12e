//! The `JobsService` handlers: convert the request, call the service, convert
//! the answer. No business rule lives here.

use tonic::{Request, Response, Status};

use super::{convert::parse_id, proto};
use crate::{
    domain::{JobSpec, PageRequest},
    service::JobService,
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
}

#[tonic::async_trait]
impl proto::jobs_service_server::JobsService for JobsGrpc {
    async fn create_job(
        &self,
        request: Request<proto::CreateJobRequest>,
    ) -> Result<Response<proto::CreateJobResponse>, Status> {
        let spec = JobSpec::try_from(request.into_inner())?;
        let job = self.service.create(spec).await?;
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
        let listed = self.service.list(page).await?;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(Response::new(proto::ListJobsResponse {
            total_count: count(listed.total),
            total_pages: count(page.total_pages(listed.total)),
            page: count(page.page),
            size: count(page.size),
            has_more: page.has_more(listed.total),
            jobs: listed.jobs.into_iter().map(Into::into).collect(),
        }))
    }

    async fn update_job(
        &self,
        request: Request<proto::UpdateJobRequest>,
    ) -> Result<Response<proto::UpdateJobResponse>, Status> {
        let (id, spec) = <(_, JobSpec)>::try_from(request.into_inner())?;
        self.service.update(id, spec).await?;
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
}
