//! The trained model and its one inference path.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::network::{self, Dense, Head};
use crate::text::HashingVectorizer;
use crate::{Error, Result};

/// What a model computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Least squares, optionally L2-regularised (ridge); output `predictions`.
    LinearRegression,
    /// Binary logistic regression; outputs `probabilities` and `label`.
    LogisticRegression,
    /// Multiclass logistic (softmax) regression; outputs `probabilities` and `label`.
    SoftmaxRegression,
    /// Multi-layer perceptron classifier; outputs `probabilities` and `label`.
    MlpClassifier,
    /// Multi-layer perceptron regressor; output `predictions`.
    MlpRegressor,
}

impl ModelKind {
    /// Parses the names used by the CLI and the trainer API.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "linear" | "linear_regression" | "ridge" => Ok(Self::LinearRegression),
            "logistic" | "logistic_regression" => Ok(Self::LogisticRegression),
            "softmax" | "softmax_regression" => Ok(Self::SoftmaxRegression),
            "mlp" | "mlp_classifier" => Ok(Self::MlpClassifier),
            "mlp_regressor" => Ok(Self::MlpRegressor),
            other => Err(Error::InvalidParam {
                name: "kind".into(),
                reason: format!(
                    "{other:?} is not a model kind; expected linear, logistic, softmax, mlp or mlp_regressor"
                ),
            }),
        }
    }

    /// The short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::LinearRegression => "linear",
            Self::LogisticRegression => "logistic",
            Self::SoftmaxRegression => "softmax",
            Self::MlpClassifier => "mlp",
            Self::MlpRegressor => "mlp_regressor",
        }
    }

    /// Whether the target is a class label.
    pub fn is_classifier(self) -> bool {
        matches!(self, Self::LogisticRegression | Self::SoftmaxRegression | Self::MlpClassifier)
    }

    /// Whether the model has hidden layers.
    pub fn is_mlp(self) -> bool {
        matches!(self, Self::MlpClassifier | Self::MlpRegressor)
    }
}

/// One named tensor of a signature; `-1` marks a variable dimension.
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

/// One preprocessing step, applied in order before the dense layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Text column → hashed n-gram counts (tensor `vectorizer.idf` when tf-idf).
    HashingVectorizer {
        /// The text column, which is the model's `text` input.
        column: String,
        /// Hashed columns.
        n_features: usize,
        /// Longest word n-gram.
        ngram_max: usize,
        /// IDF weighting.
        tfidf: bool,
    },
    /// `(x - mean) / scale` (tensors `scaler.mean`, `scaler.scale`).
    StandardScaler,
    /// Projection onto principal components (tensor `pca.components`).
    Pca {
        /// Components kept.
        components: usize,
    },
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
    /// Preprocessing steps, in order.
    pub pipeline: Vec<Step>,
    /// Activation of each dense layer, in order (the last is identity: the head follows).
    pub activations: Vec<crate::network::Activation>,
    /// Output function of the last layer.
    pub head: Head,
    /// Metrics measured on the held-out split.
    pub metrics: BTreeMap<String, f64>,
    /// `[true class][predicted class]` counts on the held-out split (classifiers).
    #[serde(default)]
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Training parameters, for lineage.
    pub params: BTreeMap<String, String>,
}

/// Values of a tensor, row-major. Native models answer FP32 and BYTES; ONNX graphs may
/// also take and answer the other types.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// FP32.
    F32(Vec<f32>),
    /// FP64.
    F64(Vec<f64>),
    /// FP16 (half-precision graphs).
    F16(Vec<half::f16>),
    /// INT8.
    I8(Vec<i8>),
    /// INT16.
    I16(Vec<i16>),
    /// INT32.
    I32(Vec<i32>),
    /// INT64 (class indices, say).
    I64(Vec<i64>),
    /// UINT8 (image pixels, say).
    U8(Vec<u8>),
    /// UINT16.
    U16(Vec<u16>),
    /// UINT32.
    U32(Vec<u32>),
    /// UINT64.
    U64(Vec<u64>),
    /// BOOL.
    Bool(Vec<bool>),
    /// BYTES, one element per entry.
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the values of whichever variant `$data` is, bound as `$values`;
/// `$wrap` names the variant for bodies that build one of the same kind.
macro_rules! each_variant {
    ($data:expr, $values:ident, $wrap:ident => $body:expr) => {
        each_variant!(@arms $data, $values, $wrap, $body; F32 F64 F16 I8 I16 I32 I64 U8 U16 U32 U64 Bool Bytes)
    };
    (@arms $data:expr, $values:ident, $wrap:ident, $body:expr; $($variant:ident)*) => {
        match $data {
            $(TensorData::$variant($values) => {
                #[allow(unused_imports)]
                use TensorData::$variant as $wrap;
                $body
            })*
        }
    };
}

