//! One training loop for every kind: mini-batch backpropagation through dense layers
//! with SGD (momentum) or Adam, L2, a learning-rate schedule and early stopping.

use ndarray::{Array1, Array2, ArrayView2, Axis, Slice, Zip};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::data::Target;
use crate::metrics;
use crate::model::{InputKind, Step};
use crate::network::{Activation, Dense, Head};
use crate::params::Optimizer;
use crate::text::HashingVectorizer;
use crate::{Dataset, Error, FORMAT_VERSION, Manifest, Model, ModelKind, Result, StandardScaler, TrainParams};

/// Progress after one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Epochs done, from 1.
    pub epoch: u32,
    /// Epochs planned.
    pub epochs: u32,
    /// Mean training loss of the epoch.
    pub loss: f64,
    /// Loss on the held-out rows, when there are any.
    pub validation_loss: Option<f64>,
    /// Training rows processed per second during the epoch.
    pub rows_per_second: f64,
}

/// Per-parameter optimizer state.
struct Moments {
    first: Array2<f32>,
    second: Array2<f32>,
    first_bias: Array1<f32>,
    second_bias: Array1<f32>,
}

const ADAM_BETA1: f32 = 0.9;
const ADAM_BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;
/// Early stopping counts an epoch as better only by more than this.
pub(crate) const TOLERANCE: f64 = 1e-4;

fn head_for(kind: ModelKind) -> Head {
    match kind {
        ModelKind::LogisticRegression => Head::Sigmoid,
        ModelKind::SoftmaxRegression | ModelKind::MlpClassifier => Head::Softmax,
        ModelKind::LinearSvm => Head::Margin,
        // Tree kinds have their own heads (`trees::head_for`); never trained here.
        _ => Head::Identity,
    }
}

/// The target as a matrix the loss compares against, for the given rows (one batch at a
/// time, so no target matrix of the whole table is made): values `[n, 1]`, 0/1 `[n, 1]`
/// for a sigmoid head, one-hot `[n, classes]` for softmax.
fn target_matrix(target: &Target, rows: &[usize], head: Head) -> Array2<f32> {
    match target {
        Target::Values(values) => Array2::from_shape_fn((rows.len(), 1), |(i, _)| values[rows[i]]),
        Target::Classes { index, labels } => match head {
            Head::Softmax => {
                Array2::from_shape_fn((rows.len(), labels.len()), |(i, c)| f32::from(u8::from(index[rows[i]] == c)))
            }
            // One-vs-rest signs: +1 for the row's class, -1 for the others (two classes:
            // one column, the positive class's).
            Head::Margin => {
                let width = if labels.len() == 2 { 1 } else { labels.len() };
                let class_of_column = |c: usize| if width == 1 { 1 } else { c };
                Array2::from_shape_fn((rows.len(), width), |(i, c)| {
                    if index[rows[i]] == class_of_column(c) { 1.0 } else { -1.0 }
                })
            }
            _ => Array2::from_shape_fn((rows.len(), 1), |(i, _)| index[rows[i]] as f32),
        },
    }
}

/// Mean loss of head outputs against targets (without the L2 term).
fn mean_loss(head: Head, out: &Array2<f32>, y: &Array2<f32>) -> f64 {
    loss_sum(head, out, y, 0.0) / out.nrows().max(1) as f64
}

