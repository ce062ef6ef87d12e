//! The per-service call limits tonic's own settings do not give as wanted:
//! a cap on calls in flight, and RESOURCE_EXHAUSTED for oversize messages.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::sync::Semaphore;
use tonic::{
    Code, Status,
    body::Body,
    codegen::{Body as HttpBody, BoxFuture, Bytes, Service, StdError, http},
    server::NamedService,
};

/// Wraps one gRPC service (a generated server, intercepted or not) with
/// the limits tonic's own settings do not give as wanted:
///
/// - a cap on the calls in flight across all connections: a call beyond
///   it is refused at once with RESOURCE_EXHAUSTED (load shedding, no
///   queue), before its message is read;
/// - a request message over the service's `max_decoding_message_size`
///   is RESOURCE_EXHAUSTED, not the OUT_OF_RANGE tonic's decoder answers
///   (the services here never answer OUT_OF_RANGE themselves).
#[derive(Clone)]
pub struct CallLimits<S> {
    inner: S,
    permits: Option<Arc<Semaphore>>,
}

impl<S> CallLimits<S> {
    /// No cap on concurrent calls; oversize messages are RESOURCE_EXHAUSTED.
    pub fn new(inner: S) -> Self {
        CallLimits {
            inner,
            permits: None,
        }
    }

    /// At most `max` calls of this service in flight at once.
    pub fn with_max_concurrent_calls(inner: S, max: usize) -> Self {
        CallLimits {
            inner,
            permits: Some(Arc::new(Semaphore::new(max))),
        }
    }
}

impl<S: NamedService> NamedService for CallLimits<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<Body>> for CallLimits<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let permit = match &self.permits {
            None => None,
            Some(permits) => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    tracing::warn!(path = %request.uri().path(), "call refused: too many calls in flight");
                    let status =
                        Status::resource_exhausted("too many calls in flight; retry with backoff");
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            },
        };
        // `inner` was polled ready: call it, and keep a fresh clone for
        // the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(request).await?.map(Body::new);
            drop(permit);
            oversize_is_resource_exhausted(&mut response);
            Ok(response)
        })
    }
}

/// tonic's decoder refuses a message over the limit with OUT_OF_RANGE in
/// a trailers-only response; the limit is a resource limit.
fn oversize_is_resource_exhausted(response: &mut http::Response<Body>) {
    let out_of_range = (Code::OutOfRange as i32).to_string();
    if response
        .headers()
        .get(Status::GRPC_STATUS)
        .is_some_and(|code| code.as_bytes() == out_of_range.as_bytes())
    {
        let exhausted = (Code::ResourceExhausted as i32).to_string();
        response.headers_mut().insert(
            Status::GRPC_STATUS,
            http::HeaderValue::from_str(&exhausted).expect("digits"),
        );
        if let Some(status) = response.extensions_mut().remove::<Status>() {
            response
                .extensions_mut()
                .insert(Status::resource_exhausted(status.message().to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;
    use crate::grpc::stub::Stub;

    fn code(response: &http::Response<Body>) -> Code {
        let value = response.headers().get(Status::GRPC_STATUS).unwrap();
        Code::from_bytes(value.as_bytes())
    }

    #[tokio::test]
    async fn calls_beyond_the_cap_are_resource_exhausted_and_permits_come_back() {
        let release = Arc::new(Notify::new());
        let slow = Stub {
            gate: Some(release.clone()),
            status: Code::Ok,
        };
        let mut limited = CallLimits::with_max_concurrent_calls(slow, 2);
        let first = tokio::spawn(limited.call(http::Request::new(Body::empty())));
        let second = tokio::spawn(limited.call(http::Request::new(Body::empty())));
        let refused = limited
            .call(http::Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(code(&refused), Code::ResourceExhausted);

        tokio::time::sleep(Duration::from_millis(20)).await;
        release.notify_waiters();
        assert_eq!(code(&first.await.unwrap().unwrap()), Code::Ok);
        assert_eq!(code(&second.await.unwrap().unwrap()), Code::Ok);

        let third = tokio::spawn(limited.call(http::Request::new(Body::empty())));
        tokio::time::sleep(Duration::from_millis(20)).await;
        release.notify_waiters();
        assert_eq!(code(&third.await.unwrap().unwrap()), Code::Ok);
    }

    #[tokio::test]
    async fn out_of_range_becomes_resource_exhausted_and_others_pass() {
        for (from, to) in [
            (Code::OutOfRange, Code::ResourceExhausted),
            (Code::InvalidArgument, Code::InvalidArgument),
            (Code::Ok, Code::Ok),
        ] {
            let mut limited = CallLimits::new(Stub::answering(from));
            let response = limited
                .call(http::Request::new(Body::empty()))
                .await
                .unwrap();
            assert_eq!(code(&response), to);
        }
    }
}