impl TensorData {
    /// The KServe v2 datatype.
    pub fn datatype(&self) -> &'static str {
        match self {
            TensorData::F32(_) => "FP32",
            TensorData::F64(_) => "FP64",
            TensorData::F16(_) => "FP16",
            TensorData::I8(_) => "INT8",
            TensorData::I16(_) => "INT16",
            TensorData::I32(_) => "INT32",
            TensorData::I64(_) => "INT64",
            TensorData::U8(_) => "UINT8",
            TensorData::U16(_) => "UINT16",
            TensorData::U32(_) => "UINT32",
            TensorData::U64(_) => "UINT64",
            TensorData::Bool(_) => "BOOL",
            TensorData::Bytes(_) => "BYTES",
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, values, Kind => values.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements of `parts` one after another, when all are of one type.
    pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
        let (first, rest) = parts.split_first()?;
        let mut joined = (*first).clone();
        for part in rest {
            each_variant!(&mut joined, all, Kind => {
                let Kind(more) = part else { return None };
                all.extend_from_slice(more);
            });
        }
        Some(joined)
    }

    /// Elements `range` (row-major) as values of the same type.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        each_variant!(self, values, Kind => Kind(values[range].to_vec()))
    }
}

/// A model's output tensor with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// Output name from the signature.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values.
    pub data: TensorData,
}

/// A trained model: preprocessing, dense layers and an output head.
#[derive(Clone, Debug)]
pub struct Model {
    /// Kind, signature, metrics…
    pub manifest: Manifest,
    /// Text vectorizer, for text models.
    pub vectorizer: Option<HashingVectorizer>,
    /// Feature standardisation (identity for text models).
    pub scaler: StandardScaler,
    /// PCA projection `[features, components]`, when the pipeline has one.
    pub pca: Option<Array2<f32>>,
    /// Dense layers; the last one feeds the head.
    pub layers: Vec<Dense>,
}

impl Model {
    /// Bytes its parameters take in memory: scaler, PCA, IDF weights, every layer's
    /// weights and biases, and the packed copies serving multiplies with.
    pub fn memory_bytes(&self) -> u64 {
        let f32s = |len: usize| (len * std::mem::size_of::<f32>()) as u64;
        let layers: u64 = self
            .layers
            .iter()
            .map(|layer| {
                f32s(layer.weight.len() + layer.bias.len())
                    + layer.packed.as_ref().map_or(0, |packed| packed.memory_bytes() as u64)
            })
            .sum();
        let idf = self.vectorizer.as_ref().and_then(|v| v.idf.as_ref()).map_or(0, |idf| f32s(idf.len()));
        let pca = self.pca.as_ref().map_or(0, |pca| f32s(pca.len()));
        layers + idf + pca + f32s(self.scaler.mean.len() + self.scaler.scale.len())
    }

    /// The classes an output's columns stand for, by index: a classifier's labels for its
    /// probabilities, nothing for any other output.
    pub fn labels_of(&self, output: &str) -> &[String] {
        match self.manifest.head {
            Head::Sigmoid | Head::Softmax if output == PROBABILITIES_OUTPUT => &self.manifest.labels,
            _ => &[],
        }
    }
}

/// Name of the numeric input tensor.
pub const INPUT_NAME: &str = "input";
/// Name of a classifier's output with one probability per class.
pub const PROBABILITIES_OUTPUT: &str = "probabilities";
/// Name of the text input tensor.
pub const TEXT_INPUT_NAME: &str = "text";

/// What a model takes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// FP32 `[rows, features]`.
    Features(usize),
    /// BYTES `[rows]`, one UTF-8 text per row.
    Text,
}

fn fp32(name: &str, shape: Vec<i64>) -> TensorSpec {
    TensorSpec { name: name.into(), datatype: "FP32".into(), shape }
}

impl Model {
    /// The input and output signature for an input kind, head and class count.
    pub fn signature_for(head: Head, input: InputKind, classes: usize) -> Signature {
        let outputs = match head {
            Head::Identity => vec![fp32("predictions", vec![-1, 1])],
            Head::Sigmoid | Head::Softmax => vec![
                fp32(PROBABILITIES_OUTPUT, vec![-1, classes as i64]),
                TensorSpec { name: "label".into(), datatype: "BYTES".into(), shape: vec![-1] },
            ],
        };
        let input = match input {
            InputKind::Features(features) => fp32(INPUT_NAME, vec![-1, features as i64]),
            InputKind::Text => TensorSpec { name: TEXT_INPUT_NAME.into(), datatype: "BYTES".into(), shape: vec![-1] },
        };
        Signature { inputs: vec![input], outputs }
    }

    /// Multiply-adds one row costs through PCA and the dense layers: what a server weighs
    /// to decide whether handing the work to another thread costs more than the work.
    pub fn multiply_adds_per_row(&self) -> usize {
        self.pca.as_ref().map_or(0, |pca| pca.len()) + self.layers.iter().map(|layer| layer.weight.len()).sum::<usize>()
    }

    /// Number of numeric input features (0 for text models).
    pub fn features(&self) -> usize {
        if self.vectorizer.is_some() { 0 } else { self.scaler.mean.len() }
    }

