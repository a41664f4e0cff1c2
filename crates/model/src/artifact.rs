//! The one-file artifact: safetensors weights with the manifest in its metadata.
//!
//! Tensors (F32, little-endian): `scaler.mean` and `scaler.scale` `[features]`;
//! `vectorizer.idf` `[n_features]` for tf-idf text models; `pca.components`
//! `[features, components]` with PCA; per dense layer `i`: `layers.{i}.weight`
//! `[inputs, outputs]` and `layers.{i}.bias` `[outputs]`. Metadata key
//! [`MANIFEST_METADATA_KEY`] holds the [`Manifest`] as JSON; its `pipeline` says which
//! preprocessing tensors to expect. A tree kind has no layers; its trees are the
//! `trees.*` tensors (see `trees/artifact.rs`).

use std::collections::HashMap;

use ndarray::{Array1, Array2};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::model::Step;
use crate::network::Dense;
use crate::text::HashingVectorizer;
use crate::{Error, Manifest, Model, Result, StandardScaler};

/// The artifact format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Metadata key of the manifest JSON.
pub const MANIFEST_METADATA_KEY: &str = "modelplane.manifest";

fn le_bytes<'a>(values: impl Iterator<Item = &'a f32>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}

fn artifact_error(err: impl std::fmt::Display) -> Error {
    Error::Artifact(err.to_string())
}

fn read_f32(tensors: &SafeTensors<'_>, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let view = tensors.tensor(name).map_err(|_| Error::Artifact(format!("tensor {name:?} is missing")))?;
    if view.dtype() != Dtype::F32 {
        return Err(Error::Artifact(format!("tensor {name:?} is {:?}; expected F32", view.dtype())));
    }
    let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok((view.shape().to_vec(), values))
}

fn expect_shape(name: &str, shape: &[usize], expected: &[usize]) -> Result<()> {
    if shape == expected {
        Ok(())
    } else {
        Err(Error::Artifact(format!("tensor {name:?} has shape {shape:?}; expected {expected:?}")))
    }
}

