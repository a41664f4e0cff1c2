//! Categorical columns: one-hot columns for the dense kinds, which need numbers; codes
//! for the tree kinds, which split on sets of categories (`Step::Categories`).
//!
//! A model with categorical columns takes, internally, rows of its numeric features
//! followed by one code per categorical column ([`CategoryColumn::code`]): FP32 rows
//! like any other, so requests batch as before. [`expand`] turns the codes into the
//! one-hot columns the layers or trees were trained on: a known category sets its
//! column to 1, a category not kept at training sets none (zeros, as scikit-learn's
//! `OneHotEncoder(handle_unknown="ignore")`), and a missing value is NaN in every one
//! of its columns — which a tree routes the way its node learned and a dense kind
//! imputes with the training mean, like any missing number.

use std::collections::BTreeMap;
use std::ops::Range;

use ndarray::{Array2, ArrayView2, ArrayViewMut1, Axis, Slice};
use serde::{Deserialize, Serialize};

use crate::data::{CategoricalColumn, MISSING_CODE, is_missing};
use crate::{Dataset, Model, Step};

/// A categorical input column and the categories the model knows, sorted by their
/// bytes so an element's code is a binary search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryColumn {
    /// Column name.
    pub name: String,
    /// Known categories, sorted; each has one one-hot column, in this order.
    pub categories: Vec<String>,
}

/// Code of a category the model does not know.
pub const UNSEEN_CODE: f32 = -1.0;

impl CategoryColumn {
    /// The code of an element: its category's index, [`UNSEEN_CODE`] for a category
    /// not kept at training, NaN when it is missing (empty, or a marker such as `NA`).
    pub fn code(&self, value: &[u8]) -> f32 {
        if is_missing(value) {
            return f32::NAN;
        }
        match self.categories.binary_search_by(|category| category.as_bytes().cmp(value)) {
            Ok(index) => index as f32,
            Err(_) => UNSEEN_CODE,
        }
    }

    /// The one-hot column names, `column=category`.
    fn expanded_names(&self) -> impl Iterator<Item = String> + '_ {
        self.categories.iter().map(|category| format!("{}={category}", self.name))
    }
}

/// The categories a column keeps: the `max_categories` most frequent among the
/// training rows (ties by value), sorted; and for each of the dataset's values, its
/// code in the kept list (or [`UNSEEN_CODE`]).
fn fit(column: &CategoricalColumn, train: Range<usize>, max_categories: usize) -> (CategoryColumn, Vec<f32>) {
    let mut counts = vec![0u64; column.values.len()];
    for code in &column.codes[train] {
        if *code != MISSING_CODE {
            counts[*code as usize] += 1;
        }
    }
    let mut seen: Vec<usize> = (0..counts.len()).filter(|value| counts[*value] > 0).collect();
    seen.sort_by(|a, b| counts[*b].cmp(&counts[*a]).then_with(|| column.values[*a].cmp(&column.values[*b])));
    seen.truncate(max_categories);
    seen.sort_by(|a, b| column.values[*a].as_bytes().cmp(column.values[*b].as_bytes()));
    let mut remap = vec![UNSEEN_CODE; column.values.len()];
    for (kept, value) in seen.iter().enumerate() {
        remap[*value] = kept as f32;
    }
    let categories = seen.iter().map(|value| column.values[*value].clone()).collect();
    (CategoryColumn { name: column.name.clone(), categories }, remap)
}

/// Replaces the dataset's numeric features and categorical columns by one matrix of
/// the numeric features then every kept category's one-hot column (and their names),
/// the categories fitted on the `train` rows. Returns the columns the model keeps.
pub(crate) fn encode_dataset(data: &mut Dataset, train: Range<usize>, max_categories: usize) -> Vec<CategoryColumn> {
    let fitted: Vec<(CategoryColumn, Vec<f32>)> =
        data.categorical.iter().map(|column| fit(column, train.clone(), max_categories)).collect();
    let numeric = data.features.ncols();
    let width = numeric + fitted.iter().map(|(column, _)| column.categories.len()).sum::<usize>();
    // Straight into the expanded matrix: no table of codes between the two.
    let mut expanded = Array2::<f32>::zeros((data.rows(), width));
    expanded.slice_axis_mut(Axis(1), Slice::from(..numeric)).assign(&data.features);
    let mut start = numeric;
    for (column, (kept, remap)) in data.categorical.iter().zip(&fitted) {
        for (code, mut row) in column.codes.iter().zip(expanded.rows_mut()) {
            let code = if *code == MISSING_CODE { f32::NAN } else { remap[*code as usize] };
            set_one_hot(row.slice_axis_mut(Axis(0), Slice::from(start..start + kept.categories.len())), code);
        }
        start += kept.categories.len();
    }
    data.features = expanded;
    let columns: Vec<CategoryColumn> = fitted.into_iter().map(|(column, _)| column).collect();
    data.feature_names.extend(columns.iter().flat_map(CategoryColumn::expanded_names));
    data.categorical = Vec::new();
    columns
}

