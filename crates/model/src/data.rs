//! CSV datasets: a header row, then one row per example. A feature column is numeric,
//! or categorical when any of its cells is text that is not a number (or when the job
//! names it categorical); a missing value is an empty cell or one of the markers pandas
//! writes and reads as missing (`NA`, `N/A`, `NaN`, `null`, …). The target is numeric
//! (regression) or any text (classification, label-encoded), and never missing.

use std::collections::HashMap;

use ndarray::{Array1, Array2};

use crate::{Error, Result};

/// Cells that mean "no value" in a feature column: pandas' default `na_values`, so a
/// frame written by `DataFrame.to_csv` reads back with its gaps where they were.
pub const MISSING_MARKERS: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Whether a cell (of a feature column, or a categorical element sent for inference)
/// stands for a missing value.
pub(crate) fn is_missing(cell: &[u8]) -> bool {
    MISSING_MARKERS.iter().any(|marker| marker.as_bytes() == cell)
}

/// Code of a missing value in [`CategoricalColumn::codes`].
pub const MISSING_CODE: u32 = u32::MAX;

/// Most distinct values a categorical column may have: codes are carried as FP32 on the
/// way to the model, exact up to 2^24.
const MAX_DISTINCT: usize = 1 << 24;

/// A categorical feature column: its distinct values in first-seen order and each row's
/// value as an index into them ([`MISSING_CODE`] when missing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoricalColumn {
    /// Column name.
    pub name: String,
    /// Distinct values, in the order they first appear.
    pub values: Vec<String>,
    /// Per row, the index of its value in `values`.
    pub codes: Vec<u32>,
}

/// How to read a CSV into a [`Dataset`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CsvOptions<'a> {
    /// The column to predict.
    pub target: &'a str,
    /// Label-encode the target (classification) rather than read it as a number.
    pub classes: bool,
    /// A free-text column that is then the only input (text models).
    pub text_column: Option<&'a str>,
    /// Columns to read as categories even when every value is a number (codes, ids).
    pub categorical: &'a [String],
    /// Rows expected (0 when unknown): sizes the table up front.
    pub rows_hint: usize,
}

/// A feature column's values as they are read.
enum ColumnState {
    Numeric,
    Categorical { index: HashMap<String, u32>, values: Vec<String> },
}

impl ColumnState {
    fn categorical() -> Self {
        Self::Categorical { index: HashMap::new(), values: Vec::new() }
    }

    /// The code of `text`, interned on first sight; `None` past [`MAX_DISTINCT`].
    fn intern(&mut self, text: &str) -> Option<u32> {
        let Self::Categorical { index, values } = self else { return None };
        if let Some(code) = index.get(text) {
            return Some(*code);
        }
        if values.len() >= MAX_DISTINCT {
            return None;
        }
        let code = values.len() as u32;
        index.insert(text.to_owned(), code);
        values.push(text.to_owned());
        Some(code)
    }
}

/// What the target column holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A number per row (regression).
    Values(Array1<f32>),
    /// A class per row, as an index into `labels` (classification).
    Classes {
        /// Class index per row.
        index: Vec<usize>,
        /// Class labels; numeric labels sort by value, others as text.
        labels: Vec<String>,
    },
}

/// Sorted distinct labels: by numeric value when every label is a number, else as text.
fn sorted_labels(cells: &[String]) -> Vec<String> {
    let mut labels: Vec<String> = cells.to_vec();
    labels.sort();
    labels.dedup();
    if labels.iter().all(|l| l.parse::<f64>().is_ok()) {
        labels.sort_by(|a, b| {
            let (a, b) = (a.parse::<f64>().unwrap_or(0.0), b.parse::<f64>().unwrap_or(0.0));
            a.total_cmp(&b)
        });
    }
    labels
}

/// Features and target parsed from a CSV.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Names of the numeric feature columns, in column order (empty for text models).
    pub feature_names: Vec<String>,
    /// Name of the target column.
    pub target_name: String,
    /// One row per example of the numeric features (no columns for text models).
    pub features: Array2<f32>,
    /// The categorical feature columns, in column order.
    pub categorical: Vec<CategoricalColumn>,
    /// The text column's name and one text per example, for text models.
    pub text: Option<(String, Vec<String>)>,
    /// One target per example.
    pub target: Target,
}