    /// Scaler then PCA: the matrix the dense layers take.
    pub fn transform(&self, input: ArrayView2<'_, f32>) -> Array2<f32> {
        let scaled =
            (&input - &self.scaler.mean.view().insert_axis(Axis(0))) / self.scaler.scale.view().insert_axis(Axis(0));
        match &self.pca {
            Some(components) => scaled.dot(components),
            None => scaled,
        }
    }

    /// Features through the pipeline, layers and head: `[rows, outputs of the last layer]`.
    pub fn forward(&self, input: ArrayView2<'_, f32>) -> Array2<f32> {
        network::forward(&self.layers, self.manifest.head, self.transform(input).view())
    }

    /// Texts through the vectorizer, layers and head.
    pub fn forward_texts(&self, texts: &[&[u8]]) -> Result<Array2<f32>> {
        let vectorizer = self
            .vectorizer
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("this model takes numeric features, not text".into()))?;
        Ok(network::forward(&self.layers, self.manifest.head, vectorizer.transform(texts).view()))
    }

    /// Runs a batch of texts through a text model.
    pub fn predict_texts(&self, texts: &[&[u8]]) -> Result<Vec<Output>> {
        let out = self.forward_texts(texts)?;
        Ok(self.outputs(texts.len(), out))
    }

    /// Runs a batch `[rows, features]` through the model.
    pub fn predict(&self, input: ArrayView2<'_, f32>) -> Result<Vec<Output>> {
        if self.vectorizer.is_some() {
            return Err(Error::InvalidInput("this model takes text (BYTES), not numeric features".into()));
        }
        if input.ncols() != self.features() {
            return Err(Error::InvalidInput(format!(
                "input has {} features per row; the model expects {}",
                input.ncols(),
                self.features()
            )));
        }
        let out = self.forward(input);
        Ok(self.outputs(input.nrows(), out))
    }

    /// Head outputs as named tensors.
    fn outputs(&self, rows: usize, out: Array2<f32>) -> Vec<Output> {
        match self.manifest.head {
            Head::Identity => {
                vec![Output {
                    name: "predictions".into(),
                    shape: vec![rows, 1],
                    data: TensorData::F32(out.into_iter().collect()),
                }]
            }
            Head::Sigmoid => {
                let mut probabilities = Vec::with_capacity(rows * 2);
                let mut labels = Vec::with_capacity(rows);
                for p in out.column(0) {
                    probabilities.extend([1.0 - p, *p]);
                    labels.push(self.label(usize::from(*p >= 0.5)));
                }
                self.class_outputs(rows, 2, probabilities, labels)
            }
            Head::Softmax => {
                let classes = out.ncols();
                let labels = out.axis_iter(Axis(0)).map(|row| self.label(argmax(row.iter().copied()))).collect();
                self.class_outputs(rows, classes, out.into_iter().collect(), labels)
            }
        }
    }

    fn label(&self, class: usize) -> Vec<u8> {
        self.manifest.labels.get(class).map(|l| l.as_bytes().to_vec()).unwrap_or_else(|| class.to_string().into_bytes())
    }

    fn class_outputs(&self, rows: usize, classes: usize, probabilities: Vec<f32>, labels: Vec<Vec<u8>>) -> Vec<Output> {
        vec![
            Output {
                name: PROBABILITIES_OUTPUT.into(),
                shape: vec![rows, classes],
                data: TensorData::F32(probabilities),
            },
            Output { name: "label".into(), shape: vec![rows], data: TensorData::Bytes(labels) },
        ]
    }
}

/// Index of the largest value (the first on ties).
pub(crate) fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::TensorData;

    #[test]
    fn tensor_data_concatenates_and_slices_within_one_type() {
        let joined = TensorData::concat(&[&TensorData::I64(vec![1, 2]), &TensorData::I64(vec![3])]);
        assert_eq!(joined, Some(TensorData::I64(vec![1, 2, 3])));
        assert_eq!(TensorData::concat(&[&TensorData::I64(vec![1]), &TensorData::F32(vec![1.0])]), None, "mixed types");
        assert_eq!(TensorData::concat(&[]), None);
        let pixels = TensorData::concat(&[&TensorData::U8(vec![1]), &TensorData::U8(vec![2, 3])]);
        assert_eq!(pixels, Some(TensorData::U8(vec![1, 2, 3])));
        assert_eq!(TensorData::concat(&[&TensorData::U8(vec![1]), &TensorData::I8(vec![1])]), None, "signedness");
        let halves = TensorData::F16(vec![half::f16::ONE, half::f16::ZERO, half::f16::NAN]);
        assert_eq!(halves.slice(0..2), TensorData::F16(vec![half::f16::ONE, half::f16::ZERO]));
        assert_eq!((halves.len(), halves.datatype()), (3, "FP16"));
        let bools = TensorData::Bool(vec![true, false, true]);
        assert_eq!(bools.slice(1..3), TensorData::Bool(vec![false, true]));
        assert_eq!(bools.datatype(), "BOOL");
    }
}