/// Appends one code column per categorical column to the dataset's numeric features
/// (the code of [`CategoryColumn::code`]: the kept category's index, [`UNSEEN_CODE`],
/// or NaN when missing), for the tree kinds. Returns the columns the model keeps.
pub(crate) fn encode_codes(data: &mut Dataset, train: Range<usize>, max_categories: usize) -> Vec<CategoryColumn> {
    let fitted: Vec<(CategoryColumn, Vec<f32>)> =
        data.categorical.iter().map(|column| fit(column, train.clone(), max_categories)).collect();
    let numeric = data.features.ncols();
    let mut coded = Array2::<f32>::zeros((data.rows(), numeric + fitted.len()));
    coded.slice_axis_mut(Axis(1), Slice::from(..numeric)).assign(&data.features);
    for (c, (column, (_, remap))) in data.categorical.iter().zip(&fitted).enumerate() {
        for (code, mut row) in column.codes.iter().zip(coded.rows_mut()) {
            row[numeric + c] = if *code == MISSING_CODE { f32::NAN } else { remap[*code as usize] };
        }
    }
    data.features = coded;
    let columns: Vec<CategoryColumn> = fitted.into_iter().map(|(column, _)| column).collect();
    data.feature_names.extend(columns.iter().map(|column| column.name.clone()));
    data.categorical = Vec::new();
    columns
}

/// Records `Step::Categories` on a tree model trained on codes from [`encode_codes`]:
/// the step opens its pipeline and its signature takes the columns as BYTES beside the
/// numeric input.
pub(crate) fn attach_codes(model: &mut Model, columns: Vec<CategoryColumn>) {
    if columns.is_empty() {
        return;
    }
    let manifest = &mut model.manifest;
    let numeric = manifest.feature_names.len() - columns.len();
    manifest.signature.inputs = Model::input_specs(crate::InputKind::Table { numeric, categorical: columns.len() });
    manifest.pipeline.insert(0, Step::Categories { columns });
}

/// `[rows, numeric + columns]` (numeric features, then one code per column) to
/// `[rows, numeric + Σ categories]` (numeric features, then the one-hot columns).
pub(crate) fn expand(input: ArrayView2<'_, f32>, numeric: usize, columns: &[CategoryColumn]) -> Array2<f32> {
    let width = numeric + columns.iter().map(|column| column.categories.len()).sum::<usize>();
    let mut out = Array2::<f32>::zeros((input.nrows(), width));
    for (row, mut expanded) in input.rows().into_iter().zip(out.rows_mut()) {
        for f in 0..numeric {
            expanded[f] = row[f];
        }
        let mut start = numeric;
        for (c, column) in columns.iter().enumerate() {
            let known = column.categories.len();
            set_one_hot(expanded.slice_axis_mut(Axis(0), Slice::from(start..start + known)), row[numeric + c]);
            start += known;
        }
    }
    out
}

/// One column's one-hot slots (all 0 on entry) for a code: a known category's slot is
/// 1, NaN (missing) fills every slot, anything else (unseen, out of range) leaves 0.
fn set_one_hot(mut slots: ArrayViewMut1<'_, f32>, code: f32) {
    if code.is_nan() {
        slots.fill(f32::NAN);
    } else if code >= 0.0 && code.fract() == 0.0 && (code as usize) < slots.len() {
        slots[code as usize] = 1.0;
    }
}

