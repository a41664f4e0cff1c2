//! modelplane's side of the tree benchmark against LightGBM and scikit-learn.
//!
//! Reads the train/test CSVs `bench/trees_baseline.py` exported (one 80/20 split,
//! random_state 0; an empty cell is a missing value), trains gbdt and random_forest with
//! the settings the other side uses on every training row, scores the test rows, times
//! serving (1,000 single-row calls; one batch of 10,000 rows or more) and prints
//!
//!     modelplane <dataset> <model> <metric> <value> <train_seconds> <rows_per_second_single> <rows_per_second_batch>
//!
//! Run through scripts/bench-trees.sh, which prints every side together with ratios.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use modelplane_model::{Dataset, MISSING_CODE, Model, ModelKind, Target, TensorData, TrainParams, train};
use ndarray::Array2;

const DATASETS: &[(&str, bool)] = &[("breast_cancer", true), ("digits", true), ("diabetes", false), ("table", true)];

fn read(dir: &Path, dataset: &str, part: &str, classes: bool) -> Dataset {
    let path = dir.join(format!("{dataset}.{part}.csv"));
    let csv = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}; run scripts/bench-trees.sh", path.display()));
    Dataset::from_csv(&csv, "target", classes).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The test rows as the model takes them: numeric features, then the codes of the
/// categorical columns' text (as a worker makes them from a `categories` input).
fn model_rows(model: &Model, test: &Dataset) -> Array2<f32> {
    let mut elements: Vec<&[u8]> = Vec::with_capacity(test.rows() * test.categorical.len());
    for row in 0..test.rows() {
        for column in &test.categorical {
            let code = column.codes[row];
            elements.push(if code == MISSING_CODE { b"" } else { column.values[code as usize].as_bytes() });
        }
    }
    model.encode_table(test.features.view(), &elements).expect("the test table fits the model")
}

fn score(model: &Model, test: &Dataset) -> (&'static str, f64) {
    let outputs = model.predict(model_rows(model, test).view()).expect("predicts");
    match &test.target {
        Target::Classes { index, labels } => {
            let TensorData::Bytes(predicted) = &outputs[1].data else { panic!("classifier without labels") };
            let correct =
                index.iter().zip(predicted).filter(|(truth, p)| labels[**truth].as_bytes() == p.as_slice()).count();
            ("accuracy", correct as f64 / index.len() as f64)
        }
        Target::Values(values) => {
            let TensorData::F32(predicted) = &outputs[0].data else { panic!("regressor without values") };
            let mean = values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64;
            let residual: f64 =
                values.iter().zip(predicted).map(|(t, p)| (f64::from(*t) - f64::from(*p)).powi(2)).sum();
            let total: f64 = values.iter().map(|t| (f64::from(*t) - mean).powi(2)).sum();
            ("r2", 1.0 - residual / total)
        }
    }
}

/// Rows per second answered one at a time and in one batch, through `Model::predict`
/// (the worker's path, without the network).
fn serving(model: &Model, test: &Dataset) -> (f64, f64) {
    let features = model_rows(model, test);
    let single = features.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1)).to_owned();
    let started = Instant::now();
    for _ in 0..1000 {
        std::hint::black_box(model.predict(single.view()).expect("predicts"));
    }
    let per_single = 1000.0 / started.elapsed().as_secs_f64();
    let rows = features.nrows().max(10_000);
    let batch = Array2::from_shape_fn((rows, features.ncols()), |(r, c)| features[[r % features.nrows(), c]]);
    let started = Instant::now();
    std::hint::black_box(model.predict(batch.view()).expect("predicts"));
    (per_single, rows as f64 / started.elapsed().as_secs_f64())
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("MODELPLANE_BENCH_DATA")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/trees-data").into()),
    );
    // `MODELPLANE_BENCH_ONLY=table,digits:gbdt` (data sets, or data set:model) runs only
    // those, for profiling one of them.
    let only = std::env::var("MODELPLANE_BENCH_ONLY").unwrap_or_default();
    for (dataset, classes) in DATASETS {
        let wanted = |model: &str| {
            only.is_empty() || only.split(',').any(|name| name == *dataset || name == format!("{dataset}:{model}"))
        };
        let kinds = if *classes {
            [ModelKind::GbdtClassifier, ModelKind::RandomForestClassifier]
        } else {
            [ModelKind::GbdtRegressor, ModelKind::RandomForestRegressor]
        };
        for kind in kinds {
            let name = if kind.is_boosted() { "gbdt" } else { "random_forest" };
            if !wanted(name) {
                continue;
            }
            let mut map: BTreeMap<String, String> = [("validation_fraction", "0"), ("n_trees", "100")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            if kind.is_boosted() {
                for (k, v) in
                    [("max_leaves", "31"), ("learning_rate", "0.1"), ("min_rows_per_leaf", "20"), ("max_bins", "255")]
                {
                    map.insert(k.into(), v.into());
                }
            }
            let params = TrainParams::from_map(kind, &map).expect("valid params");
            let (train_set, test_set) = (read(&dir, dataset, "train", *classes), read(&dir, dataset, "test", *classes));
            let started = Instant::now();
            let model = train(kind, train_set, &params, |_| true).expect("trains");
            let seconds = started.elapsed().as_secs_f64();
            let (metric, value) = score(&model, &test_set);
            let (single, batch) = serving(&model, &test_set);
            println!("modelplane {dataset} {name} {metric} {value:.4} {seconds:.3} {single:.0} {batch:.0}");
        }
    }
}
