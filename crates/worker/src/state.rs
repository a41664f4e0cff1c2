//! The versions a worker holds and their load state.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use modelplane_model::Model;
use modelplane_store::schema::{LoadState, LoadedVersion, VersionRecord};
use tokio::sync::Notify;

use crate::Error;
use crate::batcher::{BatchInput, BatchPolicy, Batcher, ComputeFn};
use crate::stats::Stats;

/// A loaded model of either artifact kind.
#[derive(Clone)]
pub enum Runnable {
    /// A modelplane artifact (ndarray).
    Native(Arc<Model>),
    /// An ONNX graph (tract).
    Onnx(Arc<modelplane_onnx::OnnxModel>),
}

/// A version loaded and ready to run.
pub struct LoadedModel {
    /// Its registry record.
    pub record: VersionRecord,
    /// The model.
    pub model: Runnable,
    /// The queue that merges requests into batches (feature models, batching on).
    pub batcher: Option<Batcher>,
    /// The batching settings it was loaded with (the worker's, with its deployment's
    /// overrides), whether or not the model can batch.
    pub policy: BatchPolicy,
    /// Request and timing counters.
    pub stats: Arc<Stats>,
}

impl LoadedModel {
    /// The classes an output's columns stand for, by index (none for ONNX graphs).
    pub fn labels_of(&self, output: &str) -> &[String] {
        match &self.model {
            Runnable::Native(model) => model.labels_of(output),
            Runnable::Onnx(_) => &[],
        }
    }

    /// A loaded version; starts its batching loop when `policy` enables batching and the
    /// model can merge requests: a feature model, or an ONNX graph whose inputs and
    /// outputs share a symbolic batch dimension. Text models and other graphs run one
    /// request at a time.
    pub fn new(record: VersionRecord, model: Runnable, policy: BatchPolicy) -> Self {
        let stats = Arc::new(Stats::new(&record.model, record.version));
        Self::with_stats(record, model, policy, stats)
    }

    /// The same version and model under other batching settings, counting into the same
    /// statistics. Requests already queued on this one finish there.
    pub fn rebatched(&self, policy: BatchPolicy) -> Self {
        Self::with_stats(self.record.clone(), self.model.clone(), policy, self.stats.clone())
    }

    fn with_stats(record: VersionRecord, model: Runnable, policy: BatchPolicy, stats: Arc<Stats>) -> Self {
        let compute: Option<ComputeFn> = match &model {
            Runnable::Native(native) if policy.enabled() && native.vectorizer.is_none() => {
                let native = native.clone();
                Some(Arc::new(move |input: &BatchInput| match input {
                    BatchInput::Features(rows) => native.predict(rows.view()).map_err(Error::from),
                    BatchInput::Tensors(_) => Err(Error::Internal("tensors queued for a feature model".into())),
                }))
            }
            Runnable::Onnx(graph) if policy.enabled() && graph.batches() => {
                let graph = graph.clone();
                Some(Arc::new(move |input: &BatchInput| match input {
                    BatchInput::Tensors(tensors) => graph.predict(tensors).map_err(Error::from),
                    BatchInput::Features(_) => Err(Error::Internal("feature rows queued for an ONNX graph".into())),
                }))
            }
            _ => None,
        };
        let batcher = compute.map(|compute| {
            Batcher::start(compute, policy, format!("{} v{}", record.model, record.version), stats.clone())
        });
        Self { record, model, batcher, policy, stats }
    }
}

pub(crate) struct Slot {
    pub state: LoadState,
    pub error: String,
    pub model: Option<Arc<LoadedModel>>,
    /// When the version stopped being wanted; it unloads after the grace period.
    pub unwanted_since: Option<Instant>,
    pub failed_at: Option<Instant>,
}

impl Slot {
    /// Puts a loaded version under new batching settings (its deployment's changed)
    /// without reloading it: new requests use a new queue, queued ones finish on the old.
    pub fn apply_policy(&mut self, policy: BatchPolicy) {
        let Some(loaded) = &self.model else { return };
        if loaded.policy == policy {
            return;
        }
        tracing::info!(
            model = %loaded.record.model,
            version = loaded.record.version,
            max_batch_size = policy.max_batch_size,
            max_queue_delay_us = policy.max_queue_delay.as_micros() as u64,
            queue_capacity = policy.queue_capacity,
            "batching settings changed"
        );
        self.model = Some(Arc::new(loaded.rebatched(policy)));
    }
}

/// Shared between the loader, the gRPC service and the record publisher.
#[derive(Default)]
pub struct WorkerState {
    pub(crate) slots: RwLock<BTreeMap<(String, u64), Slot>>,
    /// Wakes the loader and publisher after a load finished or state changed.
    pub(crate) changed: Notify,
}

impl WorkerState {
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<(String, u64), Slot>> {
        self.slots.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<(String, u64), Slot>> {
        self.slots.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The ready model for `model` v`version`, or why there is none.
    pub fn ready(&self, model: &str, version: u64) -> Result<Arc<LoadedModel>, Error> {
        match self.read().get(&(model.to_owned(), version)) {
            Some(Slot { model: Some(loaded), state: LoadState::Ready, .. }) => Ok(loaded.clone()),
            Some(Slot { state: LoadState::Failed, error, .. }) => {
                Err(Error::Unavailable(format!("{model} v{version} failed to load on this worker: {error}")))
            }
            Some(_) => Err(Error::Unavailable(format!("{model} v{version} is still loading on this worker"))),
            None => Err(Error::Unavailable(format!("{model} v{version} is not loaded on this worker"))),
        }
    }

    /// Ready version numbers of a model.
    pub fn ready_versions(&self, model: &str) -> Vec<u64> {
        self.read()
            .iter()
            .filter(|((name, _), slot)| name == model && slot.state == LoadState::Ready)
            .map(|((_, version), _)| *version)
            .collect()
    }

    /// Every ready version.
    pub fn loaded_models(&self) -> Vec<Arc<LoadedModel>> {
        self.read()
            .values()
            .filter(|slot| slot.state == LoadState::Ready)
            .filter_map(|slot| slot.model.clone())
            .collect()
    }

    /// What the worker record reports.
    pub fn loaded(&self) -> Vec<LoadedVersion> {
        self.read()
            .iter()
            .map(|((model, version), slot)| LoadedVersion {
                model: model.clone(),
                version: *version,
                state: slot.state,
                error: slot.error.clone(),
                memory_bytes: slot.model.as_ref().and_then(|loaded| match &loaded.model {
                    Runnable::Native(model) => Some(model.memory_bytes()),
                    Runnable::Onnx(_) => None,
                }),
            })
            .collect()
    }
}
