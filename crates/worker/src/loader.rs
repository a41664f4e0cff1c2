//! Reconciles what the worker holds with what the deployments ask for: loads new
//! versions (downloaded by sha256, verified, cached), unloads versions no longer
//! deployed once their replacements are ready, and publishes the worker record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelplane_model::Model;
use modelplane_proto::registry::{
    DownloadArtifactRequest, download_artifact_response::Part, registry_client::RegistryClient,
};
use modelplane_service::TracedChannel;
use modelplane_store::schema::{self, ArtifactFormat, LoadState, VersionRecord, WorkerRecord};
use modelplane_store::{Catalog, KvStore, LeaseKeeper, Placement};
use sha2::{Digest, Sha256};

use crate::state::{LoadedModel, Runnable, Slot, WorkerState};
use crate::{BatchPolicy, Error, WorkerConfig};

const RETRY_FAILED_AFTER: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(250);

/// The versions this worker should hold: every resolved target and shadow of the
/// deployments [`Placement`] gives it. The worker counts itself live (with its own
/// capacity) even before its record is published or while it drains.
pub(crate) fn desired(
    catalog: &Catalog,
    workers: &HashMap<String, WorkerRecord>,
    me: &str,
    memory_capacity: Option<u64>,
) -> (BTreeSet<(String, u64)>, Placement) {
    let mut workers = workers.clone();
    let record = workers.entry(me.to_owned()).or_insert_with(|| WorkerRecord {
        id: me.to_owned(),
        addr: String::new(),
        loaded: Vec::new(),
        accepting: true,
        memory_capacity_bytes: memory_capacity,
    });
    record.accepting = true;
    record.memory_capacity_bytes = memory_capacity;
    let placement = Placement::compute(catalog, &workers);
    let mut wanted = BTreeSet::new();
    for deployment in catalog.deployments() {
        if !placement.holds(me, &deployment.model) {
            continue;
        }
        // Shadows are loaded like any target: they answer copies of the traffic.
        let targets = catalog.resolved_targets(&deployment.model);
        for target in targets.iter().chain(catalog.shadow_targets(&deployment.model)) {
            wanted.insert((deployment.model.clone(), target.version));
        }
    }
    (wanted, placement)
}

pub(crate) struct Loader {
    pub state: Arc<WorkerState>,
    pub config: WorkerConfig,
    pub registry: RegistryClient<TracedChannel>,
    /// The capacity `config.memory_capacity` resolved to at start-up.
    pub memory_capacity: Option<u64>,
    /// Deployments short of replicas, as last logged, so each shortfall is logged once.
    pub shortfalls: Mutex<BTreeMap<String, String>>,
}

/// Whether worker `id` is the one that logs the cluster's placement shortfalls: every
/// worker computes the same placement, so one of them (the first id among the live
/// workers and itself) says what is short instead of all of them saying it.
fn reports_for_the_cluster(id: &str, workers: &HashMap<String, WorkerRecord>) -> bool {
    workers.keys().all(|other| id <= other.as_str())
}

