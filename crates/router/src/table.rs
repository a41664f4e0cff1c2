//! The routing table: which ready replicas serve each model version, and how a
//! requested version (number, alias or empty) resolves to one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use modelplane_store::schema::{LoadState, WorkerRecord};
use modelplane_store::{Catalog, Placement, Requested, ResolvedTarget};
use rand::Rng;

use modelplane_service::InProcessServers;

use crate::worker_link::WorkerLink;
use crate::{Error, Result};

/// One worker that has a version ready.
#[derive(Clone)]
pub struct Replica {
    /// Worker id.
    pub worker: String,
    /// Connection to its inference endpoint.
    pub client: Arc<WorkerLink>,
    /// Requests this router has in flight to the worker (all versions), for P2C.
    pub pending: Arc<AtomicUsize>,
}

/// Counts a request as pending on its replica until dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Replica {
    /// Marks one more request pending until the guard drops.
    pub fn start(&self) -> InFlight {
        self.pending.fetch_add(1, Ordering::Relaxed);
        InFlight(self.pending.clone())
    }

    fn load(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Orders `replicas` for one request: the first is the less loaded of two picked at
/// random (power of two choices), the rest follow by pending requests, for retries.
/// P2C avoids the herd that "least loaded" causes when many routers see the same
/// counts, and needs no global view. Hand-written rather than `tower::balance::p2c`:
/// retries must go to a *different* replica and skip suspects, and tower's balancer
/// does not say which endpoint it chose.
pub fn power_of_two_choices<'a>(replicas: &[&'a Replica]) -> Vec<&'a Replica> {
    let mut order: Vec<&Replica> = replicas.to_vec();
    if order.len() < 2 {
        return order;
    }
    let mut rng = rand::rng();
    let a = rng.random_range(0..order.len());
    let b = (a + rng.random_range(1..order.len())) % order.len();
    let first = if order[b].load() < order[a].load() { b } else { a };
    let chosen = order.remove(first);
    order.sort_by_key(|r| r.load());
    order.insert(0, chosen);
    order
}

/// A snapshot of catalog and replicas; rebuilt on every change, read on every request.
pub struct RoutingTable {
    /// Models, versions, aliases, deployments.
    pub catalog: Arc<Catalog>,
    replicas: HashMap<(String, u64), Vec<Replica>>,
    workers: HashMap<String, WorkerRecord>,
    /// Where the workers place each deployment; worked out only to explain a deployment
    /// without replicas, so a table rebuild does not pay for it.
    placement: OnceLock<Placement>,
}

/// Clients per worker address, reused across table rebuilds.
#[derive(Default)]
pub struct Clients {
    by_addr: Mutex<HashMap<String, WorkerClient>>,
    in_process: InProcessServers,
    credentials: modelplane_service::Credentials,
    tls_server_name: Option<String>,
}

/// A worker's inference client and its pending-request counter.
type WorkerClient = (Arc<WorkerLink>, Arc<AtomicUsize>);

impl Clients {
    /// Clients that call the workers registered in `in_process` directly, presenting
    /// `credentials` to every worker and, over TLS, checking each worker's certificate
    /// against `tls_server_name` (else the host it advertises).
    pub fn new(
        in_process: InProcessServers,
        credentials: modelplane_service::Credentials,
        tls_server_name: Option<String>,
    ) -> Self {
        Self { by_addr: Mutex::default(), in_process, credentials, tls_server_name }
    }

    fn get(&self, addr: &str) -> Option<WorkerClient> {
        let mut clients = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = clients.get(addr) {
            return Some(entry.clone());
        }
        match WorkerLink::new(addr, self.in_process.clone(), &self.credentials, self.tls_server_name.as_deref()) {
            Ok(link) => {
                let entry = (Arc::new(link), Arc::new(AtomicUsize::new(0)));
                clients.insert(addr.to_owned(), entry.clone());
                Some(entry)
            }
            Err(err) => {
                tracing::warn!(%addr, error = %err, "worker address is not usable");
                None
            }
        }
    }
}

impl Clients {
    /// Forgets the links to addresses `keep` rejects, and with them their connections and
    /// idle streams (requests in flight hold their own reference). Workers come and go
    /// at new addresses; without this every address ever seen would keep a link.
    fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.by_addr.lock().unwrap_or_else(|p| p.into_inner()).retain(|addr, _| keep(addr));
    }

    #[cfg(test)]
    fn addresses(&self) -> Vec<String> {
        self.by_addr.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }
}

