//! gRPC steps the end-to-end tests drive a cluster through, and an independent
//! computation of a model's output from its artifact file.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use modelplane_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use modelplane_proto::inference::model_infer_request::InferInputTensor;
use modelplane_proto::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse, ModelReadyRequest};
use modelplane_proto::registry::{self as pb, registry_client::RegistryClient};
use modelplane_proto::trainer::{self as tpb, trainer_client::TrainerClient};
use sha2::{Digest, Sha256};
use tonic::service::interceptor::InterceptedService;

/// A channel whose calls carry the harness's admin key.
pub type Channel = InterceptedService<tonic::transport::Channel, crate::keys::AsAdmin>;

/// A client channel to `host:port`, calling as the harness's admin. Every call on it has
/// a deadline, so a server that hangs fails the test with DEADLINE_EXCEEDED instead of
/// stalling it; the deadline only bounds a hang (streams are bounded where they are read).
pub async fn channel(addr: &str) -> Result<Channel> {
    Ok(InterceptedService::new(anonymous_channel(addr)?, crate::keys::AsAdmin))
}

/// [`channel`] without a key.
pub fn anonymous_channel(addr: &str) -> Result<tonic::transport::Channel> {
    let endpoint = match crate::pki::client_tls() {
        None => tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?,
        Some(tls) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.clone())?,
    };
    Ok(endpoint.connect_timeout(Duration::from_secs(20)).timeout(Duration::from_secs(120)).connect_lazy())
}

/// Registry client.
pub async fn registry(addr: &str) -> Result<RegistryClient<Channel>> {
    Ok(RegistryClient::new(channel(addr).await?))
}

/// Inference client (router or worker).
pub async fn inference(addr: &str) -> Result<GrpcInferenceServiceClient<Channel>> {
    Ok(GrpcInferenceServiceClient::new(channel(addr).await?))
}

/// Checks `grpc.health.v1` reports SERVING for the whole server.
pub async fn health_serving(addr: &str) -> Result<bool> {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel(addr).await?);
    let response = client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?;
    Ok(response.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
}

/// The services a server advertises through gRPC server reflection, asked in both
/// versions clients use (`v1`, and `v1alpha` as older grpcurl and evans ask); fails
/// unless both answer the same list.
pub async fn reflected_services(addr: &str) -> Result<Vec<String>> {
    let v1 = reflected_services_v1(addr).await?;
    let v1alpha = reflected_services_v1alpha(addr).await?;
    ensure!(v1 == v1alpha, "{addr} reflects {v1:?} through v1 but {v1alpha:?} through v1alpha");
    Ok(v1)
}

/// Lists services through `grpc.reflection.$version`; sorted names.
macro_rules! list_services {
    ($version:ident, $addr:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let addr: &str = $addr;
        let mut client = ServerReflectionClient::new(channel(addr).await?);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client.server_reflection_info(futures::stream::iter([request])).await?.into_inner();
        let mut listed = None;
        while let Some(response) = stream.message().await? {
            if let Some(MessageResponse::ListServicesResponse(list)) = response.message_response {
                let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                names.sort();
                listed = Some(names);
                break;
            }
        }
        listed.with_context(|| format!("{addr} answered no service list ({})", stringify!($version)))
    }};
}

async fn reflected_services_v1(addr: &str) -> Result<Vec<String>> {
    list_services!(v1, addr)
}

async fn reflected_services_v1alpha(addr: &str) -> Result<Vec<String>> {
    list_services!(v1alpha, addr)
}

/// What a role answers to one message just over the 64 MiB limit: a ModelInfer to an
/// inference endpoint (`registry` false), or one dataset chunk to a registry's upload
/// stream (`registry` true).
pub async fn oversized_message_status(addr: &str, registry: bool) -> Result<tonic::Status> {
    // modelplane_service::MAX_MESSAGE_BYTES, the limit every role applies.
    let over = (64 << 20) + 1;
    let answer = if registry {
        let manifest = pb::DatasetManifest { name: "oversized".into(), sha256: "0".repeat(64), size_bytes: 0 };
        let messages = [
            pb::UploadDatasetRequest { part: Some(pb::upload_dataset_request::Part::Manifest(manifest)) },
            pb::UploadDatasetRequest { part: Some(pb::upload_dataset_request::Part::Chunk(vec![b'1'; over].into())) },
        ];
        let mut client = RegistryClient::new(channel(addr).await?).max_encoding_message_size(usize::MAX);
        client.upload_dataset(futures::stream::iter(messages)).await.map(|_| ())
    } else {
        let request = ModelInferRequest {
            model_name: "houses".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![i64::try_from(over / 12)?, 3],
                ..Default::default()
            }],
            raw_input_contents: vec![Bytes::from(vec![0u8; over])],
            ..Default::default()
        };
        let mut client = GrpcInferenceServiceClient::new(channel(addr).await?).max_encoding_message_size(usize::MAX);
        client.model_infer(request).await.map(|_| ())
    };
    answer.err().context("a message over the limit was accepted")
}

