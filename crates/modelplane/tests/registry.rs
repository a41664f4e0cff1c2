//! The registry as a source of truth: two registry processes on one etcd never hand out
//! the same version number; kill -9 mid-upload leaves nothing visible; a restart sweeps
//! orphaned blobs; a corrupt blob is refused with DATA_LOSS.

use std::path::Path;
use std::time::{Duration, Instant};

use modelplane_model::{Dataset, ModelKind, TrainParams, train};
use modelplane_proto::registry as pb;
use modelplane_tests::{Etcd, Process, houses_csv, registry, upload_artifact};
use sha2::{Digest, Sha256};
use tonic::Code;
use transfers::{staged, transfers};

mod transfers;

fn registry_process(bin: &Path, etcd: &Etcd, blobs: &Path, logs: &Path, name: &str) -> Process {
    registry_with(bin, etcd, blobs, logs, name, &["--orphan-grace-secs", "0"])
}

/// A registry process on `etcd` and `blobs` with `extra` flags.
fn registry_with(bin: &Path, etcd: &Etcd, blobs: &Path, logs: &Path, name: &str, extra: &[&str]) -> Process {
    let blob_dir = blobs.display().to_string();
    let base = ["registry", "--etcd", &etcd.url, "--listen", "127.0.0.1:0", "--blob-dir", &blob_dir];
    let args: Vec<String> = base.iter().chain(extra).map(|s| (*s).to_owned()).collect();
    Process::spawn(bin, name, &args, &["registry"], logs).expect("registry starts")
}

fn artifact(epochs: u32) -> Vec<u8> {
    let data = Dataset::from_csv(&houses_csv(50), "price", false).expect("valid csv");
    let params = TrainParams { epochs, ..TrainParams::defaults_for(ModelKind::LinearRegression) };
    train(ModelKind::LinearRegression, data, &params, |_| true).expect("trains").to_artifact().expect("saves")
}

