//! The trained model and its one inference path.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::network::{self, Dense, Head};
use crate::text::HashingVectorizer;
use crate::{Error, Result};
use modelplane_kserve::{Datatype, Output, Signature, TensorData, TensorSpec};

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
    /// Histogram gradient-boosted trees, classifier; outputs `probabilities` and `label`.
    GbdtClassifier,
    /// Histogram gradient-boosted trees, regressor; output `predictions`.
    GbdtRegressor,
    /// Random forest classifier (bagged CART trees); outputs `probabilities` and `label`.
    RandomForestClassifier,
    /// Random forest regressor; output `predictions`.
    RandomForestRegressor,
    /// One readable CART tree, classifier; outputs `probabilities` and `label`.
    DecisionTreeClassifier,
    /// One readable CART tree, regressor; output `predictions`.
    DecisionTreeRegressor,
    /// Linear support vector machine (hinge loss, one-vs-rest, as scikit-learn's
    /// `LinearSVC(loss="hinge")`); outputs `scores` (margins) and `label`.
    LinearSvm,
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
            "gbdt" | "gbdt_classifier" => Ok(Self::GbdtClassifier),
            "gbdt_regressor" => Ok(Self::GbdtRegressor),
            "random_forest" | "random_forest_classifier" => Ok(Self::RandomForestClassifier),
            "random_forest_regressor" => Ok(Self::RandomForestRegressor),
            "decision_tree" | "decision_tree_classifier" => Ok(Self::DecisionTreeClassifier),
            "decision_tree_regressor" => Ok(Self::DecisionTreeRegressor),
            "linear_svm" | "svm" => Ok(Self::LinearSvm),
            other => Err(Error::InvalidParam {
                name: "kind".into(),
                reason: format!("{other:?} is not a model kind; expected {}", Self::NAMES),
            }),
        }
    }

    /// Every kind's short name, for messages.
    pub const NAMES: &'static str = "linear, logistic, softmax, mlp, mlp_regressor, gbdt, gbdt_regressor, \
                                     random_forest, random_forest_regressor, decision_tree, decision_tree_regressor, \
                                     linear_svm";

    /// The short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::LinearRegression => "linear",
            Self::LogisticRegression => "logistic",
            Self::SoftmaxRegression => "softmax",
            Self::MlpClassifier => "mlp",
            Self::MlpRegressor => "mlp_regressor",
            Self::GbdtClassifier => "gbdt",
            Self::GbdtRegressor => "gbdt_regressor",
            Self::RandomForestClassifier => "random_forest",
            Self::RandomForestRegressor => "random_forest_regressor",
            Self::DecisionTreeClassifier => "decision_tree",
            Self::DecisionTreeRegressor => "decision_tree_regressor",
            Self::LinearSvm => "linear_svm",
        }
    }

    /// Whether the target is a class label.
    pub fn is_classifier(self) -> bool {
        matches!(
            self,
            Self::LogisticRegression
                | Self::SoftmaxRegression
                | Self::MlpClassifier
                | Self::GbdtClassifier
                | Self::RandomForestClassifier
                | Self::DecisionTreeClassifier
                | Self::LinearSvm
        )
    }

    /// Whether the model is trees rather than dense layers.
    pub fn is_tree(self) -> bool {
        matches!(
            self,
            Self::GbdtClassifier
                | Self::GbdtRegressor
                | Self::RandomForestClassifier
                | Self::RandomForestRegressor
                | Self::DecisionTreeClassifier
                | Self::DecisionTreeRegressor
        )
    }

    /// Whether the trees are boosted (rather than a forest or one tree).
    pub fn is_boosted(self) -> bool {
        matches!(self, Self::GbdtClassifier | Self::GbdtRegressor)
    }

    /// Whether the model has hidden layers.
    pub fn is_mlp(self) -> bool {
        matches!(self, Self::MlpClassifier | Self::MlpRegressor)
    }
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
    /// Categorical columns → one-hot columns after the numeric features (see
    /// [`crate::one_hot`]); the columns are the model's `categories` input.
    OneHot {
        /// The categorical input columns, in `categories` order.
        columns: Vec<crate::one_hot::CategoryColumn>,
    },
    /// Categorical columns kept as codes after the numeric features, for a tree kind
    /// that splits on sets of categories; the columns are the model's `categories`
    /// input.
    Categories {
        /// The categorical input columns, in `categories` order.
        columns: Vec<crate::one_hot::CategoryColumn>,
    },
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
    /// How a tree model's trees combine (tree kinds only; the trees are tensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<crate::trees::Combine>,
    /// Each feature's share of the total split gain (tree kinds), by feature name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_importances: BTreeMap<String, f64>,
    /// Per feature, the value a missing (NaN) input takes: the training mean (dense
    /// kinds; trees route missing values themselves). Empty when no column had a gap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impute: Vec<f32>,
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
    /// Dense layers; the last one feeds the head (none for tree kinds).
    pub layers: Vec<Dense>,
    /// The trees of a tree kind.
    pub trees: Option<std::sync::Arc<crate::trees::TreeEnsemble>>,
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
        // A node is 17 bytes and its values 4 bytes each.
        let trees = self.trees.as_ref().map_or(0, |trees| {
            trees.trees.iter().map(|tree| (tree.nodes.len() * (17 + 4 * tree.outputs)) as u64).sum::<u64>()
        });
        layers + idf + pca + trees + f32s(self.scaler.mean.len() + self.scaler.scale.len())
    }

    /// The classes an output's columns stand for, by index: a classifier's labels for its
    /// probabilities, nothing for any other output.
    pub fn labels_of(&self, output: &str) -> &[String] {
        match self.manifest.head {
            Head::Sigmoid | Head::Softmax | Head::Probabilities if output == PROBABILITIES_OUTPUT => {
                &self.manifest.labels
            }
            // Two classes have one margin, the positive class's: no label per column.
            Head::Margin if output == SCORES_OUTPUT && self.manifest.labels.len() > 2 => &self.manifest.labels,
            _ => &[],
        }
    }
}

