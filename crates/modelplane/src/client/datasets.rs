//! `modelplane datasets`: upload and list training data in the registry.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use modelplane_proto::registry::{self as pb};
use sha2::{Digest, Sha256};

use super::{registry, status_error};
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
