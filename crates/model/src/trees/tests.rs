//! The kinds for tables — trees, and the linear SVM beside them — end to end: trained
//! from CSV text, measured on held-out rows, saved and loaded, with missing values and
//! their parameters' checks.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Dataset, Model, ModelKind, TrainParams, train};

/// Two features in [-1, 1]; the class is whether the point lies inside a circle (no
/// line separates it), with a third of `x1` missing in class-free noise rows.
fn circle_csv(rows: usize, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut csv = String::from("x0,x1,noise,y\n");
    for _ in 0..rows {
        let (a, b): (f32, f32) = (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
        let inside = a * a + b * b < 0.5;
        csv.push_str(&format!("{a},{b},{},{}\n", rng.random_range(0.0..1.0f32), if inside { "in" } else { "out" }));
    }
    csv
}

/// `y = 3 sin(3 x0) + x1²` plus a little noise.
fn wave_csv(rows: usize) -> String {
    let mut rng = StdRng::seed_from_u64(7);
    let mut csv = String::from("x0,x1,y\n");
    for _ in 0..rows {
        let (a, b): (f32, f32) = (rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0));
        let y = 3.0 * (3.0 * a).sin() + b * b + rng.random_range(-0.1..0.1);
        csv.push_str(&format!("{a},{b},{y}\n"));
    }
    csv
}

fn params(kind: ModelKind, pairs: &[(&str, &str)]) -> TrainParams {
    let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    TrainParams::from_map(kind, &map).expect("valid parameters")
}

fn fit(kind: ModelKind, csv: &str, pairs: &[(&str, &str)]) -> Model {
    let data = Dataset::from_csv(csv, "y", kind.is_classifier()).expect("valid csv");
    train(kind, data, &params(kind, pairs), |_| true).expect("trains")
}

