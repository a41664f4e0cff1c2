//! The one-file artifact: safetensors weights with the manifest in its metadata.
//!
//! Tensors: `weights` `[features, outputs]`, `bias` `[outputs]`, `scaler.mean` and
//! `scaler.scale` `[features]`, all F32 little-endian. Metadata key
//! [`MANIFEST_METADATA_KEY`] holds the [`Manifest`] as JSON.

use std::collections::HashMap;

use ndarray::{Array1, Array2};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Manifest, Model, Result, StandardScaler};

/// The artifact format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Metadata key of the manifest JSON.
pub const MANIFEST_METADATA_KEY: &str = "modelplane.manifest";

fn le_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

fn artifact_error(err: impl std::fmt::Display) -> Error {
    Error::Artifact(err.to_string())
}

fn read_f32(tensors: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let view = tensors
        .tensor(name)
        .map_err(|_| Error::Artifact(format!("tensor {name:?} is missing")))?;
    if view.dtype() != Dtype::F32 || view.shape() != shape {
        return Err(Error::Artifact(format!(
            "tensor {name:?} is {:?} {:?}; expected F32 {shape:?}",
            view.dtype(),
            view.shape()
        )));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

impl Model {
    /// Serialises the model into one artifact file's bytes.
    pub fn to_artifact(&self) -> Result<Vec<u8>> {
        let manifest = serde_json::to_string(&self.manifest).map_err(artifact_error)?;
        let (features, outputs) = self.weights.dim();
        let buffers = [
            ("weights", vec![features, outputs], le_bytes(self.weights.iter().copied())),
            ("bias", vec![outputs], le_bytes(self.bias.iter().copied())),
            ("scaler.mean", vec![features], le_bytes(self.scaler.mean.iter().copied())),
            ("scaler.scale", vec![features], le_bytes(self.scaler.scale.iter().copied())),
        ];
        let views = buffers
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (*name, view))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(artifact_error)?;
        let metadata = HashMap::from([(MANIFEST_METADATA_KEY.to_owned(), manifest)]);
        safetensors::serialize(views, Some(metadata)).map_err(artifact_error)
    }

    /// Loads a model from artifact bytes, checking the format version and shapes.
    pub fn from_artifact(bytes: &[u8]) -> Result<Self> {
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|err| Error::Artifact(format!("not a safetensors file: {err}")))?;
        let manifest_json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(MANIFEST_METADATA_KEY))
            .ok_or_else(|| Error::Artifact(format!("metadata has no {MANIFEST_METADATA_KEY:?}")))?;
        let version: serde_json::Value = serde_json::from_str(manifest_json).map_err(artifact_error)?;
        let found = version.get("format_version").and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(FORMAT_VERSION)) {
            return Err(Error::Artifact(format!(
                "format version {} is not supported; this build reads version {FORMAT_VERSION}",
                found.map_or_else(|| "(missing)".to_owned(), |v| v.to_string())
            )));
        }
        let manifest: Manifest = serde_json::from_str(manifest_json).map_err(artifact_error)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(artifact_error)?;
        let features = manifest.feature_names.len();
        let outputs = tensors.tensor("bias").map_err(artifact_error)?.shape().first().copied().unwrap_or(0);
        let weights = Array2::from_shape_vec((features, outputs), read_f32(&tensors, "weights", &[features, outputs])?)
            .map_err(artifact_error)?;
        let bias = Array1::from(read_f32(&tensors, "bias", &[outputs])?);
        let scaler = StandardScaler {
            mean: Array1::from(read_f32(&tensors, "scaler.mean", &[features])?),
            scale: Array1::from(read_f32(&tensors, "scaler.scale", &[features])?),
        };
        Ok(Self { manifest, scaler, weights, bias })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::{Dataset, ModelKind, TrainParams, train};

    use super::*;

    fn csv_from(rows: &[(f32, f32)]) -> String {
        let mut csv = String::from("a,b,y\n");
        for (i, (a, b)) in rows.iter().enumerate() {
            csv.push_str(&format!("{a},{b},{}\n", i % 2));
        }
        csv
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn save_load_gives_identical_predictions(
            rows in prop::collection::vec((-100f32..100.0, -100f32..100.0), 4..40),
            logistic in any::<bool>(),
        ) {
            let data = Dataset::from_csv(&csv_from(&rows), "y").expect("valid csv");
            let kind = if logistic { ModelKind::LogisticRegression } else { ModelKind::LinearRegression };
            let params = TrainParams { epochs: 3, learning_rate: 0.01, ..TrainParams::default() };
            let model = train(kind, &data, &params, |_| true).expect("trains");
            let loaded = Model::from_artifact(&model.to_artifact().expect("saves")).expect("loads");
            let x = data.features.mapv(|v| v as f32);
            prop_assert_eq!(model.predict(x.view()).expect("predicts"), loaded.predict(x.view()).expect("predicts"));
            prop_assert_eq!(&model.manifest, &loaded.manifest);
        }
    }

    #[test]
    fn unknown_format_version_is_a_clear_error() {
        let data = Dataset::from_csv(&csv_from(&[(1.0, 2.0), (3.0, 4.0)]), "y").expect("valid csv");
        let mut model = train(ModelKind::LinearRegression, &data, &TrainParams::default(), |_| true).expect("trains");
        model.manifest.format_version = 99;
        let err = Model::from_artifact(&model.to_artifact().expect("saves")).expect_err("version 99");
        assert_eq!(err.to_string(), "artifact: format version 99 is not supported; this build reads version 1");
    }
}