impl Dataset {
    /// Parses a CSV with default options; see [`Dataset::from_csv_reader`].
    pub fn from_csv(csv: &str, target: &str, classes: bool) -> Result<Self> {
        Self::from_csv_with_text(csv, target, classes, None)
    }

    /// Parses a CSV whose `text_column` (when given) is the only input.
    pub fn from_csv_with_text(csv: &str, target: &str, classes: bool, text_column: Option<&str>) -> Result<Self> {
        Self::from_csv_reader(csv.as_bytes(), CsvOptions { target, classes, text_column, ..Default::default() })
    }

    /// Parses a CSV (RFC 4180: quoted fields may hold commas and newlines) as it is
    /// read, so the text is never held whole: only the parsed table is kept. With a
    /// text column, that column's text is the only input; otherwise every other column
    /// is a feature, numeric or categorical. Errors name the row (data rows count from
    /// 1) and column of a bad value.
    pub fn from_csv_reader<R: std::io::Read>(csv: R, options: CsvOptions<'_>) -> Result<Self> {
        let CsvOptions { target, classes, text_column, categorical, rows_hint } = options;
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(csv);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|err| Error::Dataset(format!("cannot read the header row: {err}")))?
            .iter()
            .map(str::to_owned)
            .collect();
        if columns.iter().all(String::is_empty) {
            return Err(Error::Dataset("the CSV is empty; expected a header row".into()));
        }
        let find = |name: &str, what: &str| {
            columns.iter().position(|c| c == name).ok_or_else(|| {
                Error::Dataset(format!("{what} column {name:?} not found; columns are {}", columns.join(", ")))
            })
        };
        let target_index = find(target, "target")?;
        let text_index = text_column.map(|name| find(name, "text")).transpose()?;
        if text_index == Some(target_index) {
            return Err(Error::Dataset("the text column cannot also be the target".into()));
        }
        let feature_indexes: Vec<usize> =
            if text_index.is_some() { Vec::new() } else { (0..columns.len()).filter(|i| *i != target_index).collect() };
        if text_index.is_none() && feature_indexes.is_empty() {
            return Err(Error::Dataset("expected at least one feature column beside the target".into()));
        }
        let mut states: Vec<ColumnState> = feature_indexes.iter().map(|_| ColumnState::Numeric).collect();
        for name in categorical {
            if text_index.is_some() {
                return Err(Error::Dataset(
                    "a text model's only input is its text column; it has no categorical columns".into(),
                ));
            }
            let column = find(name, "categorical")?;
            if column == target_index {
                return Err(Error::Dataset(format!("the target {name:?} cannot also be a categorical feature")));
            }
            if let Some(position) = feature_indexes.iter().position(|i| *i == column) {
                states[position] = ColumnState::categorical();
            }
        }

