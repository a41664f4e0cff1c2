//! ndarray models for modelplane: training, inference and the one-file artifact.
//!
//! Every dense kind is a preprocessing pipeline (missing values imputed, standard scaler
//! and optional PCA, or a hashing text vectorizer with optional tf-idf), dense layers
//! and an output head: linear and ridge regression, logistic (binary) and softmax
//! (multiclass) regression, and MLPs. The tree kinds — gradient-boosted trees, random
//! forests, decision trees — take raw values, missing ones included. A
//! [`Model`] is trained from a [`Dataset`] with [`train`], saved with
//! [`Model::to_artifact`] (safetensors weights, manifest in its metadata) and loaded back
//! with [`Model::from_artifact`]. [`Model::predict`] is the one inference path, shared by
//! the worker: a batch in, a batch out.
#![forbid(unsafe_code)]

mod artifact;
mod data;
mod error;
mod metrics;
mod model;
mod network;
mod one_hot;
mod packed;
mod params;
mod pca;
mod text;
mod train;
mod trees;

pub use artifact::{FORMAT_VERSION, MANIFEST_METADATA_KEY};
pub use data::{CategoricalColumn, CsvOptions, Dataset, MISSING_CODE, MISSING_MARKERS, Target};
pub use error::{Error, Result};
pub use model::{
    CATEGORIES_INPUT_NAME, INPUT_NAME, InputKind, Manifest, Model, ModelKind, StandardScaler, Step, TEXT_INPUT_NAME,
};
pub use one_hot::{CategoryColumn, UNSEEN_CODE};
// The protocol's tensor types, re-exported: models take and answer them.
pub use modelplane_kserve::{Datatype, Output, Signature, TensorData, TensorSpec};
pub use network::{Activation, Dense, Head};
pub use packed::PackedWeights;
pub use params::{Optimizer, Schedule, TrainParams};
pub use pca::Components;
pub use text::HashingVectorizer;
pub use train::{Progress, train};
pub use trees::{CategorySet, Combine, MAX_TREE_CATEGORIES, NO_SET, Names, Node, Tree, TreeEnsemble};
