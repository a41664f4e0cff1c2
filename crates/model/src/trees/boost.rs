//! Gradient-boosted trees (histogram GBDT, as LightGBM and scikit-learn's
//! HistGradientBoosting): squared error for regression, log-loss for two classes (one
//! margin), softmax log-loss for more (one tree per class per round), each tree fitted
//! to the loss's gradients and hessians, shrunk by the learning rate, and early stopping
//! on the held-out rows.

use std::ops::Range;

use ndarray::{Array2, Axis, Slice};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;

use super::Problem;
use super::grow::{Gradients, GrowParams, Grown, grow};
use super::tree::{Combine, TreeEnsemble};
use crate::data::Target;
use crate::network::Head;
use crate::train::{Progress, TOLERANCE};
use crate::{Error, Result, TrainParams};

/// The loss a boosted model minimises, by head.
fn gradient(head: Head, margin: f32, truth: f32) -> (f32, f32) {
    match head {
        Head::Sigmoid | Head::Softmax => {
            let p = margin; // already a probability: see `probabilities`
            (p - truth, (p * (1.0 - p)).max(1e-6))
        }
        _ => (margin - truth, 1.0),
    }
}

/// Margins `[rows, outputs]` as the loss sees them: probabilities for classifiers.
fn probabilities(head: Head, margins: &Array2<f32>) -> Array2<f32> {
    let mut out = margins.clone();
    head.apply(&mut out);
    out
}

/// The truth of row `row` for output `k`: the value, 0/1, or one-hot.
fn truth(target: &Target, head: Head, row: usize, k: usize) -> f32 {
    match target {
        Target::Values(values) => values[row],
        Target::Classes { index, .. } => match head {
            Head::Softmax => f32::from(u8::from(index[row] == k)),
            _ => index[row] as f32,
        },
    }
}

/// Mean loss of the rows `rows` of the target, given their outputs as the loss sees
/// them (see `probabilities`).
fn mean_loss(head: Head, p: &Array2<f32>, target: &Target, rows: Range<usize>) -> f64 {
    let mut total = 0.0;
    for (i, row) in rows.clone().enumerate() {
        total += match (head, target) {
            (Head::Identity, Target::Values(values)) => 0.5 * f64::from(p[[i, 0]] - values[row]).powi(2),
            // Logarithms in f32 (summed in f64): this runs over every training row each
            // round, and f64's took a tenth of the time boosting the bench's table.
            (Head::Sigmoid, Target::Classes { index, .. }) => {
                let q = p[[i, 0]].clamp(1e-7, 1.0 - 1e-7);
                f64::from(if index[row] == 1 { -q.ln() } else { -(1.0 - q).ln() })
            }
            (_, Target::Classes { index, .. }) => f64::from(-p[[i, index[row]]].max(1e-7).ln()),
            _ => 0.0,
        };
    }
    total / rows.len().max(1) as f64
}

/// The starting margins: the mean, the log-odds, or the log class shares of the
/// training rows.
fn base_score(head: Head, target: &Target, rows: Range<usize>, outputs: usize) -> Vec<f32> {
    let n = rows.len().max(1) as f64;
    match target {
        Target::Values(values) => vec![(rows.map(|r| f64::from(values[r])).sum::<f64>() / n) as f32],
        Target::Classes { index, labels } => {
            let mut counts = vec![0f64; labels.len()];
            rows.for_each(|r| counts[index[r]] += 1.0);
            let share = |c: f64| (c / n).clamp(1e-6, 1.0 - 1e-6);
            match head {
                Head::Sigmoid => {
                    let p = share(counts[1]);
                    vec![(p / (1.0 - p)).ln() as f32]
                }
                _ => (0..outputs).map(|k| share(counts[k]).ln() as f32).collect(),
            }
        }
    }
}

/// The first value of the leaf a row ends in.
pub(crate) fn leaf_value(tree: &super::tree::Tree, row: ndarray::ArrayView1<'_, f32>) -> f32 {
    let leaf = match row.as_slice() {
        Some(values) => tree.leaf(values),
        None => tree.leaf(&row.to_vec()),
    };
    tree.leaf_values(leaf)[0]
}

/// What boosting hands back: the ensemble, the gain of each feature, and the raw
/// outputs of the rows the model is evaluated on (the held-out rows, or the training
/// rows when none are held out) when they are the ensemble's — not when early stopping
/// dropped trees after they were added.
pub(crate) struct Boosted {
    pub ensemble: TreeEnsemble,
    pub gains: Vec<f64>,
    pub evaluation_margins: Option<Array2<f32>>,
}

