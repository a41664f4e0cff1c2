//! Which live workers hold each deployment, within each worker's memory capacity.
//!
//! Workers decide what to load without talking to each other: each runs
//! [`Placement::compute`] over the same catalog and worker records and so reaches the same
//! answer (a moment apart while a change propagates). The router runs it too, to say why
//! a deployment has no replica. Deployments are placed one at a time, oldest first (so a
//! new deployment never pushes an existing one off a full worker), each on the workers
//! that rank highest for its model (rendezvous hashing, so a model keeps its workers
//! while others come and go) and still have room for one replica.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytesize::ByteSize;

use crate::Catalog;
use crate::schema::{DeploymentRecord, WorkerRecord};

/// A replica's memory when its deployment does not state it: this many times the
/// artifacts of the versions it loads. A native model keeps its weights twice once
/// loaded (as stored, and packed for the serving product; workers report the measured
/// figure); for an ONNX graph, held as tract's optimized plan, it is a rough allowance,
/// not measured — state the memory of large graphs.
pub const ESTIMATE_FACTOR: u64 = 2;

/// Memory one replica of `deployment` takes: its stated `resources.memory_bytes`, else
/// [`ESTIMATE_FACTOR`] times the artifacts of every version it loads (targets and shadows).
pub fn replica_memory(catalog: &Catalog, deployment: &DeploymentRecord) -> u64 {
    let model = &deployment.model;
    let versions: BTreeSet<u64> = catalog
        .resolved_targets(model)
        .iter()
        .chain(catalog.shadow_targets(model))
        .map(|target| target.version)
        .collect();
    let artifacts = versions.iter().filter_map(|version| catalog.version(model, *version)).map(|v| v.size_bytes);
    stated_or_estimated(deployment.resources.memory_bytes, artifacts)
}

/// The stated memory, else [`ESTIMATE_FACTOR`] times the sum of the artifact sizes.
pub fn stated_or_estimated(stated: Option<u64>, artifact_sizes: impl IntoIterator<Item = u64>) -> u64 {
    stated.unwrap_or_else(|| {
        artifact_sizes.into_iter().fold(0u64, |sum, size| sum.saturating_add(size.saturating_mul(ESTIMATE_FACTOR)))
    })
}

/// `1.5 GiB`: how sizes read in messages.
pub fn human_bytes(bytes: u64) -> String {
    ByteSize(bytes).display().iec().to_string()
}

/// Where every deployment goes; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    holders: BTreeMap<String, Vec<String>>,
    shortfalls: BTreeMap<String, String>,
    /// Memory of the replicas placed on each worker.
    placed: BTreeMap<String, u64>,
}

impl Placement {
    /// Places every deployment of `catalog` on the accepting `workers`. A deployment with
    /// `replicas: 0` goes to every worker with room for it, one with `replicas: n` to the
    /// `n` highest-ranked workers with room.
    pub fn compute(catalog: &Catalog, workers: &HashMap<String, WorkerRecord>) -> Self {
        let mut room: BTreeMap<&str, Option<u64>> =
            workers.values().filter(|w| w.accepting).map(|w| (w.id.as_str(), w.memory_capacity_bytes)).collect();
        let mut placement = Self::default();
        let mut deployments: Vec<&DeploymentRecord> = catalog.deployments().collect();
        deployments.sort_by_key(|d| (d.created_unix_ms, d.model.as_str()));
        for deployment in deployments {
            let model = deployment.model.as_str();
            let need = replica_memory(catalog, deployment);
            let mut ranked: Vec<&str> = room.keys().copied().collect();
            ranked.sort_by_key(|worker| Reverse(rendezvous(model, worker)));
            let wanted = match deployment.replicas {
                0 => ranked.len(),
                n => n as usize,
            };
            let mut holders = Vec::new();
            for worker in &ranked {
                if holders.len() == wanted {
                    break;
                }
                match room.get_mut(worker) {
                    Some(Some(free)) if *free >= need => *free -= need,
                    Some(None) => {}
                    _ => continue,
                }
                holders.push((*worker).to_owned());
                let placed = placement.placed.entry((*worker).to_owned()).or_default();
                *placed = placed.saturating_add(need);
            }
            let short = if deployment.replicas == 0 { holders.is_empty() } else { holders.len() < wanted };
            if short && !ranked.is_empty() {
                placement
                    .shortfalls
                    .insert(model.to_owned(), shortfall(deployment, need, holders.len(), &ranked, &room));
            }
            placement.holders.insert(model.to_owned(), holders);
        }
        placement
    }

    /// Whether `worker` should hold `model`'s deployment.
    pub fn holds(&self, worker: &str, model: &str) -> bool {
        self.holders.get(model).is_some_and(|holders| holders.iter().any(|w| w == worker))
    }

    /// The workers that should hold `model`'s deployment, best-ranked first.
    pub fn holders(&self, model: &str) -> &[String] {
        self.holders.get(model).map_or(&[], Vec::as_slice)
    }