        // Row-major, every feature column; a categorical column's cells hold codes (NaN
        // for missing) until the numeric columns are packed together at the end.
        let width = feature_indexes.len();
        let mut values = Vec::with_capacity(rows_hint.saturating_mul(width));
        let mut texts = Vec::new();
        let mut numeric_targets = Vec::with_capacity(if classes { 0 } else { rows_hint });
        // Labels are interned as they are read: one index per row, each label once.
        let mut seen_labels: HashMap<String, usize> = HashMap::new();
        let mut label_of_row: Vec<usize> = Vec::with_capacity(if classes { rows_hint } else { 0 });
        let mut record = csv::StringRecord::new();
        let too_many = |column: usize| {
            Error::Dataset(format!(
                "column {:?} has more than {MAX_DISTINCT} distinct values; is it an identifier?",
                columns[column]
            ))
        };
        for row in 1.. {
            let more = reader.read_record(&mut record).map_err(|err| Error::Dataset(format!("row {row}: {err}")))?;
            if !more {
                break;
            }
            let cell = |column: usize| record.get(column).unwrap_or_default();
            for (position, column) in feature_indexes.iter().enumerate() {
                let text = cell(*column);
                if is_missing(text.as_bytes()) {
                    values.push(f32::NAN);
                    continue;
                }
                let state = &mut states[position];
                if let ColumnState::Numeric = state {
                    match text.parse::<f32>() {
                        Ok(value) if value.is_finite() => {
                            values.push(value);
                            continue;
                        }
                        Ok(_) => {
                            return Err(Error::Dataset(format!(
                                "row {row}, column {:?}: {text:?} is not a finite number",
                                columns[*column]
                            )));
                        }
                        // Text in a numeric column so far: the column is categorical,
                        // and the numbers read before it are categories too.
                        Err(_) => {
                            *state = ColumnState::categorical();
                            for earlier in values.iter_mut().skip(position).step_by(width) {
                                if !earlier.is_nan() {
                                    let code = state.intern(&earlier.to_string()).ok_or_else(|| too_many(*column))?;
                                    *earlier = code as f32;
                                }
                            }
                        }
                    }
                }
                let code = state.intern(text).ok_or_else(|| too_many(*column))?;
                values.push(code as f32);
            }
            if let Some(column) = text_index {
                texts.push(cell(column).to_owned());
            }
            if classes {
                if cell(target_index).is_empty() {
                    return Err(Error::Dataset(format!("row {row}, column {target:?}: the label is missing")));
                }
                let next = seen_labels.len();
                let label = cell(target_index);
                let index = match seen_labels.get(label) {
                    Some(index) => *index,
                    None => *seen_labels.entry(label.to_owned()).or_insert(next),
                };
                label_of_row.push(index);
            } else {
                let text = cell(target_index);
                let value: f32 = text.parse().map_err(|_| {
                    let what =
                        if text.is_empty() { "is missing".to_owned() } else { format!("{text:?} is not a number") };
                    Error::Dataset(format!("row {row}, column {target:?}: {what}"))
                })?;
                if !value.is_finite() {
                    return Err(Error::Dataset(format!(
                        "row {row}, column {target:?}: {text:?} is not a finite number"
                    )));
                }
                numeric_targets.push(value);
            }
        }
        let rows = if classes { label_of_row.len() } else { numeric_targets.len() };
        if rows == 0 {
            return Err(Error::Dataset("the CSV has a header but no rows".into()));
        }
        let (features, categorical) = split_columns(values, rows, &states, &feature_indexes, &columns)?;
        let target_values = if classes {
            let first_seen: Vec<String> = {
                let mut by_index: Vec<(usize, String)> = seen_labels.into_iter().map(|(l, i)| (i, l)).collect();
                by_index.sort_unstable();
                by_index.into_iter().map(|(_, label)| label).collect()
            };
            let labels = sorted_labels(&first_seen);
            let sorted_position: Vec<usize> =
                first_seen.iter().map(|label| labels.iter().position(|l| l == label).unwrap_or(0)).collect();
            let index = label_of_row.into_iter().map(|seen| sorted_position[seen]).collect();
            Target::Classes { index, labels }
        } else {
            Target::Values(Array1::from(numeric_targets))
        };
        let feature_names = feature_indexes
            .iter()
            .zip(&states)
            .filter(|(_, state)| matches!(state, ColumnState::Numeric))
            .map(|(i, _)| columns[*i].clone())
            .collect();
        Ok(Self {
            feature_names,
            target_name: target.to_owned(),
            features,
            categorical,
            text: text_index.map(|i| (columns[i].clone(), texts)),
            target: target_values,
        })
    }

    /// Number of examples.
    pub fn rows(&self) -> usize {
        match &self.target {
            Target::Values(values) => values.len(),
            Target::Classes { index, .. } => index.len(),
        }
    }

    /// Reorders the examples in place so that row `i` becomes what was row `order[i]`
    /// (`order` is a permutation of the rows): features, target and text move together,
    /// following each cycle of the permutation with swaps, so no second table is made.
    pub(crate) fn permute_rows(&mut self, order: &[u32]) {
        if !self.features.is_standard_layout() {
            self.features = self.features.as_standard_layout().into_owned();
        }
        let width = self.features.ncols();
        let mut features = self.features.as_slice_mut();
        let mut swap = |a: usize, b: usize| {
            let (low, high) = (a.min(b), a.max(b));
            if let Some(values) = features.as_deref_mut() {
                let (head, tail) = values.split_at_mut(high * width);
                head[low * width..(low + 1) * width].swap_with_slice(&mut tail[..width]);
            }
            match &mut self.target {
                Target::Values(values) => values.swap(low, high),
                Target::Classes { index, .. } => index.swap(low, high),
            }
            if let Some((_, texts)) = &mut self.text {
                texts.swap(low, high);
            }
            for column in &mut self.categorical {
                column.codes.swap(low, high);
            }
        };
        let mut visited = vec![false; order.len()];
        for start in 0..order.len() {
            if visited[start] {
                continue;
            }
            visited[start] = true;
            let mut at = start;
            loop {
                let from = order[at] as usize;
                if from == start {
                    break;
                }
                visited[from] = true;
                swap(at, from);
                at = from;
            }
        }
    }
}

