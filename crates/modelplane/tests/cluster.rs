//! The four roles as separate processes against a real etcd, driven over gRPC.

use std::path::Path;
use std::time::Duration;

use modelplane_tests::scenario::{self, Endpoints};
use modelplane_tests::{Collector, Etcd, Process};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_roles_on_real_etcd_train_deploy_serve_and_flip() {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelplane"));
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path();
    let etcd = Etcd::start().expect("etcd starts");
    let collector = Collector::start().await.expect("OTLP receiver starts");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let store = etcd.url.clone();
    let blob_dir = dir.path().join("blobs").display().to_string();
    let cache_dir = dir.path().join("cache").display().to_string();

    let mut registry = Process::spawn_with_env(
        bin,
        "registry",
        &args(&["registry", "--store", &store, "--listen", "127.0.0.1:0", "--blob-dir", &blob_dir]),
        &["registry"],
        logs,
        &env,
    )
    .expect("registry starts");
    let registry_addr = registry.addr("registry");
    let mut trainer = Process::spawn_with_env(
        bin,
        "trainer",
        &args(&[
            "trainer",
            "--etcd",
            &store,
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &registry_addr,
            "--id",
            "trainer-a",
        ]),
        &["trainer"],
        logs,
        &env,
    )
    .expect("trainer starts");
    let mut worker = Process::spawn_with_env(
        bin,
        "worker",
        &args(&[
            "worker",
            "--etcd",
            &store,
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &registry_addr,
            "--id",
            "worker-a",
            "--cache-dir",
            &cache_dir,
        ]),
        &["worker"],
        logs,
        &env,
    )
    .expect("worker starts");
    let mut router = Process::spawn_with_env(
        bin,
        "router",
        &args(&["router", "--etcd", &store, "--listen", "127.0.0.1:0"]),
        &["router"],
        logs,
        &env,
    )
    .expect("router starts");

    let endpoints =
        Endpoints { registry: registry_addr, trainer: trainer.addr("trainer"), router: router.addr("router") };
    assert!(modelplane_tests::health_serving(&worker.addr("worker")).await.expect("worker health"));
    let flip = scenario::run(&endpoints).await.expect("scenario passes");
    println!("alias flip took {flip:?} to show in predictions");
    assert!(flip < Duration::from_secs(2), "alias flip took {flip:?}; expected under 2 s");

    // A clean stop: every role drains and exits 0 on SIGTERM.
    for process in [&mut router, &mut worker, &mut trainer, &mut registry] {
        assert!(process.terminate(Duration::from_secs(15)).expect("stops"), "exit status not success");
    }

    // Traces cross process boundaries: the worker's ModelInfer span is a child of the
    // router's, and the registry's UploadVersion span a child of the trainer's job span.
    let spans = collector.spans();
    let infer = "/inference.GRPCInferenceService/ModelInfer";
    let linked = |parent_service: &str, parent_name: &str, child_service: &str, child_name: &str| {
        spans.iter().filter(|s| s.service == parent_service && s.name == parent_name).any(|parent| {
            spans.iter().any(|child| {
                child.service == child_service
                    && child.name == child_name
                    && child.trace_id == parent.trace_id
                    && child.parent_span_id == parent.span_id
            })
        })
    };
    let names: Vec<(String, String)> = spans.iter().map(|s| (s.service.clone(), s.name.clone())).collect();
    assert!(linked("modelplane-router", infer, "modelplane-worker", infer), "router → worker not linked: {names:?}");
    assert!(
        linked(
            "modelplane-trainer",
            "train_job",
            "modelplane-registry",
            "/modelplane.registry.v1.Registry/UploadVersion"
        ),
        "trainer → registry not linked: {names:?}"
    );
    assert!(
        spans.iter().any(|s| s.service == "modelplane-worker"
            && s.name == infer
            && s.attributes.get("model").map(String::as_str) == Some("houses")
            && s.attributes.contains_key("version")),
        "worker ModelInfer spans carry no model/version fields"
    );
}
