//! A trained tree and an ensemble of them: the structure served, saved and printed.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// `feature` of a leaf.
pub const LEAF: u32 = u32::MAX;
/// `set` of a node that compares with its threshold.
pub const NO_SET: u32 = u32::MAX;

/// A branch or a leaf. A branch on a number sends `value ≤ threshold` left; a branch on
/// a categorical column (`set` names one of the tree's [`CategorySet`]s) sends the
/// categories in the set left. A missing value goes where `missing_left` says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    pub feature: u32,
    pub threshold: f32,
    pub left: u32,
    pub right: u32,
    pub missing_left: bool,
    pub set: u32,
}

impl Node {
    pub(crate) fn leaf() -> Self {
        Self { feature: LEAF, threshold: 0.0, left: 0, right: 0, missing_left: false, set: NO_SET }
    }

    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }
}

/// Most categories a column may have for a tree to split on it natively (codes 0 to
/// 253; bit [`CategorySet::OTHER`] stands for every category the model does not know).
pub const MAX_TREE_CATEGORIES: usize = 254;

/// The categories a branch sends left, as bits: bit `c` for category code `c`, bit
/// [`CategorySet::OTHER`] for a code the model does not know (unseen at training, or
/// one of the rare categories `max_categories` left out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CategorySet(pub [u64; 4]);

impl CategorySet {
    pub const OTHER: usize = 255;

    /// The bit of a row's code (see [`crate::CategoryColumn::code`]): its own for a
    /// known category, [`Self::OTHER`] for anything else that is not missing.
    pub fn bit_of(code: f32) -> usize {
        if code >= 0.0 && code < MAX_TREE_CATEGORIES as f32 && code.fract() == 0.0 {
            code as usize
        } else {
            Self::OTHER
        }
    }

    pub fn insert(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    pub fn contains(&self, bit: usize) -> bool {
        self.0[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// The bits set, in order.
    pub fn bits(&self) -> impl Iterator<Item = usize> + '_ {
        (0..256).filter(|&bit| self.contains(bit))
    }
}

/// One tree: nodes (the root first), `outputs` values per node (read at leaves) and the
/// category sets its categorical branches test.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    pub nodes: Vec<Node>,
    /// `[nodes, outputs]`, row-major.
    pub values: Vec<f32>,
    pub outputs: usize,
    pub sets: Vec<CategorySet>,
}

impl Tree {
    /// The leaf `row` ends in.
    pub fn leaf(&self, row: &[f32]) -> usize {
        let mut at = 0;
        loop {
            let node = &self.nodes[at];
            if node.is_leaf() {
                return at;
            }
            let value = row[node.feature as usize];
            let left = if value.is_nan() {
                node.missing_left
            } else if node.set == NO_SET {
                value <= node.threshold
            } else {
                self.sets[node.set as usize].contains(CategorySet::bit_of(value))
            };
            at = if left { node.left } else { node.right } as usize;
        }
    }

    pub fn leaf_values(&self, leaf: usize) -> &[f32] {
        &self.values[leaf * self.outputs..(leaf + 1) * self.outputs]
    }

    /// Checks what serving relies on: children in range and after their parent (so no
    /// loops), features below `features`, values for every node.
    pub fn check(&self, features: usize) -> Result<(), String> {
        if self.nodes.is_empty() || self.values.len() != self.nodes.len() * self.outputs {
            return Err("a tree has no nodes or the wrong number of values".into());
        }
        for (index, node) in self.nodes.iter().enumerate() {
            if node.is_leaf() {
                continue;
            }
            let children_after =
                [node.left, node.right].iter().all(|&c| (c as usize) > index && (c as usize) < self.nodes.len());
            if !children_after || node.feature as usize >= features {
                return Err(format!("node {index} of a tree points outside the tree or its features"));
            }
            if node.set != NO_SET && node.set as usize >= self.sets.len() {
                return Err(format!("node {index} of a tree tests a category set the tree does not have"));
            }
        }
        Ok(())
    }
}

/// How an ensemble's trees combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Boosting: the base score plus every tree's leaf (the learning rate is in the leaves).
    Sum,
    /// A forest: the mean of the trees' leaves.
    Average,
}

/// Trees and how they add up to the raw outputs (margins, values or class shares).
#[derive(Clone, Debug, PartialEq)]
pub struct TreeEnsemble {
    pub trees: Vec<Tree>,
    /// The output each tree adds to, or `None`: a tree of `outputs` values adds to all.
    pub target: Vec<Option<u32>>,
    /// Added to every row before the trees.
    pub base: Vec<f32>,
    pub combine: Combine,
}

/// Rows a thread takes at once when a batch is split over the pool.
const ROWS_PER_TASK: usize = 256;

impl TreeEnsemble {
    pub fn outputs(&self) -> usize {
        self.base.len()
    }

    /// Nodes over all trees (the cost and size of the ensemble).
    pub fn nodes(&self) -> usize {
        self.trees.iter().map(|tree| tree.nodes.len()).sum()
    }

