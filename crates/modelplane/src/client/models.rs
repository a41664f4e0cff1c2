//! `modelplane models`: list models and versions, import ONNX graphs, delete.

use std::path::PathBuf;

use std::sync::Arc;

use anyhow::Result;
use clap::Subcommand;
use modelplane_model::{Model, ModelKind};
use modelplane_proto::registry::{self as pb};
use modelplane_store::schema::ArtifactFormat;

use super::archive::onnx_import;
use super::transfer::TransferProgress;
use super::{OutputFormat, registry_client, status_error};
use crate::Endpoints;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List models with their latest version and aliases.
    List,
    /// List a model's versions with metrics, lineage and (tree kinds) feature
    /// importances.
    Versions {
        /// Model name.
        model: String,
        /// Print the trees of tree-kind versions (a decision tree reads as rules); the
        /// artifacts are downloaded and verified to read them.
        #[arg(long)]
        show_tree: bool,
    },
    /// Register an ONNX file as a new version (served with tract; the signature is read
    /// from the graph). The file is streamed and hashed as it is sent; a graph that keeps
    /// its tensors in side files (external data) is sent with them as one archive.
    Import {
        /// Model name (created if needed).
        model: String,
        /// The .onnx file.
        file: PathBuf,
        /// Register without loading the graph at upload (for a graph too large to load
        /// in the registry): the version has no signature until a worker loads it, and a
        /// graph that does not load fails the deployment's load instead of the import.
        #[arg(long)]
        skip_validation: bool,
        /// `text`: a progress bar and a summary; `json`: progress events, then the version.
        #[arg(long = "format", value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Write a version's artifact to a file, verified against its sha256 (the file
    /// appears only once it is complete and verified).
    Download {
        /// Model name.
        model: String,
        /// Version number or alias.
        version: String,
        /// Where to write it.
        #[arg(long, short)]
        output: PathBuf,
        /// `text`: a progress bar and a summary; `json`: progress events, then the result.
        #[arg(long = "format", value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Write a version trained here as an ONNX graph that answers as it does — same
    /// inputs, outputs and values — to serve it wherever ONNX runs, or to `models
    /// import` it back. Tree kinds for now.
    Export {
        /// Model name.
        model: String,
        /// Version number or alias.
        version: String,
        /// The format written.
        #[arg(long = "format", value_enum, default_value = "onnx")]
        format: ExportFormat,
        /// Where to write it.
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// What `models export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// An ONNX model (ai.onnx opset 17; ai.onnx.ml opset 3, or 5 for trees over categories).
    Onnx,
}

/// Downloads a native version's artifact (sha256 verified) and writes it as ONNX.
async fn export(registry: &modelplane_client::Registry, model: &str, version: &str, output: &PathBuf) -> Result<()> {
    let mut bytes = Vec::new();
    let downloaded = registry.download_artifact(model, version, &mut bytes, &modelplane_client::Silent).await?;
    let record = downloaded.record;
    if ArtifactFormat::of_kind(&record.kind).is_onnx() {
        anyhow::bail!(
            "{model} version {} is an imported ONNX graph already; `models download` writes it as it is",
            record.version
        );
    }
    let native = Model::from_artifact(&bytes)?;
    let graph = modelplane_export::to_onnx(&native)?;
    // Written beside the destination, then renamed: no half-written model at `output`.
    let partial = output.with_extension("onnx.partial");
    std::fs::write(&partial, &graph)?;
    std::fs::rename(&partial, output)?;
    println!("{model} {}: {} bytes of ONNX written to {}", record.version, graph.len(), output.display());
    Ok(())
}

/// Downloads a tree version's artifact (sha256 verified; trees are small) and prints
/// its trees.
async fn print_trees(registry: &modelplane_client::Registry, model: &str, version: u64) -> Result<()> {
    let mut bytes = Vec::new();
    registry.download_artifact(model, &version.to_string(), &mut bytes, &modelplane_client::Silent).await?;
    let artifact = Model::from_artifact(&bytes)?;
    if let Some(text) = artifact.describe_trees() {
        print!("{text}");
    }
    Ok(())
}

pub async fn models(command: ModelsCommand, endpoints: &Endpoints) -> Result<()> {
    let registry = registry_client(endpoints)?;
    let mut client = registry.grpc();
    match command {
        ModelsCommand::Import { model, file, skip_validation, format } => {
            let import = onnx_import(&file).await?;
            let archived = import.format == ArtifactFormat::OnnxArchive;
            if archived && format == OutputFormat::Text {
                eprintln!(
                    "the graph keeps its tensors in {}: sending them with it as one archive",
                    import.data_files.join(", ")
                );
            }
            let manifest = pb::UploadManifest {
                model: model.clone(),
                create_model: true,
                format: import.format.name().into(),
                skip_validation,
                ..Default::default()
            };
            let progress = Arc::new(TransferProgress::new("import", format));
            let uploaded = registry.upload_version(manifest, import.source, progress).await;
            if let Some(writer) = import.writer
                && let Ok(Err(err)) = writer.await
            {
                anyhow::bail!("import failed: writing the archive of {}: {err}", file.display());
            }
            let version = uploaded?;
            let unchecked = skip_validation || archived;
            if format == OutputFormat::Json {
                let line = serde_json::json!({
                    "event": "imported", "model": model, "version": version.version,
                    "sha256": version.sha256, "size_bytes": version.size_bytes,
                });
                println!("{line}");
                return Ok(());
            }
            let signature = version.signature.unwrap_or_default();
            let describe = |specs: &[pb::TensorSpec]| {
                specs.iter().map(|t| format!("{} {} {:?}", t.name, t.datatype, t.shape)).collect::<Vec<_>>().join(", ")
            };
            if unchecked {
                println!(
                    "imported {model} version {} (not loaded yet: a worker checks it when it loads)",
                    version.version
                );
            } else {
                println!(
                    "imported {model} version {} (inputs: {}; outputs: {})",
                    version.version,
                    describe(&signature.inputs),
                    describe(&signature.outputs)
                );
            }
        }
        ModelsCommand::Download { model, version, output, format } => {
            let progress = TransferProgress::new("download", format);
            let downloaded = registry.download_artifact_to_file(&model, &version, &output, &progress).await?;
            match format {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "event": "downloaded", "model": model, "version": downloaded.record.version,
                        "sha256": downloaded.record.sha256, "size_bytes": downloaded.size,
                        "path": output.display().to_string(),
                    })
                ),
                OutputFormat::Text => println!(
                    "{model} {version}: {} bytes written to {} (sha256 {} verified)",
                    downloaded.size,
                    output.display(),
                    downloaded.record.sha256
                ),
            }
        }
        ModelsCommand::Export { model, version, format: ExportFormat::Onnx, output } => {
            export(&registry, &model, &version, &output).await?;
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
        ModelsCommand::Versions { model, show_tree } => {
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
                if ArtifactFormat::of_kind(&v.kind).is_onnx() {
                    println!("v{}\t{}\tsha256={}", v.version, v.kind, &v.sha256[..12.min(v.sha256.len())]);
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
                if !v.feature_importances.is_empty() {
                    let mut importances: Vec<(&String, &f64)> = v.feature_importances.iter().collect();
                    importances.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
                    let shown: Vec<String> =
                        importances.iter().map(|(name, share)| format!("{name}={share:.3}")).collect();
                    println!("\tfeature importance (gain share): {}", shown.join(" "));
                }
                if show_tree && ModelKind::parse(&v.kind).is_ok_and(ModelKind::is_tree) {
                    print_trees(&registry, &model, v.version).await?;
                }
            }
        }
    }
    Ok(())
}