/// Name of the numeric input tensor.
pub const INPUT_NAME: &str = "input";
/// Name of a classifier's output with one probability per class.
pub const PROBABILITIES_OUTPUT: &str = "probabilities";
/// Name of a linear SVM's margins output.
pub const SCORES_OUTPUT: &str = "scores";
/// Name of the text input tensor.
pub const TEXT_INPUT_NAME: &str = "text";
/// Name of the categorical input tensor: BYTES `[rows, categorical columns]`.
pub const CATEGORIES_INPUT_NAME: &str = "categories";

/// What a model takes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// FP32 `[rows, features]`.
    Features(usize),
    /// BYTES `[rows]`, one UTF-8 text per row.
    Text,
    /// FP32 `[rows, numeric]` (omitted when there is no numeric column) and BYTES
    /// `[rows, categorical]`, one element per categorical column.
    Table {
        /// Numeric feature columns.
        numeric: usize,
        /// Categorical feature columns.
        categorical: usize,
    },
}

fn fp32(name: &str, shape: Vec<i64>) -> TensorSpec {
    TensorSpec { name: name.into(), datatype: Datatype::Fp32, shape }
}

impl Model {
    /// The input and output signature for an input kind, head and class count.
    pub fn signature_for(head: Head, input: InputKind, classes: usize) -> Signature {
        let outputs = match head {
            Head::Identity => vec![fp32("predictions", vec![-1, 1])],
            Head::Sigmoid | Head::Softmax | Head::Probabilities => vec![
                fp32(PROBABILITIES_OUTPUT, vec![-1, classes as i64]),
                TensorSpec { name: "label".into(), datatype: Datatype::Bytes, shape: vec![-1] },
            ],
            Head::Margin => vec![
                fp32(SCORES_OUTPUT, vec![-1, if classes == 2 { 1 } else { classes as i64 }]),
                TensorSpec { name: "label".into(), datatype: Datatype::Bytes, shape: vec![-1] },
            ],
        };
        Signature { inputs: Self::input_specs(input), outputs }
    }

    /// The input tensors of an input kind.
    pub fn input_specs(input: InputKind) -> Vec<TensorSpec> {
        match input {
            InputKind::Features(features) => vec![fp32(INPUT_NAME, vec![-1, features as i64])],
            InputKind::Text => {
                vec![TensorSpec { name: TEXT_INPUT_NAME.into(), datatype: Datatype::Bytes, shape: vec![-1] }]
            }
            InputKind::Table { numeric, categorical } => {
                let categories = TensorSpec {
                    name: CATEGORIES_INPUT_NAME.into(),
                    datatype: Datatype::Bytes,
                    shape: vec![-1, categorical as i64],
                };
                if numeric == 0 {
                    vec![categories]
                } else {
                    vec![fp32(INPUT_NAME, vec![-1, numeric as i64]), categories]
                }
            }
        }
    }

    /// Multiply-adds one row costs through PCA and the dense layers: what a server weighs
    /// to decide whether handing the work to another thread costs more than the work.
    pub fn multiply_adds_per_row(&self) -> usize {
        // A tree costs about one comparison per level; count a node visited as one.
        let trees = self.trees.as_ref().map_or(0, |trees| trees.trees.len() * 8);
        self.pca.as_ref().map_or(0, |pca| pca.len())
            + self.layers.iter().map(|layer| layer.weight.len()).sum::<usize>()
            + trees
    }

