//! Finding a node's best split from its histogram: for a number, the best threshold
//! between bins (one scan with running sums); for a categorical column, the best set of
//! categories to send left — LightGBM's many-vs-many search (categories sorted by their
//! mean gradient, then scanned like bins), or one category against the rest when there
//! are few. Missing rows go to whichever side
//! gains more, or, when the node saw none, to the side with more rows.

use super::binning::Binned;
use super::grow::GrowParams;
use super::histogram::{Histogram, Layout};
use super::tree::CategorySet;

/// Sums over a set of rows, per output.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sums {
    pub gradient: Vec<f64>,
    pub hessian: Vec<f64>,
    pub rows: usize,
}

impl Sums {
    pub fn zero(outputs: usize) -> Self {
        Self { gradient: vec![0.0; outputs], hessian: vec![0.0; outputs], rows: 0 }
    }

    fn score(&self, l2: f64) -> f64 {
        self.gradient.iter().zip(&self.hessian).map(|(g, h)| g * g / (h + l2)).sum()
    }

    fn minus(&self, other: &Sums) -> Sums {
        Sums {
            gradient: self.gradient.iter().zip(&other.gradient).map(|(a, b)| a - b).collect(),
            hessian: self.hessian.iter().zip(&other.hessian).map(|(a, b)| a - b).collect(),
            rows: self.rows - other.rows,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Split {
    pub feature: usize,
    /// A number's split: bins up to this one go left.
    pub bin: u8,
    /// A categorical split: the bins that go left (bin `C`, the unknown codes, too).
    pub set: Option<CategorySet>,
    pub missing_left: bool,
    pub gain: f64,
    pub left: Sums,
    pub right: Sums,
}

impl Split {
    /// Whether a present (not missing) row of bin `bin` goes left.
    pub fn sends_left(&self, bin: u8) -> bool {
        match &self.set {
            Some(set) => set.contains(bin as usize),
            None => bin <= self.bin,
        }
    }
}

/// Smallest hessian a child may have (XGBoost's `min_child_weight`, kept tiny).
const MIN_HESSIAN: f64 = 1e-3;

pub(super) fn best_split(
    binned: &Binned,
    layout: &Layout,
    histogram: &Histogram,
    features: &[usize],
    sums: &Sums,
    params: &GrowParams,
) -> Option<Split> {
    let found = features.iter().filter_map(|&feature| {
        let slots = histogram.feature(layout, feature)?;
        let bins = slots.len() / layout.stride - 1;
        if binned.categories[feature].is_some() {
            best_set_split(bins, feature, slots, sums, params)
        } else if layout.outputs == 1 {
            best_split_of_one(bins, feature, slots, sums, params)
        } else {
            best_split_of(bins, feature, slots, sums, params)
        }
    });
    // The best gain, the lowest feature on ties: the same tree however threads ran.
    let best = found.fold(None, |best: Option<Candidate>, candidate| match best {
        Some(best) if best.4 >= candidate.4 => Some(best),
        _ => Some(candidate),
    })?;
    // Only the winner's sums are gathered.
    let slots = histogram.feature(layout, best.0)?;
    Some(chosen_split(slots, slots.len() / layout.stride - 1, best, sums))
}

/// A feature's best split before its sums are gathered: feature, bin (a number's
/// threshold), the bins sent left (a categorical feature's), missing left, gain.
type Candidate = (usize, usize, Option<CategorySet>, bool, f64);

/// The rows of the split "bin ≤ `bin`" with missing rows going left or not, as the
/// directions worth trying: both when the node has missing rows, else the one that
/// sends the (absent) missing rows to the larger side at serving.
fn directions(missing_rows: usize, left_rows: usize, right_present: usize) -> &'static [bool] {
    if missing_rows > 0 {
        &[true, false]
    } else if left_rows >= right_present {
        &[true]
    } else {
        &[false]
    }
}

/// `best_split_of` for one output (boosting), with scalars instead of per-output
/// vectors: the loop where boosting spends its time.
fn best_split_of_one(
    bins: usize,
    feature: usize,
    slots: &[f64],
    total: &Sums,
    params: &GrowParams,
) -> Option<Candidate> {
    let l2 = f64::from(params.l2);
    let parent = total.score(l2);
    let min_rows = params.min_rows_per_leaf.max(1);
    let missing = bins * 3;
    let (miss_g, miss_h, missing_rows) = (slots[missing], slots[missing + 1], slots[missing + 2] as usize);
    let (total_g, total_h) = (total.gradient[0], total.hessian[0]);
    let present_rows = total.rows - missing_rows;
    let (mut left_g, mut left_h, mut left_rows) = (0f64, 0f64, 0usize);
    let mut best: Option<(f64, usize, bool)> = None;
    for (bin, slot) in slots.chunks_exact(3).take(bins - 1).enumerate() {
        // An empty bin moves no row: the split after it is the one after the last bin
        // that had rows.
        if slot[2] == 0.0 {
            continue;
        }
        left_g += slot[0];
        left_h += slot[1];
        left_rows += slot[2] as usize;
        let right_present = present_rows - left_rows;
        for &missing_left in directions(missing_rows, left_rows, right_present) {
            let (l_rows, r_rows, lg, lh) = if missing_left {
                (left_rows + missing_rows, right_present, left_g + miss_g, left_h + miss_h)
            } else {
                (left_rows, right_present + missing_rows, left_g, left_h)
            };
            if l_rows < min_rows || r_rows < min_rows {
                continue;
            }
            let (rg, rh) = (total_g - lg, total_h - lh);
            if lh < MIN_HESSIAN || rh < MIN_HESSIAN {
                continue;
            }
            let gain = -parent + (lg * lg / (lh + l2) + rg * rg / (rh + l2));
            if gain > 1e-12 && best.is_none_or(|(b, _, _)| gain > b) {
                best = Some((gain, bin, missing_left));
            }
        }
    }
    let (gain, bin, missing_left) = best?;
    Some((feature, bin, None, missing_left, gain))
}

/// A node's totals as every split search of one of its features reads them: the
/// feature's slots, its missing rows, the parent's score and the limits.
struct Scan<'a> {
    slots: &'a [f64],
    bins: usize,
    stride: usize,
    total: &'a Sums,
    l2: f64,
    parent: f64,
    min_rows: usize,
    missing_rows: usize,
    present_rows: usize,
}

impl<'a> Scan<'a> {
    fn new(bins: usize, slots: &'a [f64], total: &'a Sums, params: &GrowParams) -> Self {
        let outputs = total.gradient.len();
        let stride = 2 * outputs + 1;
        let l2 = f64::from(params.l2);
        let missing_rows = slots[bins * stride + 2 * outputs] as usize;
        Scan {
            slots,
            bins,
            stride,
            total,
            l2,
            parent: total.score(l2),
            min_rows: params.min_rows_per_leaf.max(1),
            missing_rows,
            present_rows: total.rows - missing_rows,
        }
    }

