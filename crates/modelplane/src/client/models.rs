//! `modelplane models`: list models and versions, import ONNX graphs, delete.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use modelplane_proto::registry::{self as pb};
use modelplane_store::schema::ArtifactFormat;
use sha2::{Digest, Sha256};

use super::{as_user, registry, status_error};
use crate::Endpoints;

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