impl RoutingTable {
    /// Builds the table from the catalog and the live workers' records.
    pub fn build(catalog: Arc<Catalog>, workers: HashMap<String, WorkerRecord>, clients: &Clients) -> Self {
        let mut replicas: HashMap<(String, u64), Vec<Replica>> = HashMap::new();
        let mut ids: Vec<&String> = workers.keys().collect();
        ids.sort();
        for id in ids {
            let worker = &workers[id];
            if !worker.accepting {
                continue;
            }
            let Some((client, pending)) = clients.get(&worker.addr) else {
                continue;
            };
            for loaded in worker.loaded.iter().filter(|l| l.state == LoadState::Ready) {
                replicas.entry((loaded.model.clone(), loaded.version)).or_default().push(Replica {
                    worker: worker.id.clone(),
                    client: client.clone(),
                    pending: pending.clone(),
                });
            }
        }
        let named: std::collections::HashSet<&str> = workers.values().map(|w| w.addr.as_str()).collect();
        clients.retain(|addr| named.contains(addr));
        Self { catalog, replicas, workers, placement: OnceLock::new() }
    }

    /// Why `model`'s deployment is short of replicas, when the workers' capacities or
    /// numbers are the reason (see [`Placement`]).
    pub fn shortfall(&self, model: &str) -> Option<&str> {
        self.placement.get_or_init(|| Placement::compute(&self.catalog, &self.workers)).shortfall(model)
    }

    /// Ready replicas of a version.
    pub fn replicas(&self, model: &str, version: u64) -> &[Replica] {
        self.replicas.get(&(model.to_owned(), version)).map(Vec::as_slice).unwrap_or(&[])
    }

    fn has_replicas(&self, model: &str, version: u64) -> bool {
        !self.replicas(model, version).is_empty()
    }

    fn has_live_replicas(&self, model: &str, version: u64, suspects: &Suspects) -> bool {
        self.replicas(model, version).iter().any(|r| !suspects.contains(&r.worker))
    }

    /// Replicas to try, healthy ones first: suspects come last, as a final resort.
    pub fn candidates(&self, model: &str, version: u64, suspects: &Suspects) -> Vec<&Replica> {
        let (mut live, suspect): (Vec<&Replica>, Vec<&Replica>) =
            self.replicas(model, version).iter().partition(|r| !suspects.contains(&r.worker));
        live.extend(suspect);
        live
    }

    /// Every worker with at least one ready version, once each.
    pub fn workers(&self) -> Vec<&Replica> {
        let mut seen = std::collections::HashSet::new();
        self.replicas.values().flatten().filter(|r| seen.insert(r.worker.as_str())).collect()
    }

    /// Whether every deployed target has a ready replica.
    pub fn all_deployments_ready(&self) -> bool {
        self.catalog.deployments().all(|d| {
            let targets = self.catalog.resolved_targets(&d.model);
            !targets.is_empty() && targets.iter().all(|t| self.has_replicas(&d.model, t.version))
        })
    }
}

/// Workers whose connection failed recently. A killed worker stays in the routing table
/// until its lease expires; meanwhile it is skipped (and versions only it holds count
/// as unavailable), unless no other replica is left to try.
#[derive(Default)]
pub struct Suspects {
    until: Mutex<HashMap<String, Instant>>,
}

/// How long a worker whose connection failed is avoided.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

impl Suspects {
    /// Avoid `worker` for a while.
    pub fn mark(&self, worker: &str) {
        self.until.lock().unwrap_or_else(|p| p.into_inner()).insert(worker.to_owned(), Instant::now() + SUSPECT_FOR);
    }

    /// Whether `worker` is being avoided.
    pub fn contains(&self, worker: &str) -> bool {
        self.until.lock().unwrap_or_else(|p| p.into_inner()).get(worker).is_some_and(|until| Instant::now() < *until)
    }
}

/// The last versions each alias (or deployment target) resolved to that had ready
/// replicas. While a flip is loading, requests keep going to such a version instead of
/// failing; once the new version has replicas they move over.
///
/// Two are kept because requests hold table snapshots of different ages: once one
/// request on a new table has moved the alias to v2, another still holding the table
/// from before v2 was ready must find v1, not fail for want of v2.
#[derive(Default)]
pub struct LastGood {
    /// By model. Looked up by `&str` on every request: nothing is allocated unless a
    /// name is new.
    models: Mutex<HashMap<String, ModelGood>>,
}

