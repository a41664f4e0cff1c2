//! A trained tree and an ensemble of them: the structure served, saved and printed.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// `feature` of a leaf.
pub const LEAF: u32 = u32::MAX;

/// A branch (`value ≤ threshold` goes left; a missing value goes where `missing_left`
/// says) or a leaf.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    pub feature: u32,
    pub threshold: f32,
    pub left: u32,
    pub right: u32,
    pub missing_left: bool,
}

impl Node {
    pub(crate) fn leaf() -> Self {
        Self { feature: LEAF, threshold: 0.0, left: 0, right: 0, missing_left: false }
    }

    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }
}

/// One tree: nodes (the root first) and `outputs` values per node (read at leaves).
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    pub nodes: Vec<Node>,
    /// `[nodes, outputs]`, row-major.
    pub values: Vec<f32>,
    pub outputs: usize,
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
            let left = if value.is_nan() { node.missing_left } else { value <= node.threshold };
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

    fn predict_row(&self, row: &[f32], out: &mut [f32]) {
        out.copy_from_slice(&self.base);
        for (tree, target) in self.trees.iter().zip(&self.target) {
            let values = tree.leaf_values(tree.leaf(row));
            match target {
                Some(output) => out[*output as usize] += values[0],
                None => out.iter_mut().zip(values).for_each(|(o, v)| *o += v),
            }
        }
        if self.combine == Combine::Average && !self.trees.is_empty() {
            let trees = self.trees.len() as f32;
            out.iter_mut().zip(&self.base).for_each(|(o, base)| *o = base + (*o - base) / trees);
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
            for (row, out) in input.chunks(width.max(1)).zip(out.chunks_mut(outputs.max(1))) {
                self.predict_row(row, out);
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
    pub fn describe(&self, features: &[String], labels: &[String]) -> String {
        let mut text = String::new();
        for (index, tree) in self.trees.iter().enumerate() {
            if self.trees.len() > 1 {
                text.push_str(&format!("tree {index}:\n"));
            }
            describe_node(tree, 0, 0, features, labels, &mut text);
        }
        text
    }
}

fn describe_node(tree: &Tree, at: usize, depth: usize, features: &[String], labels: &[String], text: &mut String) {
    let indent = "  ".repeat(depth);
    let node = tree.nodes[at];
    if node.is_leaf() {
        let values = tree.leaf_values(at);
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
    let name = features.get(node.feature as usize).map_or_else(|| format!("feature {}", node.feature), Clone::clone);
    let missing = if node.missing_left { " (or missing)" } else { "" };
    text.push_str(&format!("{indent}if {name} <= {}{missing}:\n", node.threshold));
    describe_node(tree, node.left as usize, depth + 1, features, labels, text);
    let missing = if node.missing_left { "" } else { " (or missing)" };
    text.push_str(&format!("{indent}else{missing}:\n"));
    describe_node(tree, node.right as usize, depth + 1, features, labels, text);
}
