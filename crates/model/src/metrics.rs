//! Evaluation metrics.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2};

use crate::{Model, ModelKind, Result};

const EPS: f64 = 1e-12;

/// Sum of the binary cross-entropy of `p` against 0/1 targets `y`.
pub(crate) fn log_loss_sum(y: &Array1<f64>, p: &Array1<f64>) -> f64 {
    y.iter()
        .zip(p.iter())
        .map(|(y, p)| {
            let p = p.clamp(EPS, 1.0 - EPS);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum()
}

/// MSE, RMSE and R² for regression; accuracy and log-loss for classification.
pub(crate) fn evaluate(model: &Model, x: &Array2<f32>, y: &Array1<f64>) -> Result<BTreeMap<String, f64>> {
    let outputs = model.predict(x.view())?;
    let values = &outputs[0].values;
    let n = y.len().max(1) as f64;
    let mut metrics = BTreeMap::new();
    match model.manifest.kind {
        ModelKind::LinearRegression => {
            let mse = y.iter().zip(values).map(|(y, p)| (y - f64::from(*p)).powi(2)).sum::<f64>() / n;
            let mean = y.mean().unwrap_or(0.0);
            let variance = y.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
            metrics.insert("mse".into(), mse);
            metrics.insert("rmse".into(), mse.sqrt());
            metrics.insert("r2".into(), if variance > 0.0 { 1.0 - mse / variance } else { 0.0 });
        }
        ModelKind::LogisticRegression => {
            let positive: Array1<f64> = values.chunks(2).map(|pair| f64::from(pair[1])).collect();
            let correct = y.iter().zip(positive.iter()).filter(|(y, p)| (**p >= 0.5) == (**y >= 0.5)).count();
            metrics.insert("accuracy".into(), correct as f64 / n);
            metrics.insert("log_loss".into(), log_loss_sum(y, &positive) / n);
        }
    }
    Ok(metrics)
}
