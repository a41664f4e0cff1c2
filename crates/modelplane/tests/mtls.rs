//! The cluster scenario with mTLS on every hop — CLI and test clients to every role,
//! workers and the trainer to the registry, the router to the registry and the workers —
//! and etcd over TLS with client certificates and its own user and password: every role
//! is a separate process, certificates are made in the test (rcgen). Clients without a
//! certificate, or with one of another CA, are refused at the handshake; a wrong etcd
//! password stops a role at start-up; no password or private key reaches a log.

use std::path::Path;
use std::time::Duration;

use modelplane_tests::pki::Pki;
use modelplane_tests::scenario::{self, Endpoints};
use modelplane_tests::{Etcd, Process, output_within};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Whether a client with this TLS (none: plaintext) gets an answer from `addr`'s health.
async fn health_answers(addr: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> bool {
    let endpoint = match tls {
        None => tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint"),
        Some(tls) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .expect("endpoint")
            .tls_config(tls)
            .expect("tls"),
    };
    let channel = endpoint.timeout(Duration::from_secs(10)).connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_runs_with_mtls_on_every_hop_and_etcd_over_tls_with_auth() {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelplane"));
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path();
    let pki = Pki::make(&logs.join("pki")).expect("certificates");
    modelplane_tests::pki::use_client_tls(&pki).expect("the harness's clients speak mTLS");
    let etcd = Etcd::start_tls(&pki).expect("etcd starts");
    let password = format!("etcd-{}", uuid::Uuid::new_v4().simple());
    etcd.enable_auth("mp-user", &password).await.expect("etcd auth on");
    let password_file = logs.join("etcd-password");
    std::fs::write(&password_file, format!("{password}\n")).expect("password file");

    let mut env = pki.env();
    env.push(("MODELPLANE_ETCD_USER", "mp-user".into()));
    env.push(("MODELPLANE_ETCD_PASSWORD_FILE", password_file.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let store = etcd.url.clone();
    let blob_dir = logs.join("blobs").display().to_string();
    let spawn = |name: &str, role: &[&str], reports: &[&str]| {
        let list: Vec<&str> = role.iter().copied().chain(["--store", &store, "--listen", "127.0.0.1:0"]).collect();
        Process::spawn_with_env(bin, name, &args(&list), reports, logs, &env).expect("starts")
    };
    let registry = spawn("registry", &["registry", "--blob-dir", &blob_dir], &["registry"]);
    let registry_addr = registry.addr("registry");
    let trainer = spawn("trainer", &["trainer", "--registry", &registry_addr, "--id", "trainer-tls"], &["trainer"]);
    let cache = logs.join("cache").display().to_string();
    let worker = spawn(
        "worker",
        &["worker", "--registry", &registry_addr, "--id", "worker-tls", "--cache-dir", &cache],
        &["worker"],
    );
    let router = spawn(
        "router",
        &["router", "--registry", &registry_addr, "--http-listen", "127.0.0.1:0"],
        &["router", "router-http"],
    );

    let endpoints =
        Endpoints { registry: registry_addr.clone(), trainer: trainer.addr("trainer"), router: router.addr("router") };
    let flip = scenario::run(&endpoints).await.expect("the scenario passes with mTLS on every hop");
    println!("alias flip over mTLS took {flip:?} to show in predictions");

    // The CLI over mTLS (its flags from the same variables).
    let listed = output_within(
        modelplane_tests::clean_command(bin)
            .args(["models", "list", "--registry", &registry_addr])
            .envs(env.iter().copied()),
        Duration::from_secs(120),
    )
    .expect("cli runs");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));

    // Refused at the handshake: plaintext, TLS without a certificate, another CA's.
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(&pki.ca).expect("ca"));
    let stranger = tonic::transport::Identity::from_pem(
        std::fs::read(&pki.stranger.cert).expect("cert"),
        std::fs::read(&pki.stranger.key).expect("key"),
    );
    for addr in [&registry_addr, &trainer.addr("trainer"), &worker.addr("worker"), &router.addr("router")] {
        assert!(!health_answers(addr, None).await, "{addr} answered a plaintext client");
        let no_certificate = tonic::transport::ClientTlsConfig::new().ca_certificate(ca.clone());
        assert!(
            !health_answers(addr, Some(no_certificate.clone())).await,
            "{addr} answered without a client certificate"
        );
        let foreign = no_certificate.identity(stranger.clone());
        assert!(!health_answers(addr, Some(foreign)).await, "{addr} answered another CA's certificate");
    }

    // A certificate whose name maps to a role stands in for a key: a second registry
    // maps the node certificate (DNS name `localhost`) to viewer; the trainer maps none.
    let viewer_registry = spawn(
        "registry-mtls-roles",
        &["registry", "--blob-dir", &blob_dir, "--mtls-role", "localhost=viewer"],
        &["registry"],
    );
    let mut by_certificate = modelplane_proto::registry::registry_client::RegistryClient::new(
        modelplane_tests::anonymous_channel(&viewer_registry.addr("registry")).expect("channel"),
    );
    let listed = by_certificate
        .list_models(modelplane_proto::registry::ListModelsRequest::default())
        .await
        .expect("a viewer certificate lists models");
    assert!(!listed.into_inner().models.is_empty(), "the scenario's models are visible");
    let refused = by_certificate
        .set_alias(modelplane_proto::registry::SetAliasRequest {
            model: "churn".into(),
            alias: "production".into(),
            version: 1,
            ..Default::default()
        })
        .await
        .expect_err("a viewer certificate flips no alias");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{}", refused.message());
    let mut trainer_by_certificate = modelplane_proto::trainer::trainer_client::TrainerClient::new(
        modelplane_tests::anonymous_channel(&trainer.addr("trainer")).expect("channel"),
    );
    let refused = trainer_by_certificate
        .list_jobs(modelplane_proto::trainer::ListJobsRequest::default())
        .await
        .expect_err("an unmapped certificate is no caller");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{}", refused.message());

    // A wrong etcd password stops a role before it listens, and says why without it.
    let wrong = logs.join("wrong-password");
    std::fs::write(&wrong, "not-the-password").expect("file");
    let wrong_env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| match *name {
            "MODELPLANE_ETCD_PASSWORD_FILE" => (*name, wrong.to_str().expect("utf-8 path")),
            _ => (*name, *value),
        })
        .collect();
    let refused = output_within(
        modelplane_tests::clean_command(bin)
            .args(["registry", "--store", &store, "--listen", "127.0.0.1:0", "--blob-dir", &blob_dir])
            .envs(wrong_env.iter().copied()),
        Duration::from_secs(60),
    )
    .expect("registry runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a registry with a wrong etcd password started");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("listening"), "it bound a port first");
    assert!(stderr.contains("cannot open the store"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "the password is in the error: {stderr}");

    // No password or private key in any log.
    let private_key = std::fs::read_to_string(&pki.node.key).expect("key");
    let key_body: String = private_key.lines().filter(|line| !line.starts_with("-----")).collect();
    drop((registry, viewer_registry, trainer, worker, router));
    for entry in std::fs::read_dir(logs).expect("logs") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default().replace('\n', "");
            assert!(!text.contains(&password), "the etcd password is in {}", path.display());
            assert!(!text.contains(&key_body[..40]), "a private key is in {}", path.display());
        }
    }
}
