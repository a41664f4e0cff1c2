//! The end-to-end scenario every cluster shape must pass: upload, train, alias,
//! deploy, serve (typed and raw, checked against an independent computation), reject
//! bad input precisely, then train a second version and flip the alias while eight
//! clients keep sending (none of their requests may fail), timing how long the flip
//! took to show.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use modelplane_proto::inference::InferTensorContents;
use modelplane_proto::registry as pb;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::flow::*;
use crate::{Load, LoadSpec, churn_csv, houses_csv, topics_csv};

/// Endpoints of a running cluster.
pub struct Endpoints {
    /// Registry `host:port`.
    pub registry: String,
    /// Trainer `host:port`.
    pub trainer: String,
    /// Router `host:port`.
    pub router: String,
}

fn house_rows() -> Vec<Vec<f32>> {
    vec![vec![120.0, 3.0, 10.0], vec![60.0, 1.0, 45.0], vec![200.0, 5.0, 2.5]]
}

/// Deploys `model` to one target and waits until the router serves it.
async fn deploy(endpoints: &Endpoints, model: &str, target: pb::DeploymentTarget) -> Result<()> {
    let deployment = pb::Deployment { model: model.into(), targets: vec![target], ..Default::default() };
    registry(&endpoints.registry)
        .await?
        .set_deployment(pb::SetDeploymentRequest { deployment: Some(deployment) })
        .await?;
    wait_ready(&endpoints.router, model, "", Duration::from_secs(30)).await
}

fn version_target(version: u64) -> pb::DeploymentTarget {
    pb::DeploymentTarget { version, weight: 1, ..Default::default() }
}

async fn set_alias(registry_addr: &str, model: &str, alias: &str, version: u64) -> Result<pb::Alias> {
    let request = pb::SetAliasRequest { model: model.into(), alias: alias.into(), version, reason: "scenario".into() };
    Ok(registry(registry_addr).await?.set_alias(request).await?.into_inner())
}

/// Runs the whole scenario; returns how long the alias flip took to show in predictions.
pub async fn run(endpoints: &Endpoints) -> Result<Duration> {
    for (addr, service) in [
        (&endpoints.registry, "modelplane.registry.v1.Registry"),
        (&endpoints.trainer, "modelplane.trainer.v1.Trainer"),
        (&endpoints.router, "inference.GRPCInferenceService"),
    ] {
        ensure!(health_serving(addr).await?, "{addr} is not SERVING");
        let services = reflected_services(addr).await?;
        let mut expected = vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            service,
        ];
        expected.sort_unstable();
        ensure!(services == expected, "{addr} reflects {services:?}; expected {expected:?}");
    }

    // Datasets and training with lineage.
    let houses = upload_dataset(&endpoints.registry, "houses", &houses_csv(400)).await?;
    ensure!(houses.rows == 400 && houses.columns == ["area", "rooms", "age", "price"], "dataset record {houses:?}");
    let job = train(&endpoints.trainer, "houses", "linear", "houses", "price", &[("epochs", "40")]).await?;
    ensure!(job.version == 1, "first version is {}", job.version);
    ensure!(job.metrics["r2"] > 0.95, "r2 {:?}", job.metrics);
    let v1 = registry(&endpoints.registry)
        .await?
        .get_version(pb::GetVersionRequest { model: "houses".into(), version: "1".into() })
        .await?
        .into_inner();
    let lineage = v1.lineage.clone().unwrap_or_default();
    ensure!(lineage.dataset_sha256 == houses.sha256 && lineage.job_id == job.id, "lineage {lineage:?}");
    ensure!(lineage.params.get("epochs").map(String::as_str) == Some("40"), "params {:?}", lineage.params);
    ensure!(v1.metrics.contains_key("rmse"), "metrics {:?}", v1.metrics);

    // Alias, deployment, serving checked against an independent computation.
    set_alias(&endpoints.registry, "houses", "production", 1).await?;
    deploy(endpoints, "houses", pb::DeploymentTarget { alias: "production".into(), weight: 100, ..Default::default() })
        .await?;
    let rows = house_rows();
    let expected_v1 = independent_predict(&download_artifact(&endpoints.registry, "houses", "1").await?, &rows)?;
    for version in ["", "production", "1"] {
        for raw in [false, true] {
            let (values, served) = predict(&endpoints.router, "houses", version, &rows, raw).await?;
            ensure!(served == "1", "version {version:?} served v{served}");
            assert_close(&values, &expected_v1, 1e-4);
        }
    }

    let churn = upload_dataset(&endpoints.registry, "churn", &churn_csv(500)).await?;
    let job = train(&endpoints.trainer, "churn", "logistic", &churn.name, "churned", &[("epochs", "30")]).await?;
    ensure!(job.metrics["accuracy"] > 0.85, "accuracy {:?}", job.metrics);
    deploy(endpoints, "churn", version_target(1)).await?;
    let churn_rows = vec![vec![7.0, 3.0, 50.0], vec![0.0, 70.0, 20.0]];
    let expected = independent_predict(&download_artifact(&endpoints.registry, "churn", "1").await?, &churn_rows)?;
    for raw in [false, true] {
        let (values, _) = predict(&endpoints.router, "churn", "", &churn_rows, raw).await?;
        assert_close(&values, &expected, 1e-4);
    }
    ensure!(expected[1] > 0.5 && expected[3] < 0.5, "churn model learned nothing: {expected:?}");

    classify_text(endpoints).await?;
    check_bad_input(endpoints).await?;
    flip(endpoints, &rows).await
}