async fn versions(addr: &str, model: &str) -> Vec<u64> {
    let response = registry(addr)
        .await
        .expect("client")
        .list_versions(pb::ListVersionsRequest { model: model.into(), ..Default::default() })
        .await;
    match response {
        Ok(list) => list.into_inner().versions.iter().map(|v| v.version).collect(),
        Err(status) if status.code() == Code::NotFound => Vec::new(),
        Err(status) => panic!("list versions: {status:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_share_etcd_without_duplicate_versions_and_survive_crashes() {
    let bin = Path::new(env!("CARGO_BIN_EXE_modelplane"));
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = dir.path().join("blobs");
    let etcd = Etcd::start().expect("etcd starts");
    let mut first = registry_process(bin, &etcd, &blobs, dir.path(), "registry-a");
    let second = registry_process(bin, &etcd, &blobs, dir.path(), "registry-b");
    let (a, b) = (first.addr("registry"), second.addr("registry"));
    // Each sweeps the shared blob directory (grace 0) before it serves: wait for both,
    // or one's sweep would take the other's uploads in flight for orphans.
    for addr in [&a, &b] {
        while !modelplane_tests::health_serving(addr).await.unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // 24 concurrent uploads of the same model, half through each registry.
    let bytes = artifact(5);
    let sha = hex::encode(Sha256::digest(&bytes));
    let uploads = (0..24).map(|i| {
        let (addr, bytes, sha) = (if i % 2 == 0 { a.clone() } else { b.clone() }, bytes.clone(), sha.clone());
        tokio::spawn(async move { upload_artifact(&addr, "race", &sha, &bytes).await.expect("upload").version })
    });
    let mut numbers: Vec<u64> =
        futures::future::join_all(uploads).await.into_iter().map(|r| r.expect("task")).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=24).collect::<Vec<u64>>(), "every number handed out once");
    assert_eq!(versions(&b, "race").await, numbers);

    // kill -9 of a registry in the middle of an upload: nothing becomes visible.
    let other = artifact(9);
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let manifest = pb::UploadManifest {
        model: "crashed".into(),
        sha256: hex::encode(Sha256::digest(&other)),
        size_bytes: other.len() as u64,
        lineage: None,
        create_model: true,
        format: String::new(),
        skip_validation: false,
    };
    sender
        .send(pb::UploadVersionRequest { part: Some(pb::upload_version_request::Part::Manifest(manifest)) })
        .await
        .expect("send");
    sender
        .send(pb::UploadVersionRequest {
            part: Some(pb::upload_version_request::Part::Chunk(other[..other.len() / 2].to_vec().into())),
        })
        .await
        .expect("send");
    let mut client = registry(&a).await.expect("client");
    let upload =
        tokio::spawn(async move { client.upload_version(tokio_stream::wrappers::ReceiverStream::new(receiver)).await });
    // Kill only once the client has taken both messages off the channel and so sent
    // them: a kill before that would fail the upload without testing anything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sender.capacity() < sender.max_capacity() {
        assert!(Instant::now() < deadline, "the upload never took its first two messages");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!upload.is_finished(), "the upload ended before the kill");
    first.kill().expect("kill -9 of the registry taking the upload");
    let outcome = tokio::time::timeout(Duration::from_secs(10), upload).await.expect("upload ends").expect("task");
    assert!(outcome.is_err(), "an upload cut off by kill -9 must fail: {outcome:?}");
    drop(sender);
    assert!(versions(&b, "crashed").await.is_empty(), "a half upload became visible");
    assert_eq!(versions(&b, "race").await.len(), 24);

    // A blob left without a record (a crash between blob and record) and a half-written
    // temporary file are swept when a registry starts; referenced blobs stay.
    let orphan = blobs.join("artifacts").join("0".repeat(64));
    let half = blobs.join("artifacts").join(format!("{sha}#7"));
    std::fs::write(&orphan, b"orphan").expect("write orphan");
    std::fs::write(&half, b"half").expect("write half");
    let restarted = registry_process(bin, &etcd, &blobs, dir.path(), "registry-c");
    let c = restarted.addr("registry");
    // The sweep runs before the server answers; a health check waits for it.
    assert!(modelplane_tests::health_serving(&c).await.expect("health"));
    assert!(!orphan.exists() && !half.exists(), "orphans survived the restart sweep");
    assert_eq!(staged(&blobs), Vec::<String>::new(), "the upload cut off by kill -9 left its staging file");
    assert!(blobs.join("artifacts").join(&sha).exists(), "the sweep removed a referenced blob");
    let download = modelplane_tests::download_artifact(&c, "race", "24").await.expect("download");
    assert_eq!(download, bytes);

    // A blob corrupted on disk is refused, not served.
    let unique = artifact(13);
    let unique_sha = hex::encode(Sha256::digest(&unique));
    let version = upload_artifact(&c, "fragile", &unique_sha, &unique).await.expect("upload").version;
    std::fs::write(blobs.join("artifacts").join(&unique_sha), b"bit rot").expect("corrupt");
    // Bytes stream as they are read, so the verdict ends the stream: a raw client sees
    // DATA_LOSS before the stream would have ended OK; the typed client refuses too.
    let request = pb::DownloadArtifactRequest { model: "fragile".into(), version: version.to_string(), offset: 0 };
    let mut stream = registry(&c).await.expect("client").download_artifact(request).await.expect("stream").into_inner();
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a corrupt blob's download ended OK"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("corrupt"), "{}", status.message());
    let typed = modelplane_client::Registry::connect(&c, &modelplane_tests::keys::admin_credentials()).expect("client");
    let mut sink = Vec::new();
    let refused = typed.download_artifact("fragile", &version.to_string(), &mut sink, &modelplane_client::Silent).await;
    assert_eq!(refused.expect_err("corrupt blob").code(), Code::DataLoss);

    lifecycle(&c, &bytes, &sha).await;
    transfers(bin, &etcd, dir.path(), &c, &blobs).await;
}