impl Loader {
    /// One reconcile pass; returns whether anything the record reports changed.
    pub fn reconcile(&self, catalog: &Catalog, workers: &HashMap<String, WorkerRecord>) -> bool {
        let (wanted, placement) = desired(catalog, workers, &self.config.id, self.memory_capacity);
        if reports_for_the_cluster(&self.config.id, workers) {
            self.log_shortfalls(catalog, &placement);
        } else if let Ok(mut logged) = self.shortfalls.lock() {
            // Should this worker report again later, it logs what is short then.
            logged.clear();
        }
        let now = Instant::now();
        let mut changed = false;
        let mut slots = self.state.write();
        for key in &wanted {
            let retry = slots.get(key).is_some_and(|slot| {
                slot.state == LoadState::Failed && slot.failed_at.is_some_and(|t| now - t >= RETRY_FAILED_AFTER)
            });
            let policy = self.policy_for(catalog, &key.0);
            if slots.contains_key(key) && !retry {
                if let Some(slot) = slots.get_mut(key) {
                    slot.unwanted_since = None;
                    slot.apply_policy(policy);
                }
                continue;
            }
            let Some(record) = catalog.version(&key.0, key.1).cloned() else {
                continue;
            };
            slots.insert(
                key.clone(),
                Slot {
                    state: LoadState::Loading,
                    error: String::new(),
                    model: None,
                    unwanted_since: None,
                    failed_at: None,
                },
            );
            changed = true;
            self.spawn_load(record, policy);
        }
        // A model's old versions go only when none of its wanted versions is still loading.
        let loading: BTreeSet<&str> = slots
            .iter()
            .filter(|(key, slot)| slot.state == LoadState::Loading && wanted.contains(*key))
            .map(|((model, _), _)| model.as_str())
            .collect::<BTreeSet<_>>();
        let loading: BTreeSet<String> = loading.into_iter().map(str::to_owned).collect();
        let mut unload = Vec::new();
        for (key, slot) in slots.iter_mut() {
            if wanted.contains(key) {
                continue;
            }
            let since = *slot.unwanted_since.get_or_insert(now);
            if !loading.contains(&key.0) && now - since >= self.config.unload_grace {
                unload.push(key.clone());
            }
        }
        for key in unload {
            tracing::info!(model = %key.0, version = key.1, "unloading version no longer deployed");
            slots.remove(&key);
            changed = true;
        }
        changed
    }

    /// Logs each deployment that is short of replicas when its reason first appears.
    fn log_shortfalls(&self, catalog: &Catalog, placement: &Placement) {
        let now: BTreeMap<String, String> = catalog
            .deployments()
            .filter_map(|d| placement.shortfall(&d.model).map(|why| (d.model.clone(), why.to_owned())))
            .collect();
        let Ok(mut logged) = self.shortfalls.lock() else { return };
        for (model, why) in &now {
            if logged.get(model) != Some(why) {
                tracing::warn!(model = %model, "deployment short of replicas: {why}");
            }
        }
        *logged = now;
    }

    /// The worker's batching settings with the model's deployment's overrides.
    fn policy_for(&self, catalog: &Catalog, model: &str) -> BatchPolicy {
        match catalog.deployment(model) {
            Some(deployment) => self.config.batching.with_override(&deployment.batching),
            None => self.config.batching,
        }
    }

