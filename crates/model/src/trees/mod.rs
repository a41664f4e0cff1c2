//! Tree models: gradient-boosted trees, random forests and single decision trees, all
//! grown by one histogram grower over binned features, served from raw values (a
//! missing value, NaN, goes the way its node learned).

pub(crate) mod artifact;
mod binning;
mod boost;
mod forest;
mod grow;
mod histogram;
mod split;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use ndarray::{Array1, Axis, Slice};

pub use tree::{CategorySet, Combine, MAX_TREE_CATEGORIES, NO_SET, Names, Node, Tree, TreeEnsemble};

use crate::metrics;
use crate::model::InputKind;
use crate::network::Head;
use crate::train::Progress;
use crate::{Dataset, FORMAT_VERSION, Manifest, Model, ModelKind, Result, StandardScaler, TrainParams};

/// What a tree kind learns from: raw rows, their bins, the target, how many outputs
/// each row gets, and the held-out and training rows.
pub(crate) struct Problem<'a> {
    pub x: ndarray::ArrayView2<'a, f32>,
    pub binned: &'a binning::Binned,
    pub target: &'a crate::data::Target,
    pub outputs: usize,
    pub validation: Range<usize>,
    pub train: Range<usize>,
}

/// The head of a tree kind: boosted classifiers answer margins (sigmoid or softmax
/// makes them probabilities), forests and trees class shares.
fn head_for(kind: ModelKind, classes: usize) -> Head {
    match (kind.is_classifier(), kind.is_boosted()) {
        (false, _) => Head::Identity,
        (true, true) if classes == 2 => Head::Sigmoid,
        (true, true) => Head::Softmax,
        (true, false) => Head::Probabilities,
    }
}

/// Trains a tree kind on rows already shuffled (held-out rows `validation` first, then
/// `train`); raw feature values, NaN for missing. The last `categories.len()` features
/// are category codes, `categories[c]` categories each.
pub(crate) fn train(
    kind: ModelKind,
    data: Dataset,
    labels: Vec<String>,
    (validation, train): (Range<usize>, Range<usize>),
    categories: &[usize],
    params: &TrainParams,
    on_progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Model> {
    let x = data.features.view();
    let numeric = x.ncols() - categories.len();
    let categorical: Vec<Option<usize>> =
        (0..numeric).map(|_| None).chain(categories.iter().map(|&count| Some(count))).collect();
    let binned = binning::Binned::new(x, train.clone(), params.max_bins, &categorical);
    let head = head_for(kind, labels.len());
    let outputs = match head {
        Head::Identity | Head::Sigmoid => 1,
        Head::Softmax | Head::Probabilities | Head::Margin => labels.len(),
    };
    let grow_params = grow::GrowParams {
        max_depth: params.max_depth,
        max_leaves: params.max_leaves,
        min_rows_per_leaf: params.min_rows_per_leaf,
        l2: if kind.is_boosted() { params.l2 } else { 0.0 },
        feature_fraction: params.feature_fraction.unwrap_or(match kind {
            // scikit-learn's defaults: √features per split for forest classifiers.
            ModelKind::RandomForestClassifier => (x.ncols() as f64).sqrt() / x.ncols().max(1) as f64,
            _ => 1.0,
        }),
    };
    let problem = Problem {
        x,
        binned: &binned,
        target: &data.target,
        outputs,
        validation: validation.clone(),
        train: train.clone(),
    };
    let (ensemble, gains, evaluation_margins) = if kind.is_boosted() {
        let boosted = boost::boost(&problem, head, params, &grow_params, on_progress)?;
        (boosted.ensemble, boosted.gains, boosted.evaluation_margins)
    } else {
        let bootstrap = matches!(kind, ModelKind::RandomForestClassifier | ModelKind::RandomForestRegressor);
        let grown = forest::forest(&problem, params, &grow_params, bootstrap, on_progress)?;
        (grown.ensemble, grown.gains, Some(grown.evaluation_margins))
    };
    drop(binned);
    let total_gain: f64 = gains.iter().sum();
    let feature_importances: BTreeMap<String, f64> = data
        .feature_names
        .iter()
        .zip(&gains)
        .map(|(name, gain)| (name.clone(), if total_gain > 0.0 { gain / total_gain } else { 0.0 }))
        .collect();
    let trees = Arc::new(ensemble);
    let eval_rows = if validation.is_empty() { train } else { validation };
    let mut evaluation = metrics::Evaluation::new(head, &data.target);
    let mut out =
        evaluation_margins.unwrap_or_else(|| trees.predict(x.slice_axis(Axis(0), Slice::from(eval_rows.clone()))));
    head.apply(&mut out);
    evaluation.add(&out, &data.target, eval_rows);
    let (metrics, confusion_matrix) = evaluation.finish();
    let features = x.ncols();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        kind,
        feature_names: data.feature_names.clone(),
        target: data.target_name.clone(),
        signature: Model::signature_for(head, InputKind::Features(features), labels.len().max(2)),
        labels,
        pipeline: Vec::new(),
        activations: Vec::new(),
        head,
        metrics,
        confusion_matrix,
        params: params.to_map_for(kind),
        trees: Some(trees.combine),
        feature_importances,
        impute: Vec::new(),
    };
    // Trees read raw values: the scaler is the identity.
    let scaler = StandardScaler { mean: Array1::zeros(features), scale: Array1::ones(features) };
    Ok(Model { manifest, vectorizer: None, scaler, pca: None, layers: Vec::new(), trees: Some(trees) })
}
