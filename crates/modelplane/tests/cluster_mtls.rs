//! The whole cluster test (`cluster_run`) with mTLS on every hop — the harness's clients,
//! the CLI and every role to every other — and etcd over TLS with client certificates:
//! the same faults (drains, freezes, kills, etcd outages, a partition) under load, with
//! no failed request.

mod cluster_run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_roles_with_mtls_on_every_hop_through_every_fault() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = modelplane_tests::pki::Pki::make(dir.path()).expect("certificates");
    modelplane_tests::pki::use_client_tls(&pki).expect("the harness's clients speak mTLS");
    cluster_run::four_roles(Some(&pki)).await;
}
