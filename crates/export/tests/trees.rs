//! Every tree kind exported to ONNX answers what the native model answers, through
//! modelplane's own ONNX runtime (the Python interop suite checks onnxruntime too):
//! labels equal, values within 1e-5, missing values included.

use std::collections::BTreeMap;

use modelplane_model::{Dataset, Model, ModelKind, Output, TensorData, TrainParams, train};
use modelplane_onnx::OnnxModel;

/// `a`, `b` in [-1, 1] (a tenth of `a` missing), with a value, two classes and three.
fn csv(rows: usize) -> String {
    let mut csv = String::from("a,b,value,two,three\n");
    for i in 0..rows {
        let a = ((i * 37) % 200) as f32 / 100.0 - 1.0;
        let b = ((i * 53) % 200) as f32 / 100.0 - 1.0;
        let value = (3.0 * a).sin() + b * b;
        let two = if a * a + b * b < 0.5 { "in" } else { "out" };
        let three = if a > 0.3 {
            "right"
        } else if b > 0.0 {
            "top"
        } else {
            "bottom"
        };
        let a = if i % 10 == 3 { String::new() } else { a.to_string() };
        csv.push_str(&format!("{a},{b},{value},{two},{three}\n"));
    }
    csv
}

fn fit(kind: ModelKind, target: &str, drop: &[&str]) -> Model {
    let mut text = String::new();
    let text_rows = csv(500);
    let header: Vec<&str> = text_rows.lines().next().unwrap_or_default().split(',').collect();
    let keep: Vec<usize> = (0..header.len()).filter(|i| !drop.contains(&header[*i])).collect();
    for line in text_rows.lines() {
        let cells: Vec<&str> = line.split(',').collect();
        text.push_str(&keep.iter().map(|i| cells[*i]).collect::<Vec<_>>().join(","));
        text.push('\n');
    }
    let data = Dataset::from_csv(&text, target, kind.is_classifier()).expect("valid csv");
    // Ensembles are kept small; a decision tree is one tree and the other kinds have no trees.
    let pairs = if !kind.is_tree() || kind == ModelKind::DecisionTreeClassifier {
        BTreeMap::new()
    } else {
        BTreeMap::from([("n_trees".to_owned(), "15".to_owned())])
    };
    let params = TrainParams::from_map(kind, &pairs).expect("params");
    train(kind, data, &params, |_| true).expect("trains")
}

/// The same outputs, in order: names and shapes equal, labels equal, values within 1e-5.
fn assert_same_answers(native: &[Output], exported: &[Output], what: &str) {
    assert_eq!(native.len(), exported.len(), "{what}");
    for (ours, theirs) in native.iter().zip(exported) {
        assert_eq!((&ours.name, &ours.shape), (&theirs.name, &theirs.shape), "{what}");
        match (&ours.data, &theirs.data) {
            (TensorData::F32(a), TensorData::F32(b)) => {
                assert!(a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-5), "{what}: {a:?} {b:?}")
            }
            (a, b) => assert_eq!(a, b, "{what}"),
        }
    }
}

#[test]
fn exported_trees_answer_as_the_native_model() {
    let rows: Vec<f32> = vec![0.1, 0.2, -0.8, 0.9, f32::NAN, -0.5, 0.7, -0.1, f32::NAN, 0.95, 0.0, 0.0];
    let cases = [
        (ModelKind::GbdtClassifier, "two", ["value", "three"]),
        (ModelKind::GbdtClassifier, "three", ["value", "two"]),
        (ModelKind::GbdtRegressor, "value", ["two", "three"]),
        (ModelKind::RandomForestClassifier, "three", ["value", "two"]),
        (ModelKind::RandomForestRegressor, "value", ["two", "three"]),
        (ModelKind::DecisionTreeClassifier, "two", ["value", "three"]),
    ];
    for (kind, target, drop) in cases {
        let model = fit(kind, target, &drop);
        let bytes = modelplane_export::to_onnx(&model).expect("exports");
        let onnx = OnnxModel::load(&bytes).expect("the export loads");
        let input = ndarray::Array2::from_shape_vec((6, 2), rows.clone()).expect("rows");
        let native = model.predict(input.view()).expect("native answers");
        let exported = onnx.predict(&[(vec![6, 2], TensorData::F32(rows.clone()))]).expect("onnx answers");
        assert_same_answers(&native, &exported, &format!("{kind:?} {target}"));
    }
}

#[test]
fn kinds_without_an_export_are_refused_by_name() {
    let model = fit(ModelKind::LinearSvm, "two", &["value", "three"]);
    let err = modelplane_export::to_onnx(&model).expect_err("no export for svm yet");
    assert!(err.to_string().contains("linear_svm") && err.to_string().contains("not supported yet"), "{err}");
}

#[test]
fn exported_trees_over_categories_answer_as_the_native_model() {
    // `city` decides with `x`: c1, c4, c6 pass at x > 0.2, the others at x > 0.8.
    let mut text = String::from("x,city,y,v\n");
    for i in 0..600 {
        let x = ((i * 37) % 100) as f32 / 100.0;
        let city = i * 5 % 8;
        let member = [1, 4, 6].contains(&city);
        let y = u8::from(x > if member { 0.2 } else { 0.8 });
        let shown = if i % 13 == 0 { "NA".to_owned() } else { format!("c{city}") };
        text.push_str(&format!("{x},{shown},{y},{}\n", x + if member { 1.0 } else { 0.0 }));
    }
    let numeric: Vec<f32> = vec![0.5, 0.5, 0.9, 0.1, 0.5];
    let elements: [&[u8]; 5] = [b"c4", b"c3", b"c3", b"atlantis", b""];
    for (kind, target) in [
        (ModelKind::GbdtClassifier, "y"),
        (ModelKind::RandomForestClassifier, "y"),
        (ModelKind::DecisionTreeClassifier, "y"),
        (ModelKind::GbdtRegressor, "v"),
    ] {
        let drop = if target == "y" { "v" } else { "y" };
        let csv: String = text
            .lines()
            .map(|line| {
                let cells: Vec<&str> = line.split(',').collect();
                let keep: Vec<&str> =
                    [0, 1, 2, 3].iter().filter(|&&i| i != if drop == "y" { 2 } else { 3 }).map(|&i| cells[i]).collect();
                keep.join(",") + "\n"
            })
            .collect();
        let data = Dataset::from_csv(&csv, target, kind.is_classifier()).expect("valid csv");
        let model = train(kind, data, &TrainParams::defaults_for(kind), |_| true).expect("trains");
        assert!(model.trees.as_ref().is_some_and(|t| t.trees.iter().any(|tree| !tree.sets.is_empty())), "{kind:?}");
        let bytes = modelplane_export::to_onnx(&model).expect("exports");
        let onnx = OnnxModel::load(&bytes).expect("the export loads");
        let input = ndarray::Array2::from_shape_vec((5, 1), numeric.clone()).expect("rows");
        let rows = model.encode_table(input.view(), &elements).expect("codes");
        let native = model.predict(rows.view()).expect("native answers");
        let strings = elements.iter().map(|e| e.to_vec()).collect();
        let exported = onnx
            .predict(&[(vec![5, 1], TensorData::F32(numeric.clone())), (vec![5, 1], TensorData::Bytes(strings))])
            .expect("onnx answers");
        assert_same_answers(&native, &exported, &format!("{kind:?}"));
    }
}
