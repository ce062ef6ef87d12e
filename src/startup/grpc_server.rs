//! The gRPC server of the service: `JobsService` and `JobEvents` behind the
//! token and role check and the call limits, health and reflection open,
//! the message size limit and request timeout on everything, the bounds on
//! streams and connections (HTTP/2 keepalive, streams per connection), and
//! TLS when configured.

use tonic::transport::server::Router;

use super::StartupError;
use crate::{
    config::SecuritySettings,
    grpc::{
        CallLimits, JobEventsGrpc, JobsGrpc, Observed,
        auth::{Authenticated, Authenticator},
        proto, scheduler,
    },
    service::JobService,
};

/// The server with every service added, ready to serve.
///
/// JobsService and JobEvents calls pass the token check (when a key is set:
/// admin tokens everywhere, executor tokens on JobEvents' Subscribe and
/// ReportResult) and at most `GRPC_MAX_CONCURRENT_CALLS` of each run at once; reflection and health are
/// open. Every service refuses request messages over
/// `GRPC_MAX_MESSAGE_BYTES` (RESOURCE_EXHAUSTED), and every call is
/// cancelled after `GRPC_REQUEST_TIMEOUT_MS` (tonic answers CANCELLED).
/// Each connection carries at most `GRPC_MAX_STREAMS_PER_CONNECTION`
/// streams and is pinged every `GRPC_KEEPALIVE_INTERVAL_SECS`; one that
/// does not answer within `GRPC_KEEPALIVE_TIMEOUT_SECS` is closed, with its
/// calls and subscriber streams.
pub(super) async fn router(
    service: &JobService,
    events: JobEventsGrpc,
    security: &SecuritySettings,
) -> Result<Router, StartupError> {
    let max_message = security.max_message_bytes;
    let metrics = service.metrics().clone();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<proto::jobs_service_server::JobsServiceServer<JobsGrpc>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| StartupError::Server(e.to_string()))?
        .max_decoding_message_size(max_message);
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| StartupError::Server(e.to_string()))?
        .max_decoding_message_size(max_message);
    let health_service = health_service.max_decoding_message_size(max_message);
    let authenticator = || Authenticator::from_key(security.auth_public_key.as_ref());
    let jobs = Authenticated::new(
        proto::jobs_service_server::JobsServiceServer::new(JobsGrpc::new(service.clone()))
            .max_decoding_message_size(max_message),
        authenticator(),
    );
    // Executors change job state through ReportResult: same token check.
    let events = Authenticated::new(
        scheduler::v1::job_events_server::JobEventsServer::new(events)
            .max_decoding_message_size(max_message),
        authenticator(),
    );
    let builder = match &security.tls {
        Some(tls) => tonic::transport::Server::builder()
            .tls_config(tls.server_config())
            .map_err(|e| StartupError::Server(format!("TLS: {e}")))?,
        None => tonic::transport::Server::builder(),
    };
    let max_calls = security.max_concurrent_calls;
    let streams = &security.streams;
    Ok(builder
        .timeout(security.request_timeout)
        .max_concurrent_streams(streams.max_streams_per_connection)
        .http2_keepalive_interval(Some(streams.keepalive_interval))
        .http2_keepalive_timeout(Some(streams.keepalive_timeout))
        .add_service(Observed::new(
            CallLimits::with_max_concurrent_calls(jobs, max_calls),
            metrics.clone(),
        ))
        .add_service(Observed::new(
            CallLimits::with_max_concurrent_calls(events, max_calls),
            metrics,
        ))
        .add_service(CallLimits::new(health_service))
        .add_service(CallLimits::new(reflection_v1))
        .add_service(CallLimits::new(reflection_v1alpha)))
}
