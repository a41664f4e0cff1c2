//! Native models as ONNX graphs (`modelplane models export`), so that a model trained
//! here runs in onnxruntime, Triton or anything else that reads ONNX, and answers
//! there what modelplane answers: the same input names, output names and values.
//!
//! Tree kinds are written as `ai.onnx.ml` tree operators (raw scores, missing values
//! tracked per node, the base scores; category sets as opset 5's BRANCH_MEMBER nodes
//! after a LabelEncoder per categorical column), followed by the head in standard ONNX
//! operators (Sigmoid or Softmax, the class probabilities, the label as a string). The
//! other kinds are refused by name for now.

#![forbid(unsafe_code)]

mod graph;
mod trees;

use modelplane_model::{Model, Step};

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
    // Trees read raw values; their only step is the categories' codes.
    if model.manifest.pipeline.iter().any(|step| !matches!(step, Step::Categories { .. })) {
        return Err(Error::Unsupported(format!(
            "exporting a {} with preprocessing steps to ONNX is not supported yet",
            kind.name()
        )));
    }
    let (graph, ml_opset) = trees::graph(model, ensemble)?;
    Ok(graph::encode(graph, ml_opset))
}
