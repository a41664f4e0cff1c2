//! gRPC's code for a message over the size limit. tonic refuses one with OUT_OF_RANGE;
//! gRPC's own implementations, Triton and this project's docs say RESOURCE_EXHAUSTED, and
//! clients retry or report on that code. So a refusal of tonic's (its message names the
//! "message length too large") is answered as RESOURCE_EXHAUSTED, whether it comes in the
//! headers (a call refused before answering) or in the trailers (a stream).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

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

impl<S, B> Service<http::Request<B>> for OversizeStatus<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            rewrite(response.headers_mut());
            Ok(response.map(|inner| tonic::body::Body::new(OversizeBody { inner })))
        })
    }
}

/// Rewrites an oversize OUT_OF_RANGE status in `headers` (headers or trailers).
fn rewrite(headers: &mut HeaderMap) {
    let Some(status) = tonic::Status::from_header_map(headers) else { return };
    if status.code() == tonic::Code::OutOfRange && status.message().contains(TONIC_OVERSIZE) {
        let exhausted = tonic::Status::resource_exhausted(status.message().to_owned());
        // Writing a status' own headers cannot fail for a message tonic wrote.
        let _ = exhausted.add_header(headers);
    }
}

struct OversizeBody {
    inner: tonic::body::Body,
}

impl Body for OversizeBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

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