pub(crate) fn boost(
    problem: &Problem<'_>,
    head: Head,
    params: &TrainParams,
    grow_params: &GrowParams,
    on_round: &mut dyn FnMut(Progress) -> bool,
) -> Result<Boosted> {
    let Problem { x, binned, target, outputs, .. } = *problem;
    let (validation, train) = (problem.validation.clone(), problem.train.clone());
    let rounds = params.n_trees;
    let base = base_score(head, target, train.clone(), outputs);
    let margins_of = |rows: usize| Array2::from_shape_fn((rows, outputs), |(_, k)| base[k]);
    let mut train_margins = margins_of(train.len());
    let mut valid_margins = margins_of(validation.len());
    let x_valid = x.slice_axis(Axis(0), Slice::from(validation.clone()));
    let mut ensemble = TreeEnsemble { trees: vec![], target: vec![], base: base.clone(), combine: Combine::Sum };
    let mut gains = vec![0.0; binned.features()];
    let mut best: Option<(f64, usize)> = None;
    let mut stale = 0;
    let per_round = if head == Head::Softmax { outputs } else { 1 };
    let mut p = probabilities(head, &train_margins);
    for round in 1..=rounds {
        let started = std::time::Instant::now();
        // A round's trees (one per class) fit the same margins: grown in parallel, as
        // many at once as there are threads (each holds its rows and gradients), each
        // with its own seed so the model is the same however the threads ran.
        let classes: Vec<usize> = (0..per_round).collect();
        for batch in classes.chunks(rayon::current_num_threads().max(1)) {
            let grown: Vec<(Grown, Vec<u32>)> = batch
                .par_iter()
                .map(|&k| {
                    let (mut gradients, mut hessians) = (vec![0f32; binned.rows], vec![0f32; binned.rows]);
                    for (i, row) in train.clone().enumerate() {
                        (gradients[row], hessians[row]) = gradient(head, p[[i, k]], truth(target, head, row, k));
                    }
                    let mut rows: Vec<u32> = train.clone().map(|r| r as u32).collect();
                    let g = Gradients { gradients: &gradients, hessians: &hessians, outputs: 1 };
                    let tree_index = ((round - 1) * per_round + k) as u64;
                    let mut rng = StdRng::seed_from_u64(params.seed ^ tree_index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    (grow(binned, &mut rows, &g, grow_params, &mut rng), rows)
                })
                .collect();
            for (&k, (mut grown, rows)) in batch.iter().zip(grown) {
                grown.tree.values.iter_mut().for_each(|v| *v *= params.learning_rate);
                for (total, gain) in gains.iter_mut().zip(&grown.gains) {
                    *total += gain;
                }
                // The rows are grouped by leaf after growing: no tree walk for training rows.
                for (leaf, range) in &grown.leaves {
                    let value = grown.tree.leaf_values(*leaf)[0];
                    for &row in &rows[range.clone()] {
                        train_margins[[row as usize - train.start, k]] += value;
                    }
                }
                for (i, row) in x_valid.rows().into_iter().enumerate() {
                    valid_margins[[i, k]] += leaf_value(&grown.tree, row);
                }
                ensemble.trees.push(grown.tree);
                ensemble.target.push((head == Head::Softmax).then_some(k as u32));
            }
        }
        // Kept for the next round's gradients.
        p = probabilities(head, &train_margins);
        let loss = mean_loss(head, &p, target, train.clone());
        if !loss.is_finite() {
            return Err(Error::InvalidParam {
                name: "learning_rate".into(),
                reason: format!("boosting diverged at round {round} (loss {loss}); try a smaller learning rate"),
            });
        }
        let validation_loss = (!validation.is_empty())
            .then(|| mean_loss(head, &probabilities(head, &valid_margins), target, validation.clone()));
        let rows_per_second = train.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
        if !on_round(Progress { epoch: round as u32, epochs: rounds as u32, loss, validation_loss, rows_per_second }) {
            return Err(Error::Cancelled);
        }
        if params.early_stopping
            && let Some(current) = validation_loss
        {
            match best {
                Some((best_loss, _)) if current > best_loss - TOLERANCE => {
                    stale += 1;
                    if stale >= params.patience {
                        break;
                    }
                }
                _ => {
                    best = Some((current, round));
                    stale = 0;
                }
            }
        }
    }
    let grown = ensemble.trees.len();
    if let Some((_, best_round)) = best {
        ensemble.trees.truncate(best_round * per_round);
        ensemble.target.truncate(best_round * per_round);
    }
    // The same sums in the same order as predicting them again would make.
    let evaluation_margins =
        (ensemble.trees.len() == grown).then_some(if validation.is_empty() { train_margins } else { valid_margins });
    Ok(Boosted { ensemble, gains, evaluation_margins })
}
