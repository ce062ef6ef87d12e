//! One span and one metric sample per gRPC call, taken around everything
//! else (auth, limits, the handler), so that refused calls are seen too.
//!
//! The span is named after the method (`proto.JobsService/CreateJob`) and
//! continues the caller's trace when the call carries W3C `traceparent`
//! metadata; the metric counts calls and their latency by method and gRPC
//! status code.
//!
//! The method is read from the request path before anything checks the
//! call, so a client could name any method it likes. Only the methods the
//! service has ([`super::methods_of`], read from the compiled proto files)
//! are labelled by name; any other path is [`UNKNOWN_METHOD`], so that
//! made-up paths cannot create unbounded metric series or span names.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use tonic::{
    Code, Status,
    body::Body,
    codegen::{BoxFuture, Service, http},
    server::NamedService,
};
use tracing::Instrument;

use crate::telemetry::{
    metrics::Metrics,
    propagation::{HeaderExtractor, set_parent_from},
};

/// The method label of a call to a method the service does not have.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Wraps one gRPC service with a span and metrics per call.
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    metrics: Arc<Metrics>,
    /// The methods `inner` has: the only method labels besides
    /// [`UNKNOWN_METHOD`].
    methods: Arc<[&'static str]>,
}

impl<S: NamedService> Observed<S> {
    /// Observes the calls of `inner` into `metrics`.
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        Observed {
            inner,
            metrics,
            methods: super::methods_of(S::NAME).into(),
        }
    }
}

impl<S> Observed<S> {
    /// The label of the method a request `path` names: the method, if the
    /// service has it, else [`UNKNOWN_METHOD`].
    fn method_label(&self, path: &str) -> &'static str {
        let method = path.rsplit_once('/').map_or("", |(_, method)| method);
        self.methods
            .iter()
            .find(|known| **known == method)
            .copied()
            .unwrap_or(UNKNOWN_METHOD)
    }
}

impl<S: NamedService> NamedService for Observed<S> {
    const NAME: &'static str = S::NAME;
}

/// Records a call when it ends; a call dropped before it answered (the
/// per-call timeout, or the client went away) counts as CANCELLED.
struct CallRecord {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    code: Option<Code>,
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        self.metrics
            .rpc_handled(self.method, code, self.started.elapsed());
    }
}

impl<S> Service<http::Request<Body>> for Observed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = self.method_label(request.uri().path());
        let name = format!("{}/{method}", S::NAME);
        let span = tracing::info_span!(
            "rpc",
            otel.name = %name,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = S::NAME,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        set_parent_from(&span, &HeaderExtractor(request.headers()));
        let mut record = CallRecord {
            metrics: self.metrics.clone(),
            method,
            started: Instant::now(),
            code: None,
        };
        // `inner` was polled ready: call it, and keep a fresh clone for the
        // next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let call_span = span.clone();
        Box::pin(
            async move {
                let response = inner.call(request).await?;
                // An error answer is trailers-only: its status is in the
                // headers. A success carries OK in the trailers.
                let code = response
                    .headers()
                    .get(Status::GRPC_STATUS)
                    .map_or(Code::Ok, |value| Code::from_bytes(value.as_bytes()));
                call_span.record("rpc.grpc.status_code", code as i32);
                record.code = Some(code);
                drop(record);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::stub::Stub;

    fn call_to(path: &str) -> http::Request<Body> {
        http::Request::builder()
            .uri(format!("http://localhost{path}"))
            .body(Body::empty())
            .expect("valid request")
    }

    #[tokio::test]
    async fn calls_are_counted_by_method_and_code() {
        let metrics = Metrics::new();
        let mut ok = Observed::new(Stub::answering(Code::Ok), metrics.clone());
        let mut denied = Observed::new(Stub::answering(Code::PermissionDenied), metrics.clone());
        for _ in 0..2 {
            ok.call(call_to("/proto.JobsService/GetJob")).await.unwrap();
        }
        denied
            .call(call_to("/proto.JobsService/DeleteJob"))
            .await
            .unwrap();
        let text = metrics.render(0);
        assert!(text.contains("scheduler_rpc_requests_total{code=\"OK\",method=\"GetJob\"} 2"));
        assert!(text.contains(
            "scheduler_rpc_requests_total{code=\"PERMISSION_DENIED\",method=\"DeleteJob\"} 1"
        ));
    }

    #[tokio::test]
    async fn a_method_the_service_does_not_have_is_labelled_unknown() {
        let metrics = Metrics::new();
        let mut observed = Observed::new(Stub::answering(Code::Unimplemented), metrics.clone());
        for path in [
            "/proto.JobsService/Made1",
            "/proto.JobsService/Made2",
            "/proto.JobsService/",
            "/proto.JobsService/GetJob/x",
            "/proto.JobsService",
        ] {
            observed.call(call_to(path)).await.unwrap();
        }
        let text = metrics.render(0);
        let series: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("scheduler_rpc_requests_total{"))
            .collect();
        assert_eq!(
            series,
            ["scheduler_rpc_requests_total{code=\"UNIMPLEMENTED\",method=\"unknown\"} 5"]
        );
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_answer_counts_as_cancelled() {
        let metrics = Metrics::new();
        // Its gate never opens: the call never answers.
        let never = Stub {
            gate: Some(Arc::new(tokio::sync::Notify::new())),
            status: Code::Ok,
        };
        let mut observed = Observed::new(never, metrics.clone());
        let call = observed.call(call_to("/proto.JobsService/ListJobs"));
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(10), call).await;
        assert!(timed_out.is_err());
        assert!(
            metrics
                .render(0)
                .contains("scheduler_rpc_requests_total{code=\"CANCELLED\",method=\"ListJobs\"} 1")
        );
    }
}
