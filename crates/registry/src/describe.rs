//! What the registry reads from an artifact at upload: it loads the file as the format
//! it claims to be (a modelplane artifact, or an ONNX graph through tract), refusing one
//! that does not load, and records its kind, signature and metrics.

use std::collections::BTreeMap;

use modelplane_kserve::Signature;
use modelplane_model::Model;
use modelplane_store::schema::ArtifactFormat;

use crate::{Error, Result};

/// What the registry records about an artifact, read by loading it.
pub(crate) struct Described {
    pub kind: String,
    pub signature: Signature,
    pub metrics: BTreeMap<String, f64>,
    pub labels: Vec<String>,
    pub confusion_matrix: Vec<Vec<u64>>,
}

/// Loads an artifact of `format` to check it and read its kind, signature and metrics.
pub(crate) fn describe(format: ArtifactFormat, bytes: &[u8]) -> Result<Described> {
    match format {
        ArtifactFormat::Modelplane => {
            let model = Model::from_artifact(bytes)
                .map_err(|err| Error::InvalidArgument(format!("not a loadable modelplane artifact: {err}")))?;
            Ok(Described {
                kind: model.manifest.kind.name().to_owned(),
                signature: model.manifest.signature,
                metrics: model.manifest.metrics,
                labels: model.manifest.labels,
                confusion_matrix: model.manifest.confusion_matrix,
            })
        }
        ArtifactFormat::Onnx => {
            let model =
                modelplane_onnx::OnnxModel::load(bytes).map_err(|err| Error::InvalidArgument(err.to_string()))?;
            Ok(Described {
                kind: ArtifactFormat::Onnx.name().into(),
                signature: model.signature().clone(),
                metrics: BTreeMap::new(),
                labels: Vec::new(),
                confusion_matrix: Vec::new(),
            })
        }
    }
}
