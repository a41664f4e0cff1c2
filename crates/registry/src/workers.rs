//! What the registry knows of the workers: their records under `/workers/`, and where
//! the placement every worker computes puts the deployments.

use std::collections::{BTreeMap, HashMap};

use modelplane_store::schema::{self, DeploymentRecord, WorkerRecord};
use modelplane_store::{Catalog, MirrorState, Placement, placement};

use crate::{Error, Registry, Result};

/// A change not yet made, to place as if it were.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change<'a> {
    /// An alias moved to another version.
    Alias { model: &'a str, alias: &'a str, version: u64 },
    /// A deployment set (created or replaced).
    Deployment(&'a DeploymentRecord),
}

/// A live worker as `ListWorkers` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerView {
    /// Its record: address, capacity, loaded versions.
    pub record: WorkerRecord,
    /// Memory the deployments placed on it need.
    pub placed_bytes: u64,
}

impl Registry {
    /// Live workers by id, with the memory placed on each (the same placement the workers
    /// compute, from the store as it is now).
    pub async fn list_workers(&self) -> Result<Vec<WorkerView>> {
        let workers = self.worker_records().await?;
        let (models, deployments) = self.placement_inputs().await?;
        let placement = Placement::compute(&Catalog::build(&models, &deployments), &workers);
        let mut views: Vec<WorkerView> = workers
            .into_values()
            .map(|record| WorkerView { placed_bytes: placement.placed_bytes(&record.id), record })
            .collect();
        views.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        Ok(views)
    }

    /// Refuses a deployment whose replica is larger than every live worker's memory
    /// capacity: no worker would ever load it. With no live worker, or one without a
    /// limit, anything may fit.
    pub(crate) async fn check_some_worker_fits(&self, model: &str, need: u64, stated: bool) -> Result<()> {
        let mut largest: Option<(u64, String)> = None;
        for worker in self.worker_records().await?.into_values().filter(|w| w.accepting) {
            let Some(capacity) = worker.memory_capacity_bytes else { return Ok(()) };
            if largest.as_ref().is_none_or(|(most, id)| (capacity, &worker.id) > (*most, id)) {
                largest = Some((capacity, worker.id));
            }
        }
        match largest {
            Some((capacity, worker)) if capacity < need => {
                let (how, or) = if stated {
                    ("as stated", "state less if the model needs less")
                } else {
                    ("estimated as twice its artifacts", "state the replica's real need (deploy --memory)")
                };
                Err(Error::FailedPrecondition(format!(
                    "a replica of {model} needs {} ({how}), more than any live worker can hold \
                     (the largest, {worker}, has {}); start workers with a larger --memory-capacity, \
                     or {or}",
                    placement::human_bytes(need),
                    placement::human_bytes(capacity)
                )))
            }
            _ => Ok(()),
        }
    }

    /// Memory one replica of `deployment` needs: as stated, else twice the artifacts of
    /// the versions its targets resolve to — with `flip`'s alias taken to point at its
    /// version, to check an alias change before it is made.
    pub(crate) async fn replica_need(&self, deployment: &DeploymentRecord, flip: Option<(&str, u64)>) -> Result<u64> {
        let model = &deployment.model;
        let mut artifacts = BTreeMap::new();
        for target in &deployment.targets {
            let version = match (target.version, target.alias.as_deref()) {
                (Some(version), _) => version,
                (None, Some(alias)) => match flip {
                    Some((flipped, version)) if flipped == alias => version,
                    _ => self.get_alias(model, alias).await?,
                },
                (None, None) => continue,
            };
            let record = self.get_version(model, &version.to_string()).await?;
            artifacts.insert(version, record.size_bytes);
        }
        Ok(placement::stated_or_estimated(deployment.resources.memory_bytes, artifacts.into_values()))
    }

    /// Refuses a change that would leave `model`'s deployment, placed now, with no
    /// worker (older deployments took the room it would need): the workers would unload
    /// the versions still serving. `what` names the change in the message.
    pub(crate) async fn check_keeps_replicas(&self, model: &str, change: Change<'_>, what: &str) -> Result<()> {
        let workers = self.worker_records().await?;
        if workers.is_empty() {
            return Ok(());
        }
        let (models, deployments) = self.placement_inputs().await?;
        if Placement::compute(&Catalog::build(&models, &deployments), &workers).holders(model).is_empty() {
            return Ok(());
        }
        let (mut models, mut deployments) = (models, deployments);
        match change {
            Change::Alias { model, alias, version } => {
                models.entries.insert(schema::alias_key(model, alias), version.to_string().into_bytes());
            }
            Change::Deployment(deployment) => {
                deployments.entries.insert(schema::deployment_key(&deployment.model), schema::encode(deployment));
            }
        }
        let after = Placement::compute(&Catalog::build(&models, &deployments), &workers);
        match after.shortfall(model) {
            Some(why) if after.holders(model).is_empty() => Err(Error::FailedPrecondition(format!(
                "{what}: the deployment of {model} would lose every worker ({why})"
            ))),
            _ => Ok(()),
        }
    }

    /// The models and deployments as the workers' mirrors hold them, read now.
    async fn placement_inputs(&self) -> Result<(MirrorState, MirrorState)> {
        let state = |snapshot: modelplane_store::Snapshot| MirrorState {
            entries: snapshot.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect(),
            revision: snapshot.revision,
            synced: true,
        };
        let models = state(self.store.range(schema::MODELS).await?);
        Ok((models, state(self.store.range(schema::DEPLOYMENTS).await?)))
    }

    /// Every worker record; a corrupt one is skipped with a warning.
    async fn worker_records(&self) -> Result<HashMap<String, WorkerRecord>> {
        let snapshot = self.store.range(schema::WORKERS).await?;
        let mut workers = HashMap::new();
        for kv in &snapshot.kvs {
            match schema::decode::<WorkerRecord>(&kv.key, &kv.value) {
                Ok(worker) => {
                    workers.insert(worker.id.clone(), worker);
                }
                Err(err) => tracing::warn!(error = %err, "skipping corrupt worker record"),
            }
        }
        Ok(workers)
    }
}
