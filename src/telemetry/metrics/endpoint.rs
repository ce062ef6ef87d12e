//! The HTTP endpoint `/metrics` that serves a [`Metrics`] registry.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// What the endpoint reads at each scrape.
#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    armed: Arc<dyn Fn() -> usize + Send + Sync>,
}

/// The bound `/metrics` endpoint, not yet serving.
pub struct MetricsEndpoint {
    listener: TcpListener,
    port: u16,
}

impl MetricsEndpoint {
    /// Binds `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MetricsEndpoint> {
        let listener = TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        Ok(MetricsEndpoint { listener, port })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves `GET /metrics` until `shutdown` (the returned future); `armed`
    /// reads the timer's size.
    pub fn serve(
        self,
        metrics: Arc<Metrics>,
        armed: impl Fn() -> usize + Send + Sync + 'static,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let state = Scrape {
            metrics,
            armed: Arc::new(armed),
        };
        let app = Router::new()
            .route("/metrics", get(scrape))
            .with_state(state);
        async move {
            let served = axum::serve(self.listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "metrics endpoint failed");
            }
        }
    }
}

async fn scrape(State(state): State<Scrape>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        state.metrics.render((state.armed)()),
    )
}
