//! Evaluation metrics: MSE, RMSE and R² for regression; accuracy, macro F1, log-loss and
//! the confusion matrix for classification.

use std::collections::BTreeMap;
use std::ops::Range;

use ndarray::{Array2, Axis};

use crate::data::Target;
use crate::model::argmax;
use crate::network::Head;

const EPS: f64 = 1e-15;

/// Metrics accumulated chunk by chunk, so evaluating many rows never holds the outputs
/// of all of them at once.
pub(crate) struct Evaluation {
    head: Head,
    rows: usize,
    /// Regression: squared error sum, and the truth's running mean and squared deviations
    /// (Welford), so the variance is exact without a second pass.
    squared_error: f64,
    truth_mean: f64,
    truth_m2: f64,
    /// Classification.
    confusion: Vec<Vec<u64>>,
    /// Summed log-loss (the hinge loss for margins).
    log_loss: f64,
}

impl Evaluation {
    pub(crate) fn new(head: Head, target: &Target) -> Self {
        let classes = match target {
            Target::Values(_) => 0,
            Target::Classes { labels, .. } => labels.len(),
        };
        Self {
            head,
            rows: 0,
            squared_error: 0.0,
            truth_mean: 0.0,
            truth_m2: 0.0,
            confusion: vec![vec![0u64; classes]; classes],
            log_loss: 0.0,
        }
    }

    /// Adds head outputs `out`, one row per row of `target` in `rows`.
    pub(crate) fn add(&mut self, out: &Array2<f32>, target: &Target, rows: Range<usize>) {
        match target {
            Target::Values(values) => {
                for (row, predicted) in rows.zip(out.column(0)) {
                    let truth = f64::from(values[row]);
                    self.rows += 1;
                    self.squared_error += (truth - f64::from(*predicted)).powi(2);
                    let delta = truth - self.truth_mean;
                    self.truth_mean += delta / self.rows as f64;
                    self.truth_m2 += delta * (truth - self.truth_mean);
                }
            }
            Target::Classes { index, .. } => {
                for (row, probabilities) in rows.zip(out.axis_iter(Axis(0))) {
                    let truth = index[row];
                    self.rows += 1;
                    if self.head == Head::Margin {
                        // Margins are no probabilities: accuracy and the hinge loss.
                        let margins = probabilities;
                        let predicted = if margins.len() == 1 {
                            usize::from(margins[0] > 0.0)
                        } else {
                            argmax(margins.iter().copied())
                        };
                        self.confusion[truth][predicted] += 1;
                        let sign = |class: usize| if class == truth { 1.0 } else { -1.0 };
                        self.log_loss += if margins.len() == 1 {
                            (1.0 - sign(1) * f64::from(margins[0])).max(0.0)
                        } else {
                            margins.iter().enumerate().map(|(c, m)| (1.0 - sign(c) * f64::from(*m)).max(0.0)).sum()
                        };
                        continue;
                    }
                    let (predicted, p_truth) = match self.head {
                        Head::Sigmoid => {
                            let p = f64::from(probabilities[0]);
                            (usize::from(p >= 0.5), if truth == 1 { p } else { 1.0 - p })
                        }
                        _ => (argmax(probabilities.iter().copied()), f64::from(probabilities[truth])),
                    };
                    self.confusion[truth][predicted] += 1;
                    self.log_loss -= p_truth.clamp(EPS, 1.0 - EPS).ln();
                }
            }
        }
    }

    /// The metrics by name, and the confusion matrix (empty for regression).
    pub(crate) fn finish(self) -> (BTreeMap<String, f64>, Vec<Vec<u64>>) {
        let n = self.rows.max(1) as f64;
        let mut metrics = BTreeMap::new();
        if self.confusion.is_empty() {
            let mse = self.squared_error / n;
            let variance = self.truth_m2 / n;
            metrics.insert("mse".into(), mse);
            metrics.insert("rmse".into(), mse.sqrt());
            metrics.insert("r2".into(), if variance > 0.0 { 1.0 - mse / variance } else { 0.0 });
            return (metrics, Vec::new());
        }
        let confusion = self.confusion;
        let classes = confusion.len();
        let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
        // Macro F1 over the classes that occur in the truth or the predictions.
        let mut f1_sum = 0.0;
        let mut counted = 0;
        for c in 0..classes {
            let tp = confusion[c][c] as f64;
            let actual: u64 = confusion[c].iter().sum();
            let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
            if actual == 0 && predicted == 0 {
                continue;
            }
            counted += 1;
            let denominator = (actual + predicted) as f64;
            f1_sum += if denominator > 0.0 { 2.0 * tp / denominator } else { 0.0 };
        }
        metrics.insert("accuracy".into(), correct as f64 / n);
        metrics.insert("f1_macro".into(), if counted > 0 { f1_sum / f64::from(counted) } else { 0.0 });
        let loss = if self.head == Head::Margin { "hinge_loss" } else { "log_loss" };
        metrics.insert(loss.into(), self.log_loss / n);
        (metrics, confusion)
    }
}
