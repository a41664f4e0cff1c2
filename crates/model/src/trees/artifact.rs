//! A tree ensemble as artifact tensors, every tree's nodes laid end to end:
//! `trees.offsets` (I32 `[trees + 1]`, where each tree's nodes start), `trees.feature`
//! (I32 `[nodes]`, -1 for a leaf), `trees.threshold` (F32), `trees.left` and
//! `trees.right` (I32, node indexes within the tree), `trees.missing_left` (U8),
//! `trees.values` (F32 `[nodes, outputs per tree]`), `trees.target` (I32 `[trees]`,
//! the output a tree adds to, -1 for all) and `trees.base` (F32 `[outputs]`). Trees with
//! categorical branches add `trees.set` (I32 `[nodes]`: the branch's category set, an
//! index into `trees.sets` over all trees, -1 for a threshold) and `trees.sets` (U8
//! `[sets, 32]`: 256 bits each, little-endian words).

use safetensors::{Dtype, SafeTensors};

use super::tree::{CategorySet, Combine, LEAF, NO_SET, Node, Tree, TreeEnsemble};
use crate::{Error, Result};

/// One tensor to write: name, element type, shape, little-endian bytes.
pub(crate) type Buffer = (String, Dtype, Vec<usize>, Vec<u8>);

fn i32s(values: impl Iterator<Item = i32>) -> Vec<u8> {
    values.flat_map(i32::to_le_bytes).collect()
}

