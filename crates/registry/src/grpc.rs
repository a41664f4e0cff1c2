//! `modelplane.registry.v1.Registry` over the domain [`Registry`]: validate, delegate,
//! convert. Uploads and downloads stream through [`crate::transfer`].

use std::pin::Pin;

use futures::Stream;
use modelplane_kserve::{Signature, TensorSpec};
use modelplane_proto::registry as pb;
use modelplane_service::Caller;
use modelplane_service::access::Role;
use modelplane_store::schema::{
    ArtifactFormat, BatchingOverride, DatasetRecord, DeploymentRecord, DeploymentTarget, Lineage, LoadState,
    ModelRecord, Resources, VersionRecord,
};
use tonic::{Request, Response, Status, Streaming};

use crate::transfer::{self, Part};
use crate::{DatasetUpload, Registry, VersionUpload, WorkerView};

/// The gRPC face of the registry.
pub struct RegistryService {
    registry: Registry,
}

impl RegistryService {
    /// Wraps a domain registry.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }

    /// The registry acting as the caller: its key's name, or for an internal identity
    /// (worker, service) the instance it names in `x-modelplane-actor`
    /// (`trainer/{id}`), so the audit log says which one.
    fn as_caller<T>(&self, request: &Request<T>) -> Registry {
        let caller = caller_of(request);
        let declared = request
            .metadata()
            .get(crate::ACTOR_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty());
        match declared {
            Some(instance) if matches!(caller.role, Role::Worker | Role::Service) => self.registry.acting_as(instance),
            _ => self.registry.acting_as(&caller.name),
        }
    }
}

/// Who calls, as the authentication layer admitted them. A call without one did not pass
/// the layer (a registry built into a test): it acts anonymously with every model.
fn caller_of<T>(request: &Request<T>) -> Caller {
    request.extensions().get::<Caller>().cloned().unwrap_or_else(|| Caller {
        name: crate::ANONYMOUS.into(),
        role: Role::Admin,
        model_prefix: String::new(),
    })
}