/// Records the one-hot step on a model trained on the expanded matrix: the step opens
/// its pipeline, its signature takes the categorical columns as BYTES beside the
/// numeric input, and a tree kind's importances are per column (summed over its
/// categories) rather than per category.
pub(crate) fn attach(model: &mut Model, columns: Vec<CategoryColumn>) {
    if columns.is_empty() {
        return;
    }
    let manifest = &mut model.manifest;
    let expanded: usize = columns.iter().map(|column| column.categories.len()).sum();
    let numeric = manifest.feature_names.len() - expanded;
    let by_category = std::mem::take(&mut manifest.feature_importances);
    let mut importances: BTreeMap<String, f64> = manifest.feature_names[..numeric]
        .iter()
        .filter_map(|name| by_category.get(name).map(|share| (name.clone(), *share)))
        .collect();
    if !by_category.is_empty() {
        for column in &columns {
            let share = column.expanded_names().filter_map(|name| by_category.get(&name)).sum();
            importances.insert(column.name.clone(), share);
        }
    }
    manifest.feature_importances = importances;
    manifest.signature.inputs = Model::input_specs(crate::InputKind::Table { numeric, categorical: columns.len() });
    manifest.pipeline.insert(0, Step::OneHot { columns });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(categories: &[&str]) -> CategoryColumn {
        CategoryColumn { name: "color".into(), categories: categories.iter().map(|c| (*c).to_owned()).collect() }
    }

    #[test]
    fn codes_known_unseen_and_missing_elements() {
        let color = column(&["blue", "green", "red"]);
        assert_eq!(color.code(b"red"), 2.0);
        assert_eq!(color.code(b"purple"), UNSEEN_CODE);
        assert!(color.code(b"").is_nan() && color.code(b"NA").is_nan());
    }

    #[test]
    fn expands_codes_into_one_hot_columns() {
        let columns = [column(&["blue", "red"]), column(&["x"])];
        let input = ndarray::array![[0.5f32, 1.0, 0.0], [1.5, UNSEEN_CODE, f32::NAN], [2.5, 7.0, 0.5]];
        let out = expand(input.view(), 1, &columns);
        assert_eq!(out.row(0).to_vec(), vec![0.5, 0.0, 1.0, 1.0]);
        assert_eq!(out.row(1).iter().map(|v| v.is_nan()).collect::<Vec<_>>(), [false, false, false, true]);
        assert_eq!(&out.row(1).to_vec()[..3], &[1.5, 0.0, 0.0]);
        // Codes out of range (or not whole) are unknown categories, not a panic.
        assert_eq!(out.row(2).to_vec(), vec![2.5, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn keeps_the_most_frequent_categories_of_the_training_rows() {
        let column = CategoricalColumn {
            name: "c".into(),
            values: vec!["z".into(), "a".into(), "m".into(), "held-out only".into()],
            codes: vec![3, 0, 0, 0, 1, 1, 2, MISSING_CODE],
        };
        let (kept, remap) = fit(&column, 1..8, 2);
        assert_eq!(kept.categories, vec!["a".to_owned(), "z".to_owned()]);
        assert_eq!(remap, vec![1.0, 0.0, UNSEEN_CODE, UNSEEN_CODE]);
    }

    /// y is 1 when x plus the color's bonus passes 0.9 (red +0.6, green +0.3, blue 0,
    /// black -0.3); a row without a color passes at 0.75, the bonus averaged over colors
    /// (what imputing the mean makes of it). A category no line through codes separates.
    fn colors_csv(rows: usize) -> String {
        let colors = [("red", 0.6), ("blue", 0.0), ("green", 0.3), ("black", -0.3), ("NA", 0.15)];
        let mut csv = String::from("x,color,y\n");
        for i in 0..rows {
            let x = (i * 37 % 100) as f32 / 100.0 + 0.005;
            let (color, bonus) = colors[i * 7 % colors.len()];
            csv.push_str(&format!("{x},{color},{}\n", u8::from(x + bonus > 0.9)));
        }
        csv
    }

    #[test]
    fn every_kind_learns_from_a_categorical_column_and_serves_raw_rows() {
        use crate::{ModelKind, TrainParams};
        let csv = colors_csv(600);
        for kind in [ModelKind::GbdtClassifier, ModelKind::LogisticRegression, ModelKind::MlpClassifier] {
            let data = Dataset::from_csv(&csv, "y", true).expect("valid csv");
            let mut params = TrainParams::defaults_for(kind);
            if kind == ModelKind::MlpClassifier {
                params.epochs = 300;
            }
            let model = crate::train(kind, data, &params, |_| true).expect("trains");
            let accuracy = model.manifest.metrics["accuracy"];
            assert!(accuracy >= 0.9, "{kind:?}: accuracy {accuracy}");
            let inputs: Vec<(&str, Vec<i64>)> =
                model.manifest.signature.inputs.iter().map(|i| (i.name.as_str(), i.shape.clone())).collect();
            assert_eq!(inputs, [("input", vec![-1, 1]), ("categories", vec![-1, 1])], "{kind:?}");
            assert_eq!(model.categorical_columns()[0].categories, vec!["black", "blue", "green", "red"]);

            let numeric = ndarray::array![[0.6f32], [0.1], [0.95], [0.2], [0.9]];
            let elements: [&[u8]; 5] = [b"red", b"blue", b"blue", b"purple", b""];
            let rows = model.encode_table(numeric.view(), &elements).expect("encodes");
            let loaded = Model::from_artifact(&model.to_artifact().expect("saves")).expect("loads");
            for served in [&model, &loaded] {
                let outputs = served.predict(rows.view()).expect("predicts");
                let crate::TensorData::Bytes(labels) = &outputs[1].data else { panic!("labels") };
                // red passes at 0.3, blue at 0.9; an unseen or missing color gives an
                // answer (no NaN, no error).
                assert_eq!(&labels[..3], &[b"1".to_vec(), b"0".to_vec(), b"1".to_vec()], "{kind:?}");
                let crate::TensorData::F32(probabilities) = &outputs[0].data else { panic!("probabilities") };
                assert!(probabilities.iter().all(|p| p.is_finite()), "{kind:?}: {probabilities:?}");
            }
            let err = model.encode_table(numeric.view(), &elements[..4]).expect_err("one element short");
            assert!(err.to_string().contains("expected 5 (5 rows × 1 columns: color)"), "{err}");
            if kind.is_tree() {
                let importances = &model.manifest.feature_importances;
                assert_eq!(importances.keys().collect::<Vec<_>>(), ["color", "x"], "per column");
                assert!((importances.values().sum::<f64>() - 1.0).abs() < 1e-9);
            }
        }
    }
}
