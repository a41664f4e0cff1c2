//! What the registry knows of the workers: their records under `/workers/`, and where
//! the placement every worker computes puts the deployments.

use std::collections::{BTreeMap, HashMap};

use modelplane_store::schema::{self, DeploymentRecord, WorkerRecord};
use modelplane_store::{Catalog, Mirror, MirrorState, Placement, placement};

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

    /// Refuses a deployment whose replica is larger than every worker's memory capacity:
    /// no worker would ever load it. The workers are the live ones, or while none is, the
    /// ones last seen serving (see [`crate::known_workers`]); with neither, or one
    /// without a limit, anything may fit.
    pub(crate) async fn check_some_worker_fits(&self, model: &str, need: u64, stated: bool) -> Result<()> {
        let judged = self.judging_workers().await?;
        let mut largest: Option<(u64, String)> = None;
        for worker in judged.records.into_values().filter(|w| w.accepting) {
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
                let which = match judged.absent_for {
                    None => "any live worker".to_owned(),
                    Some(ago) => format!("any worker seen serving {} ago (none is live now)", seconds(ago)),
                };
                Err(Error::FailedPrecondition(format!(
                    "a replica of {model} needs {} ({how}), more than {which} can hold \
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
        let JudgedWorkers { records: workers, absent_for } = self.judging_workers().await?;
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
            Some(why) if after.holders(model).is_empty() => {
                let on = match absent_for {
                    None => String::new(),
                    Some(ago) => format!("; placed on the workers seen serving {} ago, none is live now", seconds(ago)),
                };
                Err(Error::FailedPrecondition(format!(
                    "{what}: the deployment of {model} would lose every worker ({why}{on})"
                )))
            }
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

    /// The workers placement checks judge by: the live ones while any accepts work,
    /// else those last seen serving within the configured grace, else the live ones (none,
    /// or only draining ones: a cluster being set up or emptied long ago).
    async fn judging_workers(&self) -> Result<JudgedWorkers> {
        let live = self.worker_records().await?;
        self.known_workers.observe(&live);
        if !live.values().any(|worker| worker.accepting)
            && let Some(remembered) = self.known_workers.within(self.config().worker_absence_grace)
        {
            return Ok(JudgedWorkers { records: remembered.workers, absent_for: Some(remembered.ago) });
        }
        Ok(JudgedWorkers { records: live, absent_for: None })
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

    /// Follows the worker records until `shutdown`, so the workers seen serving are known
    /// even when no placement check ran while they were live. (A listing with a corrupt
    /// record is left out here; the checks' own reads skip just that record.)
    pub(crate) async fn remember_workers(&self, shutdown: modelplane_service::Shutdown) {
        let mirror = Mirror::start(self.store.clone(), schema::WORKERS);
        let mut changes = mirror.subscribe();
        loop {
            let listed = modelplane_store::workers(&changes.borrow_and_update());
            if let Ok(listed) = listed {
                self.known_workers.observe(&listed);
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// The workers a placement check judges by.
struct JudgedWorkers {
    records: HashMap<String, WorkerRecord>,
    /// Set when they are remembered, not live: how long ago they were seen.
    absent_for: Option<std::time::Duration>,
}

/// Whole seconds, for messages.
fn seconds(duration: std::time::Duration) -> String {
    format!("{} s", duration.as_secs())
}
