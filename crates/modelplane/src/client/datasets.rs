//! `modelplane datasets`: upload and list training data in the registry.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use modelplane_client::Source;
use modelplane_proto::registry::{self as pb};

use super::transfer::TransferProgress;
use super::{OutputFormat, registry_client, status_error};
use crate::Endpoints;

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Upload a CSV (streamed in 1 MiB chunks and hashed as it goes, stored under its
    /// sha256).
    Upload {
        /// The CSV file.
        file: PathBuf,
        /// Dataset name (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
        /// `text`: a progress bar and a summary; `json`: progress events, then the dataset.
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// List uploaded datasets.
    List,
}

pub async fn datasets(command: DatasetsCommand, endpoints: &Endpoints) -> Result<()> {
    let registry = registry_client(endpoints)?;
    match command {
        DatasetsCommand::Upload { file, name, output } => {
            let name = match name {
                Some(name) => name,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_owned)
                    .context("cannot derive a dataset name; pass --name")?,
            };
            let source = Source::file(&file).await?;
            let progress = Arc::new(TransferProgress::new("upload", output));
            let dataset = registry.upload_dataset(&name, source, progress).await?;
            match output {
                OutputFormat::Json => println!("{}", dataset_json(&dataset)),
                OutputFormat::Text => println!(
                    "uploaded dataset {} ({} rows, columns: {}) sha256 {}",
                    dataset.name,
                    dataset.rows,
                    dataset.columns.join(","),
                    dataset.sha256
                ),
            }
        }
        DatasetsCommand::List => {
            let response = registry
                .grpc()
                .list_datasets(pb::ListDatasetsRequest {})
                .await
                .map_err(|s| status_error("list failed", s))?;
            for d in response.into_inner().datasets {
                println!("{}\t{} rows\t{} bytes\t{}", d.name, d.rows, d.size_bytes, d.sha256);
            }
        }
    }
    Ok(())
}

fn dataset_json(dataset: &pb::Dataset) -> serde_json::Value {
    serde_json::json!({
        "event": "uploaded",
        "name": dataset.name,
        "sha256": dataset.sha256,
        "size_bytes": dataset.size_bytes,
        "rows": dataset.rows,
        "columns": dataset.columns,
    })
}
