//! Reconciles what the worker holds with what the deployments ask for: loads new
//! versions (downloaded by sha256, verified, cached), unloads versions no longer
//! deployed once their replacements are ready, and publishes the worker record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelplane_client::{Registry, Silent};
use modelplane_model::Model;
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
    pub registry: Registry,
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
            let outcome = load(&record, &cache_dir, &registry).await;
            let mut record = record;
            if let Ok(Runnable::Onnx(graph)) = &outcome
                && record.signature.inputs.is_empty()
            {
                // Registered with --skip-validation: the graph says what it takes.
                record.signature = graph.signature().clone();
            }
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

fn cache_path(cache_dir: &Path, record: &VersionRecord) -> PathBuf {
    cache_dir.join(format!("{}.{}", record.sha256, record.format().file_extension()))
}

/// Whether the file at `path` exists and hashes to `sha256` (read in blocks, off the
/// runtime).
async fn verifies(path: &Path, sha256: &str) -> bool {
    let path = path.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut block = vec![0u8; 1 << 20];
        loop {
            match std::io::Read::read(&mut file, &mut block)? {
                0 => return Ok(hex::encode(hasher.finalize())),
                n => hasher.update(&block[..n]),
            }
        }
    })
    .await;
    matches!(actual, Ok(Ok(actual)) if actual == sha256)
}

/// What to load a version from: its cached file, or for an ONNX archive the graph in
/// the folder the archive was unpacked into.
async fn fetch(record: &VersionRecord, cache_dir: &Path, registry: &Registry) -> Result<PathBuf, Error> {
    match record.format() {
        ArtifactFormat::OnnxArchive => fetch_archive(record, cache_dir, registry).await,
        ArtifactFormat::Modelplane | ArtifactFormat::Onnx => fetch_file(record, cache_dir, registry).await,
    }
}

/// Names the archive a folder was unpacked from, written last: a folder without it is
/// an unpacking that did not finish.
const UNPACKED_FROM: &str = ".modelplane-sha256";

/// An ONNX archive's graph, unpacked (once) into `{sha256}.onnx.d/` beside the graph's
/// data files. The verified archive is unpacked into a temporary folder that is renamed
/// into place, then removed, so the cache holds the model once.
async fn fetch_archive(record: &VersionRecord, cache_dir: &Path, registry: &Registry) -> Result<PathBuf, Error> {
    let folder = cache_dir.join(format!("{}.onnx.d", record.sha256));
    let graph = folder.join(schema::ARCHIVE_GRAPH);
    if tokio::fs::read_to_string(folder.join(UNPACKED_FROM)).await.is_ok_and(|sha| sha == record.sha256) {
        return Ok(graph);
    }
    let archive = fetch_file(record, cache_dir, registry).await?;
    let partial = cache_dir.join(format!(".{}.onnx.d.partial-{}", record.sha256, uuid::Uuid::new_v4()));
    let (sha256, target) = (record.sha256.clone(), folder.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let unpacked = (|| {
            let mut tar = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(&archive)?));
            tar.set_preserve_permissions(false);
            // `unpack` refuses members that would land outside the folder.
            tar.unpack(&partial)?;
            std::fs::write(partial.join(UNPACKED_FROM), &sha256)?;
            if target.exists() {
                std::fs::remove_dir_all(&target)?;
            }
            std::fs::rename(&partial, &target)?;
            std::fs::remove_file(&archive)
        })();
        if unpacked.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        unpacked
    })
    .await
    .map_err(|err| Error::Internal(err.to_string()))?
    .map_err(|err| Error::Internal(format!("unpacking the ONNX archive: {err}")))?;
    Ok(graph)
}

/// The artifact's file in the cache when it verifies, else streamed from the registry
/// to the cache (verified, then renamed into place).
async fn fetch_file(record: &VersionRecord, cache_dir: &Path, registry: &Registry) -> Result<PathBuf, Error> {
    let path = cache_path(cache_dir, record);
    if verifies(&path, &record.sha256).await {
        return Ok(path);
    }
    if path.exists() {
        tracing::warn!(path = %path.display(), "cached artifact is corrupt; downloading again");
    }
    tokio::fs::create_dir_all(cache_dir).await.map_err(|err| Error::Internal(format!("cache dir: {err}")))?;
    let version = record.version.to_string();
    let downloaded =
        registry.download_artifact_to_file(&record.model, &version, &path, &Silent).await.map_err(|err| {
            match err.code() {
                tonic::Code::DataLoss => Error::Internal(err.to_string()),
                _ => Error::Unavailable(format!("download from registry failed: {}", err.message())),
            }
        })?;
    if downloaded.record.sha256 != record.sha256 {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(Error::Internal(format!(
            "the registry sent an artifact with sha256 {}; the record says {}",
            downloaded.record.sha256, record.sha256
        )));
    }
    Ok(path)
}

/// Loads a version from its cached file: an ONNX graph through tract straight from the
/// file, a native artifact parsed from it (the file's bytes are freed once parsed).
async fn load(record: &VersionRecord, cache_dir: &Path, registry: &Registry) -> Result<Runnable, Error> {
    let path = fetch(record, cache_dir, registry).await?;
    let onnx = record.format().is_onnx();
    tokio::task::spawn_blocking(move || {
        if onnx {
            modelplane_onnx::OnnxModel::load_file(&path)
                .map(|graph| Runnable::Onnx(Arc::new(graph)))
                .map_err(|err| err.to_string())
        } else {
            let bytes = std::fs::read(&path).map_err(|err| format!("reading {}: {err}", path.display()))?;
            let model = Model::from_artifact(&bytes).map_err(|err| err.to_string())?;
            drop(bytes);
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