impl Model {
    /// Serialises the model into one artifact file's bytes.
    pub fn to_artifact(&self) -> Result<Vec<u8>> {
        let manifest = serde_json::to_string(&self.manifest).map_err(artifact_error)?;
        let features = self.scaler.mean.len();
        let f32 = Dtype::F32;
        let mut buffers = vec![
            ("scaler.mean".to_owned(), f32, vec![features], le_bytes(self.scaler.mean.iter())),
            ("scaler.scale".to_owned(), f32, vec![features], le_bytes(self.scaler.scale.iter())),
        ];
        if let Some(idf) = self.vectorizer.as_ref().and_then(|v| v.idf.as_ref()) {
            buffers.push(("vectorizer.idf".to_owned(), f32, vec![idf.len()], le_bytes(idf.iter())));
        }
        if let Some(components) = &self.pca {
            let shape = vec![components.nrows(), components.ncols()];
            buffers.push(("pca.components".to_owned(), f32, shape, le_bytes(components.iter())));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let (inputs, outputs) = layer.weight.dim();
            buffers.push((format!("layers.{i}.weight"), f32, vec![inputs, outputs], le_bytes(layer.weight.iter())));
            buffers.push((format!("layers.{i}.bias"), f32, vec![outputs], le_bytes(layer.bias.iter())));
        }
        if let Some(trees) = &self.trees {
            buffers.extend(crate::trees::artifact::buffers(trees));
        }
        let views = buffers
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|view| (name.as_str(), view))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(artifact_error)?;
        let metadata = HashMap::from([(MANIFEST_METADATA_KEY.to_owned(), manifest)]);
        safetensors::serialize(views, Some(metadata)).map_err(artifact_error)
    }

    /// Loads a model from artifact bytes, checking the format version and every shape.
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
        let (shape, mean) = read_f32(&tensors, "scaler.mean")?;
        expect_shape("scaler.mean", &shape, &[features])?;
        let (shape, scale) = read_f32(&tensors, "scaler.scale")?;
        expect_shape("scaler.scale", &shape, &[features])?;
        let mut inputs = features;
        let mut vectorizer = None;
        let mut pca = None;
        for step in &manifest.pipeline {
            match step {
                Step::HashingVectorizer { n_features, ngram_max, tfidf, .. } => {
                    let idf = if *tfidf {
                        let (shape, idf) = read_f32(&tensors, "vectorizer.idf")?;
                        expect_shape("vectorizer.idf", &shape, &[*n_features])?;
                        Some(Array1::from(idf))
                    } else {
                        None
                    };
                    vectorizer = Some(HashingVectorizer { n_features: *n_features, ngram_max: *ngram_max, idf });
                    inputs = *n_features;
                }
                Step::OneHot { columns } | Step::Categories { columns } => {
                    // Codes for trees take one column each; one-hot one per category.
                    let codes = matches!(step, Step::Categories { .. });
                    let encoded =
                        if codes { columns.len() } else { columns.iter().map(|column| column.categories.len()).sum() };
                    if encoded > features {
                        return Err(Error::Artifact(format!(
                            "the categorical step has {encoded} columns but the model has {features} features"
                        )));
                    }
                    let too_many = columns.iter().any(|c| c.categories.len() > crate::MAX_TREE_CATEGORIES);
                    if codes && (manifest.trees.is_none() || too_many) {
                        return Err(Error::Artifact(format!(
                            "a categories step needs a tree model and at most {} categories a column",
                            crate::MAX_TREE_CATEGORIES
                        )));
                    }
                    // Codes are found by binary search: the categories must be sorted, once each.
                    if let Some(column) =
                        columns.iter().find(|c| c.categories.windows(2).any(|w| w[0].as_bytes() >= w[1].as_bytes()))
                    {
                        return Err(Error::Artifact(format!(
                            "the categories of column {:?} are not sorted and distinct",
                            column.name
                        )));
                    }
                }
                Step::StandardScaler => {}
                Step::Pca { components } => {
                    let (shape, values) = read_f32(&tensors, "pca.components")?;
                    expect_shape("pca.components", &shape, &[features, *components])?;
                    pca = Some(Array2::from_shape_vec((features, *components), values).map_err(artifact_error)?);
                    inputs = *components;
                }
            }
        }
        let mut layers = Vec::with_capacity(manifest.activations.len());
        for (i, activation) in manifest.activations.iter().enumerate() {
            let (shape, weight) = read_f32(&tensors, &format!("layers.{i}.weight"))?;
            let outputs = shape.get(1).copied().unwrap_or(0);
            expect_shape(&format!("layers.{i}.weight"), &shape, &[inputs, outputs])?;
            let (shape, bias) = read_f32(&tensors, &format!("layers.{i}.bias"))?;
            expect_shape(&format!("layers.{i}.bias"), &shape, &[outputs])?;
            let weight = Array2::from_shape_vec((inputs, outputs), weight).map_err(artifact_error)?;
            // A loaded artifact is served: its weights never change again.
            layers.push(Dense::new(weight, Array1::from(bias), *activation).packed_for_inference());
            inputs = outputs;
        }
        let trees = match manifest.trees {
            Some(combine) => {
                let outputs = match manifest.head {
                    crate::Head::Identity | crate::Head::Sigmoid => 1,
                    crate::Head::Softmax | crate::Head::Probabilities | crate::Head::Margin => manifest.labels.len(),
                };
                Some(std::sync::Arc::new(crate::trees::artifact::load(&tensors, combine, features, outputs)?))
            }
            None if layers.is_empty() => return Err(Error::Artifact("the manifest lists no layers".into())),
            None => None,
        };
        Ok(Self {
            manifest,
            vectorizer,
            scaler: StandardScaler { mean: Array1::from(mean), scale: Array1::from(scale) },
            pca,
            layers,
            trees,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::{Dataset, ModelKind, TrainParams, train};

    use super::*;

    fn csv_from(rows: &[(f32, f32)], classes: usize) -> String {
        let mut csv = String::from("a,b,y\n");
        for (i, (a, b)) in rows.iter().enumerate() {
            csv.push_str(&format!("{a},{b},{}\n", i % classes));
        }
        csv
    }

    const KINDS: [ModelKind; 5] = [
        ModelKind::LinearRegression,
        ModelKind::LogisticRegression,
        ModelKind::SoftmaxRegression,
        ModelKind::MlpClassifier,
        ModelKind::MlpRegressor,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn save_load_gives_identical_predictions(
            rows in prop::collection::vec((-100f32..100.0, -100f32..100.0), 6..40),
            kind_index in 0usize..5,
        ) {
            let kind = KINDS[kind_index];
            let classes = if kind == ModelKind::LogisticRegression { 2 } else { 3 };
            let data = Dataset::from_csv(&csv_from(&rows, classes), "y", kind.is_classifier()).expect("valid csv");
            let mut params = TrainParams::defaults_for(kind);
            params.epochs = 3;
            params.hidden = if kind.is_mlp() { vec![5, 4] } else { Vec::new() };
            let model = train(kind, data.clone(), &params, |_| true).expect("trains");
            let loaded = Model::from_artifact(&model.to_artifact().expect("saves")).expect("loads");
            prop_assert_eq!(model.predict(data.features.view()).expect("predicts"), loaded.predict(data.features.view()).expect("predicts"));
            prop_assert_eq!(&model.manifest, &loaded.manifest);
        }
    }

    #[test]
    fn text_and_pca_pipelines_round_trip() {
        let text = Dataset::from_csv_with_text(&crate::train::tests::texts_csv(60), "topic", true, Some("text"))
            .expect("valid csv");
        let mut params = TrainParams::defaults_for(ModelKind::MlpClassifier);
        params.text_column = Some("text".into());
        params.epochs = 3;
        let model = train(ModelKind::MlpClassifier, text, &params, |_| true).expect("trains");
        let loaded = Model::from_artifact(&model.to_artifact().expect("saves")).expect("loads");
        let texts: Vec<&[u8]> = vec![b"rain and wind", b"pasta dinner"];
        assert_eq!(model.predict_texts(&texts).expect("predicts"), loaded.predict_texts(&texts).expect("predicts"));

        let rows: Vec<(f32, f32)> = (0..30).map(|i| (i as f32, (i * 7 % 11) as f32)).collect();
        let numeric = Dataset::from_csv(&csv_from(&rows, 2), "y", true).expect("valid csv");
        let mut params = TrainParams::defaults_for(ModelKind::LogisticRegression);
        params.pca = Some(crate::Components::Count(1));
        let model = train(ModelKind::LogisticRegression, numeric.clone(), &params, |_| true).expect("trains");
        let loaded = Model::from_artifact(&model.to_artifact().expect("saves")).expect("loads");
        assert_eq!(model.pca, loaded.pca);
        assert_eq!(
            model.predict(numeric.features.view()).expect("predicts"),
            loaded.predict(numeric.features.view()).expect("predicts")
        );
    }

    #[test]
    fn unknown_format_version_is_a_clear_error() {
        let data = Dataset::from_csv(&csv_from(&[(1.0, 2.0), (3.0, 4.0)], 2), "y", false).expect("valid csv");
        let mut model =
            train(ModelKind::LinearRegression, data, &TrainParams::defaults_for(ModelKind::LinearRegression), |_| true)
                .expect("trains");
        model.manifest.format_version = 99;
        let err = Model::from_artifact(&model.to_artifact().expect("saves")).expect_err("version 99");
        assert_eq!(err.to_string(), "artifact: format version 99 is not supported; this build reads version 1");
    }
}
