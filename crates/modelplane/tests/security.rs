//! Issue 23's acceptance on a real cluster (etcd and the four roles as separate
//! processes): every RPC of every service and every REST route, called with no key, a
//! malformed, a revoked and an expired key, and a key of each role, gets the code the
//! permission table gives it, and nothing a refused call tried changed the registry;
//! model-scoped keys reach only their models; a revoked key stops working on every
//! service within a second under load; repeated failures are slowed down; and no secret
//! appears in any log, metric, span, audit record or error message the run produced.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use modelplane_proto::inference as ipb;
use modelplane_proto::registry as pb;
use modelplane_service::access::{Permission, Role, allows, permission};
use modelplane_tests::{Collector, Etcd, Load, LoadSpec, Process};
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const REGISTRY: &str = "/modelplane.registry.v1.Registry/";
const TRAINER: &str = "/modelplane.trainer.v1.Trainer/";
const INFERENCE: &str = "/inference.GRPCInferenceService/";
const HEALTH: &str = "/grpc.health.v1.Health/";

/// Messages as bytes, so one client calls any method.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        *self
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Calls `path` on `channel` with one `message` (as a stream: on the wire a unary call is
/// a stream of one), presenting `authorization`; the first answer (none when the answers
/// ended without one), or the status that ended the call.
async fn call_answer(
    channel: &tonic::transport::Channel,
    path: &str,
    message: Bytes,
    authorization: Option<&str>,
) -> Result<Option<Bytes>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|err| tonic::Status::unavailable(format!("not ready: {err}")))?;
    let mut request = tonic::Request::new(futures::stream::once(async move { message }));
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().expect("header value"));
    }
    let path = http::uri::PathAndQuery::try_from(path).expect("method path");
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut answers = grpc.streaming(request, path, RawCodec).await?.into_inner();
        answers.message().await
    })
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("no answer in 20 s"))?
}