#[test]
fn boosted_trees_and_forests_learn_a_boundary_no_line_draws() {
    let csv = circle_csv(1500, 1);
    for kind in [ModelKind::GbdtClassifier, ModelKind::RandomForestClassifier, ModelKind::DecisionTreeClassifier] {
        let pairs: &[(&str, &str)] = if kind == ModelKind::DecisionTreeClassifier { &[] } else { &[("n_trees", "40")] };
        let model = fit(kind, &csv, pairs);
        let accuracy = model.manifest.metrics["accuracy"];
        assert!(accuracy > 0.9, "{kind:?}: held-out accuracy {accuracy}");
        let importances = &model.manifest.feature_importances;
        assert!(
            importances["x0"] > importances["noise"] && importances["x1"] > importances["noise"],
            "{importances:?}"
        );
        assert!((importances.values().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    let linear = fit(ModelKind::LogisticRegression, &csv, &[]);
    assert!(linear.manifest.metrics["accuracy"] < 0.8, "a line cannot draw a circle");
}

#[test]
fn boosted_regression_follows_a_curve_and_early_stopping_keeps_the_best_round() {
    let csv = wave_csv(2000);
    let model = fit(ModelKind::GbdtRegressor, &csv, &[("n_trees", "200"), ("learning_rate", "0.2")]);
    let r2 = model.manifest.metrics["r2"];
    assert!(r2 > 0.95, "R² {r2}");
    let stopped = fit(
        ModelKind::GbdtRegressor,
        &csv,
        &[("n_trees", "2000"), ("learning_rate", "0.5"), ("early_stopping", "true"), ("patience", "3")],
    );
    let trees = stopped.trees.as_ref().expect("trees").trees.len();
    assert!(trees < 2000, "early stopping kept all {trees} trees");
    let forest = fit(ModelKind::RandomForestRegressor, &csv, &[("n_trees", "30")]);
    assert!(forest.manifest.metrics["r2"] > 0.9, "forest R² {}", forest.manifest.metrics["r2"]);
}

#[test]
fn multiclass_boosting_answers_one_probability_per_class() {
    let mut csv = String::from("a,b,y\n");
    let mut rng = StdRng::seed_from_u64(3);
    for i in 0..900 {
        let class = i % 3;
        let centre = [(0.0, 0.0), (3.0, 0.0), (0.0, 3.0)][class];
        csv.push_str(&format!(
            "{},{},c{class}\n",
            centre.0 + rng.random_range(-1.0..1.0f32),
            centre.1 + rng.random_range(-1.0..1.0f32)
        ));
    }
    let model = fit(ModelKind::GbdtClassifier, &csv, &[("n_trees", "30")]);
    assert!(model.manifest.metrics["accuracy"] > 0.95);
    assert_eq!(model.manifest.signature.outputs[0].shape, vec![-1, 3]);
    let outputs = model.predict(ndarray::array![[3.0f32, 0.1], [0.1, 2.9]].view()).expect("predicts");
    let crate::TensorData::F32(probabilities) = &outputs[0].data else { panic!("FP32 probabilities") };
    assert!((probabilities[..3].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(outputs[1].data, crate::TensorData::Bytes(vec![b"c1".to_vec(), b"c2".to_vec()]));
}

#[test]
fn missing_values_train_and_serve_for_trees_and_dense_kinds() {
    // Where x0 is missing the class is "in": trees learn it; dense kinds impute it.
    let mut csv = String::from("x0,x1,y\n");
    let mut rng = StdRng::seed_from_u64(5);
    for i in 0..1200 {
        let b: f32 = rng.random_range(-1.0..1.0);
        if i % 4 == 0 {
            csv.push_str(&format!(",{b},in\n"));
        } else {
            let a: f32 = rng.random_range(-1.0..1.0);
            csv.push_str(&format!("{a},{b},{}\n", if a > 0.0 { "in" } else { "out" }));
        }
    }
    let gbdt = fit(ModelKind::GbdtClassifier, &csv, &[("n_trees", "30")]);
    assert!(gbdt.manifest.metrics["accuracy"] > 0.95, "{}", gbdt.manifest.metrics["accuracy"]);
    let out = gbdt.predict(ndarray::array![[f32::NAN, 0.5], [-0.8, 0.5]].view()).expect("predicts");
    assert_eq!(out[1].data, crate::TensorData::Bytes(vec![b"in".to_vec(), b"out".to_vec()]));
    let logistic = fit(ModelKind::LogisticRegression, &csv, &[]);
    assert_eq!(logistic.manifest.impute.len(), 2, "imputation is part of the stored pipeline");
    let loaded = Model::from_artifact(&logistic.to_artifact().expect("saves")).expect("loads");
    let out = loaded.predict(ndarray::array![[f32::NAN, 0.5]].view()).expect("predicts");
    let crate::TensorData::F32(p) = &out[0].data else { panic!("FP32 probabilities") };
    assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
}

#[test]
fn tree_models_save_load_and_train_the_same_again_from_the_seed() {
    let csv = circle_csv(400, 2);
    let rows = ndarray::array![[0.1f32, 0.2, 0.5], [0.9, -0.9, 0.1], [f32::NAN, 0.3, 0.3]];
    for kind in [ModelKind::GbdtClassifier, ModelKind::RandomForestClassifier, ModelKind::DecisionTreeClassifier] {
        let model = fit(kind, &csv, &[]);
        let loaded = Model::from_artifact(&model.to_artifact().expect("saves")).expect("loads");
        assert_eq!(model.manifest, loaded.manifest, "{kind:?}");
        assert_eq!(model.predict(rows.view()).expect("predicts"), loaded.predict(rows.view()).expect("predicts"));
        let again = fit(kind, &csv, &[]);
        assert_eq!(model.trees, again.trees, "{kind:?} is deterministic given its seed");
    }
    let seeded = |seed: &str| fit(ModelKind::RandomForestClassifier, &csv, &[("n_trees", "5"), ("seed", seed)]).trees;
    assert_ne!(seeded("1"), seeded("2"), "the seed draws the bootstrap samples");
    let tree = fit(ModelKind::DecisionTreeClassifier, &csv, &[("max_depth", "2")]);
    let text = tree.describe_trees().expect("a tree");
    assert!(text.starts_with("if x") && text.contains("-> in (in: "), "{text}");
    // Depth 2 at most: leaves are indented by two levels or fewer (a pure node stays a leaf).
    let leaves: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("->")).collect();
    assert!((2..=4).contains(&leaves.len()), "{text}");
    assert!(leaves.iter().all(|l| l.len() - l.trim_start().len() <= 4), "{text}");
}

#[test]
fn parameters_that_do_not_apply_or_are_out_of_range_are_refused_by_name() {
    let refused = |kind: ModelKind, name: &str, value: &str| {
        let map = BTreeMap::from([(name.to_owned(), value.to_owned())]);
        TrainParams::from_map(kind, &map).expect_err("refused").to_string()
    };
    assert!(refused(ModelKind::GbdtClassifier, "epochs", "5").contains("n_trees"));
    assert!(refused(ModelKind::LinearRegression, "n_trees", "5").contains("tree kinds"));
    assert!(refused(ModelKind::RandomForestClassifier, "learning_rate", "0.1").contains("gbdt"));
    assert!(refused(ModelKind::GbdtRegressor, "max_bins", "300").contains("allowed [2, 255]"));
    assert!(refused(ModelKind::DecisionTreeRegressor, "feature_fraction", "0").contains("allowed (0, 1]"));
    assert!(refused(ModelKind::DecisionTreeClassifier, "n_trees", "3").contains("one tree"));
    // Text in a feature column is a category (one_hot.rs trains trees on it); a text
    // target of a regressor is still refused.
    let data = Dataset::from_csv("t,y\nhello,a\nworld,b\n", "y", true).expect("a categorical column");
    assert_eq!(data.categorical[0].name, "t");
    assert!(Dataset::from_csv("t,y\n1,a\n2,b\n", "y", false).is_err(), "text target of a regressor");
}

#[test]
fn a_linear_svm_separates_classes_with_margins_one_versus_rest() {
    // Two classes split by x0 + x1 > 0, and three by which of three lines is nearest.
    let mut binary = String::from("x0,x1,y\n");
    let mut three = String::from("x0,x1,y\n");
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..600 {
        let (a, b): (f32, f32) = (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
        binary.push_str(&format!("{a},{b},{}\n", if a + b > 0.0 { "yes" } else { "no" }));
        let class = if a > 0.3 {
            "right"
        } else if b > 0.0 {
            "top"
        } else {
            "bottom"
        };
        three.push_str(&format!("{a},{b},{class}\n"));
    }
    let model = fit(ModelKind::LinearSvm, &binary, &[]);
    assert!(model.manifest.metrics["accuracy"] > 0.95, "{:?}", model.manifest.metrics);
    assert!(model.manifest.metrics.contains_key("hinge_loss") && !model.manifest.metrics.contains_key("log_loss"));
    assert_eq!(model.manifest.signature.outputs[0].name, "scores");
    assert_eq!(model.manifest.signature.outputs[0].shape, vec![-1, 1]);
    let out = model.predict(ndarray::array![[0.9f32, 0.8], [-0.9, -0.7]].view()).expect("predicts");
    let crate::TensorData::F32(margins) = &out[0].data else { panic!("FP32 margins") };
    assert!(margins[0] > 1.0 && margins[1] < -1.0, "{margins:?}");
    assert_eq!(out[1].data, crate::TensorData::Bytes(vec![b"yes".to_vec(), b"no".to_vec()]));
    let model = fit(ModelKind::LinearSvm, &three, &[]);
    assert!(model.manifest.metrics["accuracy"] > 0.9, "{:?}", model.manifest.metrics);
    assert_eq!(model.manifest.signature.outputs[0].shape, vec![-1, 3]);
    let loaded = Model::from_artifact(&model.to_artifact().expect("saves")).expect("loads");
    let rows = ndarray::array![[0.9f32, 0.0], [-0.5, 0.5], [-0.5, -0.5]];
    let out = loaded.predict(rows.view()).expect("predicts");
    let labels: Vec<Vec<u8>> = ["right", "top", "bottom"].iter().map(|l| l.as_bytes().to_vec()).collect();
    assert_eq!(out[1].data, crate::TensorData::Bytes(labels));
}

/// `city` of 8 categories decides the class: 1 for c1, c4 and c6 (no single one-hot
/// column, and no threshold on codes, separates them); `x` is noise.
fn cities_csv(rows: usize) -> String {
    let mut rng = StdRng::seed_from_u64(11);
    let mut csv = String::from("x,city,y\n");
    for i in 0..rows {
        let city = i * 5 % 8;
        let class = u8::from([1, 4, 6].contains(&city));
        csv.push_str(&format!("{},c{city},{class}\n", rng.random_range(0.0..1.0f32)));
    }
    csv
}

#[test]
fn trees_split_on_sets_of_categories_in_one_branch() {
    let csv = cities_csv(800);
    let tree = fit(ModelKind::DecisionTreeClassifier, &csv, &[("max_depth", "1")]);
    assert_eq!(tree.manifest.metrics["accuracy"], 1.0, "one branch holds the three cities");
    assert!(matches!(tree.manifest.pipeline[0], crate::Step::Categories { .. }), "{:?}", tree.manifest.pipeline);
    let inputs: Vec<(&str, Vec<i64>)> =
        tree.manifest.signature.inputs.iter().map(|i| (i.name.as_str(), i.shape.clone())).collect();
    assert_eq!(inputs, [("input", vec![-1, 1]), ("categories", vec![-1, 1])]);
    let text = tree.describe_trees().expect("a tree");
    let first = text.lines().next().unwrap_or_default();
    let members = ["\"c1\"", "\"c4\"", "\"c6\""];
    let others = ["\"c0\"", "\"c2\"", "\"c3\"", "\"c5\"", "\"c7\""];
    assert!(
        first.starts_with("if city in {")
            && (members.iter().all(|c| first.contains(c)) || others.iter().all(|c| first.contains(c))),
        "{text}"
    );

    // Served from raw rows, saved and loaded: known cities by the set, an unknown city
    // and a missing one answered without an error.
    let numeric = ndarray::array![[0.5f32], [0.5], [0.5], [0.5], [0.5]];
    let elements: [&[u8]; 5] = [b"c4", b"c3", b"c6", b"atlantis", b""];
    let rows = tree.encode_table(numeric.view(), &elements).expect("encodes");
    let loaded = Model::from_artifact(&tree.to_artifact().expect("saves")).expect("loads");
    assert_eq!(loaded.trees, tree.trees, "category sets survive the artifact");
    for model in [&tree, &loaded] {
        let out = model.predict(rows.view()).expect("predicts");
        let crate::TensorData::Bytes(labels) = &out[1].data else { panic!("labels") };
        assert_eq!(&labels[..3], &[b"1".to_vec(), b"0".to_vec(), b"1".to_vec()]);
        assert_eq!(labels.len(), 5);
    }

    // Boosting and forests split on the set too: every row right with few trees.
    for kind in [ModelKind::GbdtClassifier, ModelKind::RandomForestClassifier] {
        let model = fit(kind, &csv, &[("n_trees", "5")]);
        assert_eq!(model.manifest.metrics["accuracy"], 1.0, "{kind:?}");
        let uses_a_set = model.trees.as_ref().is_some_and(|t| t.trees.iter().any(|tree| !tree.sets.is_empty()));
        assert!(uses_a_set, "{kind:?}");
    }
    let refused = TrainParams::from_map(
        ModelKind::GbdtClassifier,
        &BTreeMap::from([("max_categories".to_owned(), "300".to_owned())]),
    );
    assert!(refused.expect_err("too many for a tree").to_string().contains("at most 254 categories"));
}

#[test]
fn a_category_unseen_at_training_goes_with_the_rare_ones_left_out() {
    // c0..c4 are frequent, c5..c7 rare; with max_categories 5 the rare ones share the
    // "other" bin, and all rare ones are class 1: a city never seen answers like them.
    let mut csv = String::from("city,y\n");
    for i in 0..500 {
        let city = i % 5;
        csv.push_str(&format!("c{city},{}\n", u8::from(city == 2)));
    }
    for i in 0..60 {
        csv.push_str(&format!("c{},1\n", 5 + i % 3));
    }
    let model = fit(ModelKind::DecisionTreeClassifier, &csv, &[("max_categories", "5"), ("validation_fraction", "0")]);
    assert_eq!(model.categorical_columns()[0].categories.len(), 5);
    let rows = model.encode_table(ndarray::Array2::zeros((3, 0)).view(), &[b"c6", b"atlantis", b"c0"]).expect("codes");
    let out = model.predict(rows.view()).expect("predicts");
    assert_eq!(out[1].data, crate::TensorData::Bytes(vec![b"1".to_vec(), b"1".to_vec(), b"0".to_vec()]));
}

#[test]
fn tree_kinds_evaluate_on_the_outputs_they_kept_exactly_as_serving_predicts() {
    // The metrics come from the outputs training kept (no second pass over the trees):
    // they must be what predicting the same rows gives.
    let csv = wave_csv(600);
    for kind in [ModelKind::GbdtRegressor, ModelKind::RandomForestRegressor] {
        let data = Dataset::from_csv(&csv, "y", false).expect("valid csv");
        let (x, truth) = (data.features.clone(), data.target.clone());
        let pairs = [("validation_fraction", "0"), ("n_trees", "20")];
        let model = train(kind, data, &params(kind, &pairs), |_| true).expect("trains");
        let out = model.predict(x.view()).expect("predicts");
        let (crate::TensorData::F32(predicted), crate::data::Target::Values(values)) = (&out[0].data, &truth) else {
            panic!("values")
        };
        let squares = predicted.iter().zip(values).map(|(p, t)| f64::from(p - t).powi(2));
        let mse = squares.sum::<f64>() / values.len() as f64;
        let reported = model.manifest.metrics["mse"];
        assert!((mse - reported).abs() <= 1e-9 * mse.max(1.0), "{kind:?}: predicted {mse}, reported {reported}");
    }
}