    fn spawn_load(&self, record: VersionRecord, policy: BatchPolicy) {
        let state = self.state.clone();
        let cache_dir = self.config.cache_dir.clone();
        let registry = self.registry.clone();
        tokio::spawn(async move {
            let key = (record.model.clone(), record.version);
            let outcome = load(&record, &cache_dir, registry).await;
            {
                let mut slots = state.write();
                if let Some(slot) = slots.get_mut(&key) {
                    match outcome {
                        Ok(model) => {
                            tracing::info!(model = %key.0, version = key.1, "version ready");
                            slot.state = LoadState::Ready;
                            slot.model = Some(Arc::new(LoadedModel::new(record, model, policy)));
                        }
                        Err(err) => {
                            tracing::warn!(model = %key.0, version = key.1, error = %err, "loading failed");
                            slot.state = LoadState::Failed;
                            slot.error = err.to_string();
                            slot.failed_at = Some(Instant::now());
                        }
                    }
                }
            }
            state.changed.notify_one();
        });
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn cache_path(cache_dir: &Path, record: &VersionRecord) -> PathBuf {
    cache_dir.join(format!("{}.{}", record.sha256, record.format().file_extension()))
}

/// Artifact bytes from the cache when they verify, else from the registry (then cached).
async fn fetch(
    record: &VersionRecord,
    cache_dir: &Path,
    mut registry: RegistryClient<TracedChannel>,
) -> Result<Vec<u8>, Error> {
    let path = cache_path(cache_dir, record);
    if let Ok(bytes) = tokio::fs::read(&path).await {
        if sha256_hex(&bytes) == record.sha256 {
            return Ok(bytes);
        }
        tracing::warn!(path = %path.display(), "cached artifact is corrupt; downloading again");
    }
    let request = DownloadArtifactRequest { model: record.model.clone(), version: record.version.to_string() };
    let mut stream = registry
        .download_artifact(request)
        .await
        .map_err(|status| Error::Unavailable(format!("download from registry failed: {}", status.message())))?
        .into_inner();
    let mut bytes = Vec::with_capacity(record.size_bytes as usize);
    while let Some(message) = stream
        .message()
        .await
        .map_err(|status| Error::Unavailable(format!("download interrupted: {}", status.message())))?
    {
        if let Some(Part::Chunk(chunk)) = message.part {
            bytes.extend_from_slice(&chunk);
        }
    }
    let actual = sha256_hex(&bytes);
    if actual != record.sha256 {
        return Err(Error::Internal(format!(
            "downloaded artifact hashes to {actual}; the record says {}",
            record.sha256
        )));
    }
    tokio::fs::create_dir_all(cache_dir).await.map_err(|err| Error::Internal(format!("cache dir: {err}")))?;
    let temporary = path.with_extension(format!("partial-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&temporary, &bytes).await.map_err(|err| Error::Internal(format!("cache write: {err}")))?;
    tokio::fs::rename(&temporary, &path).await.map_err(|err| Error::Internal(format!("cache rename: {err}")))?;
    Ok(bytes)
}

async fn load(
    record: &VersionRecord,
    cache_dir: &Path,
    registry: RegistryClient<TracedChannel>,
) -> Result<Runnable, Error> {
    let bytes = fetch(record, cache_dir, registry).await?;
    let onnx = record.format() == ArtifactFormat::Onnx;
    tokio::task::spawn_blocking(move || {
        if onnx {
            modelplane_onnx::OnnxModel::load(&bytes)
                .map(|graph| Runnable::Onnx(Arc::new(graph)))
                .map_err(|err| err.to_string())
        } else {
            let model = Model::from_artifact(&bytes).map_err(|err| err.to_string())?;
            warm_up(&model).map_err(|err| format!("warm-up inference failed: {err}"))?;
            Ok(Runnable::Native(Arc::new(model)))
        }
    })
    .await
    .map_err(|err| Error::Internal(err.to_string()))?
    .map_err(|err| Error::Internal(format!("artifact does not load: {err}")))
}

/// Writes the worker record under the current lease.
pub(crate) async fn publish(
    store: &dyn KvStore,
    lease: &LeaseKeeper,
    state: &WorkerState,
    id: &str,
    addr: &str,
    accepting: bool,
    memory_capacity_bytes: Option<u64>,
) -> Result<(), modelplane_store::Error> {
    let record = WorkerRecord {
        id: id.to_owned(),
        addr: addr.to_owned(),
        loaded: state.loaded(),
        accepting,
        memory_capacity_bytes,
    };
    store.put(&schema::worker_key(id), schema::encode(&record), Some(lease.current())).await?;
    Ok(())
}

pub(crate) const LOADER_TICK: Duration = TICK;

/// Runs one all-zero row through a feature model before it is reported ready, so the
/// first real request does not pay for first-touch allocation and a broken artifact
/// fails the load instead of a request.
fn warm_up(model: &Model) -> Result<(), modelplane_model::Error> {
    if model.vectorizer.is_some() {
        return model.predict_texts(&[b"warm up".as_slice()]).map(drop);
    }
    model.predict(ndarray::Array2::<f32>::zeros((1, model.features())).view()).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_reports_the_clusters_shortfalls() {
        let workers = |ids: &[&str]| -> HashMap<String, WorkerRecord> {
            let record = |id: &str| WorkerRecord {
                id: id.into(),
                addr: String::new(),
                loaded: Vec::new(),
                accepting: true,
                memory_capacity_bytes: None,
            };
            ids.iter().map(|id| (id.to_string(), record(id))).collect()
        };
        assert!(reports_for_the_cluster("worker-a", &workers(&["worker-a", "worker-b"])));
        assert!(!reports_for_the_cluster("worker-b", &workers(&["worker-a", "worker-b"])));
        assert!(reports_for_the_cluster("worker-b", &workers(&["worker-b", "worker-c"])), "the first one left");
        assert!(reports_for_the_cluster("worker-a", &workers(&["worker-b"])), "its own record not published yet");
        assert!(reports_for_the_cluster("worker-a", &workers(&[])));
    }
}
