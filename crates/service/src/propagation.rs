//! W3C trace context (`traceparent`) in gRPC metadata: injected by a client interceptor,
//! extracted by the server's [`crate::RpcTraceLayer`].

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value)) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::try_from(value))
        {
            self.0.insert(key, value);
        }
    }
}

/// Adds the current span's trace context to the headers of a request made without
/// tonic's client (the router's worker links).
pub fn inject_context(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The trace context a caller sent in request headers.
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

/// Adds the current span's trace context to every outgoing request.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
        });
        Ok(request)
    }
}

/// Request parameters of one message, where a message on a stream carries what a call
/// carries in its headers.
type Parameters = std::collections::HashMap<String, modelplane_proto::inference::InferParameter>;

/// Adds the current span's trace context (`traceparent`, `tracestate`) to a message's
/// parameters: a stream has headers only once, and its messages belong to many traces.
pub fn inject_context_parameters(parameters: &mut Parameters) {
    let mut headers = http::HeaderMap::new();
    inject_context(&mut headers);
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            let choice = modelplane_proto::inference::infer_parameter::ParameterChoice::StringParam(value.to_owned());
            let parameter = modelplane_proto::inference::InferParameter { parameter_choice: Some(choice) };
            parameters.insert(name.as_str().to_owned(), parameter);
        }
    }
}

/// Removes the trace context [`inject_context_parameters`] added and returns it, or
/// None when the message carries none.
pub fn take_context_parameters(parameters: &mut Parameters) -> Option<Context> {
    use modelplane_proto::inference::infer_parameter::ParameterChoice;
    // Most messages carry none (callers without tracing): look before allocating.
    let carries_context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.fields().any(|field| parameters.contains_key(field))
    });
    if !carries_context {
        return None;
    }
    let fields: Vec<String> =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.fields().map(str::to_owned).collect());
    let mut headers = http::HeaderMap::new();
    for field in fields {
        if let Some(parameter) = parameters.remove(&field)
            && let Some(ParameterChoice::StringParam(value)) = parameter.parameter_choice
            && let (Ok(name), Ok(value)) = (http::HeaderName::try_from(field), http::HeaderValue::try_from(value))
        {
            headers.insert(name, value);
        }
    }
    (!headers.is_empty()).then(|| extract_context(&headers))
}
