//! What the registry reads from an artifact at upload: it loads the file as the format
//! it claims to be (a modelplane artifact, or an ONNX graph through tract), refusing one
//! that does not load, and records its kind, signature and metrics.

use std::collections::BTreeMap;
use std::path::Path;

use modelplane_kserve::Signature;
use modelplane_model::Model;
use modelplane_store::schema::{ARCHIVE_GRAPH, ArtifactFormat};

use crate::{Error, Result};

/// What the registry records about an artifact, read by loading it.
pub(crate) struct Described {
    pub kind: String,
    pub signature: Signature,
    pub metrics: BTreeMap<String, f64>,
    pub labels: Vec<String>,
    pub confusion_matrix: Vec<Vec<u64>>,
    pub feature_importances: BTreeMap<String, f64>,
}

impl Described {
    /// What is recorded of an artifact registered without loading it: its format; the
    /// worker reads the signature when it loads the version.
    pub fn unchecked(format: ArtifactFormat) -> Self {
        Self {
            kind: format.name().into(),
            signature: Signature::default(),
            metrics: BTreeMap::new(),
            labels: Vec::new(),
            confusion_matrix: Vec::new(),
            feature_importances: BTreeMap::new(),
        }
    }
}

/// Loads the stored artifact at `path` as `format` to check it and read its kind,
/// signature and metrics; what the load held is freed when this returns.
pub(crate) fn describe(format: ArtifactFormat, path: &Path) -> Result<Described> {
    match format {
        ArtifactFormat::Modelplane => {
            let bytes =
                std::fs::read(path).map_err(|err| Error::Blob(format!("reading the staged artifact: {err}")))?;
            let model = Model::from_artifact(&bytes)
                .map_err(|err| Error::InvalidArgument(format!("not a loadable modelplane artifact: {err}")))?;
            Ok(Described {
                kind: model.manifest.kind.name().to_owned(),
                signature: model.manifest.signature,
                metrics: model.manifest.metrics,
                labels: model.manifest.labels,
                confusion_matrix: model.manifest.confusion_matrix,
                feature_importances: model.manifest.feature_importances,
            })
        }
        ArtifactFormat::OnnxArchive => {
            check_archive(path)?;
            Ok(Described::unchecked(ArtifactFormat::OnnxArchive))
        }
        ArtifactFormat::Onnx => {
            let model =
                modelplane_onnx::OnnxModel::load_file(path).map_err(|err| Error::InvalidArgument(err.to_string()))?;
            Ok(Described {
                kind: ArtifactFormat::Onnx.name().into(),
                signature: model.signature().clone(),
                metrics: BTreeMap::new(),
                labels: Vec::new(),
                confusion_matrix: Vec::new(),
                feature_importances: BTreeMap::new(),
            })
        }
    }
}

/// Checks an ONNX archive's layout without loading it (its tensors are what makes it too
/// large to load twice): plain files at plain relative paths, the graph as
/// [`ARCHIVE_GRAPH`], and every data file the graph names present. Only the headers and
/// the graph are read.
fn check_archive(path: &Path) -> Result<()> {
    let invalid = |what: String| Error::InvalidArgument(format!("not a usable ONNX archive: {what}"));
    let file = std::fs::File::open(path).map_err(|err| Error::Blob(format!("reading the staged artifact: {err}")))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut members = std::collections::HashSet::new();
    let mut locations = None;
    // Seeking past each member's data: the tensors are not read again, only the headers.
    for entry in archive.entries_with_seek().map_err(|err| invalid(err.to_string()))? {
        let entry = entry.map_err(|err| invalid(err.to_string()))?;
        let name = entry.path().map_err(|err| invalid(err.to_string()))?.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let plain = Path::new(&name).components().all(|part| matches!(part, std::path::Component::Normal(_)));
        if !kind.is_file() || !plain {
            return Err(invalid(format!("member {name:?} is not a plain file at a relative path")));
        }
        if name == ARCHIVE_GRAPH {
            locations = Some(
                modelplane_onnx::external_data_locations(entry)
                    .map_err(|err| Error::InvalidArgument(err.to_string()))?,
            );
        }
        members.insert(name);
    }
    let locations = locations.ok_or_else(|| invalid(format!("it holds no {ARCHIVE_GRAPH}")))?;
    let missing: Vec<&String> = locations.iter().filter(|location| !members.contains(*location)).collect();
    if !missing.is_empty() {
        return Err(invalid(format!("the graph keeps tensors in {missing:?}, which the archive does not hold")));
    }
    Ok(())
}