/// Text classification: hashing vectorizer + softmax, served with BYTES input.
async fn classify_text(endpoints: &Endpoints) -> Result<()> {
    upload_dataset(&endpoints.registry, "tickets", &topics_csv(300)).await?;
    let job = train(
        &endpoints.trainer,
        "tickets",
        "softmax",
        "tickets",
        "topic",
        &[("text_column", "text"), ("ngram_max", "2")],
    )
    .await?;
    ensure!(job.metrics["accuracy"] >= 0.95, "text accuracy {:?}", job.metrics);
    deploy(endpoints, "tickets", version_target(1)).await?;
    let mut client = inference(&endpoints.router).await?;
    let texts = [
        "I was charged twice, where is my refund",
        "the courier left my parcel at the wrong door",
        "cannot login, my password was reset",
    ];
    for raw in [false, true] {
        let response = client.model_infer(text_request("tickets", &texts, raw)).await?.into_inner();
        ensure!(
            bytes_output(&response, "label") == ["billing", "delivery", "account"],
            "labels {:?}",
            bytes_output(&response, "label")
        );
        let probabilities = first_output(&response);
        ensure!(probabilities.len() == 9, "probabilities {probabilities:?}");
        for row in probabilities.chunks(3) {
            ensure!(
                (row.iter().sum::<f32>() - 1.0).abs() < 1e-4,
                "a row of probabilities sums to {}",
                row.iter().sum::<f32>()
            );
        }
    }
    let status =
        client.model_infer(infer_request("tickets", "", "text", &[vec![1.0]], false)).await.expect_err("numbers");
    ensure!(status.code() == Code::InvalidArgument && status.message().contains("expected BYTES"), "{status:?}");
    Ok(())
}

async fn check_bad_input(endpoints: &Endpoints) -> Result<()> {
    let mut client = inference(&endpoints.router).await?;
    let rows = house_rows();
    let status = client.model_infer(infer_request("nope", "", "input", &rows, false)).await.expect_err("unknown model");
    ensure!(status.code() == Code::NotFound && status.message().contains("\"nope\""), "{status:?}");

    let status =
        client.model_infer(infer_request("houses", "", "features", &rows, false)).await.expect_err("wrong name");
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    ensure!(
        status.message().contains("\"features\"") && status.message().contains("\"input\""),
        "{}",
        status.message()
    );

    let mut wrong_dtype = infer_request("houses", "", "input", &rows, false);
    wrong_dtype.inputs[0].datatype = "BYTES".into();
    let status = client.model_infer(wrong_dtype).await.expect_err("wrong dtype");
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    ensure!(status.message().contains("BYTES") && status.message().contains("expected FP32"), "{}", status.message());

    // FP64 converts when exact, and is refused naming the value when not.
    let mut wide = infer_request("houses", "", "input", &rows, false);
    wide.inputs[0].datatype = "FP64".into();
    wide.inputs[0].contents = Some(InferTensorContents {
        fp64_contents: rows.concat().iter().map(|v| f64::from(*v)).collect(),
        ..Default::default()
    });
    let (typed, _) = predict(&endpoints.router, "houses", "", &rows, false).await?;
    assert_close(&first_output(&client.model_infer(wide.clone()).await?.into_inner()), &typed, 1e-6);
    wide.inputs[0].contents =
        Some(InferTensorContents { fp64_contents: vec![0.1; rows.len() * 3], ..Default::default() });
    let status = client.model_infer(wide).await.expect_err("0.1 is not exact in FP32");
    ensure!(status.code() == Code::InvalidArgument && status.message().contains("exactly"), "{status:?}");

    let narrow = vec![vec![1.0, 2.0]];
    let status =
        client.model_infer(infer_request("houses", "", "input", &narrow, true)).await.expect_err("wrong shape");
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    ensure!(status.message().contains("[1, 2]") && status.message().contains("[-1, 3]"), "{}", status.message());

    let status =
        client.model_infer(infer_request("houses", "9", "input", &rows, false)).await.expect_err("no version 9");
    ensure!(status.code() == Code::NotFound, "{status:?}");

    // An artifact whose bytes do not match the declared sha256 registers nothing.
    let artifact = download_artifact(&endpoints.registry, "houses", "1").await?;
    let wrong = hex::encode(Sha256::digest(b"something else"));
    let status = upload_artifact(&endpoints.registry, "houses", &wrong, &artifact).await.expect_err("sha mismatch");
    ensure!(status.code() == Code::InvalidArgument && status.message().contains("sha256 mismatch"), "{status:?}");
    let status = upload_artifact(&endpoints.registry, "ghost", &wrong, &artifact).await.expect_err("sha mismatch");
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    let mut registry_client = registry(&endpoints.registry).await?;
    let versions = registry_client
        .list_versions(pb::ListVersionsRequest { model: "houses".into(), ..Default::default() })
        .await?
        .into_inner();
    ensure!(versions.versions.len() == 1, "a rejected upload registered a version: {:?}", versions.versions);
    let status = registry_client.get_model(pb::GetModelRequest { name: "ghost".into() }).await.expect_err("ghost");
    ensure!(status.code() == Code::NotFound, "a rejected upload created a model: {status:?}");
    Ok(())
}

