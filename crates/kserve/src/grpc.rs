//! The protocol's gRPC side shared by every inference endpoint (worker, router, the
//! bench's echo server): the server metadata, Triton's ModelStreamInfer adapter (one
//! answer per request, in order, errors as `error_message`), reading a status back from
//! such a message, and the paths of the methods modelplane calls and counts.

use std::future::Future;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use modelplane_proto::inference as pb;
use modelplane_proto::inference::infer_parameter::ParameterChoice;
use modelplane_service::metrics::code_name;
use tonic::Status;
use tracing::Instrument;

/// The server metadata every modelplane inference endpoint reports.
pub fn server_metadata() -> pb::ServerMetadataResponse {
    pb::ServerMetadataResponse {
        name: "modelplane".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: ["classification", "model_configuration", "statistics", "model_repository"]
            .map(String::from)
            .to_vec(),
    }
}

/// Requests a stream answers at once; responses still come back in request order.
const STREAM_CONCURRENCY: usize = 16;

/// The response stream of ModelStreamInfer.
pub type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

/// Answers each request of `requests` with `infer`, in order, up to 16 at a time. A
/// failed request becomes an `error_message` on the stream and the stream goes on; as
/// Triton does, that answer still names the request's model, version and id, so a caller
/// with many requests in flight knows which one failed. A broken request stream ends it.
/// A request with `triton_enable_empty_final_response` gets its answer marked final
/// ([`ENABLE_FINAL_RESPONSE`]). Once `draining` resolves no further request is read:
/// those already read are answered and the stream ends, so a server can drain while its
/// callers keep streams open.
pub fn stream_responses<F, Fut>(
    requests: tonic::Streaming<pb::ModelInferRequest>,
    draining: impl Future<Output = ()> + Send + 'static,
    infer: F,
) -> ResponseStream
where
    F: Fn(pb::ModelInferRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<pb::ModelInferResponse, Status>> + Send + 'static,
{
    let responses = requests
        .take_until(draining)
        .map(move |request| {
            let answer = request.map(|request| {
                let named = pb::ModelInferResponse {
                    model_name: request.model_name.clone(),
                    model_version: request.model_version.clone(),
                    id: request.id.clone(),
                    ..Default::default()
                };
                let pending = marks_final(&request).map(|mark| (mark, infer(request)));
                (named, pending)
            });
            async move {
                let (named, pending) = answer?;
                let (mark, outcome) = match pending {
                    Ok((mark, pending)) => (mark, pending.await),
                    Err(status) => (false, Err(status)),
                };
                let (error_message, mut response) = match outcome {
                    Ok(response) => (String::new(), response),
                    Err(status) => (format!("{}: {}", code_name(status.code()), status.message()), named),
                };
                if mark {
                    // Every request gets exactly one answer here: that answer is final.
                    let final_flag = pb::InferParameter { parameter_choice: Some(ParameterChoice::BoolParam(true)) };
                    response.parameters.insert(FINAL_RESPONSE.to_owned(), final_flag);
                }
                Ok(pb::ModelStreamInferResponse { error_message, infer_response: Some(response) })
            }
        })
        .buffered(STREAM_CONCURRENCY);
    Box::pin(responses)
}

/// The request parameter asking that stream answers say which answer is a request's
/// last (tritonclient's `enable_empty_final_response`), and the answer parameter saying
/// so, as Triton names them. A model here answers each request once, so that answer is
/// marked final and no empty one follows (as Triton does for models that are not
/// decoupled).
pub const ENABLE_FINAL_RESPONSE: &str = "triton_enable_empty_final_response";
/// See [`ENABLE_FINAL_RESPONSE`].
pub const FINAL_RESPONSE: &str = "triton_final_response";

/// Whether `request` asks for its answer to be marked final; a flag that is not a bool
/// is refused, as Triton does.
fn marks_final(request: &pb::ModelInferRequest) -> Result<bool, Status> {
    let Some(parameter) = request.parameters.get(ENABLE_FINAL_RESPONSE) else { return Ok(false) };
    match parameter.parameter_choice {
        Some(ParameterChoice::BoolParam(flag)) => Ok(flag),
        _ => Err(Status::invalid_argument(format!(
            "parameter {ENABLE_FINAL_RESPONSE:?} must be a bool_param, got {}",
            modelplane_service::describe_parameter(parameter)
        ))),
    }
}

/// The paths of the inference service's methods that modelplane calls or counts.
pub mod method {
    /// ModelInfer: the method an inference request is counted and traced as, alone or
    /// on a stream.
    pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
    /// ModelStreamInfer.
    pub const MODEL_STREAM_INFER: &str = "/inference.GRPCInferenceService/ModelStreamInfer";
    /// ModelMetadata.
    pub const MODEL_METADATA: &str = "/inference.GRPCInferenceService/ModelMetadata";
    /// ModelConfig (Triton's extension).
    pub const MODEL_CONFIG: &str = "/inference.GRPCInferenceService/ModelConfig";
    /// ModelStatistics (Triton's extension).
    pub const MODEL_STATISTICS: &str = "/inference.GRPCInferenceService/ModelStatistics";
}

use method::MODEL_INFER;

/// [`stream_responses`] where each request is one ModelInfer call to whoever sent it
/// (the router forwards all inference this way): it has its own span, child of the
/// trace context in its parameters (else of the stream's span), and is counted and
/// timed in `role`'s per-RPC metrics as a ModelInfer.
pub fn stream_infer_calls<F, Fut>(
    role: &'static str,
    requests: tonic::Streaming<pb::ModelInferRequest>,
    draining: impl Future<Output = ()> + Send + 'static,
    infer: F,
) -> ResponseStream
where
    F: Fn(pb::ModelInferRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<pb::ModelInferResponse, Status>> + Send + 'static,
{
    let stream_span = tracing::Span::current();
    stream_responses(requests, draining, move |mut request| {
        let parent = modelplane_service::take_context_parameters(&mut request.parameters);
        let span = stream_span.in_scope(|| modelplane_service::rpc_span(MODEL_INFER, parent));
        let answer = infer(request);
        async move {
            let started = std::time::Instant::now();
            let answer = answer.await;
            let code = answer.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
            modelplane_service::record_call(role, MODEL_INFER, code, started.elapsed());
            answer
        }
        .instrument(span)
    })
}

/// The status a stream's `error_message` (`CODE: message`, as [`stream_responses`] writes
/// it) stands for; a message without a known code name is UNKNOWN.
pub fn status_from_error_message(error_message: &str) -> Status {
    error_message
        .split_once(": ")
        .and_then(|(name, message)| {
            let code = (1..=16).map(tonic::Code::from_i32).find(|&code| code_name(code) == name)?;
            Some(Status::new(code, message))
        })
        .unwrap_or_else(|| Status::unknown(error_message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_message_gives_back_the_status_it_was_written_from() {
        for code in [tonic::Code::Unavailable, tonic::Code::InvalidArgument, tonic::Code::DeadlineExceeded] {
            let written = format!("{}: queue of m/1: full: 1024 waiting", code_name(code));
            let status = status_from_error_message(&written);
            assert_eq!((status.code(), status.message()), (code, "queue of m/1: full: 1024 waiting"));
        }
        let unnamed = status_from_error_message("something broke: badly");
        assert_eq!((unnamed.code(), unnamed.message()), (tonic::Code::Unknown, "something broke: badly"));
    }
}
