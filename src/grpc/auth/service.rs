//! [`Authenticated`]: the [`Authenticator`] around a gRPC server, as a tower
//! service rather than a tonic interceptor because the role rule needs the
//! method's path, which an interceptor does not see; and [`UntilExpiry`],
//! the response body that ends a stream when its token expires.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use http_body::Frame;
use tokio::time::{Instant, Sleep};
use tonic::{
    Status,
    body::Body,
    codegen::{Body as HttpBody, BoxFuture, Bytes, Service, http},
    server::NamedService,
};

use super::{Authenticator, STREAMING_METHODS};

/// One gRPC server behind the token check: a refused call is answered at
/// once, without reaching the server; an accepted call carries its
/// [`super::Caller`] in the request's extensions, and its response stream,
/// for [`STREAMING_METHODS`], ends when the token expires.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    authenticator: Authenticator,
}

impl<S> Authenticated<S> {
    /// `inner`, with its calls checked by `authenticator`.
    pub fn new(inner: S, authenticator: Authenticator) -> Self {
        Authenticated {
            inner,
            authenticator,
        }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

/// (A generated server answers with tonic's [`Body`] already.)
impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
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

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let expires = match self.authenticator.check(request.headers(), &path) {
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
            Ok(None) => None,
            Ok(Some(caller)) => {
                let expires = caller.expires;
                request.extensions_mut().insert(caller);
                STREAMING_METHODS
                    .contains(&path.as_str())
                    .then_some(expires)
            }
        };
        // `inner` was polled ready: call it, and keep a fresh clone for
        // the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(match expires {
                Some(expires) => response.map(|body| Body::new(UntilExpiry::new(body, expires))),
                None => response,
            })
        })
    }
}

/// A response body that ends with UNAUTHENTICATED `token expired` trailers
/// at `expires` (on tokio's clock), unless it ended before.
struct UntilExpiry {
    inner: Body,
    expiry: Pin<Box<Sleep>>,
    ended: bool,
}

impl UntilExpiry {
    /// `inner`, cut off at `expires`.
    fn new(inner: Body, expires: Instant) -> Self {
        UntilExpiry {
            inner,
            expiry: Box::pin(tokio::time::sleep_until(expires)),
            ended: false,
        }
    }
}

impl HttpBody for UntilExpiry {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.expiry.as_mut().poll(cx).is_ready() {
            this.ended = true;
            tracing::info!("stream ended: its token expired");
            let mut trailers = http::HeaderMap::new();
            return Poll::Ready(Some(
                match Status::unauthenticated("token expired").add_header(&mut trailers) {
                    Ok(()) => Ok(Frame::trailers(trailers)),
                    Err(status) => Err(status),
                },
            ));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use tonic::Code;

    use super::*;

    /// A body that sends one message now, then nothing until it is dropped.
    fn open_stream() -> Body {
        let first =
            futures::stream::iter([Ok::<_, Status>(Frame::data(Bytes::from_static(b"event")))]);
        Body::new(StreamBody::new(first.chain(futures::stream::pending())))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_with_unauthenticated_when_its_token_expires() {
        let expires = Instant::now() + Duration::from_secs(40);
        let mut body = UntilExpiry::new(open_stream(), expires);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"event"));
        // Nothing more until the expiry (the paused clock jumps to it).
        let trailers = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(Instant::now(), expires);
        let status = Status::from_header_map(&trailers).unwrap();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "token expired");
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ends_first_is_left_as_it_is() {
        let expires = Instant::now() + Duration::from_secs(40);
        let done = Body::new(StreamBody::new(futures::stream::iter([Ok::<_, Status>(
            Frame::data(Bytes::from_static(b"last")),
        )])));
        let mut body = UntilExpiry::new(done, expires);
        assert!(body.frame().await.unwrap().unwrap().is_data());
        assert!(body.frame().await.is_none());
        assert!(Instant::now() < expires);
    }
}
