//! Growing one tree from per-row gradients and hessians over binned features: the
//! second-order gain of XGBoost and LightGBM, `Σ G²/(H + λ)` over the outputs, split
//! leaf by leaf (best gain first) up to a number of leaves and a depth. With gradients
//! `-y` and hessians 1 (and λ 0) the same gain is the variance (regression) or Gini
//! (one-hot classes) reduction of CART, so forests grow with it too. Missing values go
//! to whichever side gains more, or, when a node saw none, to the side with more rows.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rayon::prelude::*;

use super::binning::{Binned, MISSING};
use super::tree::{Node, Tree};

#[derive(Clone, Debug)]
pub(crate) struct GrowParams {
    pub max_depth: usize,
    pub max_leaves: usize,
    pub min_rows_per_leaf: usize,
    /// L2 on leaf values (λ).
    pub l2: f32,
    /// Features considered at each split, as a fraction of all (forests sample them).
    pub feature_fraction: f64,
}

/// Per-row gradients and hessians, `outputs` per row.
pub(crate) struct Gradients<'a> {
    pub gradients: &'a [f32],
    pub hessians: &'a [f32],
    pub outputs: usize,
}

/// A tree and the gain its splits earned per feature (for importances).
pub(crate) struct Grown {
    pub tree: Tree,
    pub gains: Vec<f64>,
}

/// Sums over a set of rows, per output.
#[derive(Clone, Debug, PartialEq)]
struct Sums {
    gradient: Vec<f64>,
    hessian: Vec<f64>,
    rows: usize,
}

