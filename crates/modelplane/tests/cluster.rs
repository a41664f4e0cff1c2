//! The four roles as separate processes against a real etcd, driven over gRPC.

use std::path::Path;
use std::time::Duration;

use modelplane_tests::scenario::{self, Endpoints};
use modelplane_tests::{Etcd, Process};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_roles_on_real_etcd_train_deploy_serve_and_flip() {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelplane"));
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path();
    let etcd = Etcd::start().expect("etcd starts");
    let store = etcd.url.clone();
    let blob_dir = dir.path().join("blobs").display().to_string();
    let cache_dir = dir.path().join("cache").display().to_string();

    let mut registry = Process::spawn(
        bin,
        "registry",
        &args(&["registry", "--store", &store, "--listen", "127.0.0.1:0", "--blob-dir", &blob_dir]),
        &["registry"],
        logs,
    )
    .expect("registry starts");
    let registry_addr = registry.addr("registry");
    let mut trainer = Process::spawn(
        bin,
        "trainer",
        &args(&["trainer", "--etcd", &store, "--listen", "127.0.0.1:0", "--registry", &registry_addr, "--id", "trainer-a"]),
        &["trainer"],
        logs,
    )
    .expect("trainer starts");
    let mut worker = Process::spawn(
        bin,
        "worker",
        &args(&[
            "worker", "--etcd", &store, "--listen", "127.0.0.1:0", "--registry", &registry_addr, "--id", "worker-a",
            "--cache-dir", &cache_dir,
        ]),
        &["worker"],
        logs,
    )
    .expect("worker starts");
    let mut router = Process::spawn(
        bin,
        "router",
        &args(&["router", "--etcd", &store, "--listen", "127.0.0.1:0"]),
        &["router"],
        logs,
    )
    .expect("router starts");

    let endpoints = Endpoints { registry: registry_addr, trainer: trainer.addr("trainer"), router: router.addr("router") };
    assert!(modelplane_tests::health_serving(&worker.addr("worker")).await.expect("worker health"));
    let flip = scenario::run(&endpoints).await.expect("scenario passes");
    println!("alias flip took {flip:?} to show in predictions");
    assert!(flip < Duration::from_secs(2), "alias flip took {flip:?}; expected under 2 s");

    // A clean stop: every role drains and exits 0 on SIGTERM.
    for process in [&mut router, &mut worker, &mut trainer, &mut registry] {
        assert!(process.terminate(Duration::from_secs(15)).expect("stops"), "exit status not success");
    }
}
