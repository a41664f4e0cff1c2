//! What authentication costs a call: `AuthLayer::admit` over the store-backed key cache,
//! for a caller without a key (the anonymous role), a verified key (the cached path
//! every call after the first takes) and a key seen for the first time (salted sha256).
//! Run with `cargo bench -p modelplane-store --bench auth`; numbers in
//! docs/benchmarks.md.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelplane_service::access::{Role, ServerAccess};
use modelplane_store::api_key::{KeySpec, create};
use modelplane_store::{EmbeddedStore, KeyCache, KvStore, schema};

const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// Mean time of one call of `f` over about a second.
fn per_call(mut f: impl FnMut()) -> Duration {
    let mut calls = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            f();
        }
        calls += 1000;
    }
    start.elapsed() / calls
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _entered = runtime.enter(); // the store and the key mirror spawn tasks
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).expect("store"));
    let spec =
        KeySpec { name: "bench", role: Role::Predictor, model_prefix: "", expires_unix_ms: None, created_by: "bench" };
    let keys: Vec<_> = (0..200).map(|_| create(&spec, schema::now_unix_ms())).collect();
    let auth = runtime.block_on(async {
        for key in &keys {
            store.put(&schema::api_key_key(&key.record.id), schema::encode(&key.record), None).await.expect("put");
        }
        let access = ServerAccess { anonymous: Some(Role::Predictor), ..Default::default() };
        KeyCache::auth_layer(store.clone(), &access).await.expect("auth layer")
    });
    let peer = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let headers: Vec<String> = keys.iter().map(|key| format!("Bearer {}", key.key)).collect();
    let anonymous = per_call(|| {
        auth.admit(INFER, None, peer, None).expect("admitted");
    });
    let cached = per_call(|| {
        auth.admit(INFER, Some(headers[0].as_bytes()), peer, None).expect("admitted");
    });
    // Each of the 200 keys once: the first call of each verifies its hash.
    let start = Instant::now();
    for header in &headers[1..] {
        auth.admit(INFER, Some(header.as_bytes()), peer, None).expect("admitted");
    }
    let first = start.elapsed() / (headers.len() as u32 - 1);
    println!("| caller | admit per call |");
    println!("| --- | --- |");
    println!("| no key (anonymous predictor) | {:.2} µs |", anonymous.as_secs_f64() * 1e6);
    println!("| verified key (cached) | {:.2} µs |", cached.as_secs_f64() * 1e6);
    println!("| key's first call (salted sha256) | {:.2} µs |", first.as_secs_f64() * 1e6);
}
