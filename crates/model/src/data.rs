//! CSV datasets: a header row, then one row per example. Feature columns are numeric,
//! an empty cell being a missing value (NaN); the target is numeric (regression) or any
//! text (classification, label-encoded), and never missing.

use ndarray::{Array1, Array2};

use crate::{Error, Result};

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
    /// One row per example (no columns for text models).
    pub features: Array2<f32>,
    /// The text column's name and one text per example, for text models.
    pub text: Option<(String, Vec<String>)>,
    /// One target per example.
    pub target: Target,
}

impl Dataset {
    /// Parses a numeric CSV; see [`Dataset::from_csv_with_text`].
    pub fn from_csv(csv: &str, target: &str, classes: bool) -> Result<Self> {
        Self::from_csv_with_text(csv, target, classes, None)
    }

    /// Parses a CSV (RFC 4180: quoted fields may hold commas and newlines). `target` names
    /// the column to predict; with `classes` it is label-encoded. With `text_column`, that
    /// column's text is the only input; otherwise every other column is a numeric feature.
    /// Errors name the row (data rows count from 1) and column of a bad value.
    pub fn from_csv_with_text(csv: &str, target: &str, classes: bool, text_column: Option<&str>) -> Result<Self> {
        Self::from_csv_reader(csv.as_bytes(), target, classes, text_column, 0)
    }

    /// Parses a CSV as it is read (as [`Dataset::from_csv_with_text`]), so the text is
    /// never held whole: only the parsed table is kept. `rows_hint` (0 when unknown)
    /// sizes the table up front, so it is not regrown (and briefly held twice) as rows
    /// arrive.
    pub fn from_csv_reader<R: std::io::Read>(
        csv: R,
        target: &str,
        classes: bool,
        text_column: Option<&str>,
        rows_hint: usize,
    ) -> Result<Self> {
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

        let mut values = Vec::with_capacity(rows_hint.saturating_mul(feature_indexes.len()));
        let mut texts = Vec::new();
        let mut numeric_targets = Vec::with_capacity(if classes { 0 } else { rows_hint });
        // Labels are interned as they are read: one index per row, each label once.
        let mut seen_labels: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut label_of_row: Vec<usize> = Vec::with_capacity(if classes { rows_hint } else { 0 });
        let mut record = csv::StringRecord::new();
        for row in 1.. {
            let more = reader.read_record(&mut record).map_err(|err| Error::Dataset(format!("row {row}: {err}")))?;
            if !more {
                break;
            }
            let cell = |column: usize| record.get(column).unwrap_or_default();
            let number = |column: usize| -> Result<f32> {
                let text = cell(column);
                let value: f32 = text.parse().map_err(|_| {
                    let what =
                        if text.is_empty() { "is missing".to_owned() } else { format!("{text:?} is not a number") };
                    Error::Dataset(format!("row {row}, column {:?}: {what}", columns[column]))
                })?;
                if value.is_finite() {
                    Ok(value)
                } else {
                    Err(Error::Dataset(format!(
                        "row {row}, column {:?}: {text:?} is not a finite number",
                        columns[column]
                    )))
                }
            };
            for column in &feature_indexes {
                values.push(if cell(*column).is_empty() { f32::NAN } else { number(*column)? });
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
                numeric_targets.push(number(target_index)?);
            }
        }
        let rows = if classes { label_of_row.len() } else { numeric_targets.len() };
        if rows == 0 {
            return Err(Error::Dataset("the CSV has a header but no rows".into()));
        }
        let features = Array2::from_shape_vec((rows, feature_indexes.len()), values)
            .map_err(|err| Error::Dataset(err.to_string()))?;
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
        Ok(Self {
            feature_names: feature_indexes.iter().map(|i| columns[*i].clone()).collect(),
            target_name: target.to_owned(),
            features,
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
        let err = Dataset::from_csv("a,y\n1,0\nx,1\n", "y", false).expect_err("bad value");
        assert_eq!(err.to_string(), "dataset: row 2, column \"a\": \"x\" is not a number");
        // An empty feature cell is a missing value; an empty target is an error.
        let data = Dataset::from_csv("a,b,y\n1,,0\n", "y", false).expect("a missing feature");
        assert!(data.features[[0, 1]].is_nan() && data.features[[0, 0]] == 1.0);
        let err = Dataset::from_csv("a,y\n1,0\n2,\n", "y", false).expect_err("missing target");
        assert_eq!(err.to_string(), "dataset: row 2, column \"y\": is missing");
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