fn f32s(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

pub(crate) fn buffers(ensemble: &TreeEnsemble) -> Vec<Buffer> {
    let nodes = || ensemble.trees.iter().flat_map(|tree| tree.nodes.iter());
    let count = ensemble.nodes();
    let per_tree = ensemble.trees.first().map_or(1, |tree| tree.outputs);
    let mut offsets = vec![0i32];
    for tree in &ensemble.trees {
        offsets.push(offsets[offsets.len() - 1] + tree.nodes.len() as i32);
    }
    let feature = nodes().map(|n| if n.is_leaf() { -1 } else { n.feature as i32 });
    let mut buffers = vec![
        ("trees.offsets".into(), Dtype::I32, vec![offsets.len()], i32s(offsets.into_iter())),
        ("trees.feature".into(), Dtype::I32, vec![count], i32s(feature)),
        ("trees.threshold".into(), Dtype::F32, vec![count], f32s(nodes().map(|n| n.threshold))),
        ("trees.left".into(), Dtype::I32, vec![count], i32s(nodes().map(|n| n.left as i32))),
        ("trees.right".into(), Dtype::I32, vec![count], i32s(nodes().map(|n| n.right as i32))),
        ("trees.missing_left".into(), Dtype::U8, vec![count], nodes().map(|n| u8::from(n.missing_left)).collect()),
        (
            "trees.values".into(),
            Dtype::F32,
            vec![count, per_tree],
            f32s(ensemble.trees.iter().flat_map(|tree| tree.values.iter().copied())),
        ),
        (
            "trees.target".into(),
            Dtype::I32,
            vec![ensemble.trees.len()],
            i32s(ensemble.target.iter().map(|t| t.map_or(-1, |t| t as i32))),
        ),
        ("trees.base".into(), Dtype::F32, vec![ensemble.base.len()], f32s(ensemble.base.iter().copied())),
    ];
    let sets = ensemble.trees.iter().map(|tree| tree.sets.len()).sum::<usize>();
    if sets > 0 {
        let mut first = 0i32;
        let mut set = Vec::with_capacity(count);
        for tree in &ensemble.trees {
            set.extend(tree.nodes.iter().map(|n| if n.set == NO_SET { -1 } else { first + n.set as i32 }));
            first += tree.sets.len() as i32;
        }
        let words = ensemble.trees.iter().flat_map(|tree| tree.sets.iter()).flat_map(|set| set.0);
        buffers.push(("trees.set".into(), Dtype::I32, vec![count], i32s(set.into_iter())));
        buffers.push(("trees.sets".into(), Dtype::U8, vec![sets, 32], words.flat_map(u64::to_le_bytes).collect()));
    }
    buffers
}

fn read(tensors: &SafeTensors<'_>, name: &str, dtype: Dtype) -> Result<(Vec<usize>, Vec<u8>)> {
    let view = tensors.tensor(name).map_err(|_| Error::Artifact(format!("tensor {name:?} is missing")))?;
    if view.dtype() != dtype {
        return Err(Error::Artifact(format!("tensor {name:?} is {:?}; expected {dtype:?}", view.dtype())));
    }
    Ok((view.shape().to_vec(), view.data().to_vec()))
}

fn read_i32(tensors: &SafeTensors<'_>, name: &str) -> Result<Vec<i32>> {
    let (_, bytes) = read(tensors, name, Dtype::I32)?;
    Ok(bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn read_f32(tensors: &SafeTensors<'_>, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let (shape, bytes) = read(tensors, name, Dtype::F32)?;
    Ok((shape, bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
}

/// Reads and checks an ensemble over `features` inputs with `outputs` outputs.
pub(crate) fn load(
    tensors: &SafeTensors<'_>,
    combine: Combine,
    features: usize,
    outputs: usize,
) -> Result<TreeEnsemble> {
    let bad = |what: &str| Error::Artifact(format!("the tree tensors are inconsistent: {what}"));
    let offsets = read_i32(tensors, "trees.offsets")?;
    let feature = read_i32(tensors, "trees.feature")?;
    let (_, threshold) = read_f32(tensors, "trees.threshold")?;
    let left = read_i32(tensors, "trees.left")?;
    let right = read_i32(tensors, "trees.right")?;
    let (_, missing_left) = read(tensors, "trees.missing_left", Dtype::U8)?;
    let (values_shape, values) = read_f32(tensors, "trees.values")?;
    let target = read_i32(tensors, "trees.target")?;
    let (_, base) = read_f32(tensors, "trees.base")?;
    let count = feature.len();
    // Category sets are there only when some branch tests one.
    let (set, sets) = if tensors.names().contains(&"trees.set") {
        let set = read_i32(tensors, "trees.set")?;
        let (shape, bytes) = read(tensors, "trees.sets", Dtype::U8)?;
        if shape.len() != 2 || shape[1] != 32 {
            return Err(bad("trees.sets is not [sets, 32]"));
        }
        let sets: Vec<CategorySet> = bytes
            .chunks_exact(32)
            .map(|chunk| {
                let word = |w: usize| u64::from_le_bytes(chunk[w * 8..w * 8 + 8].try_into().unwrap_or_default());
                CategorySet([word(0), word(1), word(2), word(3)])
            })
            .collect();
        (set, sets)
    } else {
        (vec![-1; count], Vec::new())
    };
    if [threshold.len(), left.len(), right.len(), missing_left.len(), set.len()].iter().any(|&len| len != count) {
        return Err(bad("node lists differ in length"));
    }
    let per_tree = values_shape.get(1).copied().unwrap_or(0);
    if values_shape.first() != Some(&count) || values.len() != count * per_tree || base.len() != outputs {
        return Err(bad("values or base have the wrong shape"));
    }
    if offsets.first() != Some(&0)
        || offsets.last().map(|&o| o as usize) != Some(count)
        || target.len() + 1 != offsets.len()
    {
        return Err(bad("tree offsets do not cover the nodes"));
    }
    let mut trees = Vec::with_capacity(target.len());
    for window in offsets.windows(2) {
        let (start, end) = (usize::try_from(window[0]).map_err(|_| bad("negative offset"))?, window[1] as usize);
        if end < start {
            return Err(bad("offsets go backwards"));
        }
        // This tree's sets, renumbered from the artifact's global indexes.
        let mut tree_sets = Vec::new();
        let mut nodes = Vec::with_capacity(end - start);
        for i in start..end {
            let local = match usize::try_from(set[i]) {
                Ok(global) => {
                    let found = sets.get(global).ok_or_else(|| bad("a branch tests a category set that is missing"))?;
                    tree_sets.push(*found);
                    (tree_sets.len() - 1) as u32
                }
                Err(_) => NO_SET,
            };
            nodes.push(Node {
                feature: if feature[i] < 0 { LEAF } else { feature[i] as u32 },
                threshold: threshold[i],
                left: left[i].max(0) as u32,
                right: right[i].max(0) as u32,
                missing_left: missing_left[i] != 0,
                set: local,
            });
        }
        let values = values[start * per_tree..end * per_tree].to_vec();
        let tree = Tree { nodes, values, outputs: per_tree, sets: tree_sets };
        tree.check(features).map_err(|e| bad(&e))?;
        trees.push(tree);
    }
    let target = target
        .iter()
        .map(|&t| match t {
            -1 if per_tree == outputs => Ok(None),
            t if t >= 0 && (t as usize) < outputs && per_tree == 1 => Ok(Some(t as u32)),
            _ => Err(bad("a tree's target output is out of range")),
        })
        .collect::<Result<_>>()?;
    Ok(TreeEnsemble { trees, target, base, combine })
}
