//! gRPC's code for a message over the size limit. tonic refuses one with OUT_OF_RANGE;
//! gRPC's own implementations, Triton and this project's docs say RESOURCE_EXHAUSTED, and
//! clients retry or report on that code. So a refusal of tonic's (its message names the
//! "message length too large") is answered as RESOURCE_EXHAUSTED, whether it comes in the
//! headers (a call refused before answering) or in the trailers (a stream).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::FutureExt;
use http::HeaderMap;
use http_body::{Body, Frame};
use tower::{Layer, Service};

/// What tonic's codec writes when a message is over the decoding or encoding limit.
const TONIC_OVERSIZE: &str = "message length too large";

/// Wraps a service in [`OversizeStatus`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OversizeStatusLayer;

impl<S> Layer<S> for OversizeStatusLayer {
    type Service = OversizeStatus<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OversizeStatus { inner }
    }
}

/// Answers tonic's OUT_OF_RANGE for an oversized message as RESOURCE_EXHAUSTED.
#[derive(Clone, Debug)]
pub struct OversizeStatus<S> {
    inner: S,
}

/// What the inner service's answer becomes; a plain function, so the future is not boxed.
type Rewrite<ResBody, E> = fn(Result<http::Response<ResBody>, E>) -> Result<http::Response<OversizeBody<ResBody>>, E>;

impl<S, B, ResBody> Service<http::Request<B>> for OversizeStatus<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<OversizeBody<ResBody>>;
    type Error = S::Error;
    type Future = futures::future::Map<S::Future, Rewrite<ResBody, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.inner.call(request).map(rewrite_answer as Rewrite<ResBody, S::Error>)
    }
}

fn rewrite_answer<ResBody, E>(
    answer: Result<http::Response<ResBody>, E>,
) -> Result<http::Response<OversizeBody<ResBody>>, E> {
    answer.map(|mut response| {
        rewrite(response.headers_mut());
        response.map(|inner| OversizeBody { inner })
    })
}

/// Rewrites an oversize OUT_OF_RANGE status in `headers` (headers or trailers).
fn rewrite(headers: &mut HeaderMap) {
    // Nearly every answer is something else: one header lookup decides, and only an
    // OUT_OF_RANGE is decoded (its message is percent-encoded).
    if headers.get("grpc-status").is_none_or(|code| tonic::Code::from_bytes(code.as_bytes()) != tonic::Code::OutOfRange)
    {
        return;
    }
    let Some(status) = tonic::Status::from_header_map(headers) else { return };
    if status.message().contains(TONIC_OVERSIZE) {
        let exhausted = tonic::Status::resource_exhausted(status.message().to_owned());
        // Writing a status' own headers cannot fail for a message tonic wrote.
        let _ = exhausted.add_header(headers);
    }
}

/// The answer's body, with an oversize status in its trailers rewritten.
pub struct OversizeBody<B> {
    inner: B,
}

impl<B: Body + Unpin> Body for OversizeBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(frame.map(|frame| {
            frame.map(|mut frame| {
                if let Some(trailers) = frame.trailers_mut() {
                    rewrite(trailers);
                }
                frame
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tonics_oversize_refusal_becomes_resource_exhausted() {
        let mut headers = HeaderMap::new();
        let oversize = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 67108870 bytes, the limit is: 67108864 bytes",
        );
        oversize.add_header(&mut headers).expect("headers");
        rewrite(&mut headers);
        let status = tonic::Status::from_header_map(&headers).expect("a status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("found 67108870 bytes"), "{}", status.message());

        let mut other = HeaderMap::new();
        tonic::Status::out_of_range("page token past the end").add_header(&mut other).expect("headers");
        rewrite(&mut other);
        assert_eq!(tonic::Status::from_header_map(&other).expect("a status").code(), tonic::Code::OutOfRange);
    }
}
