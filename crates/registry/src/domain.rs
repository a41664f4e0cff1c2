//! The registry's domain API: no tonic types here.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::Stream;
use modelplane_store::KvStore;
use modelplane_store::schema::{self, ArtifactFormat, AuditRecord, Lineage, ModelRecord, ModelsKey, VersionRecord};

use crate::blobs::BlobStream;
use crate::describe::{Described, describe};
use crate::upload::{Declared, UploadPart};
use crate::workers::Change;
use crate::{BlobStore, Error, RegistryConfig, Result, StagedBlob};

pub(crate) const ARTIFACTS: &str = "artifacts";
pub(crate) const DATASETS: &str = "datasets";
/// Attempts at the version-number compare-and-swap before giving up under contention.
const CAS_ATTEMPTS: usize = 64;

/// An artifact upload's manifest; its bytes follow as [`UploadPart`]s.
#[derive(Debug)]
pub struct VersionUpload {
    /// Model to add the version to.
    pub model: String,
    /// Declared sha256 (lowercase hex); empty when a final commit declares it.
    pub sha256: String,
    /// Declared size; 0 when not declared.
    pub size_bytes: u64,
    /// Provenance.
    pub lineage: Lineage,
    /// Create the model if it does not exist.
    pub create_model: bool,
    /// What the artifact is.
    pub format: ArtifactFormat,
    /// Register without loading the artifact (the worker's load checks it).
    pub skip_validation: bool,
}

/// The registry over a KvStore and a blob store.
#[derive(Clone)]
pub struct Registry {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) blobs: BlobStore,
    pub(crate) config: RegistryConfig,
    /// The workers last seen serving, for the placement checks while none is live.
    pub(crate) known_workers: crate::known_workers::KnownWorkers,
    /// Who the mutations made through this handle are recorded as.
    actor: Arc<str>,
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    schema::validate_name(what, name).map_err(Error::InvalidArgument)
}

impl Registry {
    /// A registry over `store` and `blobs`.
    pub fn new(store: Arc<dyn KvStore>, blobs: BlobStore, config: RegistryConfig) -> Self {
        Self { store, blobs, config, known_workers: Default::default(), actor: Arc::from(crate::audit::ANONYMOUS) }
    }

    /// The same registry, recording its mutations as made by `actor`.
    pub fn acting_as(&self, actor: &str) -> Self {
        Self { actor: Arc::from(actor), ..self.clone() }
    }

    /// Who this handle's mutations are recorded as.
    pub(crate) fn actor(&self) -> &str {
        &self.actor
    }

    pub(crate) async fn audit(
        &self,
        action: &str,
        model: &str,
        subject: &str,
        before: String,
        after: String,
        reason: &str,
    ) {
        let entry = AuditRecord {
            unix_ms: schema::now_unix_ms(),
            actor: self.actor.to_string(),
            action: action.to_owned(),
            model: model.to_owned(),
            subject: subject.to_owned(),
            before,
            after,
            reason: reason.to_owned(),
        };
        crate::audit::record(&*self.store, entry).await;
    }

    /// Removes blobs no record references (left by a crash between storing a blob and
    /// writing its record, or half-written) once they are older than `grace`.
    pub async fn remove_orphans(&self, grace: std::time::Duration) -> Result<usize> {
        let models = self.store.range(schema::MODELS).await?;
        let artifacts = models
            .kvs
            .iter()
            .filter(|kv| matches!(schema::parse_models_key(&kv.key), Some(ModelsKey::Version(..))))
            .map(|kv| schema::decode::<VersionRecord>(&kv.key, &kv.value).map(|v| v.sha256))
            .collect::<Result<_, _>>()?;
        let datasets = self.list_datasets().await?.into_iter().map(|d| d.sha256).collect();
        let mut removed = self.blobs.sweep(ARTIFACTS, artifacts, grace).await?;
        removed.extend(self.blobs.sweep(DATASETS, datasets, grace).await?);
        // Staging objects are uploads in flight, or left by a registry killed mid-upload.
        removed.extend(self.blobs.sweep(crate::blobs::STAGING, Default::default(), grace).await?);
        if !removed.is_empty() {
            tracing::warn!(count = removed.len(), blobs = ?removed, "removed orphaned blobs");
        }
        Ok(removed.len())
    }

