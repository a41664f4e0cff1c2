//! `inference.GRPCInferenceService` on the router: resolves model + version (number,
//! alias or the deployment's weighted targets), picks a ready replica by power of two
//! choices on pending requests and retries UNAVAILABLE answers on another replica.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use modelplane_proto::inference as pb;
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};

use crate::limits::{ClientLimits, check_elements, client_of};
use crate::metrics::ShadowOutcome;
use crate::table::{LastGood, Replica, RoutingTable, Suspects, power_of_two_choices, resolve};
use crate::worker_link::{WorkerLink, method};
use crate::{Error, RouterConfig};
use modelplane_service::Caller;

/// The router's inference service.
#[derive(Clone)]
pub struct RouterService {
    pub(crate) table: watch::Receiver<Arc<RoutingTable>>,
    pub(crate) synced: watch::Receiver<bool>,
    pub(crate) last_good: Arc<LastGood>,
    pub(crate) suspects: Arc<Suspects>,
    pub(crate) config: RouterConfig,
    pub(crate) client_limits: Arc<ClientLimits>,
    /// Shadow copies in flight; when none is left a copy is dropped, never queued, so a
    /// slow shadow cannot slow the real traffic down.
    pub(crate) shadow_slots: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the router drains: client streams then stop taking requests.
    pub(crate) draining: modelplane_service::Shutdown,
}

impl RouterService {
    /// Sends `call` to ready replicas of the resolved version until one answers with
    /// something other than UNAVAILABLE.
    async fn forward<T, F, Fut>(&self, model: &str, version: &str, call: F) -> Result<(T, u64), Error>
    where
        F: Fn(Arc<WorkerLink>, u64) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let table = self.table.borrow().clone();
        let span = tracing::Span::current();
        span.record("model", model);
        let mut last = None;
        // A second pass re-resolves after a dead replica was found: the alias may then
        // fall back to its last version with live replicas.
        for _pass in 0..2 {
            let number = resolve(&table, &self.last_good, &self.suspects, model, version)?;
            span.record("version", number);
            let replicas = table.candidates(model, number, &self.suspects);
            if replicas.is_empty() {
                let why = match table.shortfall(model) {
                    Some(shortfall) => format!("no ready replica of {model} v{number}: {shortfall}"),
                    None => format!("no ready replica of {model} v{number}; it may still be loading"),
                };
                return Err(Error::Unavailable(why));
            }
            let attempts = match self.config.max_attempts {
                0 => replicas.len(),
                n => n.min(replicas.len()),
            };
            // Healthy replicas by power of two choices, then the rest by load; suspects last.
            let healthy: Vec<&Replica> =
                replicas.iter().copied().filter(|r| !self.suspects.contains(&r.worker)).collect();
            let mut order = power_of_two_choices(&healthy);
            order.extend(replicas.iter().copied().filter(|r| self.suspects.contains(&r.worker)));
            let mut found_dead = false;
            for replica in order.into_iter().take(attempts) {
                if last.is_some() {
                    crate::metrics::retried(&table.catalog, model);
                }
                let in_flight = replica.start();
                let outcome = call(replica.client.clone(), number).await;
                drop(in_flight);
                match outcome {
                    Ok(response) => return Ok((response, number)),
                    Err(status) if retryable(&status) => {
                        if std::error::Error::source(&status).is_some() {
                            // No answer at all: the worker is gone or unreachable.
                            self.suspects.mark(&replica.worker);
                            found_dead = true;
                        }
                        tracing::debug!(worker = %replica.worker, error = %status.message(), "replica failed; trying the next");
                        last = Some(status);
                    }
                    Err(status) => return Err(Error::Passed(status)),
                }
            }
            if !found_dead {
                break;
            }
        }
        Err(last.map_or_else(|| Error::Unavailable(format!("no replica of {model} answered")), Error::Passed))
    }
}

/// Whether another replica may succeed: the replica said UNAVAILABLE, or the call never
/// got an answer (a refused or broken connection, which tonic reports as UNKNOWN with
/// the transport error as its source; a status a worker sent has no source). Inference
/// is idempotent, so running it again elsewhere is safe.
fn retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

