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

    fn plus(&self, other: &Sums) -> Sums {
        Sums {
            gradient: self.gradient.iter().zip(&other.gradient).map(|(a, b)| a + b).collect(),
            hessian: self.hessian.iter().zip(&other.hessian).map(|(a, b)| a + b).collect(),
            rows: self.rows + other.rows,
        }
    }

    fn min_hessian(&self) -> f64 {
        self.hessian.iter().copied().fold(f64::INFINITY, f64::min)
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
    let mut root = Open { node: 0, start: 0, end: rows.len(), depth: 0, sums: root_sums, split: None };
    root.split = best_split(binned, &rows[..], &root.sums, gradients, params, rng);
    let mut open = vec![root];
    let mut done: Vec<Open> = Vec::new();
    let mut leaves = 1;
    while leaves < params.max_leaves {
        // The open leaf whose split gains most (the first on ties, for determinism).
        let Some(best) = open
            .iter()
            .enumerate()
            .filter_map(|(i, leaf)| leaf.split.as_ref().map(|split| (i, split.gain)))
            .fold(None, |best: Option<(usize, f64)>, (i, gain)| match best {
                Some((_, best_gain)) if best_gain >= gain => best,
                _ => Some((i, gain)),
            })
        else {
            break;
        };
        let leaf = open.swap_remove(best.0);
        let split = leaf.split.clone().expect("chosen for its split");
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
        for (node, start, end, sums) in [(left, leaf.start, middle, split.left), (right, middle, leaf.end, split.right)]
        {
            let mut child = Open { node, start, end, depth: leaf.depth + 1, sums, split: None };
            if child.depth < params.max_depth && child.sums.rows >= 2 * params.min_rows_per_leaf {
                child.split = best_split(binned, &rows[start..end], &child.sums, gradients, params, rng);
            }
            open.push(child);
        }
    }
    done.extend(open);
    let mut values = vec![0f32; nodes.len() * outputs];
    for leaf in &done {
        for k in 0..outputs {
            values[leaf.node * outputs + k] = (-leaf.sums.gradient[k] / (leaf.sums.hessian[k] + l2)) as f32;
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

fn best_split(
    binned: &Binned,
    rows: &[u32],
    sums: &Sums,
    gradients: &Gradients<'_>,
    params: &GrowParams,
    rng: &mut StdRng,
) -> Option<Split> {
    let features = binned.features();
    let considered = ((features as f64 * params.feature_fraction).ceil() as usize).clamp(1, features);
    let mut candidates: Vec<usize> =
        if considered < features { sample(rng, features, considered).into_vec() } else { (0..features).collect() };
    candidates.sort_unstable();
    let scan = |&feature: &usize| best_split_of(binned, feature, rows, sums, gradients, params);
    let found: Vec<Option<Split>> = if rows.len() >= PARALLEL_ROWS {
        candidates.par_iter().map(scan).collect()
    } else {
        candidates.iter().map(scan).collect()
    };
    // The best gain, the lowest feature on ties: the same tree however threads ran.
    found.into_iter().flatten().fold(None, |best, split| match best {
        Some(best) if best.gain >= split.gain => Some(best),
        _ => Some(split),
    })
}

fn best_split_of(
    binned: &Binned,
    feature: usize,
    rows: &[u32],
    total: &Sums,
    gradients: &Gradients<'_>,
    params: &GrowParams,
) -> Option<Split> {
    let outputs = gradients.outputs;
    let bins = binned.thresholds[feature].len() + 1;
    let column = binned.column(feature);
    // Histogram: per bin (and the missing bin, last) the sums of each output.
    let slots = bins + 1;
    let mut gradient = vec![0f64; slots * outputs];
    let mut hessian = vec![0f64; slots * outputs];
    let mut counts = vec![0usize; slots];
    for &row in rows {
        let bin = column[row as usize];
        let slot = if bin == MISSING { bins } else { bin as usize };
        counts[slot] += 1;
        let at = row as usize * outputs;
        for k in 0..outputs {
            gradient[slot * outputs + k] += f64::from(gradients.gradients[at + k]);
            hessian[slot * outputs + k] += f64::from(gradients.hessians[at + k]);
        }
    }
    let slot_sums = |slot: usize| Sums {
        gradient: gradient[slot * outputs..(slot + 1) * outputs].to_vec(),
        hessian: hessian[slot * outputs..(slot + 1) * outputs].to_vec(),
        rows: counts[slot],
    };
    let missing = slot_sums(bins);
    let l2 = f64::from(params.l2);
    let parent = total.score(l2);
    let mut best: Option<Split> = None;
    let mut left = Sums::zero(outputs);
    for bin in 0..bins - 1 {
        left = left.plus(&slot_sums(bin));
        let present_right = total.minus(&missing).minus(&left);
        let directions: &[bool] = if missing.rows > 0 {
            &[true, false]
        } else if left.rows >= present_right.rows {
            &[true]
        } else {
            &[false]
        };
        for &missing_left in directions {
            let (l, r) = if missing_left {
                (left.plus(&missing), present_right.clone())
            } else {
                (left.clone(), present_right.plus(&missing))
            };
            if l.rows < params.min_rows_per_leaf.max(1) || r.rows < params.min_rows_per_leaf.max(1) {
                continue;
            }
            if l.min_hessian() < MIN_HESSIAN || r.min_hessian() < MIN_HESSIAN {
                continue;
            }
            let gain = l.score(l2) + r.score(l2) - parent;
            if gain > 1e-12 && best.as_ref().is_none_or(|b| gain > b.gain) {
                best = Some(Split { feature, bin: bin as u8, missing_left, gain, left: l, right: r });
            }
        }
    }
    best
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