/// The name prefix a list asks for, narrowed to the caller's reach; `None`: nothing the
/// caller may see matches.
fn narrowed<'a>(caller: &'a Caller, asked: &'a str) -> Option<&'a str> {
    if asked.starts_with(&caller.model_prefix) {
        Some(asked)
    } else if caller.model_prefix.starts_with(asked) {
        Some(&caller.model_prefix)
    } else {
        None
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() { Err(Status::invalid_argument(format!("{field} is required"))) } else { Ok(value) }
}

fn record_span(model: &str, version: &str) {
    let span = tracing::Span::current();
    span.record("model", model);
    if !version.is_empty() {
        span.record("version", version);
    }
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        if !request.model.is_empty() {
            caller.reach(&request.model)?;
        }
        let limit = if request.limit == 0 { 1000 } else { request.limit as usize };
        let mut entries =
            self.registry.list_audit(&request.model, request.since_unix_ms, request.until_unix_ms, limit).await?;
        if !caller.model_prefix.is_empty() {
            // A scoped key sees only its models' records (not datasets' or keys').
            entries.retain(|entry| !entry.model.is_empty() && caller.may_use_model(&entry.model));
        }
        Ok(Response::new(pb::ListAuditResponse { entries: entries.into_iter().map(audit_to_pb).collect() }))
    }

    async fn create_model(&self, request: Request<pb::CreateModelRequest>) -> Result<Response<pb::Model>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.name)?;
        record_span(&request.name, "");
        let record = registry
            .create_model(
                required("name", &request.name)?,
                &request.description,
                &request.owner,
                request.labels.clone().into_iter().collect(),
            )
            .await?;
        Ok(Response::new(model_to_pb(record, Default::default())))
    }

    async fn get_model(&self, request: Request<pb::GetModelRequest>) -> Result<Response<pb::Model>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.name)?;
        record_span(&request.name, "");
        let (record, aliases) = self.registry.get_model(required("name", &request.name)?).await?;
        Ok(Response::new(model_to_pb(record, aliases)))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let labels = request.labels.into_iter().collect();
        let Some(name_prefix) = narrowed(&caller, &request.name_prefix) else {
            return Ok(Response::new(pb::ListModelsResponse::default()));
        };
        let page = self.registry.list_models_page(name_prefix, &labels, request.page_size, &request.page_token).await?;
        Ok(Response::new(pb::ListModelsResponse {
            models: page.items.into_iter().map(|(record, aliases)| model_to_pb(record, aliases)).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn update_model(&self, request: Request<pb::UpdateModelRequest>) -> Result<Response<pb::Model>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.name)?;
        record_span(&request.name, "");
        let (record, aliases) = registry
            .update_model(
                required("name", &request.name)?,
                request.description,
                request.set_labels.into_iter().collect(),
                request.remove_labels,
            )
            .await?;
        Ok(Response::new(model_to_pb(record, aliases)))
    }

    async fn delete_model(
        &self,
        request: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.name)?;
        record_span(&request.name, "");
        registry.delete_model(required("name", &request.name)?).await?;
        Ok(Response::new(pb::DeleteModelResponse {}))
    }

    async fn archive_version(
        &self,
        request: Request<pb::ArchiveVersionRequest>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        record_span(&request.model, &request.version.to_string());
        let record = registry.archive_version(required("model", &request.model)?, request.version).await?;
        Ok(Response::new(version_to_pb(record)))
    }

    async fn delete_version(
        &self,
        request: Request<pb::DeleteVersionRequest>,
    ) -> Result<Response<pb::DeleteVersionResponse>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        record_span(&request.model, &request.version.to_string());
        registry.delete_version(required("model", &request.model)?, request.version).await?;
        Ok(Response::new(pb::DeleteVersionResponse {}))
    }

    async fn delete_deployment(
        &self,
        request: Request<pb::DeleteDeploymentRequest>,
    ) -> Result<Response<pb::DeleteDeploymentResponse>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        record_span(&request.model, "");
        registry.delete_deployment(required("model", &request.model)?).await?;
        Ok(Response::new(pb::DeleteDeploymentResponse {}))
    }

    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let workers = self.registry.list_workers().await?;
        Ok(Response::new(pb::ListWorkersResponse { workers: workers.into_iter().map(worker_to_pb).collect() }))
    }

    async fn get_dataset(&self, request: Request<pb::GetDatasetRequest>) -> Result<Response<pb::Dataset>, Status> {
        let request = request.into_inner();
        let record = self.registry.get_dataset(required("name", &request.name)?, &request.sha256).await?;
        Ok(Response::new(dataset_to_pb(record)))
    }

    async fn delete_dataset(
        &self,
        request: Request<pb::DeleteDatasetRequest>,
    ) -> Result<Response<pb::DeleteDatasetResponse>, Status> {
        let registry = self.as_caller(&request);
        let request = request.into_inner();
        registry.delete_dataset(required("name", &request.name)?, &request.sha256).await?;
        Ok(Response::new(pb::DeleteDatasetResponse {}))
    }

    async fn upload_version(
        &self,
        request: Request<Streaming<pb::UploadVersionRequest>>,
    ) -> Result<Response<pb::ModelVersion>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let (manifest, parts) = transfer::manifest_then_parts(request.into_inner(), |message| match message.part? {
            pb::upload_version_request::Part::Manifest(manifest) => Some(Part::Manifest(manifest)),
            pb::upload_version_request::Part::Chunk(chunk) => Some(Part::Chunk(chunk)),
            pb::upload_version_request::Part::Commit(commit) => Some(Part::Commit(commit)),
        })
        .await?;
        caller.reach(&manifest.model)?;
        record_span(&manifest.model, "");
        required("manifest.model", &manifest.model)?;
        let format = ArtifactFormat::parse(&manifest.format).ok_or_else(|| {
            Status::invalid_argument(format!(
                "artifact format {:?} is unknown; expected modelplane, onnx or onnx_archive",
                manifest.format
            ))
        })?;
        let upload = VersionUpload {
            model: manifest.model,
            sha256: manifest.sha256,
            size_bytes: manifest.size_bytes,
            lineage: manifest.lineage.map(lineage_from_pb).unwrap_or_default(),
            create_model: manifest.create_model,
            format,
            skip_validation: manifest.skip_validation,
        };
        let record = registry.upload_version(upload, parts).await?;
        Ok(Response::new(version_to_pb(record)))
    }

    async fn get_version(&self, request: Request<pb::GetVersionRequest>) -> Result<Response<pb::ModelVersion>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        record_span(&request.model, &request.version);
        let record = self.registry.get_version(required("model", &request.model)?, &request.version).await?;
        Ok(Response::new(version_to_pb(record)))
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        record_span(&request.model, "");
        let page = self
            .registry
            .list_versions_page(
                required("model", &request.model)?,
                request.page_size,
                &request.page_token,
                request.include_archived,
            )
            .await?;
        Ok(Response::new(pb::ListVersionsResponse {
            versions: page.items.into_iter().map(version_to_pb).collect(),
            next_page_token: page.next_token,
        }))
    }

    type DownloadArtifactStream = ResponseStream<pb::DownloadArtifactResponse>;

    async fn download_artifact(
        &self,
        request: Request<pb::DownloadArtifactRequest>,
    ) -> Result<Response<Self::DownloadArtifactStream>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        record_span(&request.model, &request.version);
        let model = required("model", &request.model)?;
        let (record, bytes) = self.registry.download(model, &request.version, request.offset).await?;
        let head = pb::DownloadArtifactResponse {
            part: Some(pb::download_artifact_response::Part::Version(version_to_pb(record))),
        };
        Ok(Response::new(transfer::head_then_chunks(head, bytes, |chunk| pb::DownloadArtifactResponse {
            part: Some(pb::download_artifact_response::Part::Chunk(chunk)),
        })))
    }

    async fn set_alias(&self, request: Request<pb::SetAliasRequest>) -> Result<Response<pb::Alias>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        record_span(&request.model, &request.alias);
        let previous = registry
            .set_alias(
                required("model", &request.model)?,
                required("alias", &request.alias)?,
                request.version,
                &request.reason,
            )
            .await?;
        Ok(Response::new(pb::Alias {
            model: request.model,
            alias: request.alias,
            version: request.version,
            previous_version: previous,
        }))
    }

    async fn get_alias(&self, request: Request<pb::GetAliasRequest>) -> Result<Response<pb::Alias>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        let version =
            self.registry.get_alias(required("model", &request.model)?, required("alias", &request.alias)?).await?;
        Ok(Response::new(pb::Alias { model: request.model, alias: request.alias, version, previous_version: 0 }))
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        registry.delete_alias(required("model", &request.model)?, required("alias", &request.alias)?).await?;
        Ok(Response::new(pb::DeleteAliasResponse {}))
    }

    async fn set_deployment(
        &self,
        request: Request<pb::SetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let registry = self.as_caller(&request);
        let caller = caller_of(&request);
        let deployment =
            request.into_inner().deployment.ok_or_else(|| Status::invalid_argument("deployment is required"))?;
        caller.reach(&deployment.model)?;
        record_span(&deployment.model, "");
        required("deployment.model", &deployment.model)?;
        let record = DeploymentRecord {
            model: deployment.model,
            replicas: deployment.replicas,
            targets: deployment
                .targets
                .into_iter()
                .map(|t| DeploymentTarget {
                    version: (t.version != 0).then_some(t.version),
                    alias: (!t.alias.is_empty()).then_some(t.alias),
                    weight: t.weight,
                    shadow: t.shadow,
                })
                .collect(),
            batching: deployment
                .batching
                .map(|b| BatchingOverride {
                    max_batch_size: b.max_batch_size,
                    max_queue_delay_us: b.max_queue_delay_us,
                    queue_capacity: b.queue_capacity,
                })
                .unwrap_or_default(),
            resources: Resources { memory_bytes: deployment.resources.and_then(|r| r.memory_bytes) },
            // Set by the registry: kept from the first deployment of the model.
            created_unix_ms: 0,
        };
        Ok(Response::new(deployment_to_pb(registry.set_deployment(record).await?)))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        caller.reach(&request.model)?;
        let record = self.registry.get_deployment(required("model", &request.model)?).await?;
        Ok(Response::new(deployment_to_pb(record)))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let caller = caller_of(&request);
        let mut deployments = self.registry.list_deployments().await?;
        deployments.retain(|deployment| caller.may_use_model(&deployment.model));
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: deployments.into_iter().map(deployment_to_pb).collect(),
        }))
    }

    async fn upload_dataset(
        &self,
        request: Request<Streaming<pb::UploadDatasetRequest>>,
    ) -> Result<Response<pb::Dataset>, Status> {
        let registry = self.as_caller(&request);
        let (manifest, parts) = transfer::manifest_then_parts(request.into_inner(), |message| match message.part? {
            pb::upload_dataset_request::Part::Manifest(manifest) => Some(Part::Manifest(manifest)),
            pb::upload_dataset_request::Part::Chunk(chunk) => Some(Part::Chunk(chunk)),
            pb::upload_dataset_request::Part::Commit(commit) => Some(Part::Commit(commit)),
        })
        .await?;
        required("manifest.name", &manifest.name)?;
        let upload = DatasetUpload { name: manifest.name, sha256: manifest.sha256, size_bytes: manifest.size_bytes };
        Ok(Response::new(dataset_to_pb(registry.upload_dataset(upload, parts).await?)))
    }

    async fn list_datasets(
        &self,
        _: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let datasets = self.registry.list_datasets().await?;
        Ok(Response::new(pb::ListDatasetsResponse { datasets: datasets.into_iter().map(dataset_to_pb).collect() }))
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let registry = self.as_caller(&request);
        let request = request.into_inner();
        let role = Role::parse(required("role", &request.role)?).map_err(Status::invalid_argument)?;
        let expires_in =
            (request.expires_in_seconds > 0).then(|| std::time::Duration::from_secs(request.expires_in_seconds));
        let new =
            registry.create_key(required("name", &request.name)?, role, &request.model_prefix, expires_in).await?;
        Ok(Response::new(pb::CreateKeyResponse { key: Some(key_to_pb(new.record)), secret: new.key }))
    }

    async fn list_keys(&self, _: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        let keys = self.registry.list_keys().await?;
        Ok(Response::new(pb::ListKeysResponse { keys: keys.into_iter().map(key_to_pb).collect() }))
    }

    async fn revoke_key(&self, request: Request<pb::RevokeKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let registry = self.as_caller(&request);
        let request = request.into_inner();
        Ok(Response::new(key_to_pb(registry.revoke_key(required("id", &request.id)?).await?)))
    }

    type DownloadDatasetStream = ResponseStream<pb::DownloadDatasetResponse>;

    async fn download_dataset(
        &self,
        request: Request<pb::DownloadDatasetRequest>,
    ) -> Result<Response<Self::DownloadDatasetStream>, Status> {
        let request = request.into_inner();
        let name = required("name", &request.name)?;
        let (record, bytes) = self.registry.download_dataset(name, &request.sha256, request.offset).await?;
        let head = pb::DownloadDatasetResponse {
            part: Some(pb::download_dataset_response::Part::Dataset(dataset_to_pb(record))),
        };
        Ok(Response::new(transfer::head_then_chunks(head, bytes, |chunk| pb::DownloadDatasetResponse {
            part: Some(pb::download_dataset_response::Part::Chunk(chunk)),
        })))
    }
}