    /// The categorical columns the model takes (none for most).
    pub fn categorical_columns(&self) -> &[crate::one_hot::CategoryColumn] {
        self.manifest
            .pipeline
            .iter()
            .find_map(|step| match step {
                Step::OneHot { columns } | Step::Categories { columns } => Some(columns.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// A tree model's trees as text (`models versions --show-tree`), categorical
    /// branches with their categories' names; `None` for the other kinds.
    pub fn describe_trees(&self) -> Option<String> {
        let trees = self.trees.as_ref()?;
        let (numeric, columns) = (self.numeric_features(), self.categorical_columns());
        let codes = !self.expands_categories();
        let categories = (0..self.manifest.feature_names.len())
            .map(|f| match f.checked_sub(numeric) {
                Some(c) if codes => columns.get(c).map(|column| column.categories.as_slice()),
                _ => None,
            })
            .collect();
        let manifest = &self.manifest;
        Some(trees.describe(&crate::Names { features: &manifest.feature_names, categories, labels: &manifest.labels }))
    }

    /// Whether the categorical columns are one-hot encoded before the model (else the
    /// trees read their codes).
    fn expands_categories(&self) -> bool {
        self.manifest.pipeline.iter().any(|step| matches!(step, Step::OneHot { .. }))
    }

    /// Number of numeric input features (0 for text models).
    pub fn numeric_features(&self) -> usize {
        if self.vectorizer.is_some() {
            return 0;
        }
        let columns = self.categorical_columns();
        let encoded = if self.expands_categories() {
            columns.iter().map(|column| column.categories.len()).sum()
        } else {
            columns.len()
        };
        self.scaler.mean.len().saturating_sub(encoded)
    }

    /// Width of the rows [`Model::predict`] takes: the numeric features, then one code
    /// per categorical column (see [`Model::encode_table`]); 0 for text models.
    pub fn features(&self) -> usize {
        self.numeric_features() + self.categorical_columns().len()
    }

    /// The rows [`Model::predict`] takes from a table as clients send it: numeric
    /// features `[rows, numeric]` and `categories` row-major, one element per
    /// categorical column per row (empty or `NA` when missing).
    pub fn encode_table(&self, numeric: ArrayView2<'_, f32>, categories: &[&[u8]]) -> Result<Array2<f32>> {
        let columns = self.categorical_columns();
        let (rows, width) = (numeric.nrows(), self.numeric_features());
        if numeric.ncols() != width {
            return Err(Error::InvalidInput(format!(
                "input has {} features per row; the model expects {width}",
                numeric.ncols()
            )));
        }
        if categories.len() != rows * columns.len() {
            return Err(Error::InvalidInput(format!(
                "categories has {} elements; expected {} ({rows} rows × {} columns: {})",
                categories.len(),
                rows * columns.len(),
                columns.len(),
                columns.iter().map(|column| column.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut out = Array2::<f32>::zeros((rows, width + columns.len()));
        out.slice_axis_mut(Axis(1), ndarray::Slice::from(..width)).assign(&numeric);
        if !columns.is_empty() {
            for (row, elements) in categories.chunks(columns.len()).enumerate() {
                for (c, (column, element)) in columns.iter().zip(elements).enumerate() {
                    out[[row, width + c]] = column.code(element);
                }
            }
        }
        Ok(out)
    }

    /// Imputation, scaler then PCA: the matrix the dense layers take.
    pub fn transform(&self, input: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut scaled =
            (&input - &self.scaler.mean.view().insert_axis(Axis(0))) / self.scaler.scale.view().insert_axis(Axis(0));
        if !self.manifest.impute.is_empty() {
            // A missing value is its column's training mean: 0 once standardised.
            scaled.mapv_inplace(|v| if v.is_nan() { 0.0 } else { v });
        }
        match &self.pca {
            Some(components) => scaled.dot(components),
            None => scaled,
        }
    }

    /// Features through the pipeline, layers (or trees) and head: `[rows, outputs]`.
    pub fn forward(&self, input: ArrayView2<'_, f32>) -> Array2<f32> {
        if let Some(trees) = &self.trees {
            // Trees take raw values, NaN for missing.
            let mut out = trees.predict(input);
            self.manifest.head.apply(&mut out);
            return out;
        }
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
        let columns = self.categorical_columns();
        let out = if columns.is_empty() || !self.expands_categories() {
            self.forward(input)
        } else {
            self.forward(crate::one_hot::expand(input, self.numeric_features(), columns).view())
        };
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
            Head::Margin => {
                let width = out.ncols();
                let labels = out
                    .axis_iter(Axis(0))
                    .map(|row| {
                        self.label(if width == 1 { usize::from(row[0] > 0.0) } else { argmax(row.iter().copied()) })
                    })
                    .collect();
                vec![
                    Output {
                        name: SCORES_OUTPUT.into(),
                        shape: vec![rows, width],
                        data: TensorData::F32(out.into_iter().collect()),
                    },
                    Output { name: "label".into(), shape: vec![rows], data: TensorData::Bytes(labels) },
                ]
            }
            Head::Softmax | Head::Probabilities => {
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
