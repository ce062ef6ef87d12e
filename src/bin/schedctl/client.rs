//! The connection to the service: the address and TLS, the token sent with
//! every call, and the deadline of each call (`--timeout-secs`).

use std::{future::Future, time::Duration};

use scheduler_service::grpc::{
    proto::jobs_service_client::JobsServiceClient,
    scheduler::v1::job_events_client::JobEventsClient,
};
use tonic::{
    Request, Response, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::{args::Global, errors::CliError};

/// A channel that adds the token to every call.
pub type Authed = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every call, when a token was given.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Clients of both services over one connection.
pub struct Client {
    jobs: JobsServiceClient<Authed>,
    events: JobEventsClient<Authed>,
    timeout: Duration,
}

/// Connects to `--addr` (within `--timeout-secs`).
pub async fn connect(global: &Global) -> Result<Client, CliError> {
    let timeout = Duration::from_secs(global.timeout_secs);
    let endpoint = endpoint(global)?.connect_timeout(timeout);
    let channel = tokio::time::timeout(timeout, endpoint.connect())
        .await
        .map_err(|_| CliError::Timeout(global.timeout_secs))?
        .map_err(|err| CliError::connect(&global.addr, &err))?;
    let bearer = Bearer(global.token.clone());
    Ok(Client {
        jobs: JobsServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        events: JobEventsClient::with_interceptor(channel, bearer),
        timeout,
    })
}

/// The endpoint of `--addr`, with TLS for https or a `--ca-file`.
fn endpoint(global: &Global) -> Result<Endpoint, CliError> {
    let endpoint = Endpoint::from_shared(global.addr.clone())
        .map_err(|err| CliError::connect(&global.addr, &err))?;
    match tls_config(global)? {
        Some(tls) => endpoint
            .tls_config(tls)
            .map_err(|err| CliError::connect(&global.addr, &err)),
        None => Ok(endpoint),
    }
}

/// TLS trusting `--ca-file`, or Mozilla's roots for an https address
/// without one; none for a plain http address.
fn tls_config(global: &Global) -> Result<Option<ClientTlsConfig>, CliError> {
    match &global.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| CliError::Input {
                what: format!("--ca-file {}", path.display()),
                source,
            })?;
            let ca = Certificate::from_pem(pem);
            Ok(Some(ClientTlsConfig::new().ca_certificate(ca)))
        }
        None if global.addr.starts_with("https:") => {
            Ok(Some(ClientTlsConfig::new().with_enabled_roots()))
        }
        None => Ok(None),
    }
}

impl Client {
    /// A JobsService client (a cheap handle on the one connection).
    pub fn jobs(&self) -> JobsServiceClient<Authed> {
        self.jobs.clone()
    }

    /// A JobEvents client (a cheap handle on the one connection).
    pub fn events(&self) -> JobEventsClient<Authed> {
        self.events.clone()
    }

    /// `message` as a request that tells the service the deadline too
    /// (`grpc-timeout`), for unary calls.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Waits for `call`'s answer within the deadline.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CliError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| CliError::Timeout(self.timeout.as_secs()))?
            .map(Response::into_inner)
            .map_err(CliError::Status)
    }
}
