//! A node's histogram: per feature, per bin (the missing bin last), the summed
//! gradient and hessian of each output and the number of rows — everything a split
//! search reads. One flat buffer per node (slot `s` of feature `f` at
//! `(offsets[f] + s) * stride`, holding `g₀ h₀ … g_K h_K rows`), recycled through a
//! pool so that growing a tree allocates a handful of buffers, not one per node and
//! feature.

use rayon::prelude::*;

use super::binning::{Binned, MISSING};

/// Rows above which a node is counted in parallel. High: on a 2-core machine a rayon
/// call per node made growing slower overall (the idle worker's spinning costs the
/// sequential parts more than the split halves save); trees and classes are grown in
/// parallel instead.
const PARALLEL_ROWS: usize = 262_144;
/// Features with at most this many slots are counted into several interleaved copies
/// (summed at the end), so that consecutive rows falling in the same bin do not wait on
/// each other's additions: the case of one-hot and other low-cardinality columns.
const FEW_SLOTS: usize = 64;
const COPIES: usize = 4;

/// Where each feature's slots are, and how wide a slot is.
pub(crate) struct Layout {
    /// Slots before feature `f` (`features + 1` entries).
    offsets: Vec<usize>,
    pub outputs: usize,
    /// `2 × outputs + 1` values per slot.
    pub stride: usize,
}

impl Layout {
    pub fn new(binned: &Binned, outputs: usize) -> Self {
        let mut offsets = Vec::with_capacity(binned.features() + 1);
        offsets.push(0);
        for feature in 0..binned.features() {
            offsets.push(offsets[feature] + bins(binned, feature) + 1);
        }
        Self { offsets, outputs, stride: 2 * outputs + 1 }
    }

    fn len(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0) * self.stride
    }

    fn range(&self, feature: usize) -> std::ops::Range<usize> {
        self.offsets[feature] * self.stride..self.offsets[feature + 1] * self.stride
    }
}

/// Bins of a feature besides the missing one (its missing slot is at this index).
fn bins(binned: &Binned, feature: usize) -> usize {
    binned.bins(feature)
}

pub(crate) struct Histogram {
    sums: Vec<f64>,
    built: Vec<bool>,
}

impl Histogram {
    /// The slots of `feature` (`bins + 1` of `stride` values), if it was counted.
    pub fn feature<'a>(&'a self, layout: &Layout, feature: usize) -> Option<&'a [f64]> {
        self.built[feature].then(|| &self.sums[layout.range(feature)])
    }

    /// This node's histogram less a child's, in place: the other child's.
    pub fn subtract(&mut self, child: &Histogram) {
        self.sums.iter_mut().zip(&child.sums).for_each(|(a, b)| *a -= b);
        self.built.iter_mut().zip(&child.built).for_each(|(a, b)| *a &= b);
    }
}

/// Spent histograms, to be counted into again.
#[derive(Default)]
pub(crate) struct Pool {
    free: Vec<Histogram>,
    /// The node's gradients and hessians gathered in row order (`2 × outputs` per row),
    /// so every feature's pass reads them in sequence (LightGBM's ordered gradients).
    ordered: Vec<f32>,
}

impl Pool {
    pub fn give(&mut self, histogram: Histogram) {
        self.free.push(histogram);
    }

    /// Counts `rows` for `features` (in parallel over features for large nodes).
    /// `gradients`/`hessians` hold `layout.outputs` values per row of the table.
    pub fn build(
        &mut self,
        layout: &Layout,
        binned: &Binned,
        rows: &[u32],
        (gradients, hessians): (&[f32], &[f32]),
        features: &[usize],
    ) -> Histogram {
        let outputs = layout.outputs;
        self.ordered.clear();
        self.ordered.resize(rows.len() * 2 * outputs, 0.0);
        for (values, &row) in self.ordered.chunks_exact_mut(2 * outputs).zip(rows) {
            let at = row as usize * outputs;
            for (k, pair) in values.chunks_exact_mut(2).enumerate() {
                pair[0] = gradients[at + k];
                pair[1] = hessians[at + k];
            }
        }
        let mut histogram = self
            .free
            .pop()
            .unwrap_or_else(|| Histogram { sums: vec![0.0; layout.len()], built: vec![false; binned.features()] });
        histogram.built.iter_mut().for_each(|built| *built = false);
        if outputs == 1 && features.len() == binned.features() && features.len() > 1 {
            count_rows(layout, binned, rows, &self.ordered, &mut histogram.sums);
            histogram.built.iter_mut().for_each(|built| *built = true);
            return histogram;
        }
        // Each feature's own slice of the buffer, so features can be counted in parallel.
        let mut slices: Vec<(usize, &mut [f64])> = Vec::with_capacity(features.len());
        let mut rest: &mut [f64] = &mut histogram.sums;
        let mut consumed = 0;
        for &feature in features {
            let range = layout.range(feature);
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(range.start - consumed);
            let (mine, tail) = tail.split_at_mut(range.len());
            slices.push((feature, mine));
            rest = tail;
            consumed = range.end;
        }
        let ordered = &self.ordered;
        let count = |(feature, slots): &mut (usize, &mut [f64])| {
            count_feature(binned, *feature, rows, ordered, outputs, slots);
        };
        if rows.len() >= PARALLEL_ROWS {
            slices.par_iter_mut().for_each(count);
        } else {
            slices.iter_mut().for_each(count);
        }
        for &feature in features {
            histogram.built[feature] = true;
        }
        histogram
    }
}

