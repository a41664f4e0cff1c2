//! Client commands: thin wrappers over the registry, trainer and router gRPC APIs.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use modelplane_kserve::Datatype;
use modelplane_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use modelplane_proto::inference::model_infer_request::InferInputTensor;
use modelplane_proto::inference::{
    InferTensorContents, ModelInferRequest, ModelMetadataRequest, ModelReadyRequest, RepositoryIndexRequest,
};
use modelplane_proto::registry::{self as pb, registry_client::RegistryClient};
use modelplane_proto::trainer::{self as tpb, trainer_client::TrainerClient};
use modelplane_service::TracedChannel;
use modelplane_store::schema::ArtifactFormat;
use sha2::{Digest, Sha256};

use crate::Endpoints;

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Upload a CSV (streamed in 1 MiB chunks, stored under its sha256).
    Upload {
        /// The CSV file.
        file: PathBuf,
        /// Dataset name (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// List uploaded datasets.
    List,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List models with their latest version and aliases.
    List,
    /// List a model's versions with metrics and lineage.
    Versions {
        /// Model name.
        model: String,
    },
    /// Register an ONNX file as a new version (served with tract; the signature is read
    /// from the graph).
    Import {
        /// Model name (created if needed).
        model: String,
        /// The .onnx file.
        file: PathBuf,
    },
    /// Write a version's artifact to a file (the registry checks its sha256 first).
    Download {
        /// Model name.
        model: String,
        /// Version number or alias.
        version: String,
        /// Where to write it.
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Point an alias at a version.
    Set {
        model: String,
        alias: String,
        version: u64,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Delete an alias.
    Delete { model: String, alias: String },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people: progress bars, summaries, one block per item.
    Text,
    /// One JSON object per line: per event of a job, per item of a list.
    Json,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Model to add a version to (created if needed).
    pub model: String,
    /// Dataset name, as uploaded.
    #[arg(long)]
    pub dataset: String,
    /// Column to predict.
    #[arg(long)]
    pub target: String,
    /// Model kind: linear, logistic, softmax, mlp (classifier) or mlp_regressor.
    #[arg(long, default_value = "linear")]
    pub kind: String,
    /// Hyperparameter as name=value: learning_rate, epochs, batch_size, l2, seed,
    /// validation_fraction; for MLPs also hidden (e.g. 64 or 128,64), activation
    /// (relu|tanh), optimizer (adam|sgd), momentum, early_stopping, patience,
    /// lr_schedule (constant|cosine).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Passes over the data.
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Gradient step size.
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Point ALIAS at the new version if it beats ALIAS's current one on METRIC
    /// (`production:accuracy`; add `:lower` for errors, e.g. `production:rmse:lower`).
    #[arg(long, value_name = "ALIAS:METRIC[:lower]")]
    pub promote_if: Option<String>,
    /// Return once the job is queued instead of following it.
    #[arg(long)]
    pub no_wait: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct DeployArgs {
    /// Model to deploy.
    pub model: String,
    /// Serve a fixed version.
    #[arg(long, conflicts_with = "alias")]
    pub version: Option<u64>,
    /// Serve whatever this alias points at (follows alias flips).
    #[arg(long)]
    pub alias: Option<String>,
    /// Also send a copy of every request to this version; its answers are dropped and
    /// show only in its statistics (repeat for several shadows).
    #[arg(long)]
    pub shadow: Vec<u64>,
    /// Workers that load it (0: every worker with room for it).
    #[arg(long, default_value_t = 0)]
    pub replicas: u32,
    /// Memory one replica takes, all its versions together (`512MiB`, `2GiB`); workers
    /// place it within their --memory-capacity (default: twice the artifacts' size).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<bytesize::ByteSize>,
    /// Most rows merged into one batch for this model's versions, 0 or 1: batching off
    /// (default: each worker's --max-batch-size).
    #[arg(long)]
    pub max_batch_size: Option<u32>,
    /// Microseconds the first request of a batch waits for more, at most 1000000
    /// (default: each worker's --max-queue-delay-us).
    #[arg(long)]
    pub max_queue_delay_us: Option<u64>,
    /// Requests that may wait per version before RESOURCE_EXHAUSTED (default: each
    /// worker's --queue-capacity).
    #[arg(long)]
    pub queue_capacity: Option<u32>,
    /// Seconds to wait until the router reports it ready (0: do not wait).
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

#[derive(Args)]
pub struct PredictArgs {
    /// Model name.
    pub model: String,
    /// Version number or alias (default: the deployment's target).
    #[arg(long, default_value = "")]
    pub version: String,
    /// JSON file with one row `[1.0, 2.0]` or rows `[[1.0, 2.0], [3.0, 4.0]]`; for text
    /// models an array of strings `["first text", "second text"]`.
    #[arg(long)]
    pub input: PathBuf,
}

fn channel(addr: &str) -> Result<TracedChannel> {
    modelplane_service::connect_lazy(addr).with_context(|| format!("bad endpoint {addr:?}"))
}

pub(crate) fn registry(endpoints: &Endpoints) -> Result<RegistryClient<TracedChannel>> {
    Ok(RegistryClient::new(channel(&endpoints.registry)?)
        .max_decoding_message_size(modelplane_service::MAX_MESSAGE_BYTES))
}

/// A request that names the user (`MODELPLANE_ACTOR`, else `USER`) for the audit log.
fn as_user<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let user = std::env::var("MODELPLANE_ACTOR").or_else(|_| std::env::var("USER")).unwrap_or_default();
    if let Ok(actor) = format!("cli/{user}").parse() {
        request.metadata_mut().insert("x-modelplane-actor", actor);
    }
    request
}

pub(crate) fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what}: {} ({:?})", status.message(), status.code())
}

pub async fn datasets(command: DatasetsCommand, endpoints: &Endpoints) -> Result<()> {
    let mut client = registry(endpoints)?;
    match command {
        DatasetsCommand::Upload { file, name } => {
            let bytes = tokio::fs::read(&file).await.with_context(|| format!("cannot read {}", file.display()))?;
            let name = match name {
                Some(name) => name,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_owned)
                    .context("cannot derive a dataset name; pass --name")?,
            };
            let sha256 = hex::encode(Sha256::digest(&bytes));
            let mut messages = vec![pb::UploadDatasetRequest {
                part: Some(pb::upload_dataset_request::Part::Manifest(pb::DatasetManifest { name, sha256 })),
            }];
            messages.extend(bytes.chunks(modelplane_proto::MAX_CHUNK_BYTES).map(|chunk| pb::UploadDatasetRequest {
                part: Some(pb::upload_dataset_request::Part::Chunk(chunk.to_vec())),
            }));
            let dataset = client
                .upload_dataset(futures::stream::iter(messages))
                .await
                .map_err(|s| status_error("upload failed", s))?
                .into_inner();
            println!(
                "uploaded dataset {} ({} rows, columns: {}) sha256 {}",
                dataset.name,
                dataset.rows,
                dataset.columns.join(","),
                dataset.sha256
            );
        }
        DatasetsCommand::List => {
            let response =
                client.list_datasets(pb::ListDatasetsRequest {}).await.map_err(|s| status_error("list failed", s))?;
            for d in response.into_inner().datasets {
                println!("{}\t{} rows\t{} bytes\t{}", d.name, d.rows, d.size_bytes, d.sha256);
            }
        }
    }
    Ok(())
}