fn audit_to_pb(entry: modelplane_store::schema::AuditRecord) -> pb::AuditEntry {
    pb::AuditEntry {
        unix_ms: entry.unix_ms,
        actor: entry.actor,
        action: entry.action,
        model: entry.model,
        subject: entry.subject,
        before: entry.before,
        after: entry.after,
        reason: entry.reason,
    }
}

fn model_to_pb(record: ModelRecord, aliases: std::collections::BTreeMap<String, u64>) -> pb::Model {
    pb::Model {
        name: record.name,
        description: record.description,
        owner: record.owner,
        created_unix_ms: record.created_unix_ms,
        latest_version: record.latest_version,
        aliases: aliases.into_iter().collect(),
        labels: record.labels.into_iter().collect(),
    }
}

fn tensor_to_pb(spec: TensorSpec) -> pb::TensorSpec {
    pb::TensorSpec { name: spec.name, datatype: spec.datatype.name().into(), shape: spec.shape }
}

fn signature_to_pb(signature: Signature) -> pb::Signature {
    pb::Signature {
        inputs: signature.inputs.into_iter().map(tensor_to_pb).collect(),
        outputs: signature.outputs.into_iter().map(tensor_to_pb).collect(),
    }
}

fn lineage_from_pb(lineage: pb::Lineage) -> Lineage {
    Lineage {
        dataset: lineage.dataset,
        dataset_sha256: lineage.dataset_sha256,
        job_id: lineage.job_id,
        params: lineage.params.into_iter().collect(),
        target: lineage.target,
        parent_version: lineage.parent_version,
    }
}