/// `total` plus the summed loss of head outputs against targets.
fn loss_sum(head: Head, out: &Array2<f32>, y: &Array2<f32>, total: f64) -> f64 {
    const EPS: f32 = 1e-7;
    match head {
        Head::Identity => Zip::from(out).and(y).fold(total, |acc, o, t| acc + 0.5 * f64::from((o - t) * (o - t))),
        Head::Sigmoid => Zip::from(out).and(y).fold(total, |acc, p, t| {
            let p = p.clamp(EPS, 1.0 - EPS);
            acc - f64::from(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
        }),
        Head::Softmax | Head::Probabilities => {
            Zip::from(out).and(y).fold(total, |acc, p, t| if *t > 0.0 { acc - f64::from(p.max(EPS).ln()) } else { acc })
        }
        Head::Margin => Zip::from(out).and(y).fold(total, |acc, f, t| acc + f64::from((1.0 - t * f).max(0.0))),
    }
}

/// Rows evaluated at once outside the training batches (validation loss, metrics), so
/// the activations of a large held-out set are never all held.
const EVAL_ROWS: usize = 8192;

/// Mean loss over the rows `rows` of `x` (rows of the dataset from `first`), in chunks.
fn chunked_loss(layers: &[Dense], head: Head, x: ArrayView2<'_, f32>, target: &Target, first: usize) -> f64 {
    let mut total = 0.0;
    for (chunk, part) in x.axis_chunks_iter(Axis(0), EVAL_ROWS).enumerate() {
        let start = first + chunk * EVAL_ROWS;
        let rows: Vec<usize> = (start..start + part.nrows()).collect();
        let out = crate::network::forward(layers, head, part);
        total = loss_sum(head, &out, &target_matrix(target, &rows, head), total);
    }
    total / x.nrows().max(1) as f64
}

fn init_layers(kind: ModelKind, params: &TrainParams, sizes: &[usize], rng: &mut StdRng) -> Vec<Dense> {
    let last = sizes.len() - 2;
    (0..sizes.len() - 1)
        .map(|l| {
            let (fan_in, fan_out) = (sizes[l], sizes[l + 1]);
            let weight = if kind.is_mlp() {
                // Glorot uniform, as scikit-learn does.
                let bound = (6.0 / (fan_in + fan_out) as f32).sqrt();
                Array2::from_shape_fn((fan_in, fan_out), |_| rng.random_range(-bound..bound))
            } else {
                // The linear kinds are convex: zeros make them deterministic and seed-free.
                Array2::zeros((fan_in, fan_out))
            };
            let activation = if l == last { Activation::Identity } else { params.activation };
            Dense::new(weight, Array1::zeros(fan_out), activation)
        })
        .collect()
}

/// Fits the preprocessing on the training rows (`train`, a range after the rows were
/// shuffled in place) and applies it to every row: the vectorizer for text models, else
/// the scaler (in place) and optional PCA. The dataset's table becomes the model input.
fn preprocess(
    data: &mut Dataset,
    train: std::ops::Range<usize>,
    params: &TrainParams,
) -> (Option<HashingVectorizer>, StandardScaler, Option<Array2<f32>>, Array2<f32>) {
    if let Some((_, texts)) = &mut data.text {
        let mut vectorizer =
            HashingVectorizer { n_features: params.n_features, ngram_max: params.ngram_max, idf: None };
        let all: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        if params.tfidf {
            vectorizer.fit_idf(&all[train]);
        }
        let x = vectorizer.transform(&all);
        drop(all);
        // The texts are vectorized; only the column name is needed from here on.
        *texts = Vec::new();
        let identity = StandardScaler { mean: Array1::zeros(0), scale: Array1::ones(0) };
        return (Some(vectorizer), identity, None, x);
    }
    let scaler = fit_scaler(data.features.slice_axis(Axis(0), Slice::from(train.clone())));
    let mut x = std::mem::replace(&mut data.features, Array2::zeros((0, 0)));
    let mean = scaler.mean.view().insert_axis(Axis(0));
    let scale = scaler.scale.view().insert_axis(Axis(0));
    // A missing value becomes its column's training mean: 0 once standardised (as the
    // served model does, `Model::transform`).
    Zip::from(&mut x).and_broadcast(&mean).and_broadcast(&scale).for_each(|v, m, s| {
        *v = if v.is_nan() { 0.0 } else { (*v - m) / s };
    });
    let pca = params.pca.map(|keep| crate::pca::fit(x.slice_axis(Axis(0), Slice::from(train)), keep));
    if let Some(components) = &pca {
        x = x.dot(components);
    }
    (None, scaler, pca, x)
}

/// Mean and standard deviation of each column over its present (non-NaN) values.
fn fit_scaler(x: ArrayView2<'_, f32>) -> StandardScaler {
    let mut mean = Array1::zeros(x.ncols());
    let mut scale = Array1::ones(x.ncols());
    for (f, column) in x.columns().into_iter().enumerate() {
        let (mut count, mut m, mut m2) = (0f64, 0f64, 0f64);
        for value in column.iter().filter(|v| !v.is_nan()) {
            count += 1.0;
            let delta = f64::from(*value) - m;
            m += delta / count;
            m2 += delta * (f64::from(*value) - m);
        }
        let std = if count > 0.0 { (m2 / count).sqrt() } else { 0.0 };
        mean[f] = m as f32;
        scale[f] = if std > 1e-6 { std as f32 } else { 1.0 };
    }
    StandardScaler { mean, scale }
}

/// Checks the target fits the kind; returns the class labels (empty for regression).
fn check_target(kind: ModelKind, data: &Dataset) -> Result<Vec<String>> {
    match (&data.target, kind.is_classifier()) {
        (Target::Classes { labels, .. }, true) => {
            if labels.len() < 2 {
                return Err(Error::Dataset(format!(
                    "column {:?} has one class only; a classifier needs two or more",
                    data.target_name
                )));
            }
            if kind == ModelKind::LogisticRegression && labels.len() != 2 {
                return Err(Error::Dataset(format!(
                    "logistic regression is binary but column {:?} has {} classes; use softmax or mlp",
                    data.target_name,
                    labels.len()
                )));
            }
            Ok(labels.clone())
        }
        (Target::Values(_), false) => Ok(Vec::new()),
        (Target::Values(_), true) => {
            Err(Error::Dataset(format!("{} needs class labels in {:?}", kind.name(), data.target_name)))
        }
        (Target::Classes { .. }, false) => {
            Err(Error::Dataset(format!("{} needs numbers in {:?}", kind.name(), data.target_name)))
        }
    }
}

/// Trains a model. `on_epoch` is called after every epoch; returning `false` cancels.
///
/// The dataset is taken by value: its rows are shuffled and standardised in place, so
/// training holds the table once (plus one batch), not the copies a split would make.
pub fn train(
    kind: ModelKind,
    mut data: Dataset,
    params: &TrainParams,
    mut on_epoch: impl FnMut(Progress) -> bool,
) -> Result<Model> {
    let labels = check_target(kind, &data)?;
    let rows = data.rows();
    let Ok(row_count) = u32::try_from(rows) else {
        return Err(Error::Dataset(format!("{rows} rows is more than the {} a dataset may have", u32::MAX)));
    };
    let mut rng = StdRng::seed_from_u64(params.seed);
    // Shuffled once, in place: the held-out rows come first, the training rows after.
    let mut order: Vec<u32> = (0..row_count).collect();
    order.shuffle(&mut rng);
    data.permute_rows(&order);
    drop(order);
    let held_out = ((rows as f64) * params.validation_fraction).floor() as usize;
    let held_out = if held_out >= rows { 0 } else { held_out };
    let (validation_rows, train_rows) = (0..held_out, held_out..rows);
    if kind.is_tree() {
        if params.text_column.is_some() || data.text.is_some() {
            return Err(Error::InvalidParam {
                name: "text_column".into(),
                reason: format!("{} takes numeric features; text models are linear, softmax or mlp", kind.name()),
            });
        }
        // Trees split on the categories' codes (sets of categories), counted on the
        // training rows only, as any other fitted step.
        let columns = crate::one_hot::encode_codes(&mut data, train_rows.clone(), params.max_categories);
        let categories: Vec<usize> = columns.iter().map(|column| column.categories.len()).collect();
        let splits = (validation_rows, train_rows);
        let mut model = crate::trees::train(kind, data, labels, splits, &categories, params, &mut on_epoch)?;
        crate::one_hot::attach_codes(&mut model, columns);
        return Ok(model);
    }
    let one_hot = if data.categorical.is_empty() {
        Vec::new()
    } else {
        crate::one_hot::encode_dataset(&mut data, train_rows.clone(), params.max_categories)
    };
    let feature_count = data.features.ncols();

    // A model with categorical columns imputes even when training saw no gap: a missing
    // category at serving time is NaN in its one-hot columns.
    let has_missing = !one_hot.is_empty() || data.features.iter().any(|v| v.is_nan());
    let (vectorizer, scaler, pca, x_all) = preprocess(&mut data, train_rows.clone(), params);
    let x_train = x_all.slice_axis(Axis(0), Slice::from(train_rows.clone()));
    let x_valid = x_all.slice_axis(Axis(0), Slice::from(validation_rows.clone()));
    let head = head_for(kind);

    let outputs = match head {
        Head::Softmax => labels.len(),
        Head::Margin if labels.len() > 2 => labels.len(),
        _ => 1,
    };
    let mut sizes = vec![x_all.ncols()];
    if kind.is_mlp() {
        sizes.extend(&params.hidden);
    }
    sizes.push(outputs);
    let mut layers = init_layers(kind, params, &sizes, &mut rng);
    if head == Head::Identity
        && let (Some(last), Target::Values(values)) = (layers.last_mut(), &data.target)
        && let Some(mean) = values.slice_axis(Axis(0), Slice::from(train_rows.clone())).mean()
    {
        last.bias.fill(mean);
    }
    let mut moments: Vec<Moments> = layers
        .iter()
        .map(|l| Moments {
            first: Array2::zeros(l.weight.raw_dim()),
            second: Array2::zeros(l.weight.raw_dim()),
            first_bias: Array1::zeros(l.bias.raw_dim()),
            second_bias: Array1::zeros(l.bias.raw_dim()),
        })
        .collect();

    let mut step = 0i32;
    let mut best: Option<(f64, Vec<Dense>)> = None;
    let mut stale = 0;
    // Training rows as offsets from the first one, u32 so the order costs 4 bytes a row.
    let mut batch_order: Vec<u32> = (0..x_train.nrows() as u32).collect();
    let mut batch_rows = Vec::with_capacity(params.batch_size);
    for epoch in 1..=params.epochs {
        let started = std::time::Instant::now();
        let rate = params.rate_at(epoch);
        batch_order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for batch in batch_order.chunks(params.batch_size) {
            step += 1;
            batch_rows.clear();
            batch_rows.extend(batch.iter().map(|offset| *offset as usize));
            let x = gather_rows(x_train, &batch_rows);
            batch_rows.iter_mut().for_each(|row| *row += held_out);
            let y = target_matrix(&data.target, &batch_rows, head);
            loss_sum += backprop_step(&mut layers, &mut moments, head, x, &y, params, rate, step) * batch.len() as f64;
        }
        let loss = loss_sum / x_train.nrows().max(1) as f64;
        if !loss.is_finite() {
            return Err(Error::InvalidParam {
                name: "learning_rate".into(),
                reason: format!("training diverged at epoch {epoch} (loss {loss}); try a smaller learning rate"),
            });
        }
        let validation_loss =
            (x_valid.nrows() > 0).then(|| chunked_loss(&layers, head, x_valid, &data.target, validation_rows.start));
        let rows_per_second = x_train.nrows() as f64 / started.elapsed().as_secs_f64().max(1e-9);
        if !on_epoch(Progress { epoch, epochs: params.epochs, loss, validation_loss, rows_per_second }) {
            return Err(Error::Cancelled);
        }
        if params.early_stopping
            && let Some(current) = validation_loss
        {
            match &best {
                Some((best_loss, _)) if current > best_loss - TOLERANCE => {
                    stale += 1;
                    if stale >= params.patience {
                        break;
                    }
                }
                _ => {
                    best = Some((current, layers.clone()));
                    stale = 0;
                }
            }
        }
    }
    if let Some((_, best_layers)) = best {
        layers = best_layers;
    }

    let input = if data.text.is_some() { InputKind::Text } else { InputKind::Features(feature_count) };
    let mut pipeline = Vec::new();
    match &data.text {
        Some((column, _)) => pipeline.push(Step::HashingVectorizer {
            column: column.clone(),
            n_features: params.n_features,
            ngram_max: params.ngram_max,
            tfidf: params.tfidf,
        }),
        None => pipeline.push(Step::StandardScaler),
    }
    if let Some(components) = &pca {
        pipeline.push(Step::Pca { components: components.ncols() });
    }
    // The weights are final: from here on the layers compute as a worker serving them will.
    let layers: Vec<Dense> = layers.into_iter().map(Dense::packed_for_inference).collect();
    // Metrics on the held-out rows, or on the training rows when nothing is held out.
    let eval_rows = if validation_rows.is_empty() { train_rows } else { validation_rows };
    let mut evaluation = metrics::Evaluation::new(head, &data.target);
    for (chunk, part) in
        x_all.slice_axis(Axis(0), Slice::from(eval_rows.clone())).axis_chunks_iter(Axis(0), EVAL_ROWS).enumerate()
    {
        let start = eval_rows.start + chunk * EVAL_ROWS;
        evaluation.add(&crate::network::forward(&layers, head, part), &data.target, start..start + part.nrows());
    }
    let (metrics, confusion_matrix) = evaluation.finish();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        kind,
        feature_names: data.feature_names.clone(),
        target: data.target_name.clone(),
        signature: Model::signature_for(head, input, labels.len().max(2)),
        labels,
        pipeline,
        activations: layers.iter().map(|l| l.activation).collect(),
        head,
        metrics,
        confusion_matrix,
        params: params.to_map(),
        trees: None,
        feature_importances: Default::default(),
        impute: if has_missing { scaler.mean.to_vec() } else { Vec::new() },
    };
    let mut model = Model { manifest, vectorizer, scaler, pca, layers, trees: None };
    crate::one_hot::attach(&mut model, one_hot);
    Ok(model)
}

