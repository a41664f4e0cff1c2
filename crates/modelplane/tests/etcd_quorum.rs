//! The production overlay's etcd: three members. Under concurrent load, one member is
//! killed and then another frozen (the cluster loses its quorum for 10 s); no inference
//! request fails, and the cluster takes writes again once the frozen member resumes.
//! (etcd extends every lease when a new leader takes over, so here the workers' records
//! survive; the single-member freeze and the partition in `cluster.rs` are the cases
//! where they lapse.)

use std::path::Path;
use std::time::{Duration, Instant};

use modelplane_proto::registry as pb;
use modelplane_tests::{EtcdCluster, Load, LoadSpec, Process};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_survives_a_killed_and_a_frozen_member_of_three() {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelplane"));
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path();
    let mut etcd = EtcdCluster::start(3).expect("three etcd members start");
    let store = etcd.urls.clone();
    let blob_dir = dir.path().join("blobs").display().to_string();
    let role = |name: &str, extra: &[&str]| {
        let mut list = vec![name, "--etcd", &store, "--listen", "127.0.0.1:0"];
        list.extend_from_slice(extra);
        args(&list)
    };
    let registry = Process::spawn(bin, "registry", &role("registry", &["--blob-dir", &blob_dir]), &["registry"], logs)
        .expect("registry starts");
    let registry_addr = registry.addr("registry");
    let trainer = Process::spawn(bin, "trainer", &role("trainer", &["--registry", &registry_addr]), &["trainer"], logs)
        .expect("trainer starts");
    let workers: Vec<Process> = ["worker-a", "worker-b"]
        .iter()
        .map(|id| {
            let cache = dir.path().join(format!("cache-{id}")).display().to_string();
            let extra = ["--registry", &registry_addr, "--id", id, "--cache-dir", &cache, "--memory-capacity", "1GiB"];
            Process::spawn(bin, id, &role("worker", &extra), &["worker"], logs).expect("worker starts")
        })
        .collect();
    let router = Process::spawn(bin, "router", &role("router", &["--http-listen", ""]), &["router"], logs)
        .expect("router starts");
    let router_addr = router.addr("router");

    modelplane_tests::upload_dataset(&registry_addr, "houses", &modelplane_tests::houses_csv(200))
        .await
        .expect("dataset uploads");
    modelplane_tests::train(&trainer.addr("trainer"), "houses", "linear", "houses", "price", &[("epochs", "20")])
        .await
        .expect("training succeeds");
    let deployment = pb::Deployment {
        model: "houses".into(),
        targets: vec![pb::DeploymentTarget { version: 1, weight: 1, ..Default::default() }],
        ..Default::default()
    };
    modelplane_tests::registry(&registry_addr)
        .await
        .expect("registry client")
        .set_deployment(pb::SetDeploymentRequest { deployment: Some(deployment) })
        .await
        .expect("deploys");
    modelplane_tests::wait_ready(&router_addr, "houses", "", Duration::from_secs(60)).await.expect("served");

    let load = Load::start(
        &LoadSpec {
            router: router_addr.clone(),
            model: "houses".into(),
            version: String::new(),
            rows: vec![vec![120.0, 3.0, 10.0]],
            raw: false,
            clients: 4,
            pause: Duration::ZERO,
        },
        "etcd lost a member, then its quorum",
    );
    // Bounds a hang only.
    let patience = Duration::from_secs(120);
    load.each_answered(5, patience).await.expect("load before the failures");
    etcd.kill(0).expect("kill -9 of one member");
    load.each_answered(10, patience).await.expect("load with two members of three");
    // Two of three down: no quorum, so no lease is refreshed and nothing written.
    etcd.freeze(1).expect("SIGSTOP of a second member");
    tokio::time::sleep(Duration::from_secs(10)).await;
    load.each_answered(5, patience).await.expect("load without a quorum");
    etcd.thaw(1).expect("SIGCONT");
    // The quorum is back: writes go through again (an alias set), and serving went on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let alias =
        pb::SetAliasRequest { model: "houses".into(), alias: "production".into(), version: 1, reason: String::new() };
    loop {
        let set = match modelplane_tests::registry(&registry_addr).await {
            Ok(mut client) => client.set_alias(alias.clone()).await.map(|_| ()),
            Err(err) => Err(tonic::Status::unavailable(err.to_string())),
        };
        match set {
            Ok(()) => break,
            Err(status) => assert!(Instant::now() < deadline, "etcd never took writes again: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    load.each_answered(20, patience).await.expect("load after the quorum returned");
    load.stop().await.expect("no request failed while etcd lost a member and its quorum");
    // With one member still down every role drains and exits cleanly.
    for mut process in [router].into_iter().chain(workers).chain([trainer, registry]) {
        let stopped = tokio::task::block_in_place(|| process.terminate(Duration::from_secs(30)));
        assert!(stopped.expect("stops"), "exit status not success:\n{}", process.log_tail(20));
    }
}