fn job_json(job: &tpb::Job) -> serde_json::Value {
    let progress = job.progress.unwrap_or_default();
    serde_json::json!({
        "id": job.id,
        "state": tpb::JobState::try_from(job.state).map(|s| s.as_str_name()).unwrap_or("UNKNOWN"),
        "epoch": progress.epoch,
        "epochs": progress.epochs,
        "loss": progress.loss,
        "validation_loss": progress.validation_loss,
        "rows_per_second": progress.rows_per_second,
        "eta_seconds": progress.eta_seconds,
        "version": job.version,
        "metrics": job.metrics,
        "error": job.error,
        "promotion": job.promotion,
    })
}

fn parse_promote_rule(text: &str) -> Result<tpb::PromoteRule> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [alias, metric] => {
            Ok(tpb::PromoteRule { alias: (*alias).into(), metric: (*metric).into(), lower_is_better: false })
        }
        [alias, metric, "lower"] => {
            Ok(tpb::PromoteRule { alias: (*alias).into(), metric: (*metric).into(), lower_is_better: true })
        }
        _ => bail!("--promote-if {text:?} is not ALIAS:METRIC or ALIAS:METRIC:lower"),
    }
}

pub async fn train(args: TrainArgs, endpoints: &Endpoints) -> Result<()> {
    let mut params: HashMap<String, String> = HashMap::new();
    for pair in &args.params {
        let (name, value) = pair.split_once('=').with_context(|| format!("--param {pair:?} is not NAME=VALUE"))?;
        params.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    if let Some(epochs) = args.epochs {
        params.insert("epochs".into(), epochs.to_string());
    }
    if let Some(rate) = args.learning_rate {
        params.insert("learning_rate".into(), rate.to_string());
    }
    let mut client = TrainerClient::new(channel(&endpoints.trainer)?);
    let spec = tpb::JobSpec {
        model: args.model.clone(),
        kind: args.kind.clone(),
        dataset: args.dataset.clone(),
        dataset_sha256: String::new(),
        target: args.target.clone(),
        params,
        promote_if: args.promote_if.as_deref().map(parse_promote_rule).transpose()?,
    };
    let job = client
        .submit_job(tpb::SubmitJobRequest { spec: Some(spec) })
        .await
        .map_err(|s| status_error("submit failed", s))?
        .into_inner();
    if args.no_wait {
        match args.output {
            OutputFormat::Json => println!("{}", job_json(&job)),
            OutputFormat::Text => println!("queued job {}", job.id),
        }
        return Ok(());
    }
    let mut stream = client
        .watch_job(tpb::WatchJobRequest { id: job.id.clone() })
        .await
        .map_err(|s| status_error("watch failed", s))?
        .into_inner();
    let bar = ProgressBar::hidden();
    if args.output == OutputFormat::Text {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] epoch {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("training {} (job {})", args.model, &job.id[..8.min(job.id.len())]));
    }
    let mut last = job;
    while let Some(update) = stream.message().await.map_err(|s| status_error("watch interrupted", s))? {
        let progress = update.progress.unwrap_or_default();
        match args.output {
            OutputFormat::Json => println!("{}", job_json(&update)),
            OutputFormat::Text => {
                bar.set_length(u64::from(progress.epochs.max(1)));
                bar.set_position(u64::from(progress.epoch));
                let eta = if progress.eta_seconds > 0.0 {
                    format!(" eta {:.0}s", progress.eta_seconds)
                } else {
                    String::new()
                };
                bar.set_message(format!(
                    "training {} loss {:.5} {:.0} rows/s{eta}",
                    args.model, progress.loss, progress.rows_per_second
                ));
            }
        }
        last = update;
    }
    bar.finish_and_clear();
    match tpb::JobState::try_from(last.state) {
        Ok(tpb::JobState::Succeeded) => {
            if args.output == OutputFormat::Text {
                let mut metrics: Vec<_> = last.metrics.iter().collect();
                metrics.sort_by(|a, b| a.0.cmp(b.0));
                let metrics: Vec<String> = metrics.iter().map(|(k, v)| format!("{k}={v:.4}")).collect();
                println!("trained {} version {} ({})", args.model, last.version, metrics.join(" "));
                if !last.promotion.is_empty() {
                    println!("{}", last.promotion);
                }
            }
            Ok(())
        }
        _ => bail!("job {} failed: {}", last.id, last.error),
    }
}

