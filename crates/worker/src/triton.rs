//! Triton's extensions to the V2 protocol, shared by worker and router: the model
//! configuration of a loaded version, repository index entries, and the stream
//! adapter behind ModelStreamInfer.

use std::future::Future;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use modelplane_model::TensorSpec;
use modelplane_proto::inference as pb;
use modelplane_store::schema::LoadState;
use tonic::Status;

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
/// failed request becomes an `error_message` on the stream (as Triton does) and the
/// stream goes on; a broken request stream ends it.
pub fn stream_responses<F, Fut>(requests: tonic::Streaming<pb::ModelInferRequest>, infer: F) -> ResponseStream
where
    F: Fn(pb::ModelInferRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<pb::ModelInferResponse, Status>> + Send + 'static,
{
    let responses = requests
        .map(move |request| {
            let answer = request.map(&infer);
            async move {
                match answer {
                    Ok(pending) => Ok(match pending.await {
                        Ok(response) => pb::ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(status) => pb::ModelStreamInferResponse {
                            error_message: format!("{}: {}", code_name(status.code()), status.message()),
                            infer_response: None,
                        },
                    }),
                    Err(status) => Err(status),
                }
            }
        })
        .buffered(STREAM_CONCURRENCY);
    Box::pin(responses)
}

/// The gRPC status name (`INVALID_ARGUMENT`), as clients print it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
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
