//! Native models as ONNX graphs (`modelplane models export`), so that a model trained
//! here runs in onnxruntime, Triton or anything else that reads ONNX, and answers
//! there what modelplane answers: the same input names, output names and values.
//!
//! Tree kinds are written as `ai.onnx.ml` TreeEnsembleRegressor (raw scores, missing
//! values tracked per node, the base scores), followed by the head in standard ONNX
//! operators (Sigmoid or Softmax, the class probabilities, the label as a string). The
//! other kinds, and trees over categorical columns, are refused by name for now.

#![forbid(unsafe_code)]

mod graph;
mod trees;

use modelplane_model::Model;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The model as a serialized ONNX `ModelProto`.
pub fn to_onnx(model: &Model) -> Result<Vec<u8>> {
    let kind = model.manifest.kind;
    let Some(ensemble) = &model.trees else {
        return Err(Error::Unsupported(format!(
            "exporting {} to ONNX is not supported yet; tree kinds (gbdt, random_forest, decision_tree) are",
            kind.name()
        )));
    };
    if !model.manifest.pipeline.is_empty() {
        return Err(Error::Unsupported(
            "exporting a tree model with categorical columns to ONNX is not supported yet".into(),
        ));
    }
    Ok(graph::encode(trees::graph(model, ensemble)?))
}