/// Paging, filtering, updates, archive and the deletions that must refuse while in use.
async fn lifecycle(addr: &str, bytes: &[u8], sha: &str) {
    let mut client = registry(addr).await.expect("client");

    // Versions page by number; lineage links each version to its predecessor.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let request =
            pb::ListVersionsRequest { model: "race".into(), page_size: 10, page_token: token, ..Default::default() };
        let page = client.list_versions(request).await.expect("page").into_inner();
        assert!(page.versions.len() <= 10);
        seen.extend(page.versions.iter().map(|v| (v.version, v.lineage.clone().unwrap_or_default().parent_version)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, (1..=24).map(|v| (v, v - 1)).collect::<Vec<_>>());
    let request = pb::ListVersionsRequest { model: "race".into(), page_size: 5000, ..Default::default() };
    assert_eq!(client.list_versions(request).await.expect_err("page too big").code(), Code::InvalidArgument);

    // Models filter by name prefix and labels; updates change labels and description.
    for (name, labels) in [
        ("vision-a", vec![("team", "vision")]),
        ("vision-b", vec![("team", "vision")]),
        ("text-a", vec![("team", "nlp")]),
    ] {
        let labels = labels.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let request =
            pb::CreateModelRequest { name: name.into(), description: String::new(), owner: "test".into(), labels };
        client.create_model(request).await.expect("create");
    }
    let update = pb::UpdateModelRequest {
        name: "vision-b".into(),
        description: Some("detector".into()),
        set_labels: [("stage".to_owned(), "prod".to_owned())].into(),
        remove_labels: vec![],
    };
    let updated = client.update_model(update).await.expect("update").into_inner();
    assert_eq!((updated.description.as_str(), updated.labels.len()), ("detector", 2));
    let names = |models: Vec<pb::Model>| models.into_iter().map(|m| m.name).collect::<Vec<_>>();
    let request = pb::ListModelsRequest { name_prefix: "vision".into(), ..Default::default() };
    assert_eq!(names(client.list_models(request).await.expect("list").into_inner().models), ["vision-a", "vision-b"]);
    let labels = [("team".to_owned(), "vision".to_owned()), ("stage".to_owned(), "prod".to_owned())].into();
    let request = pb::ListModelsRequest { labels, ..Default::default() };
    assert_eq!(names(client.list_models(request).await.expect("list").into_inner().models), ["vision-b"]);
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListModelsRequest { page_size: 2, page_token: token, ..Default::default() };
        let page = client.list_models(request).await.expect("list").into_inner();
        all.extend(names(page.models));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(all, ["fragile", "race", "text-a", "vision-a", "vision-b"]);

    // A version in use cannot be deleted or archived; an unused one can.
    let alias = pb::SetAliasRequest { model: "race".into(), alias: "prod".into(), version: 3, reason: String::new() };
    client.set_alias(alias).await.expect("alias");
    let deployment = pb::Deployment {
        model: "race".into(),
        targets: vec![pb::DeploymentTarget { alias: "prod".into(), weight: 1, ..Default::default() }],
        ..Default::default()
    };
    let only_shadow = pb::Deployment {
        model: "race".into(),
        targets: vec![pb::DeploymentTarget { version: 3, shadow: true, ..Default::default() }],
        ..Default::default()
    };
    let status = client
        .set_deployment(pb::SetDeploymentRequest { deployment: Some(only_shadow) })
        .await
        .expect_err("a shadow alone serves nothing");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("not a shadow"), "{}", status.message());
    let overlong_wait = pb::Deployment {
        batching: Some(pb::Batching { max_queue_delay_us: Some(2_000_000), ..Default::default() }),
        ..deployment.clone()
    };
    let status = client
        .set_deployment(pb::SetDeploymentRequest { deployment: Some(overlong_wait) })
        .await
        .expect_err("a two-second batch wait");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("at most 1000000 µs"), "{}", status.message());
    let batched = pb::Deployment {
        batching: Some(pb::Batching { max_batch_size: Some(8), ..Default::default() }),
        ..deployment.clone()
    };
    client.set_deployment(pb::SetDeploymentRequest { deployment: Some(batched) }).await.expect("deploy batched");
    let stored = client.get_deployment(pb::GetDeploymentRequest { model: "race".into() }).await.expect("get");
    let batching = stored.into_inner().batching.expect("the override is kept");
    assert_eq!((batching.max_batch_size, batching.queue_capacity), (Some(8), None), "unset fields stay unset");
    client.set_deployment(pb::SetDeploymentRequest { deployment: Some(deployment) }).await.expect("deploy");
    let stored = client.get_deployment(pb::GetDeploymentRequest { model: "race".into() }).await.expect("get");
    assert!(stored.into_inner().batching.is_none(), "redeploying without batching drops the override");
    let status =
        client.delete_version(pb::DeleteVersionRequest { model: "race".into(), version: 3 }).await.expect_err("in use");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("alias \"prod\"") && status.message().contains("deployment"),
        "{}",
        status.message()
    );
    let status = client
        .archive_version(pb::ArchiveVersionRequest { model: "race".into(), version: 3 })
        .await
        .expect_err("in use");
    assert_eq!(status.code(), Code::FailedPrecondition);
    client.delete_version(pb::DeleteVersionRequest { model: "race".into(), version: 5 }).await.expect("delete unused");
    let archived =
        client.archive_version(pb::ArchiveVersionRequest { model: "race".into(), version: 6 }).await.expect("archive");
    assert!(archived.into_inner().archived);
    let listed =
        |include_archived| pb::ListVersionsRequest { model: "race".into(), include_archived, ..Default::default() };
    assert_eq!(client.list_versions(listed(false)).await.expect("list").into_inner().versions.len(), 22);
    assert_eq!(client.list_versions(listed(true)).await.expect("list").into_inner().versions.len(), 23);
    let alias = pb::SetAliasRequest { model: "race".into(), alias: "old".into(), version: 6, reason: String::new() };
    let status = client.set_alias(alias).await.expect_err("archived");
    assert!(status.code() == Code::FailedPrecondition && status.message().contains("archived"), "{status:?}");

    // A deployed model cannot be deleted; after its deployment goes, it can.
    let status = client.delete_model(pb::DeleteModelRequest { name: "race".into() }).await.expect_err("deployed");
    assert!(
        status.code() == Code::FailedPrecondition && status.message().contains("delete its deployment first"),
        "{status:?}"
    );
    client.delete_deployment(pb::DeleteDeploymentRequest { model: "race".into() }).await.expect("undeploy");
    // Millisecond timestamps: keep the entries before and after `since` apart.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(5)).await;
    client.delete_model(pb::DeleteModelRequest { name: "race".into() }).await.expect("delete model");
    let status = client.get_model(pb::GetModelRequest { name: "race".into() }).await.expect_err("gone");
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .get_version(pb::GetVersionRequest { model: "race".into(), version: "4".into() })
        .await
        .expect_err("gone");
    assert_eq!(status.code(), Code::NotFound);

    // Datasets: get, and delete only when no version's lineage names them.
    let used = modelplane_tests::upload_dataset(addr, "used", &houses_csv(20)).await.expect("upload");
    let unused = modelplane_tests::upload_dataset(addr, "unused", &houses_csv(10)).await.expect("upload");
    let manifest = pb::UploadManifest {
        model: "derived".into(),
        sha256: sha.into(),
        size_bytes: bytes.len() as u64,
        lineage: Some(pb::Lineage {
            dataset: "used".into(),
            dataset_sha256: used.sha256.clone(),
            ..Default::default()
        }),
        create_model: true,
        format: String::new(),
        skip_validation: false,
    };
    let messages = vec![
        pb::UploadVersionRequest { part: Some(pb::upload_version_request::Part::Manifest(manifest)) },
        pb::UploadVersionRequest { part: Some(pb::upload_version_request::Part::Chunk(bytes.to_vec().into())) },
    ];
    client.upload_version(futures::stream::iter(messages)).await.expect("upload");
    let got =
        client.get_dataset(pb::GetDatasetRequest { name: "used".into(), sha256: String::new() }).await.expect("get");
    assert_eq!(got.into_inner().rows, 20);
    let status = client
        .delete_dataset(pb::DeleteDatasetRequest { name: "used".into(), sha256: used.sha256.clone() })
        .await
        .expect_err("referenced");
    assert!(status.code() == Code::FailedPrecondition && status.message().contains("derived v1"), "{status:?}");
    client
        .delete_dataset(pb::DeleteDatasetRequest { name: "unused".into(), sha256: unused.sha256 })
        .await
        .expect("delete");
    let status = client
        .get_dataset(pb::GetDatasetRequest { name: "unused".into(), sha256: String::new() })
        .await
        .expect_err("gone");
    assert_eq!(status.code(), Code::NotFound);

    // The audit log answers by model and time range.
    let request = pb::ListAuditRequest { model: "race".into(), since_unix_ms: since, until_unix_ms: 0, limit: 0 };
    let entries = client.list_audit(request).await.expect("audit").into_inner().entries;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["delete_model"], "{entries:?}");
    let request = pb::ListAuditRequest { model: "race".into(), since_unix_ms: 0, until_unix_ms: since, limit: 3 };
    let entries = client.list_audit(request).await.expect("audit").into_inner().entries;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    // The newest three before `since`; refused changes are not mutations and leave no entry.
    assert_eq!(actions, ["delete_version", "archive_version", "delete_deployment"], "{entries:?}");
}