/// [`call_answer`]'s status: OK when an answer (or the end of the answers) came.
async fn call(
    channel: &tonic::transport::Channel,
    path: &str,
    message: Bytes,
    authorization: Option<&str>,
) -> tonic::Status {
    match call_answer(channel, path, message, authorization).await {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

/// What a caller presents.
#[derive(Clone, Debug)]
struct Presenter {
    label: String,
    authorization: Option<String>,
    /// The role it holds; `None`: it must be refused as UNAUTHENTICATED.
    role: Option<Role>,
}

/// Every method of every service modelplane serves.
fn served_methods() -> Vec<String> {
    let mut methods = Vec::new();
    for encoded in [modelplane_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        let set = prost_types::FileDescriptorSet::decode(encoded).expect("descriptor set decodes");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
    }
    methods
}

/// A request that would change the registry if it were let through: what refused
/// callers send, so the snapshot afterwards shows the refusal held.
fn harmful(method: &str, admin_key_id: &str) -> Bytes {
    let houses = || "houses".to_owned();
    let encoded = match method.rsplit('/').next().unwrap_or_default() {
        "DeleteModel" => pb::DeleteModelRequest { name: houses() }.encode_to_vec(),
        "DeleteVersion" => pb::DeleteVersionRequest { model: houses(), version: 1 }.encode_to_vec(),
        "ArchiveVersion" => pb::ArchiveVersionRequest { model: houses(), version: 1 }.encode_to_vec(),
        "SetAlias" => {
            pb::SetAliasRequest { model: houses(), alias: "intruder".into(), version: 1, reason: String::new() }
                .encode_to_vec()
        }
        "DeleteAlias" => pb::DeleteAliasRequest { model: houses(), alias: "production".into() }.encode_to_vec(),
        "DeleteDeployment" => pb::DeleteDeploymentRequest { model: houses() }.encode_to_vec(),
        "DeleteDataset" => pb::DeleteDatasetRequest { name: houses(), sha256: String::new() }.encode_to_vec(),
        "CreateModel" => pb::CreateModelRequest { name: "intruder".into(), ..Default::default() }.encode_to_vec(),
        "UpdateModel" => {
            pb::UpdateModelRequest { name: houses(), description: Some("defaced".into()), ..Default::default() }
                .encode_to_vec()
        }
        "CreateKey" => {
            pb::CreateKeyRequest { name: "intruder".into(), role: "admin".into(), ..Default::default() }.encode_to_vec()
        }
        "RevokeKey" => pb::RevokeKeyRequest { id: admin_key_id.to_owned() }.encode_to_vec(),
        "RepositoryModelUnload" => {
            ipb::RepositoryModelUnloadRequest { model_name: houses(), ..Default::default() }.encode_to_vec()
        }
        "ModelInfer" | "ModelStreamInfer" => {
            modelplane_tests::infer_request("houses", "", "input", &[vec![1.0, 2.0, 3.0]], false).encode_to_vec()
        }
        _ => Vec::new(),
    };
    Bytes::from(encoded)
}

/// What an admin sees of the registry: models, versions, aliases, deployments, datasets
/// and keys.
async fn snapshot(registry: &str) -> String {
    let mut client = modelplane_tests::registry(registry).await.expect("registry");
    let models = client.list_models(pb::ListModelsRequest::default()).await.expect("models").into_inner();
    // Maps print in hash order; what could change is printed sorted.
    let mut seen = String::new();
    for model in &models.models {
        let aliases: BTreeMap<_, _> = model.aliases.iter().collect();
        let labels: BTreeMap<_, _> = model.labels.iter().collect();
        seen.push_str(&format!(
            "{} {:?} v{} {aliases:?} {labels:?}\n",
            model.name, model.description, model.latest_version
        ));
        let versions = client
            .list_versions(pb::ListVersionsRequest {
                model: model.name.clone(),
                include_archived: true,
                ..Default::default()
            })
            .await
            .expect("versions")
            .into_inner();
        for v in versions.versions {
            seen.push_str(&format!("  v{} {} archived={} {:?}\n", v.version, v.sha256, v.archived, v.labels));
        }
    }
    let deployments = client.list_deployments(pb::ListDeploymentsRequest {}).await.expect("deployments");
    let datasets = client.list_datasets(pb::ListDatasetsRequest::default()).await.expect("datasets");
    let keys = client.list_keys(pb::ListKeysRequest {}).await.expect("keys");
    seen.push_str(&format!("{:?}{:?}{:?}", deployments.into_inner(), datasets.into_inner(), keys.into_inner()));
    seen
}

/// A new key of `role` made by the admin; returns (id, whole key).
async fn create_key(registry: &str, name: &str, role: &str, prefix: &str, expires_in: u64) -> (String, String) {
    let mut client = modelplane_tests::registry(registry).await.expect("registry");
    let created = client
        .create_key(pb::CreateKeyRequest {
            name: name.into(),
            role: role.into(),
            model_prefix: prefix.into(),
            expires_in_seconds: expires_in,
        })
        .await
        .unwrap_or_else(|status| panic!("create key {name}: {status:?}"))
        .into_inner();
    (created.key.expect("the key's record").id, created.secret)
}

/// One HTTP/1.1 request to the router's REST port; the status code and body.
async fn http(addr: &str, method: &str, path: &str, authorization: Option<&str>, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect REST");
    let auth = authorization.map(|value| format!("Authorization: {value}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (code, answer)
}

/// The REST routes, as (method, path with `{model}`, the gRPC method it performs).
const ROUTES: [(&str, &str, &str); 17] = [
    ("GET", "/v2/health/live", "ServerLive"),
    ("GET", "/v2/health/ready", "ServerReady"),
    ("GET", "/v2", "ServerMetadata"),
    ("GET", "/v2/models/{model}", "ModelMetadata"),
    ("GET", "/v2/models/{model}/versions/1", "ModelMetadata"),
    ("GET", "/v2/models/{model}/ready", "ModelReady"),
    ("GET", "/v2/models/{model}/versions/1/ready", "ModelReady"),
    ("POST", "/v2/models/{model}/infer", "ModelInfer"),
    ("POST", "/v2/models/{model}/versions/1/infer", "ModelInfer"),
    ("GET", "/v2/models/{model}/config", "ModelConfig"),
    ("GET", "/v2/models/{model}/versions/1/config", "ModelConfig"),
    ("GET", "/v2/models/stats", "ModelStatistics"),
    ("GET", "/v2/models/{model}/stats", "ModelStatistics"),
    ("GET", "/v2/models/{model}/versions/1/stats", "ModelStatistics"),
    ("POST", "/v2/repository/index", "RepositoryIndex"),
    ("POST", "/v2/repository/models/{model}/load", "RepositoryModelLoad"),
    ("POST", "/v2/repository/models/{model}/unload", "RepositoryModelUnload"),
];

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_and_route_admits_exactly_the_callers_the_table_allows() {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelplane"));
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path();
    let etcd = Etcd::start().expect("etcd starts");
    let collector = Collector::start().await.expect("OTLP receiver starts");
    let store = etcd.url.clone();
    // The matrix makes hundreds of failed authentications from one address on purpose;
    // the failure limit is tested below on a router of its own.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("MODELPLANE_AUTH_FAILURES_PER_MINUTE", "0"),
    ];
    let blob_dir = logs.join("blobs").display().to_string();
    let listen = ["--listen", "127.0.0.1:0"];
    let spawn = |name: &str, role: &[&str], reports: &[&str]| {
        let list: Vec<&str> = role.iter().copied().chain(["--store", &store]).chain(listen).collect();
        Process::spawn_with_env(bin, name, &args(&list), reports, logs, &env).expect("starts")
    };
    let registry_process = spawn("registry", &["registry", "--blob-dir", &blob_dir], &["registry"]);
    let registry = registry_process.addr("registry");
    let trainer_process = spawn("trainer", &["trainer", "--registry", &registry, "--id", "trainer-m"], &["trainer"]);
    let cache = logs.join("cache").display().to_string();
    let worker_process = spawn(
        "worker",
        &[
            "worker",
            "--registry",
            &registry,
            "--id",
            "worker-m",
            "--cache-dir",
            &cache,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &["worker", "metrics"],
    );
    let router_process = spawn(
        "router",
        &["router", "--registry", &registry, "--http-listen", "127.0.0.1:0"],
        &["router", "router-http"],
    );
    let (trainer, worker, router, rest) = (
        trainer_process.addr("trainer"),
        worker_process.addr("worker"),
        router_process.addr("router"),
        router_process.addr("router-http"),
    );

    // Two models: one every key may reach, one under the scoped keys' prefix.
    let csv = modelplane_tests::houses_csv(200);
    for model in ["houses", "team-a-houses"] {
        modelplane_tests::upload_dataset(&registry, model, &csv).await.expect("upload");
        modelplane_tests::train(&trainer, model, "linear", model, "price", &[("epochs", "2")]).await.expect("train");
        let mut client = modelplane_tests::registry(&registry).await.expect("registry");
        let target = pb::DeploymentTarget { version: 1, weight: 100, ..Default::default() };
        let deployment = pb::Deployment { model: model.into(), targets: vec![target], ..Default::default() };
        client.set_deployment(pb::SetDeploymentRequest { deployment: Some(deployment) }).await.expect("deploy");
        client
            .set_alias(pb::SetAliasRequest {
                model: model.into(),
                alias: "production".into(),
                version: 1,
                reason: String::new(),
            })
            .await
            .expect("alias");
        modelplane_tests::wait_ready(&router, model, "", Duration::from_secs(60)).await.expect("ready");
    }

    // A key of each role, a revoked and an expired one, and the admin's id.
    let mut secrets = vec![modelplane_tests::keys::admin_key().to_owned()];
    let mut presenters = vec![
        Presenter { label: "no key".into(), authorization: None, role: None },
        Presenter { label: "malformed".into(), authorization: Some("Bearer not-a-key".into()), role: None },
    ];
    for role in Role::ALL {
        let (_, key) = create_key(&registry, &format!("matrix-{}", role.name()), role.name(), "", 0).await;
        presenters.push(Presenter {
            label: role.name().into(),
            authorization: Some(format!("Bearer {key}")),
            role: Some(role),
        });
        secrets.push(key);
    }
    let (revoked_id, revoked) = create_key(&registry, "matrix-revoked", "admin", "", 0).await;
    let mut admin = modelplane_tests::registry(&registry).await.expect("registry");
    admin.revoke_key(pb::RevokeKeyRequest { id: revoked_id }).await.expect("revoke");
    let (_, expired) = create_key(&registry, "matrix-expired", "admin", "", 1).await;
    secrets.extend([revoked.clone(), expired.clone()]);
    presenters.push(Presenter {
        label: "revoked".into(),
        authorization: Some(format!("Bearer {revoked}")),
        role: None,
    });
    presenters.push(Presenter {
        label: "expired".into(),
        authorization: Some(format!("Bearer {expired}")),
        role: None,
    });
    let admin_id = modelplane_tests::keys::admin_key()[4..20].to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the expired key's second passes

    // Every method on every service that serves it.
    let methods = served_methods();
    let mut servers: Vec<(&str, &str)> =
        vec![(&registry, REGISTRY), (&trainer, TRAINER), (&worker, INFERENCE), (&router, INFERENCE)];
    for addr in [&registry, &trainer, &worker, &router] {
        servers.push((addr, HEALTH));
    }
    let before = snapshot(&registry).await;
    let mut messages_seen = String::new();
    let mut checked = 0;
    for (addr, service) in &servers {
        let channel = modelplane_tests::anonymous_channel(addr).expect("channel");
        for method in methods.iter().filter(|m| m.starts_with(service)) {
            let needed = permission(method);
            assert_ne!(needed, Permission::Unlisted, "{method} has no entry in the permission table");
            for presenter in &presenters {
                let admitted = needed == Permission::Public || presenter.role.is_some_and(|role| allows(role, needed));
                // Admitted callers send an empty request (refused by validation, so they
                // change nothing); refused ones one that would do harm.
                let message = if admitted { Bytes::new() } else { harmful(method, &admin_id) };
                let status = call(&channel, method, message, presenter.authorization.as_deref()).await;
                messages_seen.push_str(status.message());
                let expected = match (admitted, presenter.role) {
                    (true, _) => None,
                    (false, None) => Some(Code::Unauthenticated),
                    (false, Some(_)) => Some(Code::PermissionDenied),
                };
                let refused = matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied);
                match expected {
                    None => assert!(!refused, "{} on {addr}{method} was refused: {status:?}", presenter.label),
                    Some(code) => assert_eq!(status.code(), code, "{} on {addr}{method}: {status:?}", presenter.label),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 600, "only {checked} calls were made");
    assert_eq!(snapshot(&registry).await, before, "a refused call changed the registry");

    // Every REST route, the same way.
    for (method, template, grpc) in ROUTES {
        let needed = permission(&format!("{INFERENCE}{grpc}"));
        for presenter in &presenters {
            let admitted = needed == Permission::Public || presenter.role.is_some_and(|role| allows(role, needed));
            let path = template.replace("{model}", if admitted { "no-such-model" } else { "houses" });
            let (code, answer) = http(&rest, method, &path, presenter.authorization.as_deref(), "{}").await;
            let expected = match (admitted, presenter.role) {
                (true, _) => None,
                (false, None) => Some(401),
                (false, Some(_)) => Some(403),
            };
            match expected {
                None => {
                    assert!(code != 401 && code != 403 && code != 0, "{} {method} {path}: {answer}", presenter.label)
                }
                Some(want) => {
                    assert_eq!(code, want, "{} {method} {path}: {answer}", presenter.label);
                    assert!(answer.contains("{\"error\":"), "KServe's error body: {answer}");
                }
            }
            messages_seen.push_str(&answer);
        }
    }
    assert_eq!(snapshot(&registry).await, before, "a refused REST call changed the registry");

    // Model scopes: a key limited to `team-a` reaches team-a-houses and nothing else.
    let (_, scoped) = create_key(&registry, "team-a-predictor", "predictor", "team-a", 0).await;
    let (_, scoped_deployer) = create_key(&registry, "team-a-deployer", "deployer", "team-a", 0).await;
    secrets.extend([scoped.clone(), scoped_deployer.clone()]);
    let bearer = format!("Bearer {scoped}");
    for addr in [&router, &worker] {
        let channel = modelplane_tests::anonymous_channel(addr).expect("channel");
        let infer = |model: &str| modelplane_tests::infer_request(model, "", "input", &[vec![120.0, 3.0, 10.0]], false);
        let version = if addr == &worker { "1" } else { "" };
        let mut inside_request = infer("team-a-houses");
        inside_request.model_version = version.into();
        let mut outside = infer("houses");
        outside.model_version = version.into();
        let inside =
            call(&channel, &format!("{INFERENCE}ModelInfer"), inside_request.encode_to_vec().into(), Some(&bearer))
                .await;
        assert_eq!(inside.code(), Code::Ok, "{addr}: in scope: {inside:?}");
        let outside_request = outside;
        let outside =
            call(&channel, &format!("{INFERENCE}ModelInfer"), outside_request.encode_to_vec().into(), Some(&bearer))
                .await;
        assert_eq!(outside.code(), Code::PermissionDenied, "{addr}: out of scope: {outside:?}");
        assert!(outside.message().contains("team-a"), "{outside:?}");
        // On a stream, a refused request is an answer with its error, and the stream goes on.
        let answer = call_answer(
            &channel,
            &format!("{INFERENCE}ModelStreamInfer"),
            outside_request.encode_to_vec().into(),
            Some(&bearer),
        )
        .await
        .expect("the stream answers")
        .expect("one answer");
        let answer = ipb::ModelStreamInferResponse::decode(answer).expect("a stream answer");
        assert!(answer.error_message.contains("limited to models"), "{addr}: {answer:?}");
    }
    let (code, answer) = http(&rest, "POST", "/v2/models/houses/infer", Some(&bearer), "{}").await;
    assert_eq!(code, 403, "{answer}");
    let (code, answer) = http(&rest, "GET", "/v2/models/stats", Some(&bearer), "").await;
    assert!(code == 200 && !answer.contains("\"houses\""), "statistics list only team-a models: {answer}");
    let deployer = format!("Bearer {scoped_deployer}");
    let channel = modelplane_tests::anonymous_channel(&registry).expect("channel");
    let listed = call(
        &channel,
        &format!("{REGISTRY}GetModel"),
        pb::GetModelRequest { name: "houses".into() }.encode_to_vec().into(),
        Some(&deployer),
    )
    .await;
    assert_eq!(listed.code(), Code::PermissionDenied, "{listed:?}");
    let mut scoped_registry = modelplane_proto::registry::registry_client::RegistryClient::with_interceptor(
        modelplane_tests::anonymous_channel(&registry).expect("channel"),
        move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("authorization", deployer.parse().expect("header"));
            Ok(request)
        },
    );
    let visible = scoped_registry.list_models(pb::ListModelsRequest::default()).await.expect("list").into_inner();
    let names: Vec<&str> = visible.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["team-a-houses"], "a scoped key lists only its models");
    let flipped = scoped_registry
        .set_alias(pb::SetAliasRequest {
            model: "team-a-houses".into(),
            alias: "staging".into(),
            version: 1,
            reason: String::new(),
        })
        .await;
    assert!(flipped.is_ok(), "in scope, a deployer flips aliases: {flipped:?}");

    // Revocation, under load: a viewer key that every service has verified (and cached)
    // stops working everywhere within a second of RevokeKey's answer.
    let load = Load::start(
        &LoadSpec {
            router: router.clone(),
            model: "houses".into(),
            version: String::new(),
            rows: vec![vec![120.0, 3.0, 10.0]],
            raw: false,
            clients: 4,
            pause: Duration::ZERO,
        },
        "revocation",
    );
    let (viewer_id, viewer) = create_key(&registry, "revoke-me", "viewer", "", 0).await;
    secrets.push(viewer.clone());
    let viewer = format!("Bearer {viewer}");
    let probes: Vec<(&str, String, Bytes)> = vec![
        (registry.as_str(), format!("{REGISTRY}ListModels"), Bytes::new()),
        (trainer.as_str(), format!("{TRAINER}ListJobs"), Bytes::new()),
        (worker.as_str(), format!("{INFERENCE}ModelStatistics"), Bytes::new()),
        (router.as_str(), format!("{INFERENCE}ModelStatistics"), Bytes::new()),
    ];
    let channels: Vec<tonic::transport::Channel> =
        probes.iter().map(|(addr, _, _)| modelplane_tests::anonymous_channel(addr).expect("channel")).collect();
    for ((addr, method, message), channel) in probes.iter().zip(&channels) {
        let status = call(channel, method, message.clone(), Some(&viewer)).await;
        assert_eq!(status.code(), Code::Ok, "{addr}{method} before revocation: {status:?}");
    }
    load.each_answered(20, Duration::from_secs(60)).await.expect("load runs");
    admin.revoke_key(pb::RevokeKeyRequest { id: viewer_id }).await.expect("revoke");
    let revoked_at = Instant::now();
    let mut took = BTreeMap::new();
    for ((addr, method, message), channel) in probes.iter().zip(&channels) {
        loop {
            let status = call(channel, method, message.clone(), Some(&viewer)).await;
            if status.code() == Code::Unauthenticated {
                took.insert(addr.to_string(), revoked_at.elapsed());
                break;
            }
            assert!(revoked_at.elapsed() < Duration::from_secs(10), "{addr} still admits the revoked key: {status:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!("revocation took effect after {took:?}");
    for (addr, elapsed) in &took {
        assert!(*elapsed < Duration::from_secs(1), "{addr} admitted a revoked key for {elapsed:?}");
    }
    load.each_answered(20, Duration::from_secs(60)).await.expect("load keeps being served");
    load.stop().await.expect("no request of the load failed");

    // Repeated failures from one address: a router admitting 3 a minute refuses the 4th
    // caller from it even with a good key; health stays open. Callers without a key act
    // as predictors there.
    let limited = Process::spawn(
        bin,
        "router-limited",
        &args(&[
            "router",
            "--store",
            &store,
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--registry",
            &registry,
            "--auth-failures-per-minute",
            "3",
            "--anonymous-role",
            "predictor",
        ]),
        &["router", "router-http"],
        logs,
    )
    .expect("limited router starts");
    let channel = modelplane_tests::anonymous_channel(&limited.addr("router")).expect("channel");
    let stats = format!("{INFERENCE}ModelStatistics");
    let infer =
        modelplane_tests::infer_request("houses", "", "input", &[vec![120.0, 3.0, 10.0]], false).encode_to_vec();
    modelplane_tests::wait_ready(&limited.addr("router"), "houses", "", Duration::from_secs(60)).await.expect("ready");
    let anonymous = call(&channel, &format!("{INFERENCE}ModelInfer"), infer.clone().into(), None).await;
    assert_eq!(anonymous.code(), Code::Ok, "anonymous inference as a predictor: {anonymous:?}");
    let unload =
        call(&channel, &format!("{INFERENCE}RepositoryModelUnload"), harmful("RepositoryModelUnload", ""), None).await;
    assert_eq!(unload.code(), Code::Unauthenticated, "{unload:?}");
    assert!(unload.message().contains("needs an API key"), "{unload:?}");
    let good = presenters.iter().find(|p| p.role == Some(Role::Viewer)).and_then(|p| p.authorization.clone());
    for _ in 0..3 {
        let status = call(&channel, &stats, Bytes::new(), Some(&format!("Bearer {revoked}"))).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let blocked = call(&channel, &stats, Bytes::new(), good.as_deref()).await;
    assert_eq!(blocked.code(), Code::ResourceExhausted, "{blocked:?}");
    let (code, answer) = http(&limited.addr("router-http"), "GET", "/v2/models/stats", good.as_deref(), "").await;
    assert_eq!(code, 429, "{answer}");
    assert!(modelplane_tests::health_serving(&limited.addr("router")).await.expect("health answers"));
    let (code, _) = http(&limited.addr("router-http"), "GET", "/v2/health/ready", None, "").await;
    assert_eq!(code, 200);

    // Nothing secret anywhere: logs, metrics, spans, the audit log, error messages.
    for entry in std::fs::read_dir(logs.join("keys")).expect("service key files") {
        let key = std::fs::read_to_string(entry.expect("entry").path()).expect("key file");
        secrets.push(key.trim().to_owned());
    }
    let audit = admin.list_audit(pb::ListAuditRequest::default()).await.expect("audit").into_inner();
    let audit = format!("{audit:?}");
    assert!(audit.contains("create_key") && audit.contains("revoke_key"), "key operations are audited");
    let mut produced = vec![("audit log".to_owned(), audit), ("error messages".to_owned(), messages_seen)];
    produced.push(("router metrics".into(), modelplane_tests::metrics::scrape(&rest).await.expect("metrics")));
    let worker_metrics = modelplane_tests::metrics::scrape(&worker_process.addr("metrics")).await.expect("metrics");
    produced.push(("worker metrics".into(), worker_metrics));
    tokio::time::sleep(Duration::from_millis(500)).await; // the last spans are exported
    produced.push(("spans".into(), format!("{:?}", collector.spans())));
    for entry in std::fs::read_dir(logs).expect("logs") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "log") {
            produced.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap_or_default()));
        }
    }
    assert!(secrets.len() > 12, "{} secrets", secrets.len());
    for secret in &secrets {
        let secret_part = secret.rsplit('_').next().expect("a key has a secret part");
        assert_eq!(secret_part.len(), 64, "{secret_part}");
        for (place, text) in &produced {
            assert!(!text.contains(secret_part), "a key's secret appears in {place}");
        }
    }
    drop((registry_process, trainer_process, worker_process, router_process, limited));
}