#[tonic::async_trait]
impl pb::grpc_inference_service_server::GrpcInferenceService for RouterService {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: self.server_is_ready() }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        modelplane_service::reach_model(request.extensions(), &request.get_ref().name)?;
        let request = request.into_inner();
        Ok(Response::new(pb::ModelReadyResponse { ready: self.model_is_ready(&request.name, &request.version)? }))
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
        Ok(Response::new(self.metadata(request.into_inner()).await?))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        // The router's server answers ModelInfer with the worker's bytes instead
        // (`crate::pass_on_server`); this is the same call for anyone using the service typed.
        self.model_infer_as(request).await
    }

    type ModelStreamInferStream = modelplane_kserve::grpc::ResponseStream;

    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let (service, client) = (self.clone(), client_of(&request));
        let caller = request.extensions().get::<Caller>().cloned();
        let draining = self.draining.clone().cancelled_owned();
        let requests = request.into_inner();
        Ok(Response::new(modelplane_kserve::grpc::stream_infer_calls("router", requests, draining, move |request| {
            let (service, client) = (service.clone(), client.clone());
            let reached = caller.as_ref().map_or(Ok(()), |caller| caller.reach(&request.model_name));
            async move {
                reached?;
                let _slot = service.client_limits.enter(client.clone())?;
                service.infer(request, None).await.map_err(Status::from)
            }
        })))
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        modelplane_service::reach_model(request.extensions(), &request.get_ref().name)?;
        Ok(Response::new(self.config(request.into_inner()).await?))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        Ok(Response::new(self.statistics(request.into_inner(), caller.as_ref()).await?))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        Ok(Response::new(self.index(request.into_inner().ready, caller.as_ref())))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        modelplane_service::reach_model(request.extensions(), &request.get_ref().model_name)?;
        let authorization = forwarded_authorization(request.metadata());
        self.load(&request.into_inner().model_name, authorization).await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        modelplane_service::reach_model(request.extensions(), &request.get_ref().model_name)?;
        let authorization = forwarded_authorization(request.metadata());
        self.unload(&request.into_inner().model_name, authorization).await?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}

impl RouterService {
    /// A ready replica's configuration of the resolved version.
    pub(crate) async fn config(&self, request: pb::ModelConfigRequest) -> Result<pb::ModelConfigResponse, Error> {
        let (response, _) = self
            .forward(&request.name, &request.version, |client, number| {
                let request = pb::ModelConfigRequest { name: request.name.clone(), version: number.to_string() };
                async move { client.unary(method::MODEL_CONFIG, &request, None).await }
            })
            .await?;
        Ok(response)
    }

    /// Synced with the store and every deployed target has a ready replica.
    pub(crate) fn server_is_ready(&self) -> bool {
        *self.synced.borrow() && self.table.borrow().all_deployments_ready()
    }

    /// Whether the requested version has a ready replica.
    pub(crate) fn model_is_ready(&self, model: &str, version: &str) -> Result<bool, Error> {
        let table = self.table.borrow().clone();
        let number = resolve(&table, &self.last_good, &self.suspects, model, version)?;
        Ok(!table.replicas(model, number).is_empty())
    }

    /// Metadata from a replica of the requested version.
    pub(crate) async fn metadata(&self, request: pb::ModelMetadataRequest) -> Result<pb::ModelMetadataResponse, Error> {
        let (response, _) = self
            .forward(&request.name, &request.version, |client, number| {
                let request = pb::ModelMetadataRequest { name: request.name.clone(), version: number.to_string() };
                async move { client.unary(method::MODEL_METADATA, &request, None).await }
            })
            .await?;
        Ok(response)
    }

