//! A gRPC service stand-in for the unit tests of the wrappers around the
//! generated servers ([`super::CallLimits`], [`super::Observed`]).

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::sync::Notify;
use tonic::{
    Code, Status,
    body::Body,
    codegen::{BoxFuture, Service, http},
    server::NamedService,
};

/// Answers every call with `status`: at once without a `gate`, else once
/// the gate is notified (never, if it never is).
#[derive(Clone)]
pub(crate) struct Stub {
    pub gate: Option<Arc<Notify>>,
    pub status: Code,
}

impl Stub {
    /// Answers `status` at once.
    pub fn answering(status: Code) -> Self {
        Stub { gate: None, status }
    }
}

/// Stands in for the JobsService server, whose methods it takes as known.
impl NamedService for Stub {
    const NAME: &'static str = "proto.JobsService";
}

impl Service<http::Request<Body>> for Stub {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
        let (gate, code) = (self.gate.clone(), self.status);
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.notified().await;
            }
            Ok(Status::new(code, "done").into_http())
        })
    }
}
