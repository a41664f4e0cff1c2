//! Streamed uploads and downloads against real registry processes: the typed client's
//! round trip (sha256 declared only by the final commit), ranged downloads, truncated
//! and mismatching streams, size limits enforced as bytes arrive, and a CLI killed in
//! the middle of an upload. After each refusal nothing is visible and no staging file
//! is left.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use modelplane_client::{Registry, Silent, Source};
use modelplane_proto::registry as pb;
use modelplane_tests::{Etcd, Process, houses_csv, registry};
use sha2::{Digest, Sha256};
use tonic::Code;

/// Names in the blob store's staging folder: uploads in flight or left behind.
pub fn staged(blobs: &Path) -> Vec<String> {
    match std::fs::read_dir(blobs.join("staging")) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits (bounded) until nothing is staged: a refused upload's staging file is removed
/// as the call answers, a broken one's as soon as the registry sees the stream break.
async fn nothing_staged(blobs: &Path, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !staged(blobs).is_empty() {
        assert!(Instant::now() < deadline, "{after} left staging files: {:?}", staged(blobs));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dataset_part(part: pb::upload_dataset_request::Part) -> pb::UploadDatasetRequest {
    pb::UploadDatasetRequest { part: Some(part) }
}

fn version_part(part: pb::upload_version_request::Part) -> pb::UploadVersionRequest {
    pb::UploadVersionRequest { part: Some(part) }
}

async fn dataset_names(addr: &str) -> Vec<String> {
    let mut client = registry(addr).await.expect("client");
    let listed = client.list_datasets(pb::ListDatasetsRequest {}).await.expect("list").into_inner();
    listed.datasets.into_iter().map(|d| d.name).collect()
}

pub async fn transfers(bin: &Path, etcd: &Etcd, dir: &Path, addr: &str, blobs: &Path) {
    round_trip(dir, addr).await;
    refused_streams(addr, blobs).await;
    malformed_csv_refused_as_bytes_arrive(addr, blobs).await;
    limits_as_bytes_arrive(bin, etcd, dir, blobs).await;
    client_killed_mid_upload(bin, dir, addr, blobs).await;
}

/// The typed client uploads from a file declaring the sha256 only in its commit, and
/// downloads verify; a download resumes from any offset.
async fn round_trip(dir: &Path, addr: &str) {
    let csv = houses_csv(3000);
    let file = dir.join("streamed.csv");
    std::fs::write(&file, &csv).expect("write csv");
    let client = Registry::connect(addr, &modelplane_tests::keys::admin_credentials()).expect("client");
    let source = Source::file(&file).await.expect("source");
    let uploaded = client.upload_dataset("streamed", source, std::sync::Arc::new(Silent)).await.expect("upload");
    assert_eq!(uploaded.sha256, hex::encode(Sha256::digest(csv.as_bytes())));
    assert_eq!((uploaded.rows, uploaded.size_bytes), (3000, csv.len() as u64));
    let mut back = Vec::new();
    let downloaded = client.download_dataset("streamed", "", &mut back, &Silent).await.expect("download");
    assert_eq!((back.as_slice(), downloaded.size), (csv.as_bytes(), csv.len() as u64));

    let tail = |offset: u64| async move {
        let request = pb::DownloadDatasetRequest { name: "streamed".into(), sha256: String::new(), offset };
        let mut stream = registry(addr).await.expect("client").download_dataset(request).await?.into_inner();
        let mut bytes = Vec::new();
        while let Some(message) = stream.message().await? {
            if let Some(pb::download_dataset_response::Part::Chunk(chunk)) = message.part {
                bytes.extend_from_slice(&chunk);
            }
        }
        Ok::<_, tonic::Status>(bytes)
    };
    let half = csv.len() as u64 / 2;
    assert_eq!(tail(half).await.expect("ranged"), &csv.as_bytes()[csv.len() / 2..]);
    assert!(tail(csv.len() as u64).await.expect("at the end").is_empty());
    let past = tail(csv.len() as u64 + 1).await.expect_err("past the end");
    assert_eq!(past.code(), Code::InvalidArgument, "{past:?}");
}

/// A stream cut short, a wrong commit and a malformed one are refused; nothing of them
/// is visible or staged; the same upload sent whole then succeeds.
async fn refused_streams(addr: &str, blobs: &Path) {
    use pb::upload_dataset_request::Part as D;
    use pb::upload_version_request::Part as V;
    let csv = houses_csv(500).into_bytes();
    let sha = hex::encode(Sha256::digest(&csv));
    let mut client = registry(addr).await.expect("client");
    let manifest =
        |sha256: &str| D::Manifest(pb::DatasetManifest { name: "cut".into(), sha256: sha256.into(), size_bytes: 0 });
    let cases: Vec<(&str, Vec<pb::UploadDatasetRequest>)> = vec![
        (
            "a stream cut short of its declared sha256",
            vec![dataset_part(manifest(&sha)), dataset_part(D::Chunk(csv[..csv.len() / 2].to_vec().into()))],
        ),
        (
            "a commit naming other bytes",
            vec![
                dataset_part(manifest("")),
                dataset_part(D::Chunk(csv.clone().into())),
                dataset_part(D::Commit(pb::UploadCommit { sha256: "ab".repeat(32), size_bytes: csv.len() as u64 })),
            ],
        ),
        (
            "a commit with the wrong size",
            vec![
                dataset_part(manifest("")),
                dataset_part(D::Chunk(csv.clone().into())),
                dataset_part(D::Commit(pb::UploadCommit { sha256: sha.clone(), size_bytes: 7 })),
            ],
        ),
        (
            "bytes after the commit",
            vec![
                dataset_part(manifest("")),
                dataset_part(D::Commit(pb::UploadCommit { sha256: sha.clone(), size_bytes: csv.len() as u64 })),
                dataset_part(D::Chunk(csv.clone().into())),
            ],
        ),
    ];
    for (case, messages) in cases {
        let status = client.upload_dataset(futures::stream::iter(messages)).await.expect_err(case);
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        nothing_staged(blobs, case).await;
    }
    assert!(!dataset_names(addr).await.contains(&"cut".to_owned()), "a refused dataset became visible");

    // An artifact must declare its sha256 somewhere; one cut short before its commit
    // declared none.
    let artifact = super::artifact(3);
    let version_manifest = V::Manifest(pb::UploadManifest {
        model: "cut".into(),
        size_bytes: 0,
        create_model: true,
        ..Default::default()
    });
    let messages = vec![version_part(version_manifest.clone()), version_part(V::Chunk(artifact.clone().into()))];
    let status = client.upload_version(futures::stream::iter(messages)).await.expect_err("no sha256");
    assert!(status.code() == Code::InvalidArgument && status.message().contains("no sha256"), "{status:?}");
    nothing_staged(blobs, "an artifact without sha256").await;
    let status = client
        .get_model(pb::GetModelRequest { name: "cut".into() })
        .await
        .expect_err("a refused first upload must not create its model");
    assert_eq!(status.code(), Code::NotFound);

    // Sent whole, with the sha256 only in the commit, both go through.
    let commit = pb::UploadCommit { sha256: hex::encode(Sha256::digest(&artifact)), size_bytes: artifact.len() as u64 };
    let messages =
        vec![version_part(version_manifest), version_part(V::Chunk(artifact.into())), version_part(V::Commit(commit))];
    let version = client.upload_version(futures::stream::iter(messages)).await.expect("retried upload").into_inner();
    assert_eq!(version.version, 1);
    let messages = vec![
        dataset_part(manifest("")),
        dataset_part(D::Chunk(csv.clone().into())),
        dataset_part(D::Commit(pb::UploadCommit { sha256: sha.clone(), size_bytes: csv.len() as u64 })),
    ];
    let dataset = client.upload_dataset(futures::stream::iter(messages)).await.expect("retried upload").into_inner();
    assert_eq!(dataset.sha256, sha);
    nothing_staged(blobs, "the accepted uploads").await;
}

/// A CSV whose second row is malformed is refused while its bytes still arrive: the
/// dataset check reads the stream as it comes, so an endless upload (which a 64 GiB
/// limit would let run for minutes) answers at once, naming the row.
async fn malformed_csv_refused_as_bytes_arrive(addr: &str, blobs: &Path) {
    use pb::upload_dataset_request::Part as D;
    let mut client = registry(addr).await.expect("client");
    let manifest = D::Manifest(pb::DatasetManifest { name: "ragged".into(), ..Default::default() });
    let start = b"a,b\n1,2\n1,2,3\n".to_vec();
    let rows = futures::stream::repeat_with(|| dataset_part(D::Chunk("4,5\n".repeat(1 << 18).into_bytes().into())));
    let endless = futures::stream::iter([dataset_part(manifest), dataset_part(D::Chunk(start.into()))]).chain(rows);
    let answer = tokio::time::timeout(Duration::from_secs(30), client.upload_dataset(endless)).await;
    let status = answer.expect("the CSV must be checked while bytes arrive").expect_err("a ragged row");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("row 2"), "names the row: {}", status.message());
    nothing_staged(blobs, "a malformed endless CSV").await;
    assert!(!dataset_names(addr).await.contains(&"ragged".to_owned()), "a refused dataset became visible");
}

/// A registry with 4 MiB limits refuses an endless upload as soon as it passes them
/// (waiting for the end would never answer), and a declared size over them at once.
async fn limits_as_bytes_arrive(bin: &Path, etcd: &Etcd, dir: &Path, blobs: &Path) {
    let limits = ["--max-artifact-bytes", "4MiB", "--max-dataset-bytes", "4MiB"];
    let small = super::registry_with(bin, etcd, blobs, dir, "registry-small", &limits);
    let addr = small.addr("registry");
    let mut client = registry(&addr).await.expect("client");

    use pb::upload_dataset_request::Part as D;
    let manifest = D::Manifest(pb::DatasetManifest { name: "endless".into(), ..Default::default() });
    let endless = futures::stream::iter(std::iter::once(dataset_part(manifest)))
        .chain(futures::stream::repeat_with(|| dataset_part(D::Chunk(vec![b'1'; 1 << 20].into()))));
    let answer = tokio::time::timeout(Duration::from_secs(30), client.upload_dataset(endless)).await;
    let status = answer.expect("the limit must be enforced while bytes arrive").expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("--max-dataset-bytes"), "{}", status.message());
    nothing_staged(blobs, "an upload over the limit").await;

    use pb::upload_version_request::Part as V;
    let declared = V::Manifest(pb::UploadManifest {
        model: "huge".into(),
        sha256: "0".repeat(64),
        size_bytes: 5 << 20,
        create_model: true,
        ..Default::default()
    });
    let status = client.upload_version(futures::stream::iter([version_part(declared)])).await.expect_err("too big");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("--max-artifact-bytes"), "{}", status.message());
    drop(small);
}