/// What a last-good version is kept for: an alias a request named, or a deployment
/// target, by its alias or else its version.
#[derive(Clone, Copy, Debug)]
enum Named<'a> {
    Alias(&'a str),
    TargetAlias(&'a str),
    TargetVersion(u64),
}

/// One model's last-good versions, by what they are kept for.
#[derive(Default)]
struct ModelGood {
    aliases: HashMap<String, GoodVersions>,
    target_aliases: HashMap<String, GoodVersions>,
    target_versions: HashMap<u64, GoodVersions>,
}

/// The newest version that had ready replicas, and the one before it.
#[derive(Clone, Copy, Debug)]
struct GoodVersions {
    latest: u64,
    before: Option<u64>,
}

impl GoodVersions {
    fn now(&mut self, current: u64) {
        if self.latest != current {
            *self = GoodVersions { latest: current, before: Some(self.latest) };
        }
    }
}

impl ModelGood {
    fn get(&self, named: Named<'_>) -> Option<&GoodVersions> {
        match named {
            Named::Alias(alias) => self.aliases.get(alias),
            Named::TargetAlias(alias) => self.target_aliases.get(alias),
            Named::TargetVersion(version) => self.target_versions.get(&version),
        }
    }

    /// `current` has live replicas: it becomes the latest good version for `named`.
    fn remember(&mut self, named: Named<'_>, current: u64) {
        let fresh = GoodVersions { latest: current, before: None };
        let by_name = |map: &mut HashMap<String, GoodVersions>, name: &str| match map.get_mut(name) {
            Some(good) => good.now(current),
            None => {
                map.insert(name.to_owned(), fresh);
            }
        };
        match named {
            Named::Alias(alias) => by_name(&mut self.aliases, alias),
            Named::TargetAlias(alias) => by_name(&mut self.target_aliases, alias),
            Named::TargetVersion(version) => self.target_versions.entry(version).or_insert(fresh).now(current),
        }
    }
}

impl LastGood {
    fn pick(&self, table: &RoutingTable, suspects: &Suspects, model: &str, named: Named<'_>, current: u64) -> u64 {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if table.has_live_replicas(model, current, suspects) {
            match models.get_mut(model) {
                Some(good) => good.remember(named, current),
                None => models.entry(model.to_owned()).or_default().remember(named, current),
            }
            return current;
        }
        let Some(good) = models.get(model).and_then(|good| good.get(named)) else { return current };
        [Some(good.latest), good.before]
            .into_iter()
            .flatten()
            .find(|version| table.has_live_replicas(model, *version, suspects))
            .unwrap_or(current)
    }
}

/// Resolves the requested version to a version number with ready replicas where one exists.
pub fn resolve(
    table: &RoutingTable,
    last_good: &LastGood,
    suspects: &Suspects,
    model: &str,
    version: &str,
) -> Result<u64> {
    if model.is_empty() {
        return Err(Error::InvalidArgument("model name is required".into()));
    }
    Ok(match table.catalog.lookup(model, version).map_err(Error::NotFound)? {
        Requested::Number(number) => number,
        Requested::Alias(alias, number) => last_good.pick(table, suspects, model, Named::Alias(alias), number),
        Requested::Targets(targets) => {
            let target = pick_weighted(targets);
            let named = match &target.alias {
                Some(alias) => Named::TargetAlias(alias),
                None => Named::TargetVersion(target.version),
            };
            last_good.pick(table, suspects, model, named, target.version)
        }
    })
}