    /// Audit records, oldest first; see [`crate::audit`].
    pub async fn list_audit(&self, model: &str, since: i64, until: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        crate::audit::list(&*self.store, model, since, until, limit).await
    }

    /// Size limits.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Creates a model; ALREADY_EXISTS when the name is taken.
    pub async fn create_model(
        &self,
        name: &str,
        description: &str,
        owner: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<ModelRecord> {
        check_name("model name", name)?;
        for key in labels.keys() {
            check_name("label key", key)?;
        }
        let record = ModelRecord {
            name: name.to_owned(),
            description: description.to_owned(),
            owner: owner.to_owned(),
            created_unix_ms: schema::now_unix_ms(),
            latest_version: 0,
            labels,
        };
        let created = self.store.compare_and_swap(&schema::model_key(name), 0, schema::encode(&record), None).await?;
        if !created {
            return Err(Error::AlreadyExists(format!("model {name:?} already exists")));
        }
        self.audit("create_model", name, "", String::new(), description.to_owned(), "").await;
        Ok(record)
    }

    /// A model record and its aliases.
    pub async fn get_model(&self, name: &str) -> Result<(ModelRecord, BTreeMap<String, u64>)> {
        let key = schema::model_key(name);
        let kv = self.store.get(&key).await?.ok_or_else(|| not_found_model(name))?;
        let record: ModelRecord = schema::decode(&key, &kv.value)?;
        let aliases = self.aliases(name).await?;
        Ok((record, aliases))
    }

    async fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>> {
        let prefix = schema::aliases_prefix(model);
        let snapshot = self.store.range(&prefix).await?;
        snapshot
            .kvs
            .iter()
            .map(|kv| Ok((kv.key[prefix.len()..].to_owned(), parse_alias(&kv.key, &kv.value)?)))
            .collect()
    }

    /// Streams an artifact into the blob store, verifies it, then registers it as the
    /// model's next version. Nothing becomes visible unless the bytes match the declared
    /// sha256 and size and load as the format they claim (unless `skip_validation`).
    pub async fn upload_version<S>(&self, upload: VersionUpload, parts: S) -> Result<VersionRecord>
    where
        S: Stream<Item = Result<UploadPart>> + Send + Unpin,
    {
        check_name("model name", &upload.model)?;
        if upload.skip_validation && upload.format == ArtifactFormat::Modelplane {
            return Err(Error::InvalidArgument(
                "skip_validation applies to ONNX graphs; a modelplane artifact is always read at upload".into(),
            ));
        }
        if !upload.create_model && self.store.get(&schema::model_key(&upload.model)).await?.is_none() {
            return Err(not_found_model(&upload.model));
        }
        let declared = Declared {
            what: "artifact",
            sha256: &upload.sha256,
            size_bytes: upload.size_bytes,
            sha256_required: true,
            limit: self.config.max_artifact_bytes,
        };
        let staged = crate::upload::receive(&self.blobs, declared, parts).await?;
        match self.register(upload, &staged).await {
            Ok(record) => Ok(record),
            Err(err) => {
                self.blobs.discard(&staged).await;
                Err(err)
            }
        }
    }

    async fn register(&self, upload: VersionUpload, staged: &StagedBlob) -> Result<VersionRecord> {
        let described = if upload.skip_validation {
            Described::unchecked(upload.format)
        } else {
            let file = self.blobs.local_file(staged).await?;
            let format = upload.format;
            tokio::task::spawn_blocking(move || describe(format, &file.path))
                .await
                .map_err(|err| Error::Internal(err.to_string()))??
        };
        if self.store.get(&schema::model_key(&upload.model)).await?.is_none() {
            if !upload.create_model {
                return Err(not_found_model(&upload.model));
            }
            match self.create_model(&upload.model, "", "", BTreeMap::new()).await {
                Ok(_) | Err(Error::AlreadyExists(_)) => {}
                Err(err) => return Err(err),
            }
        }
        // The blob goes first: a version record never points at a missing blob.
        self.blobs.publish(staged, ARTIFACTS).await?;
        let version = self.allocate_version(&upload.model).await?;
        let record = VersionRecord {
            model: upload.model.clone(),
            version,
            sha256: staged.sha256.clone(),
            size_bytes: staged.size,
            kind: described.kind,
            signature: described.signature,
            metrics: described.metrics,
            labels: described.labels,
            confusion_matrix: described.confusion_matrix,
            feature_importances: described.feature_importances,
            lineage: Lineage {
                parent_version: match upload.lineage.parent_version {
                    0 => version - 1,
                    parent => parent,
                },
                ..upload.lineage
            },
            created_unix_ms: schema::now_unix_ms(),
            archived: false,
        };
        self.store.put(&schema::version_key(&upload.model, version), schema::encode(&record), None).await?;
        tracing::info!(model = %record.model, version, sha256 = %record.sha256, "registered version");
        let after = format!("sha256 {} job {}", record.sha256, record.lineage.job_id);
        self.audit("upload_version", &record.model, &version.to_string(), String::new(), after, "").await;
        Ok(record)
    }

    /// Bumps the model's `latest_version` with a compare-and-swap, so concurrent
    /// registries never hand out the same number.
    async fn allocate_version(&self, model: &str) -> Result<u64> {
        let key = schema::model_key(model);
        for _ in 0..CAS_ATTEMPTS {
            let kv = self.store.get(&key).await?.ok_or_else(|| not_found_model(model))?;
            let mut record: ModelRecord = schema::decode(&key, &kv.value)?;
            record.latest_version += 1;
            if self.store.compare_and_swap(&key, kv.mod_revision, schema::encode(&record), None).await? {
                return Ok(record.latest_version);
            }
        }
        Err(Error::Internal(format!("could not allocate a version of {model:?}: too much contention")))
    }

    /// Resolves a version number or alias (empty: the latest version) to its record.
    pub async fn get_version(&self, model: &str, version: &str) -> Result<VersionRecord> {
        let number = self.resolve(model, version).await?;
        let key = schema::version_key(model, number);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("model {model:?} has no version {number}")))?;
        Ok(schema::decode(&key, &kv.value)?)
    }

    async fn resolve(&self, model: &str, version: &str) -> Result<u64> {
        let version = version.trim();
        if version.is_empty() {
            let (record, _) = self.get_model(model).await?;
            if record.latest_version == 0 {
                return Err(Error::NotFound(format!("model {model:?} has no versions yet")));
            }
            return Ok(record.latest_version);
        }
        if let Ok(number) = version.parse::<u64>() {
            return Ok(number);
        }
        let key = schema::alias_key(model, version);
        match self.store.get(&key).await? {
            Some(kv) => parse_alias(&key, &kv.value),
            None => {
                self.get_model(model).await?;
                Err(Error::NotFound(format!("model {model:?} has no alias {version:?}")))
            }
        }
    }

    /// Every version of a model, oldest first.
    pub async fn list_versions(&self, model: &str) -> Result<Vec<VersionRecord>> {
        self.get_model(model).await?;
        let snapshot = self.store.range(&schema::versions_prefix(model)).await?;
        let mut versions: Vec<VersionRecord> =
            snapshot.kvs.iter().map(|kv| schema::decode(&kv.key, &kv.value)).collect::<Result<_, _>>()?;
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    /// A version's record and its artifact bytes from `offset`, read as they are sent;
    /// read from the start, a blob that does not hash to the record's sha256 ends the
    /// stream with DATA_LOSS.
    pub async fn download(&self, model: &str, version: &str, offset: u64) -> Result<(VersionRecord, BlobStream)> {
        let record = self.get_version(model, version).await?;
        let bytes = self.blobs.read(ARTIFACTS, &record.sha256, offset).await?;
        Ok((record, bytes))
    }

    /// Points an alias at an existing version; returns the version it pointed at before (0 if new).
    pub async fn set_alias(&self, model: &str, alias: &str, version: u64, reason: &str) -> Result<u64> {
        check_name("alias", alias)?;
        if version == 0 {
            return Err(Error::InvalidArgument("version must be at least 1".into()));
        }
        let target = self.get_version(model, &version.to_string()).await?;
        if target.archived {
            return Err(Error::FailedPrecondition(format!(
                "{model} v{version} is archived; an alias cannot point at it"
            )));
        }
        if let Some(deployment) = self.get_deployment_opt(model).await?
            && deployment.targets.iter().any(|t| t.alias.as_deref() == Some(alias))
        {
            // The deployment follows the alias: its replicas must still fit a worker.
            let need = self.replica_need(&deployment, Some((alias, version))).await?;
            self.check_some_worker_fits(model, need, deployment.resources.memory_bytes.is_some()).await.map_err(
                |err| match err {
                    Error::FailedPrecondition(why) => Error::FailedPrecondition(format!(
                        "{model}:{alias} stays where it is: the deployment follows it, and with v{version} {why}"
                    )),
                    other => other,
                },
            )?;
            let flip = Change::Alias { model, alias, version };
            self.check_keeps_replicas(model, flip, &format!("{model}:{alias} stays where it is")).await?;
        }
        let key = schema::alias_key(model, alias);
        let previous = match self.store.get(&key).await? {
            Some(kv) => parse_alias(&key, &kv.value)?,
            None => 0,
        };
        self.store.put(&key, version.to_string().into_bytes(), None).await?;
        tracing::info!(model, alias, version, previous, "alias set");
        let before = if previous == 0 { String::new() } else { previous.to_string() };
        self.audit("set_alias", model, alias, before, version.to_string(), reason).await;
        Ok(previous)
    }

    /// The version an alias points at.
    pub async fn get_alias(&self, model: &str, alias: &str) -> Result<u64> {
        let key = schema::alias_key(model, alias);
        match self.store.get(&key).await? {
            Some(kv) => parse_alias(&key, &kv.value),
            None => {
                self.get_model(model).await?;
                Err(Error::NotFound(format!("model {model:?} has no alias {alias:?}")))
            }
        }
    }

    /// Deletes an alias; FAILED_PRECONDITION while a deployment targets it.
    pub async fn delete_alias(&self, model: &str, alias: &str) -> Result<()> {
        if let Some(deployment) = self.get_deployment_opt(model).await?
            && deployment.targets.iter().any(|t| t.alias.as_deref() == Some(alias))
        {
            return Err(Error::FailedPrecondition(format!(
                "alias {alias:?} of {model:?} is a target of its deployment; change the deployment first"
            )));
        }
        let previous = self.get_alias(model, alias).await?;
        if !self.store.delete(&schema::alias_key(model, alias)).await? {
            return Err(Error::NotFound(format!("model {model:?} has no alias {alias:?}")));
        }
        self.audit("delete_alias", model, alias, previous.to_string(), String::new(), "").await;
        Ok(())
    }
}

fn not_found_model(name: &str) -> Error {
    Error::NotFound(format!("model {name:?} not found"))
}

pub(crate) fn parse_alias(key: &str, value: &[u8]) -> Result<u64> {
    std::str::from_utf8(value).ok().and_then(|text| text.trim().parse().ok()).ok_or_else(|| {
        Error::Store(modelplane_store::Error::Corrupt {
            key: key.to_owned(),
            reason: "alias is not a version number".into(),
        })
    })
}
