//! modelplane's side of the model-quality benchmark against scikit-learn.
//!
//! Reads the train/test CSVs that `bench/sklearn_baseline.py` exported (one 80/20 split,
//! random_state 0), trains each model on the train part with every row (no held-out
//! split: scikit-learn trains on all of it too), scores the test part and prints
//!
//!     modelplane <dataset> <model> <metric> <value> <seconds>
//!
//! Run through scripts/bench-models.sh, which prints both sides together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use modelplane_model::{Dataset, Model, ModelKind, Target, TensorData, TrainParams, train};

struct Case {
    dataset: &'static str,
    name: &'static str,
    kind: ModelKind,
    params: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        dataset: "breast_cancer",
        name: "logistic_regression",
        kind: ModelKind::LogisticRegression,
        params: &[("epochs", "1000"), ("learning_rate", "0.5"), ("l2", "0.0022"), ("lr_schedule", "cosine")],
    },
    Case {
        dataset: "iris",
        name: "logistic_regression",
        kind: ModelKind::SoftmaxRegression,
        params: &[("epochs", "300"), ("l2", "0.001")],
    },
    Case {
        dataset: "digits",
        name: "logistic_regression",
        kind: ModelKind::SoftmaxRegression,
        params: &[("epochs", "100"), ("l2", "0.001")],
    },
    Case {
        dataset: "diabetes",
        name: "ridge",
        kind: ModelKind::LinearRegression,
        params: &[("epochs", "300"), ("learning_rate", "0.05"), ("l2", "0.00283"), ("lr_schedule", "cosine")],
    },
    // scikit-learn's MLPClassifier(64): Adam 0.001, batches of 200, 200 epochs, alpha 1e-4
    // (its penalty is alpha·w / batch rows per step: 1e-4 / 200 = 5e-7 here).
    Case {
        dataset: "digits",
        name: "mlp_64",
        kind: ModelKind::MlpClassifier,
        params: &[
            ("hidden", "64"),
            ("epochs", "200"),
            ("batch_size", "200"),
            ("learning_rate", "0.001"),
            ("l2", "5e-7"),
        ],
    },
];

fn read(dir: &Path, dataset: &str, part: &str, classes: bool) -> Dataset {
    let path = dir.join(format!("{dataset}.{part}.csv"));
    let csv = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}; run scripts/bench-models.sh", path.display()));
    Dataset::from_csv(&csv, "target", classes).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn score(model: &Model, test: &Dataset) -> (&'static str, f64) {
    let outputs = model.predict(test.features.view()).expect("predicts");
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

fn main() {
    let dir = PathBuf::from(
        std::env::var("MODELPLANE_BENCH_DATA")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/sklearn-data").into()),
    );
    for case in CASES {
        let classes = case.kind.is_classifier();
        let (train_set, test_set) =
            (read(&dir, case.dataset, "train", classes), read(&dir, case.dataset, "test", classes));
        let mut map: BTreeMap<String, String> =
            case.params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        map.insert("validation_fraction".into(), "0".into());
        let params = TrainParams::from_map(case.kind, &map).expect("valid params");
        let started = Instant::now();
        let model = train(case.kind, train_set, &params, |_| true).expect("trains");
        let seconds = started.elapsed().as_secs_f64();
        let (metric, value) = score(&model, &test_set);
        println!("modelplane {} {} {metric} {value:.4} {seconds:.3}", case.dataset, case.name);
    }
}