/// The given rows of a row-major matrix, copied slice by slice (faster than `select`,
/// which appends row by row with shape checks).
fn gather_rows(x: ArrayView2<'_, f32>, rows: &[usize]) -> Array2<f32> {
    let width = x.ncols();
    let mut values = Vec::with_capacity(rows.len() * width);
    for row in rows {
        match x.row(*row).to_slice() {
            Some(slice) => values.extend_from_slice(slice),
            None => values.extend(x.row(*row).iter().copied()),
        }
    }
    Array2::from_shape_vec((rows.len(), width), values).unwrap_or_else(|_| x.select(Axis(0), rows))
}

/// Forward, loss, backward and one optimizer update on a batch; returns the batch loss.
#[allow(clippy::too_many_arguments)]
fn backprop_step(
    layers: &mut [Dense],
    moments: &mut [Moments],
    head: Head,
    x: Array2<f32>,
    y: &Array2<f32>,
    params: &TrainParams,
    rate: f32,
    step: i32,
) -> f64 {
    let mut activations = Vec::with_capacity(layers.len() + 1);
    activations.push(x);
    for layer in layers.iter() {
        let next = layer.forward(activations[activations.len() - 1].view());
        activations.push(next);
    }
    let mut out = activations.pop().unwrap_or_default();
    head.apply(&mut out);
    let batch_loss = mean_loss(head, &out, y);
    // For every probability head with its matching loss the gradient at the logits is
    // `out - y`; the hinge loss's is `-t` where the margin is under 1, else 0.
    let n = y.nrows().max(1) as f32;
    let mut delta = match head {
        Head::Margin => {
            let mut d = out;
            Zip::from(&mut d).and(y).for_each(|f, t| *f = if *t * *f < 1.0 { -t / n } else { 0.0 });
            d
        }
        _ => (out - y) / n,
    };
    for l in (0..layers.len()).rev() {
        let input = &activations[l];
        let mut grad_w = input.t().dot(&delta);
        if params.l2 > 0.0 {
            grad_w.scaled_add(params.l2, &layers[l].weight);
        }
        let grad_b = delta.sum_axis(Axis(0));
        let next_delta = (l > 0).then(|| {
            let mut d = delta.dot(&layers[l].weight.t());
            layers[l - 1].activation.backprop(&mut d, input);
            d
        });
        update(&mut layers[l], &mut moments[l], &grad_w, &grad_b, params, rate, step);
        if let Some(d) = next_delta {
            delta = d;
        }
    }
    batch_loss
}

