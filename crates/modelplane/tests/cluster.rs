//! The four roles as separate processes against a real etcd, driven over gRPC, in
//! plaintext (`cluster_mtls.rs` runs the same test with mTLS on every hop).

mod cluster_run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_roles_on_real_etcd_train_deploy_serve_and_flip() {
    cluster_run::four_roles(None).await;
}