fn version_to_pb(record: VersionRecord) -> pb::ModelVersion {
    pb::ModelVersion {
        model: record.model,
        version: record.version,
        sha256: record.sha256,
        size_bytes: record.size_bytes,
        kind: record.kind,
        signature: Some(signature_to_pb(record.signature)),
        metrics: record.metrics.into_iter().collect(),
        lineage: Some(pb::Lineage {
            dataset: record.lineage.dataset,
            dataset_sha256: record.lineage.dataset_sha256,
            job_id: record.lineage.job_id,
            params: record.lineage.params.into_iter().collect(),
            target: record.lineage.target,
            parent_version: record.lineage.parent_version,
        }),
        archived: record.archived,
        created_unix_ms: record.created_unix_ms,
        labels: record.labels,
        confusion_matrix: record.confusion_matrix.into_iter().flatten().collect(),
        feature_importances: record.feature_importances.into_iter().collect(),
    }
}

fn deployment_to_pb(record: DeploymentRecord) -> pb::Deployment {
    pb::Deployment {
        model: record.model,
        replicas: record.replicas,
        targets: record
            .targets
            .into_iter()
            .map(|t| pb::DeploymentTarget {
                version: t.version.unwrap_or(0),
                alias: t.alias.unwrap_or_default(),
                weight: t.weight,
                shadow: t.shadow,
            })
            .collect(),
        batching: (!record.batching.is_empty()).then_some(pb::Batching {
            max_batch_size: record.batching.max_batch_size,
            max_queue_delay_us: record.batching.max_queue_delay_us,
            queue_capacity: record.batching.queue_capacity,
        }),
        resources: (!record.resources.is_empty())
            .then_some(pb::Resources { memory_bytes: record.resources.memory_bytes }),
    }
}