    /// Memory the replicas placed on `worker` need, together.
    pub fn placed_bytes(&self, worker: &str) -> u64 {
        self.placed.get(worker).copied().unwrap_or(0)
    }

    /// Why `model`'s deployment has fewer replicas than it asks for (none at all, for a
    /// deployment on every worker); `None` when it has them all or no worker is live.
    pub fn shortfall(&self, model: &str) -> Option<&str> {
        self.shortfalls.get(model).map(String::as_str)
    }
}

/// The message for a deployment that did not get its replicas.
fn shortfall(
    deployment: &DeploymentRecord,
    need: u64,
    placed: usize,
    ranked: &[&str],
    room: &BTreeMap<&str, Option<u64>>,
) -> String {
    let model = &deployment.model;
    let count = placed;
    let placed = match deployment.replicas {
        0 => "no worker holds it".to_owned(),
        n => format!("{placed} of its {n} replicas are placed"),
    };
    let mut reasons = Vec::new();
    if deployment.replicas as usize > ranked.len() {
        reasons.push(format!("there are only {} live workers", ranked.len()));
    }
    // Every live worker that does not hold it was passed over for want of room.
    if count < ranked.len() {
        let how = if deployment.resources.memory_bytes.is_some() { "as its deployment states" } else { "estimated" };
        let most = room
            .iter()
            .filter_map(|(worker, free)| free.map(|free| (free, *worker)))
            .max()
            .map(|(free, worker)| format!(" and the most any worker has left is {} ({worker})", human_bytes(free)))
            .unwrap_or_default();
        reasons.push(format!(
            "a replica needs {} ({how}){most}; give workers more --memory-capacity, add workers, or deploy \
             fewer versions",
            human_bytes(need)
        ));
    }
    format!("{model}: {placed}; {}", reasons.join("; "))
}

