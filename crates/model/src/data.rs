//! CSV datasets: a header row, then one row per example. Feature columns are numeric;
//! the target is numeric (regression) or any text (classification, label-encoded).

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

/// Features and target parsed from a CSV.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Names of the feature columns, in column order.
    pub feature_names: Vec<String>,
    /// Name of the target column.
    pub target_name: String,
    /// One row per example.
    pub features: Array2<f32>,
    /// One target per example.
    pub target: Target,
}

fn split_line(line: &str) -> Vec<&str> {
    line.split(',').map(str::trim).collect()
}

/// Sorted distinct labels: by numeric value when every label is a number, else as text.
fn sorted_labels(cells: &[String]) -> Vec<String> {
    let mut labels: Vec<String> = cells.to_vec();
    labels.sort();
    labels.dedup();
    if labels.iter().all(|l| l.parse::<f64>().is_ok()) {
        labels.sort_by(|a, b| {
            let (a, b) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            a.total_cmp(&b)
        });
    }
    labels
}

impl Dataset {
    /// Parses a CSV; `target` names the column to predict, every other column is a
    /// numeric feature. With `classes`, the target is label-encoded. Errors name the row
    /// (data rows count from 1) and column of a bad value.
    pub fn from_csv(csv: &str, target: &str, classes: bool) -> Result<Self> {
        let mut lines = csv
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty());
        let (_, header_line) = lines
            .next()
            .ok_or_else(|| Error::Dataset("the CSV is empty; expected a header row".into()))?;
        let columns: Vec<String> = split_line(header_line)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let target_index = columns.iter().position(|c| c == target).ok_or_else(|| {
            Error::Dataset(format!(
                "target column {target:?} not found; columns are {}",
                columns.join(", ")
            ))
        })?;
        if columns.len() < 2 {
            return Err(Error::Dataset(
                "expected at least one feature column beside the target".into(),
            ));
        }
        let feature_names: Vec<String> = columns
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != target_index)
            .map(|(_, c)| c.clone())
            .collect();

        let mut values = Vec::new();
        let mut numeric_targets = Vec::new();
        let mut text_targets = Vec::new();
        for (row, (_, line)) in lines.enumerate() {
            let row = row + 1;
            let cells = split_line(line);
            if cells.len() != columns.len() {
                return Err(Error::Dataset(format!(
                    "row {row} has {} values; the header has {} columns",
                    cells.len(),
                    columns.len()
                )));
            }
            for (column, cell) in cells.iter().enumerate() {
                if column == target_index && classes {
                    if cell.is_empty() {
                        return Err(Error::Dataset(format!(
                            "row {row}, column {target:?}: the label is missing"
                        )));
                    }
                    text_targets.push((*cell).to_owned());
                    continue;
                }
                let value: f32 = cell.parse().map_err(|_| {
                    let what = if cell.is_empty() {
                        "is missing".to_owned()
                    } else {
                        format!("{cell:?} is not a number")
                    };
                    Error::Dataset(format!("row {row}, column {:?}: {what}", columns[column]))
                })?;
                if !value.is_finite() {
                    return Err(Error::Dataset(format!(
                        "row {row}, column {:?}: {cell:?} is not a finite number",
                        columns[column]
                    )));
                }
                if column == target_index {
                    numeric_targets.push(value);
                } else {
                    values.push(value);
                }
            }
        }
        let rows = if classes {
            text_targets.len()
        } else {
            numeric_targets.len()
        };
        if rows == 0 {
            return Err(Error::Dataset("the CSV has a header but no rows".into()));
        }
        let features = Array2::from_shape_vec((rows, feature_names.len()), values)
            .map_err(|err| Error::Dataset(err.to_string()))?;
        let target_values = if classes {
            let labels = sorted_labels(&text_targets);
            let index = text_targets
                .iter()
                .map(|label| labels.iter().position(|l| l == label).unwrap_or(0))
                .collect();
            Target::Classes { index, labels }
        } else {
            Target::Values(Array1::from(numeric_targets))
        };
        Ok(Self {
            feature_names,
            target_name: target.to_owned(),
            features,
            target: target_values,
        })
    }

    /// Number of examples.
    pub fn rows(&self) -> usize {
        self.features.nrows()
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
        assert_eq!(
            data.target,
            Target::Classes {
                index: vec![1, 0, 1],
                labels: vec!["cat".into(), "dog".into()]
            }
        );
        let data = Dataset::from_csv("a,y\n1,10\n2,2\n3,1\n", "y", true).expect("valid csv");
        assert_eq!(
            data.target,
            Target::Classes {
                index: vec![2, 1, 0],
                labels: vec!["1".into(), "2".into(), "10".into()]
            }
        );
    }

    #[test]
    fn names_row_and_column_of_a_bad_value() {
        let err = Dataset::from_csv("a,y\n1,0\nx,1\n", "y", false).expect_err("bad value");
        assert_eq!(
            err.to_string(),
            "dataset: row 2, column \"a\": \"x\" is not a number"
        );
        let err = Dataset::from_csv("a,b,y\n1,,0\n", "y", false).expect_err("missing value");
        assert_eq!(err.to_string(), "dataset: row 1, column \"b\": is missing");
    }

    #[test]
    fn missing_target_lists_columns() {
        let err = Dataset::from_csv("a,b\n1,2\n", "y", false).expect_err("no target");
        assert!(err.to_string().contains("columns are a, b"), "{err}");
    }
}