/// Uploads a CSV dataset in 1 MiB chunks.
pub async fn upload_dataset(registry_addr: &str, name: &str, csv: &str) -> Result<pb::Dataset> {
    let sha256 = hex::encode(Sha256::digest(csv.as_bytes()));
    let manifest = pb::DatasetManifest { name: name.into(), sha256, size_bytes: csv.len() as u64 };
    let mut messages =
        vec![pb::UploadDatasetRequest { part: Some(pb::upload_dataset_request::Part::Manifest(manifest)) }];
    messages.extend(
        csv.as_bytes().chunks(1 << 20).map(|c| pb::UploadDatasetRequest {
            part: Some(pb::upload_dataset_request::Part::Chunk(c.to_vec().into())),
        }),
    );
    Ok(registry(registry_addr).await?.upload_dataset(futures::stream::iter(messages)).await?.into_inner())
}

/// Uploads raw artifact bytes declaring `sha256`.
pub async fn upload_artifact(
    registry_addr: &str,
    model: &str,
    sha256: &str,
    bytes: &[u8],
) -> Result<pb::ModelVersion, tonic::Status> {
    let manifest = pb::UploadManifest {
        model: model.into(),
        sha256: sha256.into(),
        size_bytes: 0,
        lineage: None,
        create_model: true,
        format: String::new(),
        skip_validation: false,
    };
    let mut messages =
        vec![pb::UploadVersionRequest { part: Some(pb::upload_version_request::Part::Manifest(manifest)) }];
    messages.extend(
        bytes.chunks(1 << 20).map(|c| pb::UploadVersionRequest {
            part: Some(pb::upload_version_request::Part::Chunk(c.to_vec().into())),
        }),
    );
    let mut client = registry(registry_addr).await.map_err(|e| tonic::Status::unknown(e.to_string()))?;
    Ok(client.upload_version(futures::stream::iter(messages)).await?.into_inner())
}

/// Submits a training job and follows it to the end; fails unless it succeeded.
pub async fn train(
    trainer_addr: &str,
    model: &str,
    kind: &str,
    dataset: &str,
    target: &str,
    params: &[(&str, &str)],
) -> Result<tpb::Job> {
    let mut client = TrainerClient::new(channel(trainer_addr).await?);
    let spec = tpb::JobSpec {
        model: model.into(),
        kind: kind.into(),
        dataset: dataset.into(),
        dataset_sha256: String::new(),
        target: target.into(),
        params: params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        promote_if: None,
    };
    let job = client.submit_job(tpb::SubmitJobRequest { spec: Some(spec) }).await?.into_inner();
    let mut stream = client.watch_job(tpb::WatchJobRequest { id: job.id.clone() }).await?.into_inner();
    let mut last = job;
    let watching = async {
        while let Some(update) = stream.message().await? {
            last = update;
        }
        anyhow::Ok(())
    };
    // Only bounds a hang: a starved machine may train slowly.
    tokio::time::timeout(Duration::from_secs(600), watching).await.context("training did not finish in 600 s")??;
    if last.state != tpb::JobState::Succeeded as i32 {
        bail!("job {} ended in state {} with error {:?}", last.id, last.state, last.error);
    }
    Ok(last)
}

