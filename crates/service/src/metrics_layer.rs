//! Per-RPC Prometheus metrics: how many calls each method answered with each gRPC code,
//! and how long they took, for every server of every role.
//!
//! The code of a successful call (and of a stream that fails midway) is in the trailers,
//! after the body; a call that fails before answering carries it in the headers. So the
//! response body is wrapped and the call is counted when the body ends — or, when the
//! client goes away first, as CANCELLED.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http_body::{Body, Frame};
use metrics::{Counter, Histogram};
use tonic::Code;
use tower::{Layer, Service};

use crate::HandleCache;

/// Calls per role, method and gRPC code.
pub const REQUESTS_TOTAL: &str = "modelplane_grpc_requests_total";
/// Seconds from request to the end of the answer, per role and method.
pub const REQUEST_DURATION_SECONDS: &str = "modelplane_grpc_request_duration_seconds";

/// Wraps a server in [`RpcMetrics`]; `role` tells apart servers sharing a process and a
/// protocol (the router and a worker both serve `inference.GRPCInferenceService`).
#[derive(Clone, Copy, Debug)]
pub struct RpcMetricsLayer {
    role: &'static str,
}

impl RpcMetricsLayer {
    /// Metrics labelled with `role` (`registry`, `trainer`, `worker`, `router`).
    pub fn new(role: &'static str) -> Self {
        Self { role }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner, role: self.role }
    }
}

/// Counts and times each call; see the module documentation.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
    role: &'static str,
}

impl<S, B, ResBody> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = bytes::Bytes, Error = tonic::Status> + Unpin + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = CallRecord {
            role: self.role,
            path: request.uri().path().to_owned(),
            started: Instant::now(),
            code: None,
            recorded: false,
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut call = call;
            let response = answer.await?;
            call.code = grpc_status(response.headers());
            Ok(response.map(|inner| tonic::body::Body::new(MeteredBody { inner, call })))
        })
    }
}

/// One call being measured; counted exactly once, when its answer ends or is dropped.
struct CallRecord {
    role: &'static str,
    path: String,
    started: Instant,
    code: Option<Code>,
    recorded: bool,
}

impl CallRecord {
    fn record(&mut self, ended_without_status: Code) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let code = self.code.unwrap_or(ended_without_status);
        record_call(self.role, method_label(&self.path, code), code, self.started.elapsed());
    }
}

/// A call's count and duration, by method, then role and code.
type CallHandles = HandleCache<(&'static str, Code), (Counter, Histogram)>;
static CALL_HANDLES: LazyLock<CallHandles> = LazyLock::new(Default::default);

/// Counts and times one call of `method` as the per-RPC metrics do; also used for each
/// request on a stream, which is one call to the caller though not one RPC.
pub fn record_call(role: &'static str, method: &str, code: Code, elapsed: Duration) {
    let (calls, seconds) = CALL_HANDLES.get(method, (role, code), || {
        let method = method.to_owned();
        (
            metrics::counter!(REQUESTS_TOTAL, "role" => role, "method" => method.clone(), "code" => crate::metrics::code_name(code)),
            metrics::histogram!(REQUEST_DURATION_SECONDS, "role" => role, "method" => method),
        )
    });
    calls.increment(1);
    seconds.record(elapsed.as_secs_f64());
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        // The client reset the stream or disconnected before the answer ended.
        self.record(Code::Cancelled);
    }
}

/// The answer's body, unchanged, watched for its trailers and its end.
struct MeteredBody<B> {
    inner: B,
    call: CallRecord,
}

impl<B: Body<Data = bytes::Bytes, Error = tonic::Status> + Unpin> Body for MeteredBody<B> {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.call.code = Some(code);
                }
            }
            Some(Err(status)) => {
                this.call.code.get_or_insert(status.code());
                this.call.record(Code::Unknown);
            }
            // gRPC always ends with a status; a body without one broke the protocol.
            None => this.call.record(Code::Unknown),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The code in `headers`' `grpc-status`, read as tonic reads it (a malformed one is
/// UNKNOWN) without decoding the rest of the status.
fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|code| Code::from_bytes(code.as_bytes()))
}

/// Methods of our own services and the standard ones keep their path; anything else a
/// client may invent (unknown services or methods, answered UNIMPLEMENTED) shares one
/// label, so a scanner cannot grow the metrics without bound.
fn method_label(path: &str, code: Code) -> &str {
    const KNOWN_SERVICES: [&str; 4] = ["/inference.", "/modelplane.", "/grpc.health.", "/grpc.reflection."];
    if code != Code::Unimplemented && KNOWN_SERVICES.iter().any(|prefix| path.starts_with(prefix)) {
        path
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::ServiceExt;

    use super::*;

    /// An answer of one data frame, then trailers with `code`.
    fn answer_with_trailers(code: Code) -> http::Response<tonic::body::Body> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", (code as i32).into());
        let frames =
            [Ok::<_, tonic::Status>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))), Ok(Frame::trailers(trailers))];
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        http::Response::new(tonic::body::Body::new(body))
    }

    /// Calls `path` on a server answering `answer`, reading the body to its end unless
    /// `hang_up`; returns the metrics rendered afterwards.
    fn call(path: &str, answer: fn() -> http::Response<tonic::body::Body>, hang_up: bool) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            futures::executor::block_on(async {
                let server =
                    tower::service_fn(move |_: http::Request<()>| async move { Ok::<_, Infallible>(answer()) });
                let request = http::Request::builder().uri(path).body(()).expect("request");
                let response = RpcMetricsLayer::new("worker").layer(server).oneshot(request).await.expect("answer");
                if !hang_up {
                    response.into_body().collect().await.expect("body");
                }
            });
        });
        handle.render()
    }

    #[test]
    fn calls_are_counted_by_the_code_in_their_trailers_or_headers() {
        const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
        let ok = call(INFER, || answer_with_trailers(Code::Ok), false);
        assert!(ok.contains(&format!(r#"{REQUESTS_TOTAL}{{role="worker",method="{INFER}",code="OK"}} 1"#)), "{ok}");
        assert!(
            ok.contains(&format!(r#"{REQUEST_DURATION_SECONDS}_count{{role="worker",method="{INFER}"}} 1"#)),
            "{ok}"
        );

        let failed_midway = call(INFER, || answer_with_trailers(Code::DataLoss), false);
        assert!(failed_midway.contains(r#"code="DATA_LOSS"} 1"#), "{failed_midway}");

        let refused = call(INFER, || tonic::Status::resource_exhausted("full").into_http(), false);
        assert!(refused.contains(r#"code="RESOURCE_EXHAUSTED"} 1"#), "{refused}");

        let abandoned = call(INFER, || answer_with_trailers(Code::Ok), true);
        assert!(abandoned.contains(r#"code="CANCELLED"} 1"#), "{abandoned}");
        assert!(!abandoned.contains(r#"code="OK""#), "{abandoned}");
    }

    #[test]
    fn invented_paths_share_one_label() {
        let unknown = call("/evil.Scanner/Probe123", || tonic::Status::unimplemented("no").into_http(), false);
        assert!(unknown.contains(r#"method="other",code="UNIMPLEMENTED"} 1"#), "{unknown}");
        assert!(!unknown.contains("Probe123"), "{unknown}");
        let missing_method =
            call("/inference.GRPCInferenceService/Nope", || tonic::Status::unimplemented("no").into_http(), false);
        assert!(!missing_method.contains("Nope"), "{missing_method}");
    }
}
