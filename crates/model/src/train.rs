//! Mini-batch gradient descent for linear and logistic regression.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::metrics;
use crate::model::sigmoid;
use crate::{Dataset, Error, FORMAT_VERSION, Manifest, Model, ModelKind, Result, StandardScaler};

/// Hyperparameters; every field has a default and an allowed range.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainParams {
    /// Step size, in (0, 10].
    pub learning_rate: f64,
    /// Passes over the training split, in [1, 100000].
    pub epochs: u32,
    /// Rows per gradient step, in [1, 1000000].
    pub batch_size: usize,
    /// L2 penalty on the weights, in [0, 100].
    pub l2: f64,
    /// Seed for the split and the shuffles.
    pub seed: u64,
    /// Fraction of rows held out for metrics, in [0, 0.9].
    pub validation_fraction: f64,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self { learning_rate: 0.1, epochs: 100, batch_size: 32, l2: 0.0, seed: 42, validation_fraction: 0.2 }
    }
}

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidParam { name: name.into(), reason: reason.into() }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str, expected: &str) -> Result<T> {
    value.trim().parse().map_err(|_| invalid(name, format!("{value:?} is not {expected}")))
}

fn check_range(name: &str, value: f64, low: f64, high: f64, low_inclusive: bool) -> Result<()> {
    let above_low = if low_inclusive { value >= low } else { value > low };
    if above_low && value <= high {
        Ok(())
    } else {
        let open = if low_inclusive { "[" } else { "(" };
        Err(invalid(name, format!("{value} is out of range; allowed {open}{low}, {high}]")))
    }
}

impl TrainParams {
    /// Builds parameters from string pairs, rejecting unknown names and values out of range.
    pub fn from_map(params: &BTreeMap<String, String>) -> Result<Self> {
        let mut out = Self::default();
        for (name, value) in params {
            match name.as_str() {
                "learning_rate" => out.learning_rate = parse(name, value, "a number")?,
                "epochs" => out.epochs = parse(name, value, "a whole number")?,
                "batch_size" => out.batch_size = parse(name, value, "a whole number")?,
                "l2" => out.l2 = parse(name, value, "a number")?,
                "seed" => out.seed = parse(name, value, "a whole number")?,
                "validation_fraction" => out.validation_fraction = parse(name, value, "a number")?,
                other => {
                    return Err(invalid(
                        other,
                        "unknown parameter; expected one of learning_rate, epochs, batch_size, l2, seed, validation_fraction",
                    ));
                }
            }
        }
        check_range("learning_rate", out.learning_rate, 0.0, 10.0, false)?;
        check_range("epochs", f64::from(out.epochs), 1.0, 100_000.0, true)?;
        check_range("batch_size", out.batch_size as f64, 1.0, 1_000_000.0, true)?;
        check_range("l2", out.l2, 0.0, 100.0, true)?;
        check_range("validation_fraction", out.validation_fraction, 0.0, 0.9, true)?;
        Ok(out)
    }