pub async fn models(command: ModelsCommand, endpoints: &Endpoints) -> Result<()> {
    let mut client = registry(endpoints)?;
    match command {
        ModelsCommand::Import { model, file } => {
            let bytes = tokio::fs::read(&file).await.with_context(|| format!("cannot read {}", file.display()))?;
            let manifest = pb::UploadManifest {
                model: model.clone(),
                sha256: hex::encode(Sha256::digest(&bytes)),
                size_bytes: bytes.len() as u64,
                lineage: None,
                create_model: true,
                format: ArtifactFormat::Onnx.name().into(),
            };
            let mut messages =
                vec![pb::UploadVersionRequest { part: Some(pb::upload_version_request::Part::Manifest(manifest)) }];
            messages.extend(bytes.chunks(modelplane_proto::MAX_CHUNK_BYTES).map(|chunk| pb::UploadVersionRequest {
                part: Some(pb::upload_version_request::Part::Chunk(chunk.to_vec())),
            }));
            let version = client
                .upload_version(as_user(futures::stream::iter(messages)))
                .await
                .map_err(|s| status_error("import failed", s))?
                .into_inner();
            let signature = version.signature.unwrap_or_default();
            let describe = |specs: &[pb::TensorSpec]| {
                specs.iter().map(|t| format!("{} {} {:?}", t.name, t.datatype, t.shape)).collect::<Vec<_>>().join(", ")
            };
            println!(
                "imported {model} version {} (inputs: {}; outputs: {})",
                version.version,
                describe(&signature.inputs),
                describe(&signature.outputs)
            );
        }
        ModelsCommand::Download { model, version, output } => {
            let request = pb::DownloadArtifactRequest { model: model.clone(), version: version.clone() };
            let mut stream =
                client.download_artifact(request).await.map_err(|s| status_error("download failed", s))?.into_inner();
            let mut bytes = Vec::new();
            while let Some(message) = stream.message().await.map_err(|s| status_error("download failed", s))? {
                if let Some(pb::download_artifact_response::Part::Chunk(chunk)) = message.part {
                    bytes.extend_from_slice(&chunk);
                }
            }
            tokio::fs::write(&output, &bytes).await.with_context(|| format!("cannot write {}", output.display()))?;
            println!("{model} {version}: {} bytes written to {}", bytes.len(), output.display());
        }
        ModelsCommand::List => {
            let mut token = String::new();
            loop {
                let request = pb::ListModelsRequest { page_token: token, page_size: 1000, ..Default::default() };
                let page = client.list_models(request).await.map_err(|s| status_error("list failed", s))?.into_inner();
                for model in page.models {
                    let mut aliases: Vec<String> = model.aliases.iter().map(|(a, v)| format!("{a}->v{v}")).collect();
                    aliases.sort();
                    println!("{}\tlatest v{}\t{}", model.name, model.latest_version, aliases.join(" "));
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
        }
        ModelsCommand::Versions { model } => {
            let mut versions = Vec::new();
            let mut token = String::new();
            loop {
                let request = pb::ListVersionsRequest {
                    model: model.clone(),
                    page_token: token,
                    page_size: 1000,
                    ..Default::default()
                };
                let page =
                    client.list_versions(request).await.map_err(|s| status_error("list failed", s))?.into_inner();
                versions.extend(page.versions);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            for v in versions {
                if ArtifactFormat::of_kind(&v.kind) == ArtifactFormat::Onnx {
                    println!("v{}\tonnx\tsha256={}", v.version, &v.sha256[..12.min(v.sha256.len())]);
                    continue;
                }
                let mut metrics: Vec<String> = v.metrics.iter().map(|(k, m)| format!("{k}={m:.4}")).collect();
                metrics.sort();
                let lineage = v.lineage.unwrap_or_default();
                println!(
                    "v{}\t{}\t{}\tdataset={} job={}\tsha256={}",
                    v.version,
                    v.kind,
                    metrics.join(" "),
                    lineage.dataset,
                    lineage.job_id,
                    &v.sha256[..12.min(v.sha256.len())]
                );
            }
        }
    }
    Ok(())
}

pub async fn alias(command: AliasCommand, endpoints: &Endpoints) -> Result<()> {
    let mut client = registry(endpoints)?;
    match command {
        AliasCommand::Set { model, alias, version, reason } => {
            let response = client
                .set_alias(as_user(pb::SetAliasRequest { model: model.clone(), alias: alias.clone(), version, reason }))
                .await
                .map_err(|s| status_error("alias set failed", s))?
                .into_inner();
            match response.previous_version {
                0 => println!("{model}:{alias} -> v{version}"),
                previous => println!("{model}:{alias} -> v{version} (was v{previous})"),
            }
        }
        AliasCommand::Delete { model, alias } => {
            client
                .delete_alias(pb::DeleteAliasRequest { model: model.clone(), alias: alias.clone() })
                .await
                .map_err(|s| status_error("alias delete failed", s))?;
            println!("deleted {model}:{alias}");
        }
    }
    Ok(())
}

pub async fn deploy(args: DeployArgs, endpoints: &Endpoints) -> Result<()> {
    let target = match (args.version, args.alias) {
        (Some(version), None) => pb::DeploymentTarget { version, weight: 100, ..Default::default() },
        (None, Some(alias)) => pb::DeploymentTarget { alias, weight: 100, ..Default::default() },
        _ => bail!("name what to deploy: --version N or --alias NAME"),
    };
    let shadows =
        args.shadow.iter().map(|&version| pb::DeploymentTarget { version, shadow: true, ..Default::default() });
    let targets = std::iter::once(target).chain(shadows).collect();
    let batching = pb::Batching {
        max_batch_size: args.max_batch_size,
        max_queue_delay_us: args.max_queue_delay_us,
        queue_capacity: args.queue_capacity,
    };
    let deployment = pb::Deployment {
        model: args.model.clone(),
        targets,
        replicas: args.replicas,
        batching: (batching != pb::Batching::default()).then_some(batching),
        resources: args.memory.map(|memory| pb::Resources { memory_bytes: Some(memory.as_u64()) }),
    };
    registry(endpoints)?
        .set_deployment(as_user(pb::SetDeploymentRequest { deployment: Some(deployment) }))
        .await
        .map_err(|s| status_error("deploy failed", s))?;
    if args.wait == 0 {
        println!("deployed {}", args.model);
        return Ok(());
    }
    let mut router = GrpcInferenceServiceClient::new(channel(&endpoints.router)?);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait);
    loop {
        let request = ModelReadyRequest { name: args.model.clone(), version: String::new() };
        if let Ok(response) = router.model_ready(request).await
            && response.into_inner().ready
        {
            println!("deployed {} (ready)", args.model);
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            // The router's repository index says why, when placement is the reason.
            let index = router.repository_index(RepositoryIndexRequest::default()).await.ok();
            let reason = index
                .into_iter()
                .flat_map(|index| index.into_inner().models)
                .find(|m| m.name == args.model && !m.reason.is_empty())
                .map_or_else(|| "check the workers".to_owned(), |m| m.reason);
            bail!("deployed {}, but it was not ready within {} s: {reason}", args.model, args.wait);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Rows from `[1, 2]` (one row) or `[[1, 2], [3, 4]]`, each value read by `read`
/// (`what` names what it accepts).
fn parse_rows<T>(text: &str, what: &str, read: impl Fn(&serde_json::Value) -> Option<T>) -> Result<Vec<Vec<T>>> {
    let value: serde_json::Value = serde_json::from_str(text).context("input is not JSON")?;
    let as_row = |v: &serde_json::Value| -> Result<Vec<T>> {
        v.as_array()
            .with_context(|| format!("expected an array of {what}"))?
            .iter()
            .map(|x| read(x).with_context(|| format!("expected {what}; got {x}")))
            .collect()
    };
    let rows = match value.as_array() {
        Some(items) if items.first().is_some_and(serde_json::Value::is_array) => {
            items.iter().map(as_row).collect::<Result<Vec<_>>>()?
        }
        Some(_) => vec![as_row(&value)?],
        None => bail!("input must be a JSON array: one row [..] or rows [[..], [..]]"),
    };
    let width = rows.first().map(Vec::len).unwrap_or(0);
    if rows.iter().any(|r| r.len() != width) {
        bail!("every row must have the same number of values");
    }
    Ok(rows)
}

pub async fn predict(args: PredictArgs, endpoints: &Endpoints) -> Result<()> {
    let text = tokio::fs::read_to_string(&args.input)
        .await
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut client = GrpcInferenceServiceClient::new(channel(&endpoints.router)?);
    let metadata = client
        .model_metadata(ModelMetadataRequest { name: args.model.clone(), version: args.version.clone() })
        .await
        .map_err(|s| status_error("model metadata failed", s))?
        .into_inner();
    let input = metadata.inputs.first().context("the model declares no input")?;
    let mut raw_input_contents = Vec::new();
    let declared: Datatype = input.datatype.parse().context("the model's metadata names an unknown input datatype")?;
    let (datatype, shape, contents) = if declared == Datatype::Bytes {
        let texts: Vec<String> = serde_json::from_str(&text).context("a text model takes a JSON array of strings")?;
        let shape = vec![texts.len() as i64];
        let bytes_contents = texts.into_iter().map(String::into_bytes).collect();
        (Datatype::Bytes, shape, Some(InferTensorContents { bytes_contents, ..Default::default() }))
    } else if declared.is_integer() {
        // Integer inputs (an ONNX model's token ids) travel as INT64, exact at any size;
        // the worker narrows them to the model's type when they fit.
        let rows = parse_rows(&text, "integers", serde_json::Value::as_i64)?;
        let shape = vec![rows.len() as i64, rows.first().map_or(0, Vec::len) as i64];
        (Datatype::Int64, shape, Some(InferTensorContents { int64_contents: rows.concat(), ..Default::default() }))
    } else if declared == Datatype::Fp16 {
        // FP16 travels raw only. The numbers are rounded to the nearest FP16, as numpy's
        // float16 arrays are: decimal text such as 0.1 has no exact FP16 form.
        let rows = parse_rows(&text, "numbers", serde_json::Value::as_f64)?;
        let shape = vec![rows.len() as i64, rows.first().map_or(0, Vec::len) as i64];
        raw_input_contents.push(rows.concat().into_iter().flat_map(|v| half::f16::from_f64(v).to_le_bytes()).collect());
        (Datatype::Fp16, shape, None)
    } else {
        let rows = parse_rows(&text, "numbers", |x| x.as_f64().map(|f| f as f32))?;
        let shape = vec![rows.len() as i64, rows.first().map_or(0, Vec::len) as i64];
        (Datatype::Fp32, shape, Some(InferTensorContents { fp32_contents: rows.concat(), ..Default::default() }))
    };
    let tensor = InferInputTensor {
        name: input.name.clone(),
        datatype: datatype.name().into(),
        shape,
        contents,
        ..Default::default()
    };
    let request = ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.version.clone(),
        inputs: vec![tensor],
        raw_input_contents,
        ..Default::default()
    };
    let response = client.model_infer(request).await.map_err(|s| status_error("inference failed", s))?.into_inner();
    let outputs = response
        .outputs
        .iter()
        .enumerate()
        .map(|(index, o)| {
            // Raw when the request was, or when an output (FP16) has no typed form.
            let data = match response.raw_output_contents.get(index) {
                Some(raw) => modelplane_kserve::json::raw_output_json(&o.datatype, raw)
                    .map_err(|err| anyhow::anyhow!("output {:?}: {err}", o.name))?,
                None => modelplane_kserve::json::typed_output_json(&o.datatype, o.contents.clone().unwrap_or_default()),
            };
            Ok(serde_json::json!({ "name": o.name, "datatype": o.datatype, "shape": o.shape, "data": data }))
        })
        .collect::<Result<Vec<serde_json::Value>>>()?;
    println!(
        "{}",
        serde_json::json!({ "model_name": response.model_name, "model_version": response.model_version, "outputs": outputs })
    );
    Ok(())
}