impl Sums {
    fn zero(outputs: usize) -> Self {
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
struct Split {
    feature: usize,
    bin: u8,
    missing_left: bool,
    gain: f64,
    left: Sums,
    right: Sums,
}

/// A leaf still to split: its node, its rows (a range of the row buffer) and depth.
struct Open {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    sums: Sums,
    split: Option<Split>,
    /// Kept to derive a child's by subtraction (see `grow`).
    histogram: Option<Histogram>,
}

/// Smallest hessian a child may have (XGBoost's `min_child_weight`, kept tiny).
const MIN_HESSIAN: f64 = 1e-3;

/// Grows a tree over `rows` (indices into the binned table; repeats count twice, as a
/// bootstrap sample draws them). `rng` samples the features of each split.
pub(crate) fn grow(
    binned: &Binned,
    rows: &mut [u32],
    gradients: &Gradients<'_>,
    params: &GrowParams,
    rng: &mut StdRng,
) -> Grown {
    let outputs = gradients.outputs;
    let l2 = f64::from(params.l2);
    let mut nodes = vec![Node::leaf()];
    let mut gains = vec![0.0; binned.features()];
    let root_sums = sums_of(rows, gradients);
    // Without feature sampling a child's histogram is its parent's minus its sibling's
    // (LightGBM's trick: only the smaller child is counted); kept for few leaves only,
    // as every open leaf holds one.
    let subtract = params.feature_fraction >= 1.0 && params.max_leaves <= 64;
    let all: Vec<usize> = (0..binned.features()).collect();
    let candidates = |rng: &mut StdRng| -> Vec<usize> {
        let features = binned.features();
        let considered = ((features as f64 * params.feature_fraction).ceil() as usize).clamp(1, features);
        if considered >= features {
            return all.clone();
        }
        let mut chosen = sample(rng, features, considered).into_vec();
        chosen.sort_unstable();
        chosen
    };
    let root_features = candidates(rng);
    let root_histogram = Histogram::build(binned, rows, gradients, &root_features);
    let root_split = best_split(binned, &root_histogram, &root_features, &root_sums, params);
    let mut open = vec![Open {
        node: 0,
        start: 0,
        end: rows.len(),
        depth: 0,
        sums: root_sums,
        split: root_split,
        histogram: subtract.then_some(root_histogram),
    }];
    let mut done: Vec<(usize, Sums)> = Vec::new();
    if open[0].split.is_none() {
        let root = open.remove(0);
        done.push((root.node, root.sums));
    }
    let mut leaves = 1;
    while leaves < params.max_leaves {
        // The open leaf whose split gains most (the first on ties, for determinism); with
        // no limit on leaves every split is made anyway, so the last (depth first).
        let chosen = if params.max_leaves == usize::MAX {
            open.len().checked_sub(1)
        } else {
            open.iter()
                .enumerate()
                .filter_map(|(i, leaf)| leaf.split.as_ref().map(|split| (i, split.gain)))
                .fold(None, |best: Option<(usize, f64)>, (i, gain)| match best {
                    Some((_, best_gain)) if best_gain >= gain => best,
                    _ => Some((i, gain)),
                })
                .map(|(i, _)| i)
        };
        let Some(chosen) = chosen else { break };
        let leaf = open.swap_remove(chosen);
        // Open leaves all have a split (see where children are pushed).
        let Some(split) = leaf.split.clone() else { break };
        let column = binned.column(split.feature);
        let goes_left = |row: u32| {
            let bin = column[row as usize];
            if bin == MISSING { split.missing_left } else { bin <= split.bin }
        };
        let middle = leaf.start + partition(&mut rows[leaf.start..leaf.end], goes_left);
        gains[split.feature] += split.gain;
        let (left, right) = (nodes.len(), nodes.len() + 1);
        nodes[leaf.node] = Node {
            feature: split.feature as u32,
            threshold: threshold(binned, split.feature, split.bin),
            left: left as u32,
            right: right as u32,
            missing_left: split.missing_left,
        };
        nodes.extend([Node::leaf(), Node::leaf()]);
        leaves += 1;
        let depth = leaf.depth + 1;
        let splittable = |sums: &Sums| depth < params.max_depth && sums.rows >= 2 * params.min_rows_per_leaf;
        let children = [(left, leaf.start, middle, split.left), (right, middle, leaf.end, split.right)];
        let histograms: [Option<Histogram>; 2] = match leaf.histogram {
            Some(parent) => {
                let smaller = usize::from(children[1].2 - children[1].1 < children[0].2 - children[0].1);
                let (start, end) = (children[smaller].1, children[smaller].2);
                let counted = Histogram::build(binned, &rows[start..end], gradients, &all);
                let derived = parent.minus(&counted);
                if smaller == 0 { [Some(counted), Some(derived)] } else { [Some(derived), Some(counted)] }
            }
            None => [None, None],
        };
        for ((node, start, end, sums), histogram) in children.into_iter().zip(histograms) {
            let mut child = Open { node, start, end, depth, sums, split: None, histogram: None };
            if splittable(&child.sums) {
                match histogram {
                    Some(histogram) => {
                        child.split = best_split(binned, &histogram, &all, &child.sums, params);
                        child.histogram = Some(histogram);
                    }
                    None => {
                        let features = candidates(rng);
                        let histogram = Histogram::build(binned, &rows[start..end], gradients, &features);
                        child.split = best_split(binned, &histogram, &features, &child.sums, params);
                    }
                }
            }
            // Open leaves are those that can split; the others are final.
            if child.split.is_some() {
                open.push(child);
            } else {
                done.push((child.node, child.sums));
            }
        }
    }
    done.extend(open.into_iter().map(|leaf| (leaf.node, leaf.sums)));
    let mut values = vec![0f32; nodes.len() * outputs];
    for (node, sums) in &done {
        for k in 0..outputs {
            values[node * outputs + k] = (-sums.gradient[k] / (sums.hessian[k] + l2)) as f32;
        }
    }
    Grown { tree: Tree { nodes, values, outputs }, gains }
}

fn threshold(binned: &Binned, feature: usize, bin: u8) -> f32 {
    // A split after the last edge cannot happen: the right side would be empty.
    binned.thresholds[feature].get(bin as usize).copied().unwrap_or(f32::INFINITY)
}

/// Moves the rows for which `left` holds to the front; returns how many there are.
fn partition(rows: &mut [u32], left: impl Fn(u32) -> bool) -> usize {
    let mut next = 0;
    for i in 0..rows.len() {
        if left(rows[i]) {
            rows.swap(i, next);
            next += 1;
        }
    }
    next
}

fn sums_of(rows: &[u32], gradients: &Gradients<'_>) -> Sums {
    let outputs = gradients.outputs;
    let mut sums = Sums::zero(outputs);
    for &row in rows {
        let at = row as usize * outputs;
        for k in 0..outputs {
            sums.gradient[k] += f64::from(gradients.gradients[at + k]);
            sums.hessian[k] += f64::from(gradients.hessians[at + k]);
        }
    }
    sums.rows = rows.len();
    sums
}

/// Rows above which a node's features are scanned in parallel.
const PARALLEL_ROWS: usize = 4096;

/// Per feature (those built), per bin and the missing bin last, the summed gradients
/// and hessians of each output and the rows: what a node's split search reads.
struct Histogram {
    features: Vec<Option<FeatureHistogram>>,
}

struct FeatureHistogram {
    gradient: Vec<f64>,
    hessian: Vec<f64>,
    counts: Vec<usize>,
}

impl Histogram {
    /// Counts `rows` for `features` (in parallel over features for large nodes).
    fn build(binned: &Binned, rows: &[u32], gradients: &Gradients<'_>, features: &[usize]) -> Self {
        // The node's gradients gathered once in row order, so that every feature's pass
        // reads them in sequence (LightGBM's ordered gradients).
        let outputs = gradients.outputs;
        let mut ordered = Vec::with_capacity(rows.len() * outputs);
        let mut ordered_hessians = Vec::with_capacity(rows.len() * outputs);
        for &row in rows {
            let at = row as usize * outputs;
            ordered.extend_from_slice(&gradients.gradients[at..at + outputs]);
            ordered_hessians.extend_from_slice(&gradients.hessians[at..at + outputs]);
        }
        let ordered = Gradients { gradients: &ordered, hessians: &ordered_hessians, outputs };
        let count = |&feature: &usize| (feature, FeatureHistogram::build(binned, feature, rows, &ordered));
        let built: Vec<(usize, FeatureHistogram)> = if rows.len() >= PARALLEL_ROWS {
            features.par_iter().map(count).collect()
        } else {
            features.iter().map(count).collect()
        };
        let mut histogram = Histogram { features: (0..binned.features()).map(|_| None).collect() };
        for (feature, built) in built {
            histogram.features[feature] = Some(built);
        }
        histogram
    }

    /// This node's histogram less a child's: the other child's.
    fn minus(mut self, child: &Histogram) -> Histogram {
        for (mine, theirs) in self.features.iter_mut().zip(&child.features) {
            match (mine.as_mut(), theirs) {
                (Some(mine), Some(theirs)) => {
                    mine.gradient.iter_mut().zip(&theirs.gradient).for_each(|(a, b)| *a -= b);
                    mine.hessian.iter_mut().zip(&theirs.hessian).for_each(|(a, b)| *a -= b);
                    mine.counts.iter_mut().zip(&theirs.counts).for_each(|(a, b)| *a -= b);
                }
                _ => *mine = None,
            }
        }
        self
    }
}

impl FeatureHistogram {
    /// `gradients` are the rows' own, in the order of `rows`.
    fn build(binned: &Binned, feature: usize, rows: &[u32], gradients: &Gradients<'_>) -> Self {
        let outputs = gradients.outputs;
        let bins = binned.thresholds[feature].len() + 1;
        let column = binned.column(feature);
        let slots = bins + 1;
        let mut histogram = Self {
            gradient: vec![0f64; slots * outputs],
            hessian: vec![0f64; slots * outputs],
            counts: vec![0; slots],
        };
        for (index, &row) in rows.iter().enumerate() {
            let bin = column[row as usize];
            let slot = if bin == MISSING { bins } else { bin as usize };
            histogram.counts[slot] += 1;
            let at = index * outputs;
            for k in 0..outputs {
                histogram.gradient[slot * outputs + k] += f64::from(gradients.gradients[at + k]);
                histogram.hessian[slot * outputs + k] += f64::from(gradients.hessians[at + k]);
            }
        }
        histogram
    }
}

fn best_split(
    binned: &Binned,
    histogram: &Histogram,
    features: &[usize],
    sums: &Sums,
    params: &GrowParams,
) -> Option<Split> {
    let found = features.iter().filter_map(|&feature| {
        let built = histogram.features[feature].as_ref()?;
        best_split_of(binned.thresholds[feature].len() + 1, feature, built, sums, params)
    });
    // The best gain, the lowest feature on ties: the same tree however threads ran.
    found.fold(None, |best, split| match best {
        Some(best) if best.gain >= split.gain => Some(best),
        _ => Some(split),
    })
}

fn best_split_of(
    bins: usize,
    feature: usize,
    histogram: &FeatureHistogram,
    total: &Sums,
    params: &GrowParams,
) -> Option<Split> {
    let outputs = total.gradient.len();
    let (gradient, hessian, counts) = (&histogram.gradient, &histogram.hessian, &histogram.counts);
    // Scanned bin by bin with running sums and no allocation: this loop is where
    // training spends its time.
    let missing = bins;
    let l2 = f64::from(params.l2);
    let parent = total.score(l2);
    let min_rows = params.min_rows_per_leaf.max(1);
    let (mut left_g, mut left_h) = (vec![0f64; outputs], vec![0f64; outputs]);
    let mut left_rows = 0usize;
    let missing_rows = counts[missing];
    let present_rows = total.rows - missing_rows;
    let mut best: Option<(f64, usize, bool)> = None;
    for bin in 0..bins - 1 {
        // An empty bin moves no row: the split after it is the one after the last bin
        // that had rows.
        if counts[bin] == 0 {
            continue;
        }
        for k in 0..outputs {
            left_g[k] += gradient[bin * outputs + k];
            left_h[k] += hessian[bin * outputs + k];
        }
        left_rows += counts[bin];
        let right_present = present_rows - left_rows;
        let directions: &[bool] = if missing_rows > 0 {
            &[true, false]
        } else if left_rows >= right_present {
            &[true]
        } else {
            &[false]
        };
        for &missing_left in directions {
            let (l_rows, r_rows) = if missing_left {
                (left_rows + missing_rows, right_present)
            } else {
                (left_rows, right_present + missing_rows)
            };
            if l_rows < min_rows || r_rows < min_rows {
                continue;
            }
            let mut gain = -parent;
            let mut too_light = false;
            for k in 0..outputs {
                let (miss_g, miss_h) = (gradient[missing * outputs + k], hessian[missing * outputs + k]);
                let (mut lg, mut lh) = (left_g[k], left_h[k]);
                if missing_left {
                    lg += miss_g;
                    lh += miss_h;
                }
                let (rg, rh) = (total.gradient[k] - lg, total.hessian[k] - lh);
                too_light |= lh < MIN_HESSIAN || rh < MIN_HESSIAN;
                gain += lg * lg / (lh + l2) + rg * rg / (rh + l2);
            }
            if !too_light && gain > 1e-12 && best.is_none_or(|(b, _, _)| gain > b) {
                best = Some((gain, bin, missing_left));
            }
        }
    }
    let (gain, bin, missing_left) = best?;
    // The chosen split's sums, from the histogram.
    let mut left = Sums::zero(outputs);
    for slot in (0..=bin).chain(missing_left.then_some(missing)) {
        for k in 0..outputs {
            left.gradient[k] += gradient[slot * outputs + k];
            left.hessian[k] += hessian[slot * outputs + k];
        }
        left.rows += counts[slot];
    }
    let right = total.minus(&left);
    Some(Split { feature, bin: bin as u8, missing_left, gain, left, right })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;

    fn params(max_leaves: usize) -> GrowParams {
        GrowParams { max_depth: 8, max_leaves, min_rows_per_leaf: 1, l2: 0.0, feature_fraction: 1.0 }
    }

    #[test]
    fn a_step_is_found_exactly_and_leaves_hold_the_means() {
        // y = 10 where x0 > 3 else 0; x1 is noise.
        let x = Array2::from_shape_fn((8, 2), |(i, f)| if f == 0 { i as f32 } else { ((i * 5) % 3) as f32 });
        let y: Vec<f32> = (0..8).map(|i| if i > 3 { 10.0 } else { 0.0 }).collect();
        let binned = Binned::new(x.view(), 0..8, 255);
        let gradients: Vec<f32> = y.iter().map(|v| -v).collect();
        let hessians = vec![1.0; 8];
        let mut rows: Vec<u32> = (0..8).collect();
        let g = Gradients { gradients: &gradients, hessians: &hessians, outputs: 1 };
        let grown = grow(&binned, &mut rows, &g, &params(2), &mut StdRng::seed_from_u64(0));
        let tree = grown.tree;
        assert_eq!(tree.nodes[0].feature, 0);
        assert_eq!(tree.nodes[0].threshold, 3.5);
        assert_eq!(tree.leaf_values(tree.leaf(&[1.0, 0.0])), &[0.0]);
        assert_eq!(tree.leaf_values(tree.leaf(&[6.0, 0.0])), &[10.0]);
        assert!(grown.gains[0] > 0.0 && grown.gains[1] == 0.0);
    }

    #[test]
    fn missing_values_go_to_the_side_they_resemble() {
        // Rows with x missing have y = 10, like the large-x rows.
        let values = [1.0, 2.0, 3.0, 8.0, 9.0, f32::NAN, f32::NAN];
        let y = [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 10.0];
        let x = Array2::from_shape_fn((7, 1), |(i, _)| values[i]);
        let binned = Binned::new(x.view(), 0..7, 255);
        let gradients: Vec<f32> = y.iter().map(|v: &f32| -v).collect();
        let hessians = vec![1.0; 7];
        let mut rows: Vec<u32> = (0..7).collect();
        let g = Gradients { gradients: &gradients, hessians: &hessians, outputs: 1 };
        let tree = grow(&binned, &mut rows, &g, &params(2), &mut StdRng::seed_from_u64(0)).tree;
        assert!(!tree.nodes[0].missing_left);
        assert_eq!(tree.leaf_values(tree.leaf(&[f32::NAN])), &[10.0]);
        tree.check(1).expect("well formed");
    }
}