fn worker_to_pb(view: WorkerView) -> pb::Worker {
    let WorkerView { record, placed_bytes } = view;
    pb::Worker {
        id: record.id,
        addr: record.addr,
        accepting: record.accepting,
        memory_capacity_bytes: record.memory_capacity_bytes,
        memory_placed_bytes: placed_bytes,
        loaded: record
            .loaded
            .into_iter()
            .map(|loaded| pb::WorkerVersion {
                model: loaded.model,
                version: loaded.version,
                state: match loaded.state {
                    LoadState::Loading => "loading",
                    LoadState::Ready => "ready",
                    LoadState::Failed => "failed",
                }
                .into(),
                error: loaded.error,
                memory_bytes: loaded.memory_bytes,
            })
            .collect(),
    }
}

fn dataset_to_pb(record: DatasetRecord) -> pb::Dataset {
    pb::Dataset {
        name: record.name,
        sha256: record.sha256,
        size_bytes: record.size_bytes,
        columns: record.columns,
        rows: record.rows,
        created_unix_ms: record.created_unix_ms,
    }
}

fn key_to_pb(record: modelplane_store::schema::ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: record.id,
        name: record.name,
        role: record.role.name().to_owned(),
        model_prefix: record.model_prefix,
        created_unix_ms: record.created_unix_ms,
        created_by: record.created_by,
        expires_unix_ms: record.expires_unix_ms.unwrap_or(0),
        revoked_unix_ms: record.revoked_unix_ms.unwrap_or(0),
    }
}
