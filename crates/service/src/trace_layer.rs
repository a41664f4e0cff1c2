//! One span per RPC, child of the caller's trace when it sent a `traceparent`.
//! Handlers fill the `model` and `version` fields with `Span::current().record(..)`.

use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::propagation::extract_context;

/// Wraps a service in [`RpcTrace`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcTraceLayer;

impl<S> Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcTrace { inner }
    }
}

/// Opens the per-RPC span and runs the request inside it.
#[derive(Clone, Debug)]
pub struct RpcTrace<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for RpcTrace<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = rpc_span(request.uri().path(), Some(extract_context(request.headers())));
        self.inner.call(request).instrument(span)
    }
}

/// The span of one call of `method`: child of `parent` when that carries a trace, of
/// the current span when `parent` is None. Also opened for each request on a stream,
/// which is one call to the caller.
pub fn rpc_span(method: &str, parent: Option<opentelemetry::Context>) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = %method,
        rpc.method = %method,
        model = tracing::field::Empty,
        version = tracing::field::Empty,
    );
    if let Some(parent) = parent {
        // Without an OpenTelemetry layer there is no trace to join; that is not an error.
        let _ = span.set_parent(parent);
    }
    span
}