/// A worker's rank for a model: FNV-1a of both, stable across processes and builds
/// (unlike std's hasher), so every worker ranks alike.
fn rendezvous(model: &str, worker: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in model.bytes().chain([0]).chain(worker.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MirrorState;
    use crate::schema::{self, DeploymentTarget, ModelRecord, Resources, VersionRecord};

    const MIB: u64 = 1 << 20;

    /// Models `(name, artifact size)` with one version each, deployed with `replicas`
    /// and the stated memory.
    fn catalog(models: &[(&str, u64, u32, Option<u64>)]) -> Catalog {
        let mut entries = BTreeMap::new();
        let mut deployments = BTreeMap::new();
        for (index, &(name, size_bytes, replicas, memory_bytes)) in models.iter().enumerate() {
            let version =
                VersionRecord { model: name.into(), version: 1, size_bytes, kind: "mlp".into(), ..Default::default() };
            entries.insert(
                schema::model_key(name),
                schema::encode(&ModelRecord { name: name.into(), ..Default::default() }),
            );
            entries.insert(schema::version_key(name, 1), schema::encode(&version));
            let deployment = DeploymentRecord {
                model: name.into(),
                targets: vec![DeploymentTarget { version: Some(1), alias: None, weight: 1, shadow: false }],
                replicas,
                batching: Default::default(),
                resources: Resources { memory_bytes },
                created_unix_ms: index as i64 + 1,
            };
            deployments.insert(schema::deployment_key(name), schema::encode(&deployment));
        }
        Catalog::build(
            &MirrorState { entries, revision: 1, synced: true },
            &MirrorState { entries: deployments, revision: 1, synced: true },
        )
    }

    fn workers(list: &[(&str, Option<u64>)]) -> HashMap<String, WorkerRecord> {
        list.iter()
            .map(|&(id, memory_capacity_bytes)| {
                let record = WorkerRecord {
                    id: id.into(),
                    addr: String::new(),
                    loaded: Vec::new(),
                    accepting: true,
                    memory_capacity_bytes,
                };
                (id.to_owned(), record)
            })
            .collect()
    }

    #[test]
    fn without_capacities_every_worker_holds_every_deployment() {
        let catalog = catalog(&[("a", 10 * MIB, 0, None), ("b", 10 * MIB, 0, None)]);
        let placement = Placement::compute(&catalog, &workers(&[("w1", None), ("w2", None)]));
        for model in ["a", "b"] {
            assert!(placement.holds("w1", model) && placement.holds("w2", model), "{placement:?}");
            assert_eq!(placement.shortfall(model), None);
        }
    }

    #[test]
    fn a_worker_takes_deployments_only_while_they_fit() {
        // Each replica needs 2 x 10 MiB; w1 has room for one, w2 for two.
        let catalog = catalog(&[("a", 10 * MIB, 0, None), ("b", 10 * MIB, 0, None)]);
        let placement = Placement::compute(&catalog, &workers(&[("w1", Some(30 * MIB)), ("w2", Some(40 * MIB))]));
        assert!(placement.holds("w2", "a") && placement.holds("w2", "b"), "{placement:?}");
        assert!(placement.holds("w1", "a") ^ placement.holds("w1", "b"), "w1 holds exactly one: {placement:?}");
        assert_eq!((placement.placed_bytes("w1"), placement.placed_bytes("w2")), (20 * MIB, 40 * MIB));
        assert_eq!(placement.placed_bytes("w3"), 0, "an unknown worker holds nothing");
        assert_eq!(placement.shortfall("a"), None, "a deployment on every worker only needs one with room");
        assert_eq!(placement.shortfall("b"), None);
    }

    #[test]
    fn older_deployments_keep_their_room() {
        // "zeta" was deployed first: "alpha", deployed later, does not push it out
        // although it sorts first by name.
        let catalog = catalog(&[("zeta", 10 * MIB, 0, None), ("alpha", 10 * MIB, 0, None)]);
        let placement = Placement::compute(&catalog, &workers(&[("w1", Some(30 * MIB))]));
        assert!(placement.holds("w1", "zeta") && !placement.holds("w1", "alpha"), "{placement:?}");
        assert!(placement.shortfall("alpha").is_some_and(|why| why.starts_with("alpha: no worker holds it")));
    }

    #[test]
    fn the_stated_memory_overrides_the_estimate() {
        let small = catalog(&[("a", 10 * MIB, 0, Some(MIB))]);
        let placement = Placement::compute(&small, &workers(&[("w1", Some(2 * MIB))]));
        assert!(placement.holds("w1", "a"), "1 MiB stated fits in 2 MiB though the artifact is 10 MiB");
        let large = catalog(&[("a", MIB, 0, Some(100 * MIB))]);
        let placement = Placement::compute(&large, &workers(&[("w1", Some(50 * MIB))]));
        assert!(!placement.holds("w1", "a"));
        let why = placement.shortfall("a").expect("explained");
        assert!(why.contains("100.0 MiB (as its deployment states)") && why.contains("50.0 MiB (w1)"), "{why}");
    }

    #[test]
    fn replicas_go_to_the_best_ranked_workers_with_room() {
        let catalog = catalog(&[("a", MIB, 2, None)]);
        let all = workers(&[("w1", None), ("w2", None), ("w3", None)]);
        let placement = Placement::compute(&catalog, &all);
        let holders = placement.holders("a").to_vec();
        assert_eq!(holders.len(), 2);
        // Filling the first choice pushes the replica to the third worker.
        let mut full = all.clone();
        full.get_mut(&holders[0]).expect("listed").memory_capacity_bytes = Some(MIB);
        let placement = Placement::compute(&catalog, &full);
        assert!(!placement.holds(&holders[0], "a") && placement.holds(&holders[1], "a"), "{placement:?}");
        assert_eq!(placement.holders("a").len(), 2);
        // With room on one worker only, the shortfall says so.
        for (id, record) in full.iter_mut() {
            if *id != holders[1] {
                record.memory_capacity_bytes = Some(MIB);
            }
        }
        let placement = Placement::compute(&catalog, &full);
        assert_eq!(placement.holders("a"), [holders[1].clone()]);
        let why = placement.shortfall("a").expect("explained");
        assert!(why.starts_with("a: 1 of its 2 replicas are placed; a replica needs 2.0 MiB (estimated)"), "{why}");
    }

    #[test]
    fn more_replicas_than_workers_is_explained_and_draining_workers_hold_nothing() {
        let catalog = catalog(&[("a", MIB, 3, None)]);
        let mut all = workers(&[("w1", None), ("w2", None)]);
        let placement = Placement::compute(&catalog, &all);
        assert_eq!(placement.holders("a").len(), 2);
        assert_eq!(placement.shortfall("a"), Some("a: 2 of its 3 replicas are placed; there are only 2 live workers"));
        all.get_mut("w1").expect("listed").accepting = false;
        let placement = Placement::compute(&catalog, &all);
        assert_eq!(placement.holders("a"), ["w2".to_owned()]);
        // Too few workers, and one of them without room: both reasons.
        let mixed = workers(&[("w1", None), ("w2", Some(MIB))]);
        let placement = Placement::compute(&catalog, &mixed);
        assert_eq!(placement.holders("a"), ["w1".to_owned()]);
        assert_eq!(
            placement.shortfall("a"),
            Some(
                "a: 1 of its 3 replicas are placed; there are only 2 live workers; a replica needs 2.0 MiB \
                 (estimated) and the most any worker has left is 1.0 MiB (w2); give workers more \
                 --memory-capacity, add workers, or deploy fewer versions"
            )
        );
        // No live worker at all: nothing to explain beyond "no replica".
        let placement = Placement::compute(&catalog, &HashMap::new());
        assert_eq!((placement.holders("a").len(), placement.shortfall("a")), (0, None));
    }

    #[test]
    fn the_estimate_counts_every_version_once() {
        assert_eq!(stated_or_estimated(None, [MIB, 3 * MIB]), 8 * MIB);
        assert_eq!(stated_or_estimated(Some(5), [MIB]), 5);
        assert_eq!(stated_or_estimated(None, [u64::MAX, 1]), u64::MAX, "saturates rather than wrapping");
        assert_eq!(human_bytes(1536 * MIB), "1.5 GiB");
    }
}
