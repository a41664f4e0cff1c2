//! Registry and routing at scale: 1,000 models × 10 versions in a real etcd.
//!
//! Measures ListModels / ListVersions page latency through the registry's domain API,
//! the time a new router takes from nothing to a built routing table (prefix reads,
//! watches, decoding, table), and the memory that adds. Run:
//!
//!     cargo bench -p modelplane --bench scale
//!
//! (needs `etcd` on PATH; scripts/test.sh installs it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelplane_model::{InputKind, Model};
use modelplane_store::schema::{
    self, DeploymentRecord, DeploymentTarget, LoadState, LoadedVersion, ModelRecord, VersionRecord, WorkerRecord,
};
use modelplane_store::{Catalog, KvStore, Mirror};

const MODELS: usize = 1_000;
const VERSIONS: u64 = 10;
const WORKERS: usize = 3;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn populate(store: Arc<dyn KvStore>) {
    let signature = Model::signature_for(modelplane_model::Head::Softmax, InputKind::Features(30), 2);
    let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
    for m in 0..MODELS {
        let name = format!("model-{m:04}");
        let labels = BTreeMap::from([("team".to_owned(), format!("team-{}", m % 10))]);
        let record = ModelRecord { name: name.clone(), latest_version: VERSIONS, labels, ..Default::default() };
        writes.push((schema::model_key(&name), schema::encode(&record)));
        for v in 1..=VERSIONS {
            let version = VersionRecord {
                model: name.clone(),
                version: v,
                sha256: format!("{:064x}", m as u64 * 100 + v),
                size_bytes: 4096,
                kind: "logistic".into(),
                signature: signature.clone(),
                metrics: BTreeMap::from([("accuracy".to_owned(), 0.9), ("log_loss".to_owned(), 0.2)]),
                labels: vec!["0".into(), "1".into()],
                confusion_matrix: vec![vec![40, 2], vec![3, 55]],
                feature_importances: BTreeMap::new(),
                lineage: Default::default(),
                created_unix_ms: 0,
                archived: false,
            };
            writes.push((schema::version_key(&name, v), schema::encode(&version)));
        }
        writes.push((schema::alias_key(&name, "production"), VERSIONS.to_string().into_bytes()));
        let deployment = DeploymentRecord {
            model: name.clone(),
            targets: vec![DeploymentTarget {
                version: None,
                alias: Some("production".into()),
                weight: 1,
                shadow: false,
            }],
            replicas: 0,
            batching: Default::default(),
            resources: Default::default(),
            created_unix_ms: 0,
        };
        writes.push((schema::deployment_key(&name), schema::encode(&deployment)));
    }
    for w in 0..WORKERS {
        let loaded = (0..MODELS)
            .map(|m| LoadedVersion {
                model: format!("model-{m:04}"),
                version: VERSIONS,
                state: LoadState::Ready,
                error: String::new(),
                memory_bytes: Some(4096),
            })
            .collect();
        let worker = WorkerRecord {
            id: format!("worker-{w}"),
            addr: format!("127.0.0.1:{}", 20_000 + w),
            loaded,
            accepting: true,
            memory_capacity_bytes: None,
        };
        writes.push((schema::worker_key(&worker.id), schema::encode(&worker)));
    }
    let started = Instant::now();
    let chunks: Vec<Vec<(String, Vec<u8>)>> = writes.chunks(writes.len().div_ceil(32)).map(<[_]>::to_vec).collect();
    let tasks = chunks.into_iter().map(|chunk| {
        let store = store.clone();
        tokio::spawn(async move {
            for (key, value) in chunk {
                store.put(&key, value, None).await.expect("put");
            }
        })
    });
    futures::future::join_all(tasks).await;
    println!(
        "populated {} keys in {:.1} s",
        MODELS * (VERSIONS as usize + 3) + WORKERS,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let etcd = modelplane_tests::Etcd::start().expect("etcd starts (install etcd-server)");
    let store = modelplane_store::connect(&etcd.url).await.expect("connect");
    populate(store.clone()).await;

    let blobs = tempfile::tempdir().expect("temp dir");
    let registry = modelplane_registry::Registry::new(
        store.clone(),
        modelplane_registry::BlobStore::open(&modelplane_registry::BlobLocation::Local(blobs.path().into()))
            .await
            .expect("blobs"),
        modelplane_registry::RegistryConfig::default(),
    );
    let no_labels = BTreeMap::new();
    let team = BTreeMap::from([("team".to_owned(), "team-3".to_owned())]);
    let mut first_page = Vec::new();
    let mut filtered = Vec::new();
    let mut versions = Vec::new();
    let mut walk = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        registry.list_models_page("", &no_labels, 100, "").await.expect("page");
        first_page.push(started.elapsed());
        let started = Instant::now();
        registry.list_models_page("", &team, 100, "").await.expect("page");
        filtered.push(started.elapsed());
        let started = Instant::now();
        registry.list_versions_page("model-0500", 100, "", false).await.expect("versions");
        versions.push(started.elapsed());
    }
    for _ in 0..3 {
        let started = Instant::now();
        let mut token = String::new();
        let mut seen = 0;
        loop {
            let page = registry.list_models_page("", &no_labels, 100, &token).await.expect("page");
            seen += page.items.len();
            if page.next_token.is_empty() {
                break;
            }
            token = page.next_token;
        }
        assert_eq!(seen, MODELS);
        walk.push(started.elapsed());
    }

    // A new router: three mirrors synced from etcd, the catalog decoded, the table built.
    let before = rss_bytes();
    let started = Instant::now();
    let models = Mirror::start(store.clone(), schema::MODELS);
    let deployments = Mirror::start(store.clone(), schema::DEPLOYMENTS);
    let workers = Mirror::start(store.clone(), schema::WORKERS);
    for mirror in [&models, &deployments, &workers] {
        assert!(mirror.wait_synced(Duration::from_secs(30)).await, "mirror did not sync");
    }
    let synced = started.elapsed();
    let catalog = Arc::new(Catalog::build(&models.current(), &deployments.current()));
    let live = modelplane_store::workers(&workers.current()).expect("workers");
    let clients = modelplane_router::Clients::default();
    let table = modelplane_router::RoutingTable::build(catalog, live, &clients);
    let built = started.elapsed();
    let after = rss_bytes();
    assert_eq!(table.replicas("model-0999", VERSIONS).len(), WORKERS);
    assert!(table.all_deployments_ready());

    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| ListModels first page of 100 (median of 15) | {:.1} ms |", median(first_page).as_secs_f64() * 1e3);
    println!("| ListModels filtered by label, first page (median) | {:.1} ms |", median(filtered).as_secs_f64() * 1e3);
    println!("| ListVersions of one model (median) | {:.2} ms |", median(versions).as_secs_f64() * 1e3);
    println!("| walk all 10 pages of ListModels (median of 3) | {:.0} ms |", median(walk).as_secs_f64() * 1e3);
    println!("| new router: mirrors synced | {:.0} ms |", synced.as_secs_f64() * 1e3);
    println!("| new router: routing table built | {:.0} ms |", built.as_secs_f64() * 1e3);
    println!(
        "| new router: memory added (RSS) | {:.1} MiB |",
        (after.saturating_sub(before)) as f64 / (1 << 20) as f64
    );
}