/// Packs the numeric columns of the row-major table (every feature column, codes in the
/// categorical ones) into the feature matrix, in place, and takes the codes out.
fn split_columns(
    mut values: Vec<f32>,
    rows: usize,
    states: &[ColumnState],
    feature_indexes: &[usize],
    columns: &[String],
) -> Result<(Array2<f32>, Vec<CategoricalColumn>)> {
    let width = states.len();
    let numeric: Vec<usize> = (0..width).filter(|position| matches!(states[*position], ColumnState::Numeric)).collect();
    let mut categorical: Vec<CategoricalColumn> = states
        .iter()
        .zip(feature_indexes)
        .filter_map(|(state, column)| match state {
            ColumnState::Categorical { values, .. } => Some(CategoricalColumn {
                name: columns[*column].clone(),
                values: values.clone(),
                codes: Vec::with_capacity(rows),
            }),
            ColumnState::Numeric => None,
        })
        .collect();
    if !categorical.is_empty() {
        let categorical_positions: Vec<usize> =
            (0..width).filter(|position| !matches!(states[*position], ColumnState::Numeric)).collect();
        // Row r's numeric cells move to r·numeric.len(), never past where they were read.
        for row in 0..rows {
            for (c, position) in categorical_positions.iter().enumerate() {
                let code = values[row * width + position];
                categorical[c].codes.push(if code.is_nan() { MISSING_CODE } else { code as u32 });
            }
            for (n, position) in numeric.iter().enumerate() {
                values[row * numeric.len() + n] = values[row * width + position];
            }
        }
        values.truncate(rows * numeric.len());
        values.shrink_to_fit();
    }
    let features =
        Array2::from_shape_vec((rows, numeric.len()), values).map_err(|err| Error::Dataset(err.to_string()))?;
    Ok((features, categorical))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_features_and_numeric_target() {
        let data = Dataset::from_csv("a,y,b\n1,0,2\n3,1.5,4\n", "y", false).expect("valid csv");
        assert_eq!(data.feature_names, vec!["a", "b"]);
        assert_eq!(data.features.row(1).to_vec(), vec![3.0, 4.0]);
        assert_eq!(data.target, Target::Values(Array1::from(vec![0.0, 1.5])));
    }

    #[test]
    fn label_encodes_text_and_numeric_classes() {
        let data = Dataset::from_csv("a,y\n1,dog\n2,cat\n3,dog\n", "y", true).expect("valid csv");
        assert_eq!(data.target, Target::Classes { index: vec![1, 0, 1], labels: vec!["cat".into(), "dog".into()] });
        let data = Dataset::from_csv("a,y\n1,10\n2,2\n3,1\n", "y", true).expect("valid csv");
        assert_eq!(
            data.target,
            Target::Classes { index: vec![2, 1, 0], labels: vec!["1".into(), "2".into(), "10".into()] }
        );
    }

    #[test]
    fn names_row_and_column_of_a_bad_value() {
        let err = Dataset::from_csv("a,y\n1,0\n2,x\n", "y", false).expect_err("bad target");
        assert_eq!(err.to_string(), "dataset: row 2, column \"y\": \"x\" is not a number");
        let err = Dataset::from_csv("a,y\n1,0\ninf,1\n", "y", false).expect_err("infinite feature");
        assert_eq!(err.to_string(), "dataset: row 2, column \"a\": \"inf\" is not a finite number");
        // An empty feature cell is a missing value; an empty target is an error.
        let data = Dataset::from_csv("a,b,y\n1,,0\n", "y", false).expect("a missing feature");
        assert!(data.features[[0, 1]].is_nan() && data.features[[0, 0]] == 1.0);
        let err = Dataset::from_csv("a,y\n1,0\n2,\n", "y", false).expect_err("missing target");
        assert_eq!(err.to_string(), "dataset: row 2, column \"y\": is missing");
    }

    #[test]
    fn text_columns_are_categories_and_pandas_gaps_are_missing() {
        // "color" turns categorical at row 3: the numbers before it become categories.
        let csv = "size,color,zip,y\n1.5,7,02139,a\nNA,,10001,b\n2,red,02139,a\n3,blue,NaN,b\n";
        let categorical = ["zip".to_owned()];
        let options = CsvOptions { target: "y", classes: true, categorical: &categorical, ..Default::default() };
        let data = Dataset::from_csv_reader(csv.as_bytes(), options).expect("valid csv");
        assert_eq!(data.feature_names, vec!["size"]);
        assert_eq!(data.features.column(0).iter().map(|v| v.is_nan()).collect::<Vec<_>>(), [false, true, false, false]);
        assert_eq!(data.features[[3, 0]], 3.0);
        let [color, zip] = &data.categorical[..] else { panic!("two categorical columns: {:?}", data.categorical) };
        assert_eq!(
            (color.name.as_str(), color.values.clone()),
            ("color", vec!["7".into(), "red".into(), "blue".into()])
        );
        assert_eq!(color.codes, vec![0, MISSING_CODE, 1, 2]);
        // Named categorical: read as text, leading zeros kept.
        assert_eq!(zip.values, vec!["02139".to_owned(), "10001".to_owned()]);
        assert_eq!(zip.codes, vec![0, 1, 0, MISSING_CODE]);

        let mut permuted = data.clone();
        permuted.permute_rows(&[3, 2, 1, 0]);
        assert_eq!(permuted.categorical[0].codes, vec![2, 1, MISSING_CODE, 0]);

        let unknown = ["nope".to_owned()];
        let options = CsvOptions { target: "y", classes: true, categorical: &unknown, ..Default::default() };
        let err = Dataset::from_csv_reader(csv.as_bytes(), options).expect_err("unknown column");
        assert!(err.to_string().contains("categorical column \"nope\" not found"), "{err}");
    }

    #[test]
    fn quoted_text_column_is_the_only_input() {
        let csv = "id,review,stars\n1,\"great, really great\",good\n2,awful,bad\n";
        let data = Dataset::from_csv_with_text(csv, "stars", true, Some("review")).expect("valid csv");
        assert_eq!(data.features.dim(), (2, 0));
        assert_eq!(data.text, Some(("review".to_owned(), vec!["great, really great".to_owned(), "awful".to_owned()])));
        let err = Dataset::from_csv("a,y\n1,2,3\n", "y", false).expect_err("ragged");
        assert!(err.to_string().starts_with("dataset: row 1:"), "{err}");
    }

    #[test]
    fn permuting_moves_features_targets_and_texts_together() {
        let mut data =
            Dataset::from_csv("a,b,y\n0,10,x\n1,11,y\n2,12,z\n3,13,x\n4,14,y\n", "y", true).expect("valid csv");
        let before = data.clone();
        let order = [3u32, 0, 4, 1, 2];
        data.permute_rows(&order);
        for (row, from) in order.iter().enumerate() {
            let from = *from as usize;
            assert_eq!(data.features.row(row), before.features.row(from));
            let (Target::Classes { index: now, .. }, Target::Classes { index: was, .. }) =
                (&data.target, &before.target)
            else {
                panic!("classes expected");
            };
            assert_eq!(now[row], was[from]);
        }
        let mut texts = Dataset::from_csv_with_text("t,y\na,1\nb,2\nc,3\n", "y", false, Some("t")).expect("valid");
        texts.permute_rows(&[2, 0, 1]);
        assert_eq!(texts.text.map(|(_, t)| t), Some(vec!["c".into(), "a".into(), "b".into()]));
        assert_eq!(texts.target, Target::Values(Array1::from(vec![3.0, 1.0, 2.0])));
    }

    #[test]
    fn missing_target_lists_columns() {
        let err = Dataset::from_csv("a,b\n1,2\n", "y", false).expect_err("no target");
        assert!(err.to_string().contains("columns are a, b"), "{err}");
    }
}