/// `modelplane datasets upload` killed with SIGKILL while its bytes stream: the
/// registry drops the staging file, nothing is visible, and the upload run again works.
async fn client_killed_mid_upload(bin: &Path, dir: &Path, addr: &str, blobs: &Path) {
    let file = dir.join("big.csv");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        out.write_all(b"x,y\n").expect("write");
        let block = "1.5,2\n".repeat(1 << 16);
        for _ in 0..(128 << 20) / block.len() {
            out.write_all(block.as_bytes()).expect("write");
        }
    }
    let size = std::fs::metadata(&file).expect("size").len();
    let args: Vec<String> = ["datasets", "upload", &file.display().to_string(), "--name", "killed", "--registry", addr]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut cli = Process::spawn(bin, "cli-upload", &args, &[], dir).expect("cli starts");
    // Kill once the registry is writing the upload (a part file in staging) and before
    // all of it arrived.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let writing =
            std::fs::read_dir(blobs.join("staging")).ok().into_iter().flatten().filter_map(Result::ok).any(|entry| {
                entry.file_name().to_string_lossy().contains('#')
                    && entry.metadata().is_ok_and(|meta| meta.len() > 0 && meta.len() < size)
            });
        if writing {
            break;
        }
        assert!(Instant::now() < deadline, "the upload never started writing");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    cli.kill().expect("kill -9 of the uploading CLI");
    nothing_staged(blobs, "a CLI killed mid-upload").await;
    assert!(!dataset_names(addr).await.contains(&"killed".to_owned()), "half a dataset became visible");

    let output =
        modelplane_tests::output_within(modelplane_tests::clean_command(bin).args(&args), Duration::from_secs(300))
            .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("{} rows", (size - 4) / 6)), "{stdout}");
    let _ = std::fs::remove_file(&file);
}