fn pick_weighted(targets: &[ResolvedTarget]) -> &ResolvedTarget {
    let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if targets.len() == 1 || total == 0 {
        return &targets[0];
    }
    let mut point = rand::rng().random_range(0..total);
    for target in targets {
        let weight = u64::from(target.weight);
        if point < weight {
            return target;
        }
        point -= weight;
    }
    &targets[targets.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(worker: &str, pending: usize) -> Replica {
        Replica {
            worker: worker.into(),
            client: Arc::new(
                WorkerLink::new("127.0.0.1:1", Default::default(), &Default::default(), None).expect("link"),
            ),
            pending: Arc::new(AtomicUsize::new(pending)),
        }
    }

    /// Model `m` with versions 1 and 2 and alias `prod` on `alias`, served by one worker
    /// that has `ready` loaded.
    fn table(alias: u64, ready: &[u64], clients: &Clients) -> RoutingTable {
        use modelplane_store::MirrorState;
        use modelplane_store::schema::{self, LoadedVersion, ModelRecord, VersionRecord};
        let mut entries = std::collections::BTreeMap::new();
        entries.insert(schema::model_key("m"), schema::encode(&ModelRecord { name: "m".into(), ..Default::default() }));
        for version in [1, 2] {
            let record = VersionRecord { model: "m".into(), version, kind: "linear".into(), ..Default::default() };
            entries.insert(schema::version_key("m", version), schema::encode(&record));
        }
        entries.insert(schema::alias_key("m", "prod"), alias.to_string().into_bytes());
        let models = MirrorState { entries, revision: 1, synced: true };
        let catalog = Arc::new(Catalog::build(&models, &MirrorState::default()));
        let loaded = ready
            .iter()
            .map(|&version| LoadedVersion {
                model: "m".into(),
                version,
                state: LoadState::Ready,
                error: String::new(),
                memory_bytes: None,
            })
            .collect();
        let worker = WorkerRecord {
            id: "w".into(),
            addr: "127.0.0.1:1".into(),
            loaded,
            accepting: true,
            memory_capacity_bytes: None,
        };
        RoutingTable::build(catalog, [("w".to_owned(), worker)].into(), clients)
    }

    #[test]
    fn links_to_workers_that_left_are_dropped() {
        let clients = Clients::default();
        let served = table(1, &[1], &clients);
        assert_eq!(clients.addresses(), ["127.0.0.1:1"]);
        let (held, _) = clients.get("127.0.0.1:1").expect("link");
        let empty = RoutingTable::build(served.catalog.clone(), HashMap::new(), &clients);
        assert!(clients.addresses().is_empty(), "the link outlived its worker: {:?}", clients.addresses());
        assert!(empty.replicas("m", 1).is_empty());
        drop(held);
        table(1, &[1], &clients);
        assert_eq!(clients.addresses(), ["127.0.0.1:1"], "a worker that returns gets a new link");
    }

    #[tokio::test]
    async fn a_request_on_an_older_table_keeps_the_version_that_table_can_serve() {
        let clients = Clients::default();
        let (before_flip, loading_v2, with_v2) =
            (table(1, &[1], &clients), table(2, &[1], &clients), table(2, &[1, 2], &clients));
        let (last_good, suspects) = (LastGood::default(), Suspects::default());
        let resolve = |table: &RoutingTable| resolve(table, &last_good, &suspects, "m", "prod").expect("resolves");
        assert_eq!(resolve(&before_flip), 1);
        // The alias now points at v2, which is still loading: requests stay on v1.
        assert_eq!(resolve(&loading_v2), 1);
        // v2 is ready in the newer table: requests move to it.
        assert_eq!(resolve(&with_v2), 2);
        // A request that took its table before v2 was ready still finds v1.
        assert_eq!(resolve(&loading_v2), 1);
        // With neither version served, the answer is the alias's own version.
        assert_eq!(resolve(&table(2, &[], &clients)), 2);
    }

    #[test]
    fn last_good_versions_are_kept_apart_by_what_they_were_named_by() {
        let mut good = ModelGood::default();
        good.remember(Named::Alias("prod"), 1);
        good.remember(Named::TargetAlias("prod"), 7);
        good.remember(Named::TargetVersion(3), 3);
        good.remember(Named::Alias("prod"), 2);
        good.remember(Named::Alias("prod"), 2);
        let prod = good.get(Named::Alias("prod")).expect("kept");
        assert_eq!((prod.latest, prod.before), (2, Some(1)), "the same version twice is no flip");
        let target = good.get(Named::TargetAlias("prod")).expect("kept");
        assert_eq!((target.latest, target.before), (7, None), "a deployment's alias target is its own entry");
        assert!(good.get(Named::TargetVersion(3)).is_some() && good.get(Named::TargetVersion(2)).is_none());
        assert!(good.get(Named::Alias("staging")).is_none());
    }

    #[tokio::test]
    async fn two_choices_never_pick_the_busiest_of_three_and_retries_follow_load() {
        let replicas = [replica("a", 0), replica("b", 5), replica("c", 9)];
        let refs: Vec<&Replica> = replicas.iter().collect();
        let mut firsts = HashMap::new();
        for _ in 0..3000 {
            let order = power_of_two_choices(&refs);
            assert_eq!(order.len(), 3);
            *firsts.entry(order[0].worker.clone()).or_insert(0) += 1;
            let rest: Vec<usize> = order[1..].iter().map(|r| r.load()).collect();
            assert!(rest.windows(2).all(|w| w[0] <= w[1]), "retries by load: {rest:?}");
        }
        // "c" loses every pairing; "a" wins both of its pairings (2/3 of draws), "b" one.
        assert_eq!(firsts.get("c"), None);
        let a = f64::from(firsts["a"]) / 3000.0;
        assert!((a - 2.0 / 3.0).abs() < 0.05, "a chosen {a:.3} of the time");
    }

    #[tokio::test]
    async fn a_request_counts_as_pending_until_its_guard_drops() {
        let r = replica("a", 0);
        let guard = r.start();
        assert_eq!(r.load(), 1);
        drop(guard);
        assert_eq!(r.load(), 0);
    }
}
