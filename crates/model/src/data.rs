//! Numeric CSV datasets: a header row, then one row per example.

use ndarray::{Array1, Array2};

use crate::{Error, Result};

/// Features and target parsed from a CSV.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Names of the feature columns, in column order.
    pub feature_names: Vec<String>,
    /// Name of the target column.
    pub target_name: String,
    /// One row per example.
    pub features: Array2<f64>,
    /// One value per example.
    pub target: Array1<f64>,
}


impl Dataset {
    /// Parses a numeric CSV; `target` names the column to predict, every other column is
    /// a feature. Errors name the row and column of a bad value.
    pub fn from_csv(csv: &str, target: &str) -> Result<Self> {
        let mut lines = csv.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
        let (_, header_line) = lines
            .next()
            .ok_or_else(|| Error::Dataset("the CSV is empty; expected a header row".into()))?;
        let columns: Vec<String> = header_line.split(',').map(|c| c.trim().to_owned()).collect();
        let target_index = columns.iter().position(|c| c == target).ok_or_else(|| {
            Error::Dataset(format!(
                "target column {target:?} not found; columns are {}",
                columns.join(", ")
            ))
        })?;
        if columns.len() < 2 {
            return Err(Error::Dataset("expected at least one feature column beside the target".into()));
        }
        let feature_names: Vec<String> = columns
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != target_index)
            .map(|(_, c)| c.clone())
            .collect();

        let mut values = Vec::new();
        let mut targets = Vec::new();
        for (line_index, line) in lines {
            let row = line_index; // data rows count from 1 after the header
            let cells: Vec<&str> = line.split(',').collect();
            if cells.len() != columns.len() {
                return Err(Error::Dataset(format!(
                    "row {row} has {} values; the header has {} columns",
                    cells.len(),
                    columns.len()
                )));
            }
            for (column, cell) in cells.iter().enumerate() {
                let cell = cell.trim();
                let value: f64 = cell.parse().map_err(|_| {
                    Error::Dataset(format!(
                        "row {row}, column {:?}: {cell:?} is not a number",
                        columns[column]
                    ))
                })?;
                if !value.is_finite() {
                    return Err(Error::Dataset(format!(
                        "row {row}, column {:?}: {cell:?} is not a finite number",
                        columns[column]
                    )));
                }
                if column == target_index {
                    targets.push(value);
                } else {
                    values.push(value);
                }
            }
        }
        if targets.is_empty() {
            return Err(Error::Dataset("the CSV has a header but no rows".into()));
        }
        let features = Array2::from_shape_vec((targets.len(), feature_names.len()), values)
            .map_err(|err| Error::Dataset(err.to_string()))?;
        Ok(Self {
            feature_names,
            target_name: target.to_owned(),
            features,
            target: Array1::from(targets),
        })
    }

    /// Number of examples.
    pub fn rows(&self) -> usize {
        self.target.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_features_and_target() {
        let data = Dataset::from_csv("a,y,b\n1,0,2\n3,1,4\n", "y").expect("valid csv");
        assert_eq!(data.feature_names, vec!["a", "b"]);
        assert_eq!(data.features.row(1).to_vec(), vec![3.0, 4.0]);
        assert_eq!(data.target.to_vec(), vec![0.0, 1.0]);
    }

    #[test]
    fn names_row_and_column_of_a_bad_value() {
        let err = Dataset::from_csv("a,y\n1,0\nx,1\n", "y").expect_err("bad value");
        assert_eq!(err.to_string(), "dataset: row 2, column \"a\": \"x\" is not a number");
    }

    #[test]
    fn missing_target_lists_columns() {
        let err = Dataset::from_csv("a,b\n1,2\n", "y").expect_err("no target");
        assert!(err.to_string().contains("columns are a, b"), "{err}");
    }
}
