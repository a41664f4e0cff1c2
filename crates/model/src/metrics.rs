//! Evaluation metrics: MSE, RMSE and R² for regression; accuracy, macro F1, log-loss and
//! the confusion matrix for classification.

use std::collections::BTreeMap;

use ndarray::{Array2, Axis};

use crate::data::Target;
use crate::model::argmax;
use crate::network::Head;

const EPS: f64 = 1e-15;

/// Metrics of head outputs `out` (one row per entry of `rows`) against `target`.
pub(crate) fn evaluate(
    head: Head,
    out: &Array2<f32>,
    target: &Target,
    rows: &[usize],
) -> (BTreeMap<String, f64>, Vec<Vec<u64>>) {
    let n = rows.len().max(1) as f64;
    let mut metrics = BTreeMap::new();
    match target {
        Target::Values(values) => {
            let truth: Vec<f64> = rows.iter().map(|r| f64::from(values[*r])).collect();
            let mse = truth.iter().zip(out.column(0)).map(|(t, p)| (t - f64::from(*p)).powi(2)).sum::<f64>() / n;
            let mean = truth.iter().sum::<f64>() / n;
            let variance = truth.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n;
            metrics.insert("mse".into(), mse);
            metrics.insert("rmse".into(), mse.sqrt());
            metrics.insert("r2".into(), if variance > 0.0 { 1.0 - mse / variance } else { 0.0 });
            (metrics, Vec::new())
        }
        Target::Classes { index, labels } => {
            let classes = labels.len();
            let mut confusion = vec![vec![0u64; classes]; classes];
            let mut log_loss = 0.0;
            for (row, probabilities) in rows.iter().zip(out.axis_iter(Axis(0))) {
                let truth = index[*row];
                let (predicted, p_truth) = match head {
                    Head::Sigmoid => {
                        let p = f64::from(probabilities[0]);
                        (usize::from(p >= 0.5), if truth == 1 { p } else { 1.0 - p })
                    }
                    _ => (argmax(probabilities.iter().copied()), f64::from(probabilities[truth])),
                };
                confusion[truth][predicted] += 1;
                log_loss -= p_truth.clamp(EPS, 1.0 - EPS).ln();
            }
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
            metrics.insert("log_loss".into(), log_loss / n);
            (metrics, confusion)
        }
    }
}