    /// Forwards one inference request (with the caller's deadline: `deadline` from the
    /// call, or the request's `timeout` parameter if that is sooner) to a replica, and a
    /// copy to each shadow target when the request goes to the deployment; counts the
    /// outcome in the router's metrics.
    pub(crate) async fn infer<A: InferAnswer>(
        &self,
        request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<A, Error> {
        check_elements(&request, self.config.max_tensor_elements)?;
        let deadline =
            modelplane_service::request_deadline(deadline, &request.parameters).map_err(Error::InvalidArgument)?;
        if request.model_version.is_empty() {
            self.copy_to_shadows(&request);
        }
        let model = request.model_name.clone();
        let outcome = self.forward_within_deadline(request, deadline).await;
        let catalog = self.table.borrow().catalog.clone();
        match &outcome {
            Ok((_, version)) => crate::metrics::request_ended(&catalog, &model, Some(*version), Code::Ok),
            Err(err) => crate::metrics::request_ended(&catalog, &model, None, err.code()),
        }
        outcome.map(|(response, _)| response)
    }

    /// [`Self::forward_infer`], answered at the deadline whatever the worker is doing:
    /// the call to the worker is dropped then, and with it the request there.
    async fn forward_within_deadline<A: InferAnswer>(
        &self,
        request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<(A, u64), Error> {
        let Some(deadline) = deadline else { return self.forward_infer(request, None).await };
        match tokio::time::timeout_at(deadline.into(), self.forward_infer(request, Some(deadline))).await {
            // An in-process worker's own timer may end the call in the same instant.
            Ok(Err(err)) if err.code() == Code::Cancelled && deadline <= Instant::now() => Err(deadline_passed()),
            Ok(outcome) => outcome,
            Err(_) => Err(deadline_passed()),
        }
    }

    fn copy_to_shadows(&self, request: &pb::ModelInferRequest) {
        // Versions only, so the table is not borrowed while copies are spawned; a model
        // without shadows allocates nothing here.
        let versions: Vec<u64> = self
            .table
            .borrow()
            .catalog
            .shadow_targets(&request.model_name)
            .iter()
            .map(|shadow| shadow.version)
            .collect();
        for version in versions {
            let Ok(slot) = self.shadow_slots.clone().try_acquire_owned() else {
                tracing::warn!(model = %request.model_name, version = version, "shadow copy dropped: too many in flight");
                crate::metrics::shadow_copy(&request.model_name, version, ShadowOutcome::Dropped);
                continue;
            };
            let copy = pb::ModelInferRequest { model_version: version.to_string(), ..request.clone() };
            let service = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let model = copy.model_name.clone();
                let outcome = match service.forward_infer::<Bytes>(copy, None).await {
                    Ok(_) => ShadowOutcome::Answered,
                    Err(err) => {
                        tracing::debug!(version = version, error = %err, "shadow copy failed");
                        ShadowOutcome::Failed
                    }
                };
                crate::metrics::shadow_copy(&model, version, outcome);
            });
        }
    }

    async fn forward_infer<A: InferAnswer>(
        &self,
        request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<(A, u64), Error> {
        let model = request.model_name.clone();
        let version = request.model_version.clone();
        self.forward(&model, &version, |client, number| {
            let forwarded = pb::ModelInferRequest { model_version: number.to_string(), ..request.clone() };
            // The caller's deadline travels on to the worker.
            A::fetch(client, forwarded, deadline)
        })
        .await
    }

    /// ModelInfer: the caller's deadline and per-client limit, then [`Self::infer`].
    pub(crate) async fn model_infer_as<A: InferAnswer>(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<A>, Status> {
        modelplane_service::reach_model(request.extensions(), &request.get_ref().model_name)?;
        let deadline = modelplane_service::call_deadline(request.metadata());
        let _slot = self.client_limits.enter(client_of(&request))?;
        Ok(Response::new(self.infer(request.into_inner(), deadline).await?))
    }
}

/// The caller's own `authorization`, which RepositoryModelLoad/Unload present to the
/// registry: the deployment change is the caller's, checked and audited as such.
fn forwarded_authorization(metadata: &tonic::metadata::MetadataMap) -> Option<http::HeaderValue> {
    let value = metadata.get(http::header::AUTHORIZATION.as_str())?;
    let mut header = http::HeaderValue::from_bytes(value.as_bytes()).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// The answer to a request whose deadline passed before a worker answered it.
fn deadline_passed() -> Error {
    Error::DeadlineExceeded("the deadline passed before a worker answered; the request was abandoned".into())
}

/// How a worker's answer to an inference request comes back: decoded, for REST and
/// streams, or as the protobuf bytes it arrived in, for a gRPC client (which would
/// get exactly those bytes again) and for shadow copies (whose answers are dropped).
pub(crate) trait InferAnswer: Sized + Send + 'static {
    fn fetch(
        link: Arc<WorkerLink>,
        request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Self, Status>> + Send;
}

impl InferAnswer for pb::ModelInferResponse {
    async fn fetch(
        link: Arc<WorkerLink>,
        request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<Self, Status> {
        link.infer(request, deadline).await
    }
}

impl InferAnswer for Bytes {
    async fn fetch(
        link: Arc<WorkerLink>,
        request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<Self, Status> {
        link.infer_encoded(request, deadline).await
    }
}
