//! Feature binning for histogram tree growth (as LightGBM and scikit-learn's
//! HistGradientBoosting do): each feature's training values are cut into at most
//! `max_bins` bins at quantiles, every row's value becomes its bin (one byte), and a
//! split "bin ≤ b" is the threshold "value ≤ thresholds[b]" served on raw values. Missing
//! values (NaN) have a bin of their own. A categorical column (its values category
//! codes) is not cut: each category is its bin, every unknown code shares one more
//! ("other"), and splits on it are sets of bins (see `grow`).

use ndarray::ArrayView2;

/// The bin of a missing value.
pub(crate) const MISSING: u8 = u8::MAX;
/// Most bins a feature may have besides the missing one.
pub(crate) const MAX_BINS: usize = 255;

/// Bin edges per feature and every row's bins, feature by feature (column-major, so a
/// histogram reads one contiguous column).
pub(crate) struct Binned {
    /// `thresholds[f][b]`: the largest value of bin `b` of feature `f` is at most this;
    /// the last bin holds everything above the last threshold.
    pub thresholds: Vec<Vec<f32>>,
    /// `bins[f * rows + row]`.
    pub bins: Vec<u8>,
    /// The same bins row by row, `slots[row * features + f]`, with a missing value's
    /// bin replaced by the feature's missing slot (its bin count): what a histogram of
    /// every feature reads, one row at a time.
    pub slots: Vec<u8>,
    pub rows: usize,
    /// Per feature, how many categories it has if it is categorical: bins `0..C` are
    /// the categories, bin `C` the codes the model does not know (its thresholds are
    /// empty).
    pub categories: Vec<Option<usize>>,
}

impl Binned {
    /// Bins every row of `x`, with edges fitted on the rows `fit_rows` (the training
    /// split). `categories[f]` is `Some(C)` for a categorical feature of `C` categories
    /// (at most [`super::MAX_TREE_CATEGORIES`]); features past its end are numbers.
    pub fn new(
        x: ArrayView2<'_, f32>,
        fit_rows: std::ops::Range<usize>,
        max_bins: usize,
        categories: &[Option<usize>],
    ) -> Self {
        let rows = x.nrows();
        let max_bins = max_bins.clamp(2, MAX_BINS);
        let mut thresholds = Vec::with_capacity(x.ncols());
        let mut bins = Vec::with_capacity(rows * x.ncols());
        let categories: Vec<Option<usize>> = (0..x.ncols())
            .map(|f| categories.get(f).copied().flatten().map(|c| c.min(super::MAX_TREE_CATEGORIES)))
            .collect();
        for (column, categorical) in x.columns().into_iter().zip(&categories) {
            if let Some(count) = *categorical {
                let bin_of_code = |code: f32| match code {
                    code if code.is_nan() => MISSING,
                    code if code >= 0.0 && code.fract() == 0.0 && (code as usize) < count => code as u8,
                    _ => count as u8,
                };
                bins.extend(column.iter().map(|&code| bin_of_code(code)));
                thresholds.push(Vec::new());
                continue;
            }
            let mut values: Vec<f32> = column
                .slice_axis(ndarray::Axis(0), ndarray::Slice::from(fit_rows.clone()))
                .iter()
                .copied()
                .filter(|v| !v.is_nan())
                .collect();
            values.sort_unstable_by(f32::total_cmp);
            let edges = edges(&values, max_bins);
            bins.extend(column.iter().map(|&value| bin_of(&edges, value)));
            thresholds.push(edges);
        }
        let mut binned = Self { thresholds, bins, slots: Vec::new(), rows, categories };
        let features = binned.features();
        let mut slots = vec![0u8; rows * features];
        for feature in 0..features {
            let missing = binned.bins(feature) as u8;
            for (row, &bin) in binned.column(feature).iter().enumerate() {
                slots[row * features + feature] = if bin == MISSING { missing } else { bin };
            }
        }
        binned.slots = slots;
        binned
    }

    pub fn features(&self) -> usize {
        self.thresholds.len()
    }

    /// Bins of a feature besides the missing one.
    pub fn bins(&self, feature: usize) -> usize {
        match self.categories[feature] {
            Some(count) => count + 1,
            None => self.thresholds[feature].len() + 1,
        }
    }

    pub fn column(&self, feature: usize) -> &[u8] {
        &self.bins[feature * self.rows..(feature + 1) * self.rows]
    }
}

/// The bin of `value` given the edges: the first bin whose edge is at least the value.
pub(crate) fn bin_of(edges: &[f32], value: f32) -> u8 {
    if value.is_nan() { MISSING } else { edges.partition_point(|&edge| edge < value) as u8 }
}

/// Up to `max_bins - 1` edges between the sorted values: midway between neighbouring
/// distinct values, each distinct value its own bin when there are few enough, else at
/// quantiles.
fn edges(sorted: &[f32], max_bins: usize) -> Vec<f32> {
    let mut distinct: Vec<f32> = sorted.to_vec();
    distinct.dedup();
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|pair| midpoint(pair[0], pair[1])).collect();
    }
    let mut edges = Vec::with_capacity(max_bins - 1);
    for bin in 1..max_bins {
        let at = bin * sorted.len() / max_bins;
        let (low, high) = (sorted[at.saturating_sub(1)], sorted[at]);
        let edge = if low < high { midpoint(low, high) } else { low };
        if edges.last().is_none_or(|last| edge > *last) && edge < *distinct.last().unwrap_or(&edge) {
            edges.push(edge);
        }
    }
    edges
}

/// A threshold between `low` and `high` that `low` is at most and `high` is above.
fn midpoint(low: f32, high: f32) -> f32 {
    let middle = low + (high - low) / 2.0;
    if middle < high { middle } else { low }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn few_distinct_values_each_get_a_bin_and_nan_its_own() {
        let x = array![[1.0f32], [2.0], [2.0], [5.0], [f32::NAN]];
        let binned = Binned::new(x.view(), 0..5, 255, &[]);
        assert_eq!(binned.thresholds[0], vec![1.5, 3.5]);
        assert_eq!(binned.column(0), &[0, 1, 1, 2, MISSING]);
        // Serving reads the same edges: a value at an edge goes to the lower bin.
        assert_eq!(bin_of(&binned.thresholds[0], 1.5), 0);
        assert_eq!(bin_of(&binned.thresholds[0], 100.0), 2);
    }

    #[test]
    fn many_values_are_cut_at_quantiles_into_at_most_max_bins() {
        let x = ndarray::Array2::from_shape_fn((1000, 1), |(i, _)| i as f32);
        let binned = Binned::new(x.view(), 0..1000, 16, &[]);
        let edges = &binned.thresholds[0];
        assert_eq!(edges.len(), 15);
        assert!(edges.windows(2).all(|pair| pair[0] < pair[1]));
        let mut counts = [0usize; 16];
        binned.column(0).iter().for_each(|&b| counts[b as usize] += 1);
        assert!(counts.iter().all(|&c| (60..=66).contains(&c)), "{counts:?}");
    }
}