/// Waits until the router reports `model`/`version` ready.
pub async fn wait_ready(router_addr: &str, model: &str, version: &str, timeout: Duration) -> Result<()> {
    let mut client = inference(router_addr).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let request = ModelReadyRequest { name: model.into(), version: version.into() };
        if let Ok(response) = client.model_ready(request).await
            && response.into_inner().ready
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{model}:{version} not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A KServe v2 request for FP32 rows, typed or raw.
pub fn infer_request(model: &str, version: &str, input: &str, rows: &[Vec<f32>], raw: bool) -> ModelInferRequest {
    let width = rows.first().map(Vec::len).unwrap_or(0);
    let values: Vec<f32> = rows.concat();
    let mut tensor = InferInputTensor {
        name: input.into(),
        datatype: "FP32".into(),
        shape: vec![rows.len() as i64, width as i64],
        ..Default::default()
    };
    let mut request =
        ModelInferRequest { model_name: model.into(), model_version: version.into(), ..Default::default() };
    if raw {
        request.raw_input_contents.push(Bytes::from(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()));
    } else {
        tensor.contents = Some(InferTensorContents { fp32_contents: values, ..Default::default() });
    }
    request.inputs.push(tensor);
    request
}

/// A KServe v2 request with one BYTES `text` input, typed or raw (length-prefixed).
pub fn text_request(model: &str, texts: &[&str], raw: bool) -> ModelInferRequest {
    let mut tensor = InferInputTensor {
        name: "text".into(),
        datatype: "BYTES".into(),
        shape: vec![texts.len() as i64],
        ..Default::default()
    };
    let mut request = ModelInferRequest { model_name: model.into(), ..Default::default() };
    if raw {
        let mut bytes = Vec::new();
        for text in texts {
            bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
        request.raw_input_contents.push(Bytes::from(bytes));
    } else {
        tensor.contents = Some(InferTensorContents {
            bytes_contents: texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
            ..Default::default()
        });
    }
    request.inputs.push(tensor);
    request
}

/// The elements of a BYTES output, typed or raw, as strings.
pub fn bytes_output(response: &ModelInferResponse, name: &str) -> Vec<String> {
    let Some(index) = response.outputs.iter().position(|o| o.name == name) else {
        return Vec::new();
    };
    if let Some(mut raw) = response.raw_output_contents.get(index).map(|b| b.as_ref()) {
        let mut out = Vec::new();
        while let Some((length, rest)) = raw.split_first_chunk::<4>() {
            let length = u32::from_le_bytes(*length) as usize;
            out.push(String::from_utf8_lossy(&rest[..length.min(rest.len())]).into_owned());
            raw = &rest[length.min(rest.len())..];
        }
        return out;
    }
    response.outputs[index]
        .contents
        .as_ref()
        .map(|c| c.bytes_contents.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect())
        .unwrap_or_default()
}

/// The first output's values, typed or raw.
pub fn first_output(response: &ModelInferResponse) -> Vec<f32> {
    if let Some(raw) = response.raw_output_contents.first() {
        return raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    }
    response.outputs.first().and_then(|o| o.contents.as_ref()).map(|c| c.fp32_contents.clone()).unwrap_or_default()
}

/// Runs inference through `addr` and returns the first output's values.
pub async fn predict(
    addr: &str,
    model: &str,
    version: &str,
    rows: &[Vec<f32>],
    raw: bool,
) -> Result<(Vec<f32>, String)> {
    let response =
        inference(addr).await?.model_infer(infer_request(model, version, "input", rows, raw)).await?.into_inner();
    Ok((first_output(&response), response.model_version))
}

/// Downloads a version's artifact bytes.
pub async fn download_artifact(registry_addr: &str, model: &str, version: &str) -> Result<Vec<u8>> {
    let request = pb::DownloadArtifactRequest { model: model.into(), version: version.into(), offset: 0 };
    let mut stream = registry(registry_addr).await?.download_artifact(request).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        if let Some(pb::download_artifact_response::Part::Chunk(chunk)) = message.part {
            bytes.extend_from_slice(&chunk);
        }
    }
    Ok(bytes)
}

/// Computes a model's first output from its artifact without the model crate: reads
/// the safetensors tensors and the manifest's layer activations and head, then
/// standardises, multiplies, adds and activates with plain loops in f64.
pub fn independent_predict(artifact: &[u8], rows: &[Vec<f32>]) -> Result<Vec<f32>> {
    let tensors = safetensors::SafeTensors::deserialize(artifact)?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(artifact)?;
    let manifest: serde_json::Value = serde_json::from_str(
        metadata.metadata().as_ref().and_then(|m| m.get("modelplane.manifest")).context("no manifest")?,
    )?;
    let read = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
        let view = tensors.tensor(name)?;
        let values =
            view.data().chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect();
        Ok((view.shape().to_vec(), values))
    };
    let (_, mean) = read("scaler.mean")?;
    let (_, scale) = read("scaler.scale")?;
    let activations: Vec<String> = manifest["activations"]
        .as_array()
        .context("manifest has no activations")?
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    let mut out = Vec::new();
    for row in rows {
        let mut values: Vec<f64> = row.iter().enumerate().map(|(j, x)| (f64::from(*x) - mean[j]) / scale[j]).collect();
        for (layer, activation) in activations.iter().enumerate() {
            let (shape, weight) = read(&format!("layers.{layer}.weight"))?;
            let (_, bias) = read(&format!("layers.{layer}.bias"))?;
            let (inputs, outputs) = (shape[0], shape[1]);
            let mut next = bias.clone();
            for (o, value) in next.iter_mut().enumerate() {
                for i in 0..inputs {
                    *value += values[i] * weight[i * outputs + o];
                }
                *value = match activation.as_str() {
                    "relu" => value.max(0.0),
                    "tanh" => value.tanh(),
                    _ => *value,
                };
            }
            values = next;
        }
        match manifest["head"].as_str() {
            Some("sigmoid") => {
                let p = 1.0 / (1.0 + (-values[0]).exp());
                out.extend([(1.0 - p) as f32, p as f32]);
            }
            Some("softmax") => {
                let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = values.iter().map(|v| (v - max).exp()).sum();
                out.extend(values.iter().map(|v| ((v - max).exp() / sum) as f32));
            }
            _ => out.extend(values.iter().map(|v| *v as f32)),
        }
    }
    Ok(out)
}

/// Asserts two vectors agree to a relative tolerance.
pub fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "lengths differ: {actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        let scale = e.abs().max(1.0);
        assert!((a - e).abs() <= tolerance * scale, "{a} differs from {e} (actual {actual:?}, expected {expected:?})");
    }
}
