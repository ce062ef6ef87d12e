//! Logs, traces and metrics.
//!
//! - Logs: `tracing` with the level from `RUST_LOG` (default `info`), as
//!   JSON lines outside development and human-readable on a developer's
//!   machine.
//! - Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every span is also
//!   exported over OTLP/gRPC, and the W3C trace context travels in gRPC
//!   metadata and Kafka headers ([`propagation`]).
//! - Metrics: Prometheus instruments and their `/metrics` endpoint
//!   ([`metrics`]), and the last hour of them by minute for the web
//!   console ([`recent`]).

pub mod metrics;
pub mod propagation;
pub mod recent;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{Environment, ObservabilitySettings};

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up trace export to {endpoint}: {reason}")]
pub struct TelemetryError {
    endpoint: String,
    reason: String,
}

/// How long [`TelemetryGuard::shutdown`] waits for the last export: a
/// collector that does not answer delays the exit by this much at most.
/// (The SDK's own default, stated here so that the bound is visible.)
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the trace exporter alive; [`TelemetryGuard::shutdown`] flushes the
/// spans still buffered.
#[must_use = "dropping the guard without shutdown may lose the last spans"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports what is buffered and stops the exporter, waiting at most
    /// `SHUTDOWN_TIMEOUT` (5 s) for the collector.
    ///
    /// Call it before the tokio runtime stops, and let the runtime run
    /// meanwhile: the batch processor's own thread only waits for each
    /// export, while the tonic channel that carries it (its buffer worker
    /// and its HTTP/2 connection) runs as tasks on this runtime. Hence the
    /// blocking shutdown goes to `spawn_blocking` and this future is
    /// awaited; blocking a runtime thread instead could starve the export
    /// (on a current-thread runtime it would always time out).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(
                    error = %err,
                    timeout = ?SHUTDOWN_TIMEOUT,
                    "trace exporter did not shut down cleanly: the last spans may be lost"
                )
            }
            Err(err) => tracing::warn!(error = %err, "trace exporter shutdown panicked"),
        }
    }
}

/// Installs the global subscriber: logs, plus span export when an OTLP
/// endpoint is configured. Must run inside the tokio runtime (the exporter
/// is a tonic client). A second call (as in tests) keeps the first
/// subscriber.
pub fn init_telemetry(
    environment: Environment,
    observability: &ObservabilitySettings,
) -> Result<TelemetryGuard, TelemetryError> {
    let provider = match &observability.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint, &observability.service_name)?),
        None => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        propagation::enable();
        tracing_opentelemetry::layer().with_tracer(provider.tracer("scheduler-service"))
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = fmt::layer().with_writer(std::io::stderr);
    let logs = match environment {
        Environment::Development => logs.boxed(),
        Environment::Staging | Environment::Production => logs.json().flatten_event(true).boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel_layer)
        .try_init();
    // Already installed (a second call in one process): keep the first.
    drop(installed);
    if let Some(endpoint) = &observability.otlp_endpoint {
        tracing::info!(%endpoint, service_name = %observability.service_name, "exporting traces over OTLP");
    }
    Ok(TelemetryGuard { provider })
}

/// Logs only (no trace export): for tests and tools.
pub fn init_tracing(environment: Environment) {
    let no_export = ObservabilitySettings {
        otlp_endpoint: None,
        ..ObservabilitySettings::default()
    };
    // Without an endpoint nothing can fail.
    if let Ok(guard) = init_telemetry(environment, &no_export) {
        drop(guard);
    }
}

/// A tracer provider that batches spans to the OTLP/gRPC `endpoint`.
///
/// The SDK's batch processor exports from its own thread; the tonic
/// exporter's channel spawns its tasks on the current tokio runtime, so
/// this must run inside the runtime that stays up until
/// [`TelemetryGuard::shutdown`] has returned (as `main` does).
fn tracer_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint);
    if endpoint.starts_with("https://") {
        // Public CAs (the Mozilla roots); a private CA needs a local
        // collector in between.
        builder =
            builder.with_tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots());
    }
    let exporter = builder.build().map_err(|err| TelemetryError {
        endpoint: endpoint.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}
