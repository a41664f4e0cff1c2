//! The registry as a source of truth: two registry processes on one etcd never hand out
//! the same version number; kill -9 mid-upload leaves nothing visible; a restart sweeps
//! orphaned blobs; a corrupt blob is refused with DATA_LOSS.

use std::path::Path;
use std::time::Duration;

use modelplane_model::{Dataset, ModelKind, TrainParams, train};
use modelplane_proto::registry as pb;
use modelplane_tests::{Etcd, Process, houses_csv, registry, upload_artifact};
use sha2::{Digest, Sha256};
use tonic::Code;

fn registry_process(bin: &Path, etcd: &Etcd, blobs: &Path, logs: &Path, name: &str) -> Process {
    let args: Vec<String> = [
        "registry",
        "--etcd",
        &etcd.url,
        "--listen",
        "127.0.0.1:0",
        "--blob-dir",
        &blobs.display().to_string(),
        "--orphan-grace-secs",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    Process::spawn(bin, name, &args, &["registry"], logs).expect("registry starts")
}

fn artifact(epochs: u32) -> Vec<u8> {
    let data = Dataset::from_csv(&houses_csv(50), "price", false).expect("valid csv");
    let params = TrainParams { epochs, ..TrainParams::defaults_for(ModelKind::LinearRegression) };
    train(ModelKind::LinearRegression, &data, &params, |_| true).expect("trains").to_artifact().expect("saves")
}

async fn versions(addr: &str, model: &str) -> Vec<u64> {
    let response =
        registry(addr).await.expect("client").list_versions(pb::ListVersionsRequest { model: model.into() }).await;
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
    };
    sender
        .send(pb::UploadVersionRequest { part: Some(pb::upload_version_request::Part::Manifest(manifest)) })
        .await
        .expect("send");
    sender
        .send(pb::UploadVersionRequest {
            part: Some(pb::upload_version_request::Part::Chunk(other[..other.len() / 2].to_vec())),
        })
        .await
        .expect("send");
    let mut client = registry(&a).await.expect("client");
    let upload =
        tokio::spawn(async move { client.upload_version(tokio_stream::wrappers::ReceiverStream::new(receiver)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill();
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
    assert!(blobs.join("artifacts").join(&sha).exists(), "the sweep removed a referenced blob");
    let download = modelplane_tests::download_artifact(&c, "race", "24").await.expect("download");
    assert_eq!(download, bytes);

    // A blob corrupted on disk is refused, not served.
    let unique = artifact(13);
    let unique_sha = hex::encode(Sha256::digest(&unique));
    let version = upload_artifact(&c, "fragile", &unique_sha, &unique).await.expect("upload").version;
    std::fs::write(blobs.join("artifacts").join(&unique_sha), b"bit rot").expect("corrupt");
    let request = pb::DownloadArtifactRequest { model: "fragile".into(), version: version.to_string() };
    let status = registry(&c).await.expect("client").download_artifact(request).await.expect_err("corrupt blob");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("corrupt"), "{}", status.message());
}