    /// Raw outputs of a block of rows (`width` values each) into `out` (`outputs` each):
    /// tree by tree over the whole block, so each tree's nodes are fetched into cache
    /// once per block rather than once per row (a forest's trees do not fit in cache
    /// together). Each row's sum still adds the trees in order.
    fn predict_block(&self, rows: &[f32], width: usize, out: &mut [f32]) {
        let outputs = self.outputs().max(1);
        for out in out.chunks_mut(outputs) {
            out.copy_from_slice(&self.base);
        }
        for (tree, target) in self.trees.iter().zip(&self.target) {
            for (row, out) in rows.chunks(width.max(1)).zip(out.chunks_mut(outputs)) {
                let values = tree.leaf_values(tree.leaf(row));
                match target {
                    Some(output) => out[*output as usize] += values[0],
                    None => out.iter_mut().zip(values).for_each(|(o, v)| *o += v),
                }
            }
        }
        if self.combine == Combine::Average && !self.trees.is_empty() {
            let trees = self.trees.len() as f32;
            for out in out.chunks_mut(outputs) {
                out.iter_mut().zip(&self.base).for_each(|(o, base)| *o = base + (*o - base) / trees);
            }
        }
    }

    /// Raw outputs `[rows, outputs]` for rows of raw features (NaN: missing); large
    /// batches are split over rayon's pool.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let (rows, width, outputs) = (x.nrows(), x.ncols(), self.outputs());
        let x = x.as_standard_layout();
        let flat = x.as_slice().unwrap_or_default();
        let mut out = vec![0f32; rows * outputs];
        let work = |(input, out): (&[f32], &mut [f32])| {
            let block = ROWS_PER_TASK;
            for (rows, out) in input.chunks(block * width.max(1)).zip(out.chunks_mut(block * outputs.max(1))) {
                self.predict_block(rows, width, out);
            }
        };
        if rows * self.nodes().max(1) > 1 << 16 && rows > ROWS_PER_TASK {
            flat.par_chunks(ROWS_PER_TASK * width.max(1))
                .zip(out.par_chunks_mut(ROWS_PER_TASK * outputs.max(1)))
                .for_each(work);
        } else {
            work((flat, &mut out));
        }
        Array2::from_shape_vec((rows, outputs), out).unwrap_or_else(|_| Array2::zeros((rows, outputs)))
    }

    /// The trees as text, one line per node, for `models versions --show-tree`.
    pub fn describe(&self, names: &Names<'_>) -> String {
        let mut text = String::new();
        for (index, tree) in self.trees.iter().enumerate() {
            if self.trees.len() > 1 {
                text.push_str(&format!("tree {index}:\n"));
            }
            describe_node(tree, 0, 0, names, &mut text);
        }
        text
    }
}

/// What [`TreeEnsemble::describe`] calls things: the features, the categories of the
/// categorical ones (by feature index; `None` for numbers), the class labels.
pub struct Names<'a> {
    pub features: &'a [String],
    pub categories: Vec<Option<&'a [String]>>,
    pub labels: &'a [String],
}

fn describe_node(tree: &Tree, at: usize, depth: usize, names: &Names<'_>, text: &mut String) {
    let indent = "  ".repeat(depth);
    let node = tree.nodes[at];
    if node.is_leaf() {
        let (labels, values) = (names.labels, tree.leaf_values(at));
        let shown = if labels.len() == values.len() && values.len() > 1 {
            let best = crate::model::argmax(values.iter().copied());
            let shares: Vec<String> = labels.iter().zip(values).map(|(l, v)| format!("{l}: {:.3}", v + 0.0)).collect();
            format!("{} ({})", labels[best], shares.join(", "))
        } else {
            values.iter().map(|v| format!("{:.6}", v + 0.0)).collect::<Vec<_>>().join(", ")
        };
        text.push_str(&format!("{indent}-> {shown}\n"));
        return;
    }
    let feature = node.feature as usize;
    let name = names.features.get(feature).map_or_else(|| format!("feature {feature}"), Clone::clone);
    let missing = if node.missing_left { " (or missing)" } else { "" };
    let test = match tree.sets.get(node.set as usize) {
        Some(set) => {
            let categories = names.categories.get(feature).copied().flatten().unwrap_or_default();
            let members: Vec<String> = set
                .bits()
                .map(|bit| match categories.get(bit) {
                    _ if bit == CategorySet::OTHER => "(any other)".to_owned(),
                    Some(category) => format!("{category:?}"),
                    None => format!("#{bit}"),
                })
                .collect();
            format!("in {{{}}}", members.join(", "))
        }
        None => format!("<= {}", node.threshold),
    };
    text.push_str(&format!("{indent}if {name} {test}{missing}:\n"));
    describe_node(tree, node.left as usize, depth + 1, names, text);
    let missing = if node.missing_left { "" } else { " (or missing)" };
    text.push_str(&format!("{indent}else{missing}:\n"));
    describe_node(tree, node.right as usize, depth + 1, names, text);
}