/// Counts every feature at once, one row at a time (one output): each row's slots are
/// read together and its gradient once, rather than once per feature — LightGBM's
/// row-wise histograms, faster when a node is counted for all features. Large nodes are
/// cut into one run of rows per thread, each counted into its own buffer, then summed.
fn count_rows(layout: &Layout, binned: &Binned, rows: &[u32], ordered: &[f32], sums: &mut [f64]) {
    let features = binned.features();
    let count = |rows: &[u32], ordered: &[f32], sums: &mut [f64]| {
        sums.iter_mut().for_each(|v| *v = 0.0);
        let offsets = &layout.offsets[..features];
        for (pair, &row) in ordered.chunks_exact(2).zip(rows) {
            let (g, h) = (f64::from(pair[0]), f64::from(pair[1]));
            let start = row as usize * features;
            for (&slot, &offset) in binned.slots[start..start + features].iter().zip(offsets) {
                let at = (offset + slot as usize) * 3;
                let slot = &mut sums[at..at + 3];
                slot[0] += g;
                slot[1] += h;
                slot[2] += 1.0;
            }
        }
    };
    let threads = rayon::current_num_threads().max(1);
    if rows.len() < PARALLEL_ROWS || threads == 1 {
        count(rows, ordered, sums);
        return;
    }
    let chunk = rows.len().div_ceil(threads);
    let mut partials: Vec<Vec<f64>> = (0..threads - 1).map(|_| vec![0.0; sums.len()]).collect();
    let mut buffers: Vec<&mut [f64]> =
        std::iter::once(&mut *sums).chain(partials.iter_mut().map(|p| p.as_mut_slice())).collect();
    buffers
        .par_iter_mut()
        .zip(rows.par_chunks(chunk).zip(ordered.par_chunks(chunk * 2)))
        .for_each(|(buffer, (rows, ordered))| count(rows, ordered, buffer));
    for partial in &partials {
        sums.iter_mut().zip(partial).for_each(|(s, p)| *s += p);
    }
}

/// Counts one feature's slots from scratch; `ordered` holds `2 × outputs` values per row
/// of `rows`, in the same order.
fn count_feature(binned: &Binned, feature: usize, rows: &[u32], ordered: &[f32], outputs: usize, slots: &mut [f64]) {
    slots.iter_mut().for_each(|v| *v = 0.0);
    let column = binned.column(feature);
    let bins = bins(binned, feature);
    let slot_of = |row: u32| {
        let bin = column[row as usize];
        if bin == MISSING { bins } else { bin as usize }
    };
    if outputs == 1 && bins < FEW_SLOTS {
        let width = (bins + 1) * 3;
        let mut copies = [[0f64; FEW_SLOTS * 3]; COPIES];
        for (i, (pair, &row)) in ordered.chunks_exact(2).zip(rows).enumerate() {
            let at = slot_of(row) * 3;
            let copy = &mut copies[i % COPIES][at..at + 3];
            copy[0] += f64::from(pair[0]);
            copy[1] += f64::from(pair[1]);
            copy[2] += 1.0;
        }
        for copy in &copies {
            slots.iter_mut().zip(&copy[..width]).for_each(|(s, c)| *s += c);
        }
    } else if outputs == 1 {
        for (pair, &row) in ordered.chunks_exact(2).zip(rows) {
            let at = slot_of(row) * 3;
            let slot = &mut slots[at..at + 3];
            slot[0] += f64::from(pair[0]);
            slot[1] += f64::from(pair[1]);
            slot[2] += 1.0;
        }
    } else {
        let stride = 2 * outputs + 1;
        for (values, &row) in ordered.chunks_exact(2 * outputs).zip(rows) {
            let at = slot_of(row) * stride;
            let slot = &mut slots[at..at + stride];
            slot[..2 * outputs].iter_mut().zip(values).for_each(|(s, v)| *s += f64::from(*v));
            slot[2 * outputs] += 1.0;
        }
    }
}
