//! What `models import` sends for an ONNX file: the file itself, or, when the graph keeps
//! its tensors in side files (ONNX external data), an archive of the graph and those
//! files built as it is sent (tar, uncompressed: see `ArtifactFormat::OnnxArchive`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use modelplane_client::Source;
use modelplane_store::schema::{ARCHIVE_GRAPH, ArtifactFormat};

/// Bytes of archive in flight between the thread writing it and the upload.
const PIPE_BYTES: usize = 1 << 20;
/// tar's block: headers and padded file contents come in these.
const BLOCK: u64 = 512;
/// Longest member name a plain tar header holds (longer ones take extra blocks).
const PLAIN_NAME_BYTES: usize = 100;

/// An import's source and format, and for an archive the thread writing it (its error,
/// if any, explains a failed upload better than the registry's refusal of a short one).
pub(crate) struct OnnxImport {
    pub format: ArtifactFormat,
    pub source: Source,
    pub writer: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The data files sent beside the graph.
    pub data_files: Vec<String>,
}

pub(crate) async fn onnx_import(graph: &Path) -> Result<OnnxImport> {
    let opened = std::fs::File::open(graph).with_context(|| format!("cannot read {}", graph.display()))?;
    let locations = tokio::task::spawn_blocking(move || modelplane_onnx::external_data_locations(opened))
        .await
        .context("reading the graph")?
        .with_context(|| format!("{} is not an ONNX model", graph.display()))?;
    if locations.is_empty() {
        let source = Source::file(graph).await?;
        return Ok(OnnxImport { format: ArtifactFormat::Onnx, source, writer: None, data_files: locations });
    }
    let folder = graph.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut members: Vec<(PathBuf, String)> = vec![(graph.to_path_buf(), ARCHIVE_GRAPH.to_owned())];
    for location in &locations {
        if location == ARCHIVE_GRAPH {
            bail!("the graph keeps tensors in a file named {ARCHIVE_GRAPH}, the name its archive gives the graph");
        }
        members.push((folder.join(location), location.clone()));
    }
    let mut size = Some(2 * BLOCK);
    for (path, name) in &members {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("the graph keeps tensors in {name:?}, but {} cannot be read", path.display()))?;
        size = size
            .filter(|_| name.len() <= PLAIN_NAME_BYTES)
            .map(|size| size + BLOCK + meta.len().div_ceil(BLOCK) * BLOCK);
    }
    let (sink, reader) = tokio::io::duplex(PIPE_BYTES);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut builder = tar::Builder::new(tokio_util::io::SyncIoBridge::new(sink));
        builder.mode(tar::HeaderMode::Deterministic);
        for (path, name) in &members {
            builder.append_path_with_name(path, name)?;
        }
        builder.into_inner()?.shutdown()
    });
    let source = Source::reader(reader, size);
    Ok(OnnxImport { format: ArtifactFormat::OnnxArchive, source, writer: Some(writer), data_files: locations })
}
