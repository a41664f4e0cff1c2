//! Growing one tree from per-row gradients and hessians over binned features: the
//! second-order gain of XGBoost and LightGBM, `Σ G²/(H + λ)` over the outputs, split
//! leaf by leaf (best gain first) up to a number of leaves and a depth. With gradients
//! `-y` and hessians 1 (and λ 0) the same gain is the variance (regression) or Gini
//! (one-hot classes) reduction of CART, so forests grow with it too. Missing values go
//! to whichever side gains more, or, when a node saw none, to the side with more rows.

use rand::rngs::StdRng;
use rand::seq::index::sample;

use super::binning::{Binned, MISSING};
use super::histogram::{Histogram, Layout, Pool};
use super::split::{Split, Sums, best_split};
use super::tree::{CategorySet, NO_SET, Node, Tree};

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

/// A tree, the gain its splits earned per feature (for importances), and each leaf's
/// rows: `(leaf node, range)` of the row buffer `grow` reordered, so a caller can add
/// the leaves' values to its training rows without walking the tree.
pub(crate) struct Grown {
    pub tree: Tree,
    pub gains: Vec<f64>,
    pub leaves: Vec<(usize, std::ops::Range<usize>)>,
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
    let mut sets = Vec::new();
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
    let layout = Layout::new(binned, outputs);
    let mut pool = Pool::default();
    let mut scratch = Vec::new();
    let sources = (gradients.gradients, gradients.hessians);
    let root_features = candidates(rng);
    let root_histogram = pool.build(&layout, binned, rows, sources, &root_features);
    let root_split = best_split(binned, &layout, &root_histogram, &root_features, &root_sums, params);
    let mut open = vec![Open {
        node: 0,
        start: 0,
        end: rows.len(),
        depth: 0,
        sums: root_sums,
        split: root_split,
        histogram: subtract.then_some(root_histogram),
    }];
    // Final leaves: node, rows, sums.
    let mut done: Vec<(usize, std::ops::Range<usize>, Sums)> = Vec::new();
    if open[0].split.is_none() {
        let root = open.remove(0);
        done.push((root.node, root.start..root.end, root.sums));
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
            if bin == MISSING { split.missing_left } else { split.sends_left(bin) }
        };
        let middle = leaf.start + partition(&mut rows[leaf.start..leaf.end], &mut scratch, goes_left);
        gains[split.feature] += split.gain;
        let (left, right) = (nodes.len(), nodes.len() + 1);
        let set = match (&split.set, binned.categories[split.feature]) {
            (Some(bins), Some(categories)) => {
                // Bin C, the codes unknown at training, is the set's "other" bit.
                let mut bits = CategorySet::default();
                bins.bits().for_each(|bin| bits.insert(if bin == categories { CategorySet::OTHER } else { bin }));
                sets.push(bits);
                (sets.len() - 1) as u32
            }
            _ => NO_SET,
        };
        nodes[leaf.node] = Node {
            feature: split.feature as u32,
            threshold: if set == NO_SET { threshold(binned, split.feature, split.bin) } else { 0.0 },
            left: left as u32,
            right: right as u32,
            missing_left: split.missing_left,
            set,
        };
        nodes.extend([Node::leaf(), Node::leaf()]);
        leaves += 1;
        let depth = leaf.depth + 1;
        let splittable = |sums: &Sums| depth < params.max_depth && sums.rows >= 2 * params.min_rows_per_leaf;
        let children = [(left, leaf.start, middle, split.left), (right, middle, leaf.end, split.right)];
        let histograms: [Option<Histogram>; 2] = match leaf.histogram {
            Some(mut parent) => {
                let smaller = usize::from(children[1].2 - children[1].1 < children[0].2 - children[0].1);
                let (start, end) = (children[smaller].1, children[smaller].2);
                let counted = pool.build(&layout, binned, &rows[start..end], sources, &all);
                parent.subtract(&counted);
                if smaller == 0 { [Some(counted), Some(parent)] } else { [Some(parent), Some(counted)] }
            }
            None => [None, None],
        };
        for ((node, start, end, sums), histogram) in children.into_iter().zip(histograms) {
            let mut child = Open { node, start, end, depth, sums, split: None, histogram: None };
            if splittable(&child.sums) {
                match histogram {
                    Some(histogram) => {
                        child.split = best_split(binned, &layout, &histogram, &all, &child.sums, params);
                        child.histogram = Some(histogram);
                    }
                    None => {
                        let features = candidates(rng);
                        let histogram = pool.build(&layout, binned, &rows[start..end], sources, &features);
                        child.split = best_split(binned, &layout, &histogram, &features, &child.sums, params);
                        pool.give(histogram);
                    }
                }
            } else if let Some(histogram) = histogram {
                pool.give(histogram);
            }
            // Open leaves are those that can split; the others are final.
            if child.split.is_some() {
                open.push(child);
            } else {
                if let Some(histogram) = child.histogram.take() {
                    pool.give(histogram);
                }
                done.push((child.node, child.start..child.end, child.sums));
            }
        }
    }
    done.extend(open.into_iter().map(|leaf| (leaf.node, leaf.start..leaf.end, leaf.sums)));
    let mut values = vec![0f32; nodes.len() * outputs];
    for (node, _, sums) in &done {
        for k in 0..outputs {
            values[node * outputs + k] = (-sums.gradient[k] / (sums.hessian[k] + l2)) as f32;
        }
    }
    let leaves = done.into_iter().map(|(node, rows, _)| (node, rows)).collect();
    Grown { tree: Tree { nodes, values, outputs, sets }, gains, leaves }
}

fn threshold(binned: &Binned, feature: usize, bin: u8) -> f32 {
    // A split after the last edge cannot happen: the right side would be empty.
    binned.thresholds[feature].get(bin as usize).copied().unwrap_or(f32::INFINITY)
}

/// Moves the rows for which `left` holds to the front, keeping the order on both sides
/// (rows stay ascending, so later passes read the columns in order); returns how many
/// went left. Branch-free: every row is written to both halves of `scratch` and only
/// the matching cursor moves, as a split's rows go either way at random.
fn partition(rows: &mut [u32], scratch: &mut Vec<u32>, left: impl Fn(u32) -> bool) -> usize {
    let n = rows.len();
    scratch.clear();
    scratch.resize(2 * n, 0);
    let (lefts, rights) = scratch.split_at_mut(n);
    let (mut l, mut r) = (0, 0);
    for &row in rows.iter() {
        let goes_left = usize::from(left(row));
        lefts[l] = row;
        rights[r] = row;
        l += goes_left;
        r += 1 - goes_left;
    }
    rows[..l].copy_from_slice(&lefts[..l]);
    rows[l..].copy_from_slice(&rights[..r]);
    l
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
        let binned = Binned::new(x.view(), 0..8, 255, &[]);
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
        let binned = Binned::new(x.view(), 0..7, 255, &[]);
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
