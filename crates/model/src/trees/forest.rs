//! Random forests and single decision trees (CART): each tree fitted to the rows' values
//! or one-hot classes (variance or Gini reduction), a forest's trees on bootstrap samples
//! with a share of the features at each split, grown in parallel on rayon's pool, each
//! from its own seed so the forest is the same however the threads ran.

use std::ops::Range;

use ndarray::{Array2, Axis, Slice};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::Problem;
use super::grow::{Gradients, GrowParams, grow};
use super::tree::{Combine, TreeEnsemble};
use crate::data::Target;
use crate::train::Progress;
use crate::{Error, Result, TrainParams};

/// The mean loss of the forest of `trees` trees whose outputs sum to `sums`: squared
/// error of the mean value, or log-loss of the mean class shares.
fn mean_loss(sums: &Array2<f32>, trees: usize, target: &Target, rows: Range<usize>) -> f64 {
    let trees = trees.max(1) as f64;
    let count = rows.len().max(1) as f64;
    let total: f64 = rows
        .map(|row| match target {
            Target::Values(values) => 0.5 * (f64::from(sums[[row, 0]]) / trees - f64::from(values[row])).powi(2),
            Target::Classes { index, .. } => -(f64::from(sums[[row, index[row]]]) / trees).clamp(1e-7, 1.0).ln(),
        })
        .sum();
    total / count
}

pub(crate) struct Grown {
    pub ensemble: TreeEnsemble,
    pub gains: Vec<f64>,
    /// The forest's outputs for the rows it is evaluated on (the held-out rows, or the
    /// training rows when none are held out): what predicting them again would give.
    pub evaluation_margins: Array2<f32>,
}

/// Trees grown per progress report (and cancellation check).
const TREES_PER_REPORT: usize = 8;

pub(crate) fn forest(
    problem: &Problem<'_>,
    params: &TrainParams,
    grow_params: &GrowParams,
    bootstrap: bool,
    on_progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<Grown> {
    let Problem { x, binned, target, outputs, .. } = *problem;
    let (validation, train) = (problem.validation.clone(), problem.train.clone());
    // Two classes are grown on one output, the share of the second: its variance
    // reduction is half the two-class Gini reduction, so the splits are the same, and
    // one output takes the fast path. Leaves are widened to both shares after.
    let grown_outputs = if outputs == 2 && matches!(target, Target::Classes { .. }) { 1 } else { outputs };
    // Gradients -y, hessians 1: leaves become the mean value or the class shares.
    let mut gradients = vec![0f32; binned.rows * grown_outputs];
    for row in train.clone() {
        match target {
            Target::Values(values) => gradients[row] = -values[row],
            Target::Classes { index, .. } if grown_outputs == 1 => gradients[row] = -(index[row] as f32),
            Target::Classes { index, .. } => gradients[row * outputs + index[row]] = -1.0,
        }
    }
    let hessians = vec![1f32; binned.rows * grown_outputs];
    let g = Gradients { gradients: &gradients, hessians: &hessians, outputs: grown_outputs };
    let count = params.n_trees;
    let mut ensemble = TreeEnsemble {
        trees: Vec::with_capacity(count),
        target: vec![],
        base: vec![0.0; outputs],
        combine: Combine::Average,
    };
    let mut gains = vec![0.0; binned.features()];
    let started = std::time::Instant::now();
    // Every row's summed tree outputs so far, for the loss after each batch of trees.
    let mut sums = Array2::<f32>::zeros((binned.rows, outputs));
    for first in (0..count).step_by(TREES_PER_REPORT) {
        let batch: Vec<_> = (first..(first + TREES_PER_REPORT).min(count))
            .into_par_iter()
            .map(|index| {
                let mut rng = StdRng::seed_from_u64(params.seed.wrapping_add(index as u64 * 0x9E37_79B9));
                let mut rows: Vec<u32> = if bootstrap {
                    (0..train.len()).map(|_| (train.start + rng.random_range(0..train.len())) as u32).collect()
                } else {
                    train.clone().map(|r| r as u32).collect()
                };
                let mut grown = grow(binned, &mut rows, &g, grow_params, &mut rng);
                if grown_outputs != outputs {
                    let tree = &mut grown.tree;
                    tree.values = tree.values.iter().flat_map(|&second| [1.0 - second, second]).collect();
                    tree.outputs = outputs;
                }
                grown
            })
            .collect();
        for grown in batch {
            gains.iter_mut().zip(&grown.gains).for_each(|(total, gain)| *total += gain);
            for row in validation.start..train.end {
                let values = x.row(row);
                let leaf = match values.as_slice() {
                    Some(values) => grown.tree.leaf(values),
                    None => grown.tree.leaf(&values.to_vec()),
                };
                sums.row_mut(row).iter_mut().zip(grown.tree.leaf_values(leaf)).for_each(|(s, v)| *s += v);
            }
            ensemble.trees.push(grown.tree);
            ensemble.target.push(None);
        }
        let done = ensemble.trees.len();
        let rows_per_second = (train.len() * done) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let loss = mean_loss(&sums, done, target, train.clone());
        let validation_loss = (!validation.is_empty()).then(|| mean_loss(&sums, done, target, validation.clone()));
        let progress = Progress { epoch: done as u32, epochs: count as u32, loss, validation_loss, rows_per_second };
        if !on_progress(progress) {
            return Err(Error::Cancelled);
        }
    }
    let evaluated = if validation.is_empty() { train } else { validation };
    let trees = ensemble.trees.len().max(1) as f32;
    let evaluation_margins = sums.slice_axis(Axis(0), Slice::from(evaluated)).mapv(|sum| sum / trees);
    Ok(Grown { ensemble, gains, evaluation_margins })
}
