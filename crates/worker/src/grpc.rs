//! `inference.GRPCInferenceService` on a worker: the six KServe v2 RPCs over the
//! versions this worker holds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use modelplane_proto::inference as pb;
use modelplane_store::{Catalog, Requested};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::state::{LoadedModel, Runnable, WorkerState};
use crate::{Error, codec};

/// Platform name reported in model metadata.
pub const PLATFORM: &str = "modelplane_ndarray";
/// Platform name of ONNX graphs (run with tract).
pub const ONNX_PLATFORM: &str = "tract_onnx";

/// The inference service of a worker.
#[derive(Clone)]
pub struct InferenceService {
    pub(crate) state: Arc<WorkerState>,
    pub(crate) catalog: watch::Receiver<Arc<Catalog>>,
    /// True once the first catalog arrived and every deployed version finished loading.
    pub(crate) ready: watch::Receiver<bool>,
}

impl InferenceService {
    /// Resolves `version` (number, alias, or empty for the deployment's first ready
    /// target) to a ready model.
    fn resolve(&self, model: &str, version: &str) -> Result<Arc<LoadedModel>, Error> {
        if model.is_empty() {
            return Err(Error::InvalidArgument("model name is required".into()));
        }
        let catalog = self.catalog.borrow().clone();
        match catalog.lookup(model, version).map_err(Error::NotFound)? {
            Requested::Number(number) | Requested::Alias(_, number) => self.state.ready(model, number),
            Requested::Targets(targets) => {
                let mut last_error = None;
                for target in targets {
                    match self.state.ready(model, target.version) {
                        Ok(loaded) => return Ok(loaded),
                        Err(err) => last_error = Some(err),
                    }
                }
                Err(last_error.unwrap_or_else(|| Error::Unavailable(format!("{model} has no ready version"))))
            }
        }
    }
}

fn tensor_metadata(spec: &modelplane_model::TensorSpec) -> pb::model_metadata_response::TensorMetadata {
    pb::model_metadata_response::TensorMetadata {
        name: spec.name.clone(),
        datatype: spec.datatype.clone(),
        shape: spec.shape.clone(),
    }
}

/// Metadata of a loaded version, listing every ready version of the model.
pub(crate) fn model_metadata(loaded: &LoadedModel, versions: Vec<u64>) -> pb::ModelMetadataResponse {
    let signature = &loaded.record.signature;
    pb::ModelMetadataResponse {
        name: loaded.record.model.clone(),
        versions: versions.into_iter().map(|v| v.to_string()).collect(),
        platform: if loaded.record.kind == "onnx" { ONNX_PLATFORM } else { PLATFORM }.into(),
        inputs: signature.inputs.iter().map(tensor_metadata).collect(),
        outputs: signature.outputs.iter().map(tensor_metadata).collect(),
    }
}

/// The server metadata every modelplane inference endpoint reports.
pub fn server_metadata() -> pb::ServerMetadataResponse {
    pb::ServerMetadataResponse {
        name: "modelplane".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: Vec::new(),
    }
}

#[tonic::async_trait]
impl pb::grpc_inference_service_server::GrpcInferenceService for InferenceService {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: *self.ready.borrow() }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = match self.resolve(&request.name, &request.version) {
            Ok(_) => true,
            Err(Error::Unavailable(_)) => false,
            Err(err) => return Err(err.into()),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(server_metadata()))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let loaded = self.resolve(&request.name, &request.version)?;
        Ok(Response::new(model_metadata(&loaded, self.state.ready_versions(&request.name))))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let deadline = request_deadline(request.metadata());
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("model", request.model_name.as_str());
        let loaded = self.resolve(&request.model_name, &request.model_version)?;
        span.record("version", loaded.record.version);
        let outputs = infer(&loaded, &request, deadline).await;
        let counter = if outputs.is_ok() { &loaded.stats.success } else { &loaded.stats.failure };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(codec::encode_response(&request, &loaded.record.model, loaded.record.version, outputs?)))
    }
}

/// Decodes, runs (through the batcher when the version has one) and returns the outputs.
async fn infer(
    loaded: &Arc<LoadedModel>,
    request: &pb::ModelInferRequest,
    deadline: Option<Instant>,
) -> Result<Vec<modelplane_model::Output>, Error> {
    let signature = &loaded.record.signature;
    let input = match &loaded.model {
        Runnable::Native(_) => codec::decode_input(request, signature)?,
        Runnable::Onnx(_) => codec::Decoded::Tensors(codec::decode_tensors(request, signature)?),
    };
    codec::check_requested_outputs(request, signature)?;
    if let (Some(batcher), codec::Decoded::Features(rows)) = (&loaded.batcher, &input) {
        return batcher.infer(rows.clone(), deadline).await;
    }
    let model = loaded.clone();
    // Inference is CPU work: keep it off the async runtime.
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let outputs = match (&model.model, input) {
            (Runnable::Native(native), codec::Decoded::Features(rows)) => {
                native.predict(rows.view()).map_err(Error::from)
            }
            (Runnable::Native(native), codec::Decoded::Texts(texts)) => {
                let texts: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
                native.predict_texts(&texts).map_err(Error::from)
            }
            (Runnable::Onnx(graph), codec::Decoded::Tensors(tensors)) => {
                graph.predict(tensors).map_err(|err| match err {
                    modelplane_onnx::Error::InvalidInput(message) => Error::InvalidArgument(message),
                    other => Error::Internal(other.to_string()),
                })
            }
            _ => Err(Error::Internal("decoded input does not match the model kind".into())),
        };
        let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        model.stats.compute_ns.fetch_add(elapsed, Ordering::Relaxed);
        model.stats.executions.fetch_add(1, Ordering::Relaxed);
        outputs
    })
    .await
    .map_err(|err| Error::Internal(format!("inference task failed: {err}")))?
}

/// When the caller gives up, from the `grpc-timeout` header the router forwards
/// (`<digits><H|M|S|m|u|n>`, the gRPC wire format).
fn request_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}
