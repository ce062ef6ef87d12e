//! W3C trace context (`traceparent`, `tracestate`) in and out of carriers:
//! gRPC metadata (HTTP/2 headers), Kafka message headers, and the job
//! itself, which keeps the context of the call that scheduled it so that its
//! firing, run and result join that trace.
//!
//! Without trace export (no OTLP endpoint) nothing is propagated: spans
//! carry no OpenTelemetry context then, and these functions do nothing.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are exported; until then propagation is skipped, which
/// spares the firing path a map and a propagator lookup per event.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Turns propagation on (trace export was set up).
pub(crate) fn enable() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether spans are exported: the spans made once per firing are made
/// only then (see `firing_span` in the service).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The header that carries the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";

/// Makes the context in `carrier` the parent of `span` (a span just
/// created, not yet entered). No context in the carrier: `span` stays where
/// it is (a new trace for a root span).
pub fn set_parent_from(span: &Span, carrier: &dyn Extractor) {
    if !exporting() {
        return;
    }
    let context =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(carrier));
    // Fails only without the OpenTelemetry layer (no export): nothing to do.
    let _ = span.set_parent(context);
}

/// Writes the current span's context into `carrier`.
pub fn inject_current(carrier: &mut dyn Injector) {
    if !exporting() {
        return;
    }
    let context = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, carrier);
    });
}

/// The current span's context as a `traceparent` value, if it has one.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut carrier = HashMap::new();
    inject_current(&mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `traceparent` (as [`current_traceparent`] gave it) the parent of
/// `span`.
pub fn set_parent_from_traceparent(span: &Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent.filter(|_| exporting()) {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
        set_parent_from(span, &carrier);
    }
}

/// HTTP headers (gRPC metadata) as a trace-context carrier.
pub struct HeaderExtractor<'a>(pub &'a tonic::codegen::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}
