//! `inference.GRPCInferenceService` on a worker: the six KServe v2 RPCs over the
//! versions this worker holds.

use std::sync::Arc;
use std::time::Instant;

use modelplane_proto::inference as pb;
use modelplane_store::{Catalog, Requested};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::batcher::BatchInput;
use crate::state::{LoadedModel, Runnable, WorkerState};
use crate::{Error, classification, codec};

/// The inference service of a worker.
#[derive(Clone)]
pub struct InferenceService {
    pub(crate) state: Arc<WorkerState>,
    pub(crate) catalog: watch::Receiver<Arc<Catalog>>,
    /// True once the first catalog arrived and every deployed version finished loading.
    pub(crate) ready: watch::Receiver<bool>,
    /// Cancelled when the worker drains: streams then stop taking requests.
    pub(crate) draining: modelplane_service::Shutdown,
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

fn tensor_metadata(spec: &modelplane_kserve::TensorSpec) -> pb::model_metadata_response::TensorMetadata {
    pb::model_metadata_response::TensorMetadata {
        name: spec.name.clone(),
        datatype: spec.datatype.name().into(),
        shape: spec.shape.clone(),
    }
}

/// Metadata of a loaded version, listing every ready version of the model.
pub(crate) fn model_metadata(loaded: &LoadedModel, versions: Vec<u64>) -> pb::ModelMetadataResponse {
    let signature = &loaded.record.signature;
    pb::ModelMetadataResponse {
        name: loaded.record.model.clone(),
        versions: versions.into_iter().map(|v| v.to_string()).collect(),
        platform: loaded.record.format().platform().into(),
        inputs: signature.inputs.iter().map(tensor_metadata).collect(),
        outputs: signature.outputs.iter().map(tensor_metadata).collect(),
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
        modelplane_service::reach_model(request.extensions(), &request.get_ref().name)?;
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
        Ok(Response::new(modelplane_kserve::grpc::server_metadata()))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        modelplane_service::reach_model(request.extensions(), &request.get_ref().name)?;
        let request = request.into_inner();
        let loaded = self.resolve(&request.name, &request.version)?;
        Ok(Response::new(model_metadata(&loaded, self.state.ready_versions(&request.name))))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        modelplane_service::reach_model(request.extensions(), &request.get_ref().model_name)?;
        let deadline = modelplane_service::call_deadline(request.metadata());
        Ok(Response::new(self.infer_one(request.into_inner(), deadline).await?))
    }

    type ModelStreamInferStream = modelplane_kserve::grpc::ResponseStream;

    /// The router sends all its inference this way; see [`modelplane_kserve::grpc::stream_infer_calls`].
    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let service = self.clone();
        let caller = request.extensions().get::<modelplane_service::Caller>().cloned();
        let draining = {
            let shutdown = self.draining.clone();
            async move {
                shutdown.cancelled().await;
                // As long as the server itself lingers: routers may still send meanwhile.
                tokio::time::sleep(crate::WITHDRAW_DELAY).await;
            }
        };
        Ok(Response::new(modelplane_kserve::grpc::stream_infer_calls(
            "worker",
            request.into_inner(),
            draining,
            move |request| {
                let service = service.clone();
                let reached = caller.as_ref().map_or(Ok(()), |caller| caller.reach(&request.model_name));
                async move {
                    reached?;
                    service.infer_one(request, None).await.map_err(Status::from)
                }
            },
        )))
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        modelplane_service::reach_model(request.extensions(), &request.get_ref().name)?;
        let request = request.into_inner();
        let loaded = self.resolve(&request.name, &request.version)?;
        Ok(Response::new(pb::ModelConfigResponse { config: Some(crate::model_config::model_config(&loaded)) }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let caller = request.extensions().get::<modelplane_service::Caller>().cloned();
        if !request.get_ref().name.is_empty() {
            modelplane_service::reach_model(request.extensions(), &request.get_ref().name)?;
        }
        let request = request.into_inner();
        let version = match request.version.as_str() {
            "" => None,
            text => Some(text.parse::<u64>().map_err(|_| {
                Status::invalid_argument(format!("version {text:?} is not a number; statistics are per version"))
            })?),
        };
        let model_stats: Vec<pb::ModelStatistics> = self
            .state
            .loaded_models()
            .into_iter()
            .filter(|m| request.name.is_empty() || m.record.model == request.name)
            .filter(|m| caller.as_ref().is_none_or(|caller| caller.may_use_model(&m.record.model)))
            .filter(|m| version.is_none_or(|v| m.record.version == v))
            .map(|m| m.stats.to_proto(&m.record.model, m.record.version))
            .collect();
        if model_stats.is_empty() && !request.name.is_empty() {
            return Err(Status::not_found(format!("no loaded version of {} matches", request.name)));
        }
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let caller = request.extensions().get::<modelplane_service::Caller>().cloned();
        let ready_only = request.into_inner().ready;
        let models = self
            .state
            .loaded()
            .into_iter()
            .map(|l| crate::model_config::index_entry(&l.model, l.version, l.state, &l.error))
            .filter(|entry| !ready_only || entry.state == "READY")
            .filter(|entry| caller.as_ref().is_none_or(|caller| caller.may_use_model(&entry.name)))
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        _: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        Err(Status::failed_precondition(crate::model_config::WORKER_FOLLOWS_DEPLOYMENTS))
    }

    async fn repository_model_unload(
        &self,
        _: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        Err(Status::failed_precondition(crate::model_config::WORKER_FOLLOWS_DEPLOYMENTS))
    }
}

impl InferenceService {
    /// Resolves, runs and encodes one request, counting it in the version's statistics.
    async fn infer_one(
        &self,
        request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::ModelInferResponse, Error> {
        let started = Instant::now();
        let deadline =
            modelplane_service::request_deadline(deadline, &request.parameters).map_err(Error::InvalidArgument)?;
        let span = tracing::Span::current();
        span.record("model", request.model_name.as_str());
        let loaded = self.resolve(&request.model_name, &request.model_version)?;
        span.record("version", loaded.record.version);
        let outputs = async {
            let signature = &loaded.record.signature;
            codec::check_requested_outputs(&request, signature)?;
            let classifications = classification::requested(&request, signature)?;
            let outputs = infer(&loaded, &request, deadline).await?;
            classification::apply(outputs, &classifications, |output| loaded.labels_of(output))
        }
        .await;
        loaded.stats.record(outputs.is_ok(), started.elapsed(), rows_of(&outputs) as u64);
        Ok(codec::encode_response(&request, &loaded.record.model, loaded.record.version, outputs?))
    }
}

/// Requests of native models costing at most this many multiply-adds run on the async
/// runtime itself: a few microseconds of arithmetic, against tens of microseconds for
/// the wake-ups a hand-off to the blocking pool (and back) costs.
const INLINE_MULTIPLY_ADDS: usize = 16_384;
/// A request alone on its version (nothing queued or computing) runs on the runtime up
/// to this cost, ~50 µs of arithmetic (a 256x256 MLP row, 83k, measured 33 µs): there
/// is nothing to batch it with. Anything
/// larger, or anything arriving while others wait, is batched on the blocking pool.
/// Both limits stay well under the million multiply-adds from which a product is split
/// over rayon's threads, so a runtime thread never waits on that pool.
const INLINE_WHEN_IDLE_MULTIPLY_ADDS: usize = 131_072;

/// Decodes, runs (through the batcher when the version has one) and returns the outputs.
async fn infer(
    loaded: &Arc<LoadedModel>,
    request: &pb::ModelInferRequest,
    deadline: Option<Instant>,
) -> Result<Vec<modelplane_kserve::Output>, Error> {
    let signature = &loaded.record.signature;
    let input = match &loaded.model {
        Runnable::Native(native) => match codec::decode_input(request, signature)? {
            // Categories become codes here, so the rows batch like any numeric rows.
            codec::Decoded::Table { numeric, categories } => {
                let elements: Vec<&[u8]> = categories.iter().map(Vec::as_slice).collect();
                codec::Decoded::Features(native.encode_table(numeric.view(), &elements)?)
            }
            decoded => decoded,
        },
        Runnable::Onnx(_) => codec::Decoded::Tensors(codec::decode_tensors(request, signature)?),
    };
    // Every path checks the deadline before it computes: the batcher when a batch forms,
    // the others here (and the blocking pool again when it starts the work).
    check_deadline(deadline, "before it was computed")?;
    let input = match (&loaded.model, input) {
        (Runnable::Native(native), codec::Decoded::Features(rows)) => {
            let cost = rows.nrows().saturating_mul(native.multiply_adds_per_row());
            let waits_for_company = loaded.batcher.as_ref().is_some_and(|b| b.policy().waits_for_company());
            if cost <= INLINE_MULTIPLY_ADDS && !waits_for_company {
                // Cheaper than the two thread hops the blocking pool would cost.
                return run_inline(loaded, native, rows.view());
            }
            if let Some(batcher) = &loaded.batcher {
                if cost <= INLINE_WHEN_IDLE_MULTIPLY_ADDS
                    && let Some(_alone) = batcher.claim_idle()
                {
                    return run_inline(loaded, native, rows.view());
                }
                return batcher.infer(BatchInput::Features(rows), deadline).await;
            }
            codec::Decoded::Features(rows)
        }
        (Runnable::Onnx(graph), codec::Decoded::Tensors(tensors)) => match &loaded.batcher {
            // Alone on an idle version it runs at once (below), holding the version so
            // that whatever arrives meanwhile queues and batches.
            Some(batcher) => match batcher.claim_idle() {
                Some(alone) => {
                    return run_blocking(loaded, codec::Decoded::Tensors(tensors), deadline, Some(alone)).await;
                }
                None if graph.fits_batch(&tensors) => {
                    return batcher.infer(BatchInput::Tensors(tensors), deadline).await;
                }
                // Inputs that do not fit: run alone, where the graph says what is wrong.
                None => codec::Decoded::Tensors(tensors),
            },
            None => codec::Decoded::Tensors(tensors),
        },
        (_, other) => other,
    };
    run_blocking(loaded, input, deadline, None).await
}

/// DEADLINE_EXCEEDED once `deadline` has passed; `when` says at which step.
fn check_deadline(deadline: Option<Instant>, when: &str) -> Result<(), Error> {
    match deadline {
        Some(deadline) if deadline <= Instant::now() => {
            Err(Error::DeadlineExceeded(format!("the deadline passed {when}; the request was not computed")))
        }
        _ => Ok(()),
    }
}

/// Runs one request on the blocking pool; `claim` (the version held while alone, see
/// [`crate::batcher::Batcher::claim_idle`]) is released when the computation ends, even
/// if the caller left first.
async fn run_blocking(
    loaded: &Arc<LoadedModel>,
    input: codec::Decoded,
    deadline: Option<Instant>,
    claim: Option<crate::batcher::Outstanding>,
) -> Result<Vec<modelplane_kserve::Output>, Error> {
    let model = loaded.clone();
    // Inference is CPU work: keep it off the async runtime.
    tokio::task::spawn_blocking(move || {
        let _claim = claim;
        // The blocking pool may have been busy: the deadline may have passed meanwhile.
        check_deadline(deadline, "while it waited for a compute thread")?;
        let started = Instant::now();
        let outputs = match (&model.model, input) {
            (Runnable::Native(native), codec::Decoded::Features(rows)) => {
                native.predict(rows.view()).map_err(Error::from)
            }
            (Runnable::Native(native), codec::Decoded::Texts(texts)) => {
                let texts: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
                native.predict_texts(&texts).map_err(Error::from)
            }
            (Runnable::Onnx(graph), codec::Decoded::Tensors(tensors)) => graph.predict(&tensors).map_err(Error::from),
            _ => Err(Error::Internal("decoded input does not match the model kind".into())),
        };
        model.stats.executed(rows_of(&outputs), started.elapsed());
        outputs
    })
    .await
    .map_err(|err| Error::Internal(format!("inference task failed: {err}")))?
}

/// Computes on the calling (runtime) thread and records the compute time.
fn run_inline(
    loaded: &LoadedModel,
    native: &modelplane_model::Model,
    rows: ndarray::ArrayView2<'_, f32>,
) -> Result<Vec<modelplane_kserve::Output>, Error> {
    let started = Instant::now();
    let outputs = native.predict(rows).map_err(Error::from);
    loaded.stats.executed(rows_of(&outputs), started.elapsed());
    outputs
}

/// Rows an execution answered: the first dimension of its first output (0 on failure).
fn rows_of(outputs: &Result<Vec<modelplane_kserve::Output>, Error>) -> usize {
    outputs.as_ref().ok().and_then(|o| o.first()).and_then(|o| o.shape.first()).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_request_past_its_deadline_is_refused_before_it_computes_on_every_path() {
        let passed = Instant::now();
        match check_deadline(Some(passed), "before it was computed") {
            Err(Error::DeadlineExceeded(message)) => {
                assert_eq!(message, "the deadline passed before it was computed; the request was not computed")
            }
            other => panic!("expected DEADLINE_EXCEEDED, got {other:?}"),
        }
        assert!(check_deadline(Some(Instant::now() + Duration::from_secs(3600)), "").is_ok(), "an hour left");
        assert!(check_deadline(None, "").is_ok(), "no deadline");
    }
}