/// Trains v2, flips `production` to it and measures until predictions change.
async fn flip(endpoints: &Endpoints, rows: &[Vec<f32>]) -> Result<Duration> {
    let job =
        train(&endpoints.trainer, "houses", "linear", "houses", "price", &[("epochs", "2"), ("learning_rate", "0.01")])
            .await?;
    ensure!(job.version == 2, "second version is {}", job.version);
    let expected_v2 = independent_predict(&download_artifact(&endpoints.registry, "houses", "2").await?, rows)?;
    let (before, _) = predict(&endpoints.router, "houses", "", rows, false).await?;
    ensure!(
        before.iter().zip(&expected_v2).any(|(a, b)| (a - b).abs() > 1.0),
        "v1 and v2 predict alike; the flip would prove nothing"
    );

    // Eight clients keep sending while the alias flips: the new version loads and warms
    // up beside the old one, and the old one unloads only after traffic left it, so
    // every request succeeds, on v1 or v2. The load is judged by what it crossed (each
    // client answered before the flip, and after v1 was unloaded), not by seconds.
    let patience = Duration::from_secs(120);
    let spec = LoadSpec {
        router: endpoints.router.clone(),
        model: "houses".into(),
        version: String::new(),
        rows: rows.to_vec(),
        raw: true,
        clients: 8,
        pause: Duration::ZERO,
    };
    let load = Load::start(&spec, "the alias flipped");
    load.each_answered(3, patience).await?;
    let started = Instant::now();
    let alias = set_alias(&endpoints.registry, "houses", "production", 2).await?;
    ensure!(alias.previous_version == 1, "previous version {}", alias.previous_version);
    let took = loop {
        let (values, served) = predict(&endpoints.router, "houses", "", rows, false).await?;
        if served == "2" {
            assert_close(&values, &expected_v2, 1e-4);
            break started.elapsed();
        }
        // Only bounds a hang; how long the flip took is the caller's to report.
        ensure!(started.elapsed() < patience, "predictions did not change within {patience:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Keep the load on until the old version is unloaded everywhere (after its grace),
    // and a little past it.
    wait_unloaded(&endpoints.registry, "houses", 1, patience).await?;
    load.each_answered(5, patience).await?;
    let served = load.stop().await?.by_version;
    ensure!(served.get("2").copied().unwrap_or(0) > 0, "no loaded request reached v2: {served:?}");
    ensure!(served.get("1").copied().unwrap_or(0) > 0, "the load started after the flip: {served:?}");
    Ok(took)
}

/// Waits until no worker holds `model` v`version`.
async fn wait_unloaded(registry_addr: &str, model: &str, version: u64, timeout: Duration) -> Result<()> {
    let mut client = registry(registry_addr).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let workers = client.list_workers(pb::ListWorkersRequest {}).await?.into_inner().workers;
        let holding: Vec<&str> = workers
            .iter()
            .filter(|w| w.loaded.iter().any(|v| v.model == model && v.version == version))
            .map(|w| w.id.as_str())
            .collect();
        if holding.is_empty() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{model} v{version} is still loaded on {holding:?} after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