    /// The parameters as string pairs, for lineage.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        [
            ("learning_rate", self.learning_rate.to_string()),
            ("epochs", self.epochs.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("l2", self.l2.to_string()),
            ("seed", self.seed.to_string()),
            ("validation_fraction", self.validation_fraction.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// Progress after one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Epochs done, from 1.
    pub epoch: u32,
    /// Epochs in all.
    pub epochs: u32,
    /// Mean training loss of the epoch.
    pub loss: f64,
}

/// Trains a model. `on_epoch` is called after every epoch; returning `false` cancels.
pub fn train(
    kind: ModelKind,
    data: &Dataset,
    params: &TrainParams,
    mut on_epoch: impl FnMut(Progress) -> bool,
) -> Result<Model> {
    if kind == ModelKind::LogisticRegression {
        if let Some(bad) = data.target.iter().find(|y| **y != 0.0 && **y != 1.0) {
            return Err(Error::Dataset(format!(
                "logistic regression needs a 0/1 target in column {:?}; found {bad}",
                data.target_name
            )));
        }
    }
    let rows = data.rows();
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut rng);
    let held_out = ((rows as f64) * params.validation_fraction).floor() as usize;
    let held_out = if rows - held_out == 0 { 0 } else { held_out };
    let (validation_rows, train_rows) = order.split_at(held_out);
    let x_train = data.features.select(Axis(0), train_rows);
    let y_train = data.target.select(Axis(0), train_rows);

    let scaler = fit_scaler(&x_train);
    let mean64 = scaler.mean.mapv(f64::from);
    let scale64 = scaler.scale.mapv(f64::from);
    let standardise = |x: &Array2<f64>| (x - &mean64.view().insert_axis(Axis(0))) / &scale64.view().insert_axis(Axis(0));
    let x_train = standardise(&x_train);

    let features = data.features.ncols();
    let mut weights = Array1::<f64>::zeros(features);
    let mut bias = if kind == ModelKind::LinearRegression { y_train.mean().unwrap_or(0.0) } else { 0.0 };
    let mut batch_order: Vec<usize> = (0..x_train.nrows()).collect();
    for epoch in 1..=params.epochs {
        batch_order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for batch in batch_order.chunks(params.batch_size) {
            let x = x_train.select(Axis(0), batch);
            let y = y_train.select(Axis(0), batch);
            let z = x.dot(&weights) + bias;
            let (residual, loss) = match kind {
                ModelKind::LinearRegression => {
                    let residual = &z - &y;
                    let loss = residual.mapv(|r| r * r).sum() / 2.0;
                    (residual, loss)
                }
                ModelKind::LogisticRegression => {
                    let p = z.mapv(|v| f64::from(sigmoid(v as f32)));
                    let loss = metrics::log_loss_sum(&y, &p);
                    (&p - &y, loss)
                }
            };
            loss_sum += loss;
            let n = batch.len() as f64;
            let gradient = x.t().dot(&residual) / n + &weights * params.l2;
            weights = &weights - &(gradient * params.learning_rate);
            bias -= params.learning_rate * residual.sum() / n;
        }
        let loss = loss_sum / x_train.nrows().max(1) as f64;
        if !loss.is_finite() {
            return Err(invalid(
                "learning_rate",
                format!("training diverged at epoch {epoch} (loss {loss}); try a smaller learning rate"),
            ));
        }
        if !on_epoch(Progress { epoch, epochs: params.epochs, loss }) {
            return Err(Error::Cancelled);
        }
    }

    let model_weights = weights.mapv(|w| w as f32).insert_axis(Axis(1)).to_owned();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        kind,
        feature_names: data.feature_names.clone(),
        target: data.target_name.clone(),
        signature: Model::signature_for(kind, features),
        labels: match kind {
            ModelKind::LinearRegression => Vec::new(),
            ModelKind::LogisticRegression => vec!["0".into(), "1".into()],
        },
        metrics: BTreeMap::new(),
        params: params.to_map(),
    };
    let mut model = Model { manifest, scaler, weights: model_weights, bias: Array1::from(vec![bias as f32]) };
    // Metrics on the held-out rows, or on the training rows when nothing is held out.
    let eval_rows = if validation_rows.is_empty() { train_rows } else { validation_rows };
    let x_eval = data.features.select(Axis(0), eval_rows).mapv(|v| v as f32);
    let y_eval = data.target.select(Axis(0), eval_rows);
    model.manifest.metrics = metrics::evaluate(&model, &x_eval, &y_eval)?;
    Ok(model)
}

fn fit_scaler(x: &Array2<f64>) -> StandardScaler {
    let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(x.ncols()));
    let std = x.std_axis(Axis(0), 0.0);
    StandardScaler {
        mean: mean.mapv(|v| v as f32),
        scale: std.mapv(|s| if s > 1e-12 { s as f32 } else { 1.0 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_data() -> Dataset {
        let mut csv = String::from("x1,x2,y\n");
        for i in 0..200 {
            let x1 = f64::from(i) / 10.0;
            let x2 = f64::from(i % 7);
            csv.push_str(&format!("{x1},{x2},{}\n", 3.0 * x1 - 2.0 * x2 + 5.0));
        }
        Dataset::from_csv(&csv, "y").expect("valid csv")
    }

    #[test]
    fn linear_regression_fits_a_plane() {
        let data = line_data();
        let params = TrainParams { epochs: 200, learning_rate: 0.05, ..TrainParams::default() };
        let model = train(ModelKind::LinearRegression, &data, &params, |_| true).expect("trains");
        assert!(model.manifest.metrics["r2"] > 0.999, "{:?}", model.manifest.metrics);
        let out = model.predict(ndarray::array![[10.0f32, 3.0]].view()).expect("predicts");
        assert!((out[0].values[0] - 29.0).abs() < 0.1, "{:?}", out);
    }

    #[test]
    fn logistic_regression_separates_classes() {
        let mut csv = String::from("a,b,label\n");
        for i in 0..300 {
            let a = f64::from(i % 17) - 8.0;
            let b = f64::from(i % 5) - 2.0;
            csv.push_str(&format!("{a},{b},{}\n", u8::from(a + 0.5 * b > 0.0)));
        }
        let data = Dataset::from_csv(&csv, "label").expect("valid csv");
        let model = train(ModelKind::LogisticRegression, &data, &TrainParams::default(), |_| true).expect("trains");
        assert!(model.manifest.metrics["accuracy"] >= 0.95, "{:?}", model.manifest.metrics);
    }

    #[test]
    fn same_seed_same_model() {
        let data = line_data();
        let params = TrainParams { epochs: 5, ..TrainParams::default() };
        let a = train(ModelKind::LinearRegression, &data, &params, |_| true).expect("trains");
        let b = train(ModelKind::LinearRegression, &data, &params, |_| true).expect("trains");
        assert_eq!(a.weights, b.weights);
    }

    #[test]
    fn rejects_out_of_range_parameters() {
        let params: BTreeMap<String, String> = [("learning_rate".to_owned(), "0".to_owned())].into();
        let err = TrainParams::from_map(&params).expect_err("zero learning rate");
        assert_eq!(err.to_string(), "invalid parameter learning_rate: 0 is out of range; allowed (0, 10]");
        let params: BTreeMap<String, String> = [("momentum".to_owned(), "1".to_owned())].into();
        assert!(TrainParams::from_map(&params).is_err());
    }
}
