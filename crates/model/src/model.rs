//! The trained model and its one inference path.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a model computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Least squares (optionally L2-regularised) regression; output `predictions`.
    LinearRegression,
    /// Binary logistic regression; output `probabilities` (class 0, class 1).
    LogisticRegression,
}

impl ModelKind {
    /// Parses the names used by the CLI and the trainer API.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "linear" | "linear_regression" => Ok(Self::LinearRegression),
            "logistic" | "logistic_regression" => Ok(Self::LogisticRegression),
            other => Err(Error::InvalidParam {
                name: "kind".into(),
                reason: format!("{other:?} is not a model kind; expected linear or logistic"),
            }),
        }
    }

    /// The short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::LinearRegression => "linear",
            Self::LogisticRegression => "logistic",
        }
    }
}

/// One named tensor of a signature; `-1` marks the batch dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name as used in inference requests.
    pub name: String,
    /// KServe v2 datatype name (FP32, INT64, BYTES…).
    pub datatype: String,
    /// Dimensions; -1 is variable.
    pub shape: Vec<i64>,
}

/// Inputs and outputs of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Signature {
    /// Inputs, in order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in order.
    pub outputs: Vec<TensorSpec>,
}

/// Standardises each feature: `(x - mean) / scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct StandardScaler {
    /// Per-feature mean.
    pub mean: Array1<f32>,
    /// Per-feature standard deviation (1 where it was 0).
    pub scale: Array1<f32>,
}

/// Everything about a model except its weights; stored in the artifact's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Artifact format version; see [`crate::FORMAT_VERSION`].
    pub format_version: u32,
    /// What the model computes.
    pub kind: ModelKind,
    /// Feature names in input column order.
    pub feature_names: Vec<String>,
    /// The column the model predicts.
    pub target: String,
    /// Input and output tensors.
    pub signature: Signature,
    /// Class labels for classifiers, in output order.
    pub labels: Vec<String>,
    /// Metrics measured on the held-out split.
    pub metrics: BTreeMap<String, f64>,
    /// Training parameters, for lineage.
    pub params: BTreeMap<String, String>,
}

/// A model's output tensor: row-major values with their shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// Output name from the signature.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// A trained model.
#[derive(Clone, Debug)]
pub struct Model {
    /// Kind, signature, metrics…
    pub manifest: Manifest,
    /// Feature standardisation applied before the weights.
    pub scaler: StandardScaler,
    /// `[features, outputs]`.
    pub weights: Array2<f32>,
    /// `[outputs]`.
    pub bias: Array1<f32>,
}

/// Name of the single input tensor.
pub const INPUT_NAME: &str = "input";

impl Model {
    /// The input and output signature for a kind and feature count.
    pub fn signature_for(kind: ModelKind, features: usize) -> Signature {
        let input = TensorSpec { name: INPUT_NAME.into(), datatype: "FP32".into(), shape: vec![-1, features as i64] };
        let output = match kind {
            ModelKind::LinearRegression => {
                TensorSpec { name: "predictions".into(), datatype: "FP32".into(), shape: vec![-1, 1] }
            }
            ModelKind::LogisticRegression => {
                TensorSpec { name: "probabilities".into(), datatype: "FP32".into(), shape: vec![-1, 2] }
            }
        };
        Signature { inputs: vec![input], outputs: vec![output] }
    }

    /// Number of input features.
    pub fn features(&self) -> usize {
        self.weights.nrows()
    }

    /// Runs a batch `[rows, features]` through the model.
    pub fn predict(&self, input: ArrayView2<'_, f32>) -> Result<Vec<Output>> {
        if input.ncols() != self.features() {
            return Err(Error::InvalidInput(format!(
                "input has {} features per row; the model expects {}",
                input.ncols(),
                self.features()
            )));
        }
        let scaled = (&input - &self.scaler.mean.view().insert_axis(Axis(0)))
            / &self.scaler.scale.view().insert_axis(Axis(0));
        let mut logits = scaled.dot(&self.weights);
        logits += &self.bias.view().insert_axis(Axis(0));
        let rows = input.nrows();
        let output = match self.manifest.kind {
            ModelKind::LinearRegression => Output {
                name: "predictions".into(),
                shape: vec![rows, 1],
                values: logits.into_iter().collect(),
            },
            ModelKind::LogisticRegression => {
                let mut values = Vec::with_capacity(rows * 2);
                for z in logits.column(0) {
                    let p = sigmoid(*z);
                    values.push(1.0 - p);
                    values.push(p);
                }
                Output { name: "probabilities".into(), shape: vec![rows, 2], values }
            }
        };
        Ok(vec![output])
    }
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}