    fn rows(&self, slot: usize) -> usize {
        self.slots[slot * self.stride + self.stride - 1] as usize
    }

    /// The best gain of a split whose present rows going left have these per-output
    /// sums, missing rows sent left or right (see `directions`): `(gain, missing_left)`.
    fn best_direction(&self, left_g: &[f64], left_h: &[f64], left_rows: usize) -> Option<(f64, bool)> {
        let right_present = self.present_rows - left_rows;
        let mut best: Option<(f64, bool)> = None;
        for &missing_left in directions(self.missing_rows, left_rows, right_present) {
            let (l_rows, r_rows) = if missing_left {
                (left_rows + self.missing_rows, right_present)
            } else {
                (left_rows, right_present + self.missing_rows)
            };
            if l_rows < self.min_rows || r_rows < self.min_rows {
                continue;
            }
            let mut gain = -self.parent;
            let mut too_light = false;
            for (k, (&g, &h)) in left_g.iter().zip(left_h).enumerate() {
                let missing = self.bins * self.stride + 2 * k;
                let (lg, lh) =
                    if missing_left { (g + self.slots[missing], h + self.slots[missing + 1]) } else { (g, h) };
                let (rg, rh) = (self.total.gradient[k] - lg, self.total.hessian[k] - lh);
                too_light |= lh < MIN_HESSIAN || rh < MIN_HESSIAN;
                gain += lg * lg / (lh + self.l2) + rg * rg / (rh + self.l2);
            }
            if !too_light && gain > 1e-12 && best.is_none_or(|(b, _)| gain > b) {
                best = Some((gain, missing_left));
            }
        }
        best
    }
}

fn best_split_of(bins: usize, feature: usize, slots: &[f64], total: &Sums, params: &GrowParams) -> Option<Candidate> {
    let scan = Scan::new(bins, slots, total, params);
    let outputs = total.gradient.len();
    let (mut left_g, mut left_h) = (vec![0f64; outputs], vec![0f64; outputs]);
    let mut left_rows = 0usize;
    let mut best: Option<(f64, usize, bool)> = None;
    for bin in 0..bins - 1 {
        if scan.rows(bin) == 0 {
            continue;
        }
        for k in 0..outputs {
            left_g[k] += slots[bin * scan.stride + 2 * k];
            left_h[k] += slots[bin * scan.stride + 2 * k + 1];
        }
        left_rows += scan.rows(bin);
        if let Some((gain, missing_left)) = scan.best_direction(&left_g, &left_h, left_rows)
            && best.is_none_or(|(b, _, _)| gain > b)
        {
            best = Some((gain, bin, missing_left));
        }
    }
    let (gain, bin, missing_left) = best?;
    Some((feature, bin, None, missing_left, gain))
}

/// Categories in a node up to which each is tried alone against the rest (LightGBM's
/// `max_cat_to_onehot`); with more, they are sorted and scanned.
const ONE_VS_REST_CATEGORIES: usize = 4;
/// Most categories a sorted scan sends to one side (LightGBM's `max_cat_threshold`).
const MAX_CATEGORIES_SCANNED: usize = 32;
/// Added to a category's hessian before sorting by mean gradient, so that a rare
/// category's extreme mean does not decide the order (LightGBM's `cat_smooth`).
const CATEGORY_SMOOTHING: f64 = 10.0;

/// The best set of a categorical feature's bins to send left: with more than a few
/// categories, the categories sorted by `G / (H + smoothing)` and every prefix of up to
/// [`MAX_CATEGORIES_SCANNED`] from either end tried (the optimal partition for squared
/// error and two classes, as Fisher and Breiman showed; LightGBM's search for other
/// losses); else each category alone.
fn best_set_split(bins: usize, feature: usize, slots: &[f64], total: &Sums, params: &GrowParams) -> Option<Candidate> {
    let outputs = total.gradient.len();
    let stride = 2 * outputs + 1;
    let count = |slot: usize| slots[slot * stride + 2 * outputs] as usize;
    let present: Vec<usize> = (0..bins).filter(|&bin| count(bin) > 0).collect();
    let candidates: Vec<Vec<usize>> = if present.len() > ONE_VS_REST_CATEGORIES {
        // Sorted by the output that weighs most in the node (the only one when boosting;
        // the most frequent class for a forest, which for two classes is the exact order).
        let k =
            (0..outputs).fold(0, |best, k| if total.gradient[k].abs() > total.gradient[best].abs() { k } else { best });
        let mean = |bin: usize| slots[bin * stride + 2 * k] / (slots[bin * stride + 2 * k + 1] + CATEGORY_SMOOTHING);
        let mut sorted = present.clone();
        sorted.sort_by(|a, b| mean(*a).total_cmp(&mean(*b)).then(a.cmp(b)));
        let longest = MAX_CATEGORIES_SCANNED.min(sorted.len() - 1);
        let reversed: Vec<usize> = sorted.iter().rev().copied().collect();
        [sorted, reversed].into_iter().flat_map(|order| (1..=longest).map(move |n| order[..n].to_vec())).collect()
    } else {
        present.iter().map(|&bin| vec![bin]).collect()
    };
    let scan = Scan::new(bins, slots, total, params);
    let mut best: Option<(f64, usize, bool)> = None;
    for (index, left_bins) in candidates.iter().enumerate() {
        let left_rows: usize = left_bins.iter().map(|&bin| count(bin)).sum();
        let sum = |offset: usize| left_bins.iter().map(|&bin| slots[bin * stride + offset]).sum::<f64>();
        let left_g: Vec<f64> = (0..outputs).map(|k| sum(2 * k)).collect();
        let left_h: Vec<f64> = (0..outputs).map(|k| sum(2 * k + 1)).collect();
        if let Some((gain, missing_left)) = scan.best_direction(&left_g, &left_h, left_rows)
            && best.is_none_or(|(b, _, _)| gain > b)
        {
            best = Some((gain, index, missing_left));
        }
    }
    let (gain, index, missing_left) = best?;
    let mut set = CategorySet::default();
    candidates[index].iter().for_each(|&bin| set.insert(bin));
    Some((feature, 0, Some(set), missing_left, gain))
}

/// The chosen split's sums, from the histogram.
fn chosen_split(slots: &[f64], bins: usize, (feature, bin, set, missing_left, gain): Candidate, total: &Sums) -> Split {
    let outputs = total.gradient.len();
    let stride = 2 * outputs + 1;
    let mut left = Sums::zero(outputs);
    let left_bins: Vec<usize> = match &set {
        Some(set) => (0..bins).filter(|&b| set.contains(b)).collect(),
        None => (0..=bin).collect(),
    };
    for slot in left_bins.into_iter().chain(missing_left.then_some(bins)) {
        let values = &slots[slot * stride..(slot + 1) * stride];
        for k in 0..outputs {
            left.gradient[k] += values[2 * k];
            left.hessian[k] += values[2 * k + 1];
        }
        left.rows += values[2 * outputs] as usize;
    }
    let right = total.minus(&left);
    Split { feature, bin: bin as u8, set, missing_left, gain, left, right }
}