fn update(
    layer: &mut Dense,
    m: &mut Moments,
    grad_w: &Array2<f32>,
    grad_b: &Array1<f32>,
    params: &TrainParams,
    rate: f32,
    step: i32,
) {
    match params.optimizer {
        Optimizer::Sgd if params.momentum == 0.0 => {
            layer.weight.scaled_add(-rate, grad_w);
            layer.bias.scaled_add(-rate, grad_b);
        }
        Optimizer::Sgd => {
            let momentum = params.momentum;
            Zip::from(&mut layer.weight).and(&mut m.first).and(grad_w).for_each(|w, v, g| {
                *v = momentum * *v - rate * g;
                *w += *v;
            });
            Zip::from(&mut layer.bias).and(&mut m.first_bias).and(grad_b).for_each(|w, v, g| {
                *v = momentum * *v - rate * g;
                *w += *v;
            });
        }
        Optimizer::Adam => {
            let correction = rate * (1.0 - ADAM_BETA2.powi(step)).sqrt() / (1.0 - ADAM_BETA1.powi(step));
            let adam = |w: &mut f32, m1: &mut f32, m2: &mut f32, g: &f32| {
                *m1 = ADAM_BETA1 * *m1 + (1.0 - ADAM_BETA1) * g;
                *m2 = ADAM_BETA2 * *m2 + (1.0 - ADAM_BETA2) * g * g;
                *w -= correction * *m1 / (m2.sqrt() + ADAM_EPS);
            };
            Zip::from(&mut layer.weight).and(&mut m.first).and(&mut m.second).and(grad_w).for_each(adam);
            Zip::from(&mut layer.bias).and(&mut m.first_bias).and(&mut m.second_bias).and(grad_b).for_each(adam);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn params(kind: ModelKind, pairs: &[(&str, &str)]) -> TrainParams {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        TrainParams::from_map(kind, &map).expect("valid params")
    }

    fn csv(rows: usize, f: impl Fn(f32, f32) -> String) -> String {
        let mut csv = String::from("x1,x2,y\n");
        for i in 0..rows {
            let x1 = ((i * 37) % 101) as f32 / 50.0 - 1.0;
            let x2 = ((i * 53) % 97) as f32 / 48.0 - 1.0;
            csv.push_str(&format!("{x1},{x2},{}\n", f(x1, x2)));
        }
        csv
    }

    fn fit(kind: ModelKind, csv: &str, pairs: &[(&str, &str)]) -> Model {
        let data = Dataset::from_csv(csv, "y", kind.is_classifier()).expect("valid csv");
        train(kind, data, &params(kind, pairs), |_| true).expect("trains")
    }

    #[test]
    fn linear_regression_fits_a_plane() {
        let model = fit(
            ModelKind::LinearRegression,
            &csv(300, |a, b| (3.0 * a - 2.0 * b + 5.0).to_string()),
            &[("epochs", "200")],
        );
        assert!(model.manifest.metrics["r2"] > 0.999, "{:?}", model.manifest.metrics);
    }

    #[test]
    fn logistic_regression_separates_two_classes() {
        let model = fit(
            ModelKind::LogisticRegression,
            &csv(300, |a, b| (if a + 0.5 * b > 0.0 { "yes" } else { "no" }).into()),
            &[],
        );
        assert!(model.manifest.metrics["accuracy"] >= 0.95, "{:?}", model.manifest.metrics);
        assert_eq!(model.manifest.labels, ["no", "yes"]);
        let outputs = model.predict(ndarray::array![[0.9f32, 0.9], [-0.9, -0.9]].view()).expect("predicts");
        assert_eq!(outputs[1].data, crate::TensorData::Bytes(vec![b"yes".to_vec(), b"no".to_vec()]));
    }

    #[test]
    fn softmax_regression_separates_three_classes() {
        let label = |a: f32, b: f32| {
            (if a > 0.3 {
                "east"
            } else if b > 0.0 {
                "north"
            } else {
                "south"
            })
            .to_owned()
        };
        let model = fit(ModelKind::SoftmaxRegression, &csv(600, label), &[("epochs", "200")]);
        assert!(model.manifest.metrics["accuracy"] >= 0.93, "{:?}", model.manifest.metrics);
        assert!(model.manifest.metrics["f1_macro"] >= 0.9, "{:?}", model.manifest.metrics);
        let confusion = &model.manifest.confusion_matrix;
        assert_eq!(confusion.len(), 3);
        assert_eq!(confusion.iter().flatten().sum::<u64>(), 120, "counts the 20 % held out");
    }

    #[test]
    fn mlp_learns_xor_which_no_linear_model_can() {
        let xor = csv(800, |a, b| u8::from((a > 0.0) != (b > 0.0)).to_string());
        let linear = fit(ModelKind::SoftmaxRegression, &xor, &[]);
        assert!(linear.manifest.metrics["accuracy"] < 0.75, "{:?}", linear.manifest.metrics);
        for pairs in [
            vec![("hidden", "32"), ("epochs", "300"), ("learning_rate", "0.01"), ("batch_size", "32")],
            vec![
                ("hidden", "16,16"),
                ("activation", "tanh"),
                ("optimizer", "sgd"),
                ("momentum", "0.9"),
                ("learning_rate", "0.05"),
                ("epochs", "300"),
                ("batch_size", "32"),
                ("lr_schedule", "cosine"),
            ],
        ] {
            let model = fit(ModelKind::MlpClassifier, &xor, &pairs);
            assert!(model.manifest.metrics["accuracy"] >= 0.95, "{pairs:?}: {:?}", model.manifest.metrics);
        }
    }

    #[test]
    fn mlp_regressor_fits_a_curve() {
        let model = fit(
            ModelKind::MlpRegressor,
            &csv(600, |a, b| (a * b * 4.0).to_string()),
            &[("hidden", "32"), ("epochs", "400"), ("learning_rate", "0.01"), ("batch_size", "32")],
        );
        assert!(model.manifest.metrics["r2"] > 0.9, "{:?}", model.manifest.metrics);
        // 2 -> 32 -> 1: weights and biases (64 + 32 + 32 + 1), the packed copies (2 x 32
        // and 32 x 1, each padded to 16 columns: 64 + 512) and the scaler (2 + 2), as f32.
        assert_eq!(model.memory_bytes(), (129 + 576 + 4) * 4);
    }

    #[test]
    fn early_stopping_ends_training_and_keeps_the_best_epoch() {
        let data = Dataset::from_csv(&csv(300, |a, b| (a + b).to_string()), "y", false).expect("valid csv");
        let p = params(
            ModelKind::MlpRegressor,
            &[("early_stopping", "true"), ("patience", "3"), ("epochs", "5000"), ("learning_rate", "0.05")],
        );
        let mut epochs = 0;
        train(ModelKind::MlpRegressor, data, &p, |progress| {
            epochs = progress.epoch;
            assert!(progress.validation_loss.is_some() && progress.rows_per_second > 0.0);
            true
        })
        .expect("trains");
        assert!(epochs < 5000, "early stopping never triggered");
    }

    #[test]
    fn same_seed_same_model() {
        let xor = csv(200, |a, b| u8::from((a > 0.0) != (b > 0.0)).to_string());
        let a = fit(ModelKind::MlpClassifier, &xor, &[("epochs", "5")]);
        let b = fit(ModelKind::MlpClassifier, &xor, &[("epochs", "5")]);
        let c = fit(ModelKind::MlpClassifier, &xor, &[("epochs", "5"), ("seed", "7")]);
        assert_eq!(a.layers, b.layers);
        assert_ne!(a.layers, c.layers);
    }

    #[test]
    fn cancelling_stops_training() {
        let data = Dataset::from_csv(&csv(50, |a, _| a.to_string()), "y", false).expect("valid csv");
        let err =
            train(ModelKind::LinearRegression, data, &TrainParams::defaults_for(ModelKind::LinearRegression), |p| {
                p.epoch < 3
            })
            .expect_err("cancelled");
        assert!(matches!(err, Error::Cancelled));
    }

    #[test]
    fn rejects_bad_parameters_naming_field_and_range() {
        let bad = |kind: ModelKind, name: &str, value: &str| {
            let map: BTreeMap<String, String> = [(name.to_owned(), value.to_owned())].into();
            TrainParams::from_map(kind, &map).expect_err("invalid").to_string()
        };
        assert_eq!(
            bad(ModelKind::LinearRegression, "learning_rate", "0"),
            "invalid parameter learning_rate: 0 is out of range; allowed (0, 10]"
        );
        assert_eq!(
            bad(ModelKind::MlpClassifier, "momentum", "1"),
            "invalid parameter momentum: 1 is out of range; allowed [0, 1)"
        );
        assert!(bad(ModelKind::LinearRegression, "hidden", "8").contains("only MLP kinds"));
        assert!(bad(ModelKind::MlpClassifier, "activation", "gelu").contains("expected relu or tanh"));
        assert!(bad(ModelKind::MlpClassifier, "dropout", "0.1").contains("unknown parameter"));
    }

    /// Short labelled texts: sports, weather or food, by their words.
    pub(crate) fn texts_csv(rows: usize) -> String {
        let topics: [(&str, [&str; 6]); 3] = [
            ("sports", ["match", "goal", "team", "score", "league", "coach"]),
            ("weather", ["rain", "sunny", "storm", "cloud", "forecast", "wind"]),
            ("food", ["pasta", "recipe", "tasty", "dinner", "bake", "spicy"]),
        ];
        let filler = ["the", "today", "really", "was", "quite", "and"];
        let mut csv = String::from("id,text,topic\n");
        for i in 0..rows {
            let (topic, words) = &topics[i % 3];
            let text = format!(
                "{} {} {} {}, {}",
                filler[i % 6],
                words[i % 6],
                filler[(i / 3) % 6],
                words[(i / 2 + 1) % 6],
                words[(i / 5 + 2) % 6]
            );
            csv.push_str(&format!("{i},\"{text}\",{topic}\n"));
        }
        csv
    }

    #[test]
    fn text_classification_through_the_hashing_vectorizer() {
        let data = Dataset::from_csv_with_text(&texts_csv(300), "topic", true, Some("text")).expect("valid csv");
        for pairs in [
            vec![("text_column", "text")],
            vec![("text_column", "text"), ("tfidf", "false"), ("ngram_max", "2"), ("n_features", "512")],
        ] {
            let model = train(
                ModelKind::SoftmaxRegression,
                data.clone(),
                &params(ModelKind::SoftmaxRegression, &pairs),
                |_| true,
            )
            .expect("trains");
            assert!(model.manifest.metrics["accuracy"] >= 0.95, "{pairs:?}: {:?}", model.manifest.metrics);
            assert_eq!(model.manifest.signature.inputs[0].datatype, crate::Datatype::Bytes);
            let outputs = model.predict_texts(&[b"a storm and wind today", b"the coach saw a goal"]).expect("predicts");
            assert_eq!(outputs[1].data, crate::TensorData::Bytes(vec![b"weather".to_vec(), b"sports".to_vec()]));
            assert!(model.predict(ndarray::Array2::zeros((1, 1)).view()).is_err(), "a text model refuses numbers");
        }
    }

    #[test]
    fn pca_keeps_accuracy_with_fewer_inputs() {
        // Ten features, two of which carry the signal.
        let mut csv = String::from("f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,y\n");
        for i in 0..400 {
            let a = ((i * 37) % 101) as f32 / 50.0 - 1.0;
            let b = ((i * 53) % 97) as f32 / 48.0 - 1.0;
            let row: Vec<String> = (0..10)
                .map(|j| format!("{}", if j % 2 == 0 { a * (j + 1) as f32 } else { b * (j + 1) as f32 }))
                .collect();
            csv.push_str(&format!("{},{}\n", row.join(","), u8::from(a + b > 0.0)));
        }
        let model = fit(ModelKind::LogisticRegression, &csv, &[("pca", "2")]);
        assert_eq!(model.layers[0].weight.nrows(), 2);
        assert!(model.manifest.metrics["accuracy"] >= 0.95, "{:?}", model.manifest.metrics);
        let model = fit(ModelKind::LogisticRegression, &csv, &[("pca", "0.99")]);
        assert_eq!(model.layers[0].weight.nrows(), 2, "two components explain 99 % of this data");
    }

    #[test]
    fn wrong_target_for_kind_is_explained() {
        let three = Dataset::from_csv("a,y\n1,x\n2,y\n3,z\n", "y", true).expect("valid csv");
        let err = train(
            ModelKind::LogisticRegression,
            three,
            &TrainParams::defaults_for(ModelKind::LogisticRegression),
            |_| true,
        )
        .expect_err("three classes");
        assert!(err.to_string().contains("use softmax or mlp"), "{err}");
    }
}
