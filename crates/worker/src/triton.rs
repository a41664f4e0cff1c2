//! Triton's extensions to the V2 protocol, shared by worker and router: the model
//! configuration of a loaded version, repository index entries, and the stream
//! adapter behind ModelStreamInfer.

use std::future::Future;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use modelplane_model::TensorSpec;
use modelplane_proto::inference as pb;
use modelplane_proto::inference::infer_parameter::ParameterChoice;
use modelplane_service::metrics::code_name;
use modelplane_store::schema::LoadState;
use tonic::Status;
use tracing::Instrument;

use crate::grpc::{ONNX_PLATFORM, PLATFORM};
use crate::state::LoadedModel;

/// Why a worker refuses RepositoryModelLoad/Unload.
pub const WORKER_FOLLOWS_DEPLOYMENTS: &str = "workers load what deployments name; call RepositoryModelLoad or \
     RepositoryModelUnload on the router, or use `modelplane deploy`";

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

/// The method an inference request is counted and traced as, alone or on a stream.
pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

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

/// Triton's enum for a V2 datatype name.
pub fn data_type(datatype: &str) -> pb::DataType {
    match datatype {
        "BOOL" => pb::DataType::TypeBool,
        "UINT8" => pb::DataType::TypeUint8,
        "UINT16" => pb::DataType::TypeUint16,
        "UINT32" => pb::DataType::TypeUint32,
        "UINT64" => pb::DataType::TypeUint64,
        "INT8" => pb::DataType::TypeInt8,
        "INT16" => pb::DataType::TypeInt16,
        "INT32" => pb::DataType::TypeInt32,
        "INT64" => pb::DataType::TypeInt64,
        "FP16" => pb::DataType::TypeFp16,
        "FP32" => pb::DataType::TypeFp32,
        "FP64" => pb::DataType::TypeFp64,
        "BYTES" => pb::DataType::TypeString,
        "BF16" => pb::DataType::TypeBf16,
        _ => pb::DataType::TypeInvalid,
    }
}

/// The configuration of a loaded version. With dynamic batching the first (row)
/// dimension is the batch dimension: `max_batch_size` says how many rows one execution
/// takes and `dims` leave it out, as Triton's configurations do; otherwise
/// `max_batch_size` is 0 and `dims` are the full shapes.
pub fn model_config(loaded: &LoadedModel) -> pb::ModelConfig {
    let policy = loaded.batcher.as_ref().map(|b| b.policy());
    let dims = |spec: &TensorSpec| match policy {
        Some(_) => spec.shape.iter().skip(1).copied().collect(),
        None => spec.shape.clone(),
    };
    let record = &loaded.record;
    let onnx = record.kind == "onnx";
    pb::ModelConfig {
        name: record.model.clone(),
        platform: if onnx { ONNX_PLATFORM } else { PLATFORM }.into(),
        backend: if onnx { "tract" } else { "modelplane" }.into(),
        max_batch_size: policy.map(|p| i32::try_from(p.max_batch_size).unwrap_or(i32::MAX)).unwrap_or(0),
        input: record
            .signature
            .inputs
            .iter()
            .map(|s| pb::ModelInput { name: s.name.clone(), data_type: data_type(&s.datatype).into(), dims: dims(s) })
            .collect(),
        output: record
            .signature
            .outputs
            .iter()
            .map(|s| pb::ModelOutput { name: s.name.clone(), data_type: data_type(&s.datatype).into(), dims: dims(s) })
            .collect(),
        dynamic_batching: policy.map(|p| pb::ModelDynamicBatching {
            preferred_batch_size: Vec::new(),
            max_queue_delay_microseconds: u64::try_from(p.max_queue_delay.as_micros()).unwrap_or(u64::MAX),
        }),
    }
}

/// One repository index entry in Triton's state words.
pub fn index_entry(
    model: &str,
    version: u64,
    state: LoadState,
    error: &str,
) -> pb::repository_index_response::ModelIndex {
    let state = match state {
        LoadState::Ready => "READY",
        LoadState::Loading => "LOADING",
        LoadState::Failed => "UNAVAILABLE",
    };
    pb::repository_index_response::ModelIndex {
        name: model.to_owned(),
        version: version.to_string(),
        state: state.into(),
        reason: error.to_owned(),
    }
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
