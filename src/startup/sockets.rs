//! The service's listening sockets: gRPC, HTTP and metrics, bound
//! together before anything else starts.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpListener;

use super::StartupError;
use crate::{config::Settings, http::HttpServer, telemetry::metrics::MetricsEndpoint};

/// The service's listening sockets, bound before anything is served, so
/// that a port in use stops start-up at once, and the gRPC port names the
/// replica in the shard leases.
pub(super) struct Sockets {
    pub(super) grpc: TcpListener,
    /// The gRPC port.
    pub(super) port: u16,
    pub(super) http: HttpServer,
    pub(super) metrics: MetricsEndpoint,
}

impl Sockets {
    /// Binds the gRPC, HTTP and metrics ports (0: any free one).
    pub(super) async fn bind(settings: &Settings) -> Result<Sockets, StartupError> {
        let host = settings.server.host;
        let (grpc, port) = bind(host, settings.server.port).await?;
        let http = bind_http(host, settings.server.http_port).await?;
        let addr = SocketAddr::new(host, settings.observability.metrics_port);
        let metrics = MetricsEndpoint::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Sockets {
            grpc,
            port,
            http,
            metrics,
        })
    }
}

/// Binds the gRPC port (0 picks a free one); the listener and its port.
async fn bind(host: IpAddr, port: u16) -> Result<(TcpListener, u16), StartupError> {
    let addr = SocketAddr::new(host, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?
        .port();
    Ok((listener, port))
}

/// Binds the HTTP API's port (0 picks a free one).
async fn bind_http(host: IpAddr, port: u16) -> Result<HttpServer, StartupError> {
    let addr = SocketAddr::new(host, port);
    HttpServer::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}
