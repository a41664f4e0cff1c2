//! Reading an [`Ensemble`] from an ONNX node's attributes: the parallel lists of
//! TreeEnsembleRegressor / TreeEnsembleClassifier (ai.onnx.ml 1–3), where a node is
//! named by `(tree id, node id)`, and opset 5's TreeEnsemble, where nodes and leaves are
//! positions in their own lists.

use std::collections::HashMap;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

use super::ensemble::{Aggregate, Branch, Child, Comparison, Ensemble};
use crate::ml_scores::PostTransform;

/// A float list given either as `name` (floats) or `name_as_tensor` (a tensor, for
/// doubles).
fn floats(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Vec<f64>>> {
    if let Some(values) = node.get_attr_opt_vec::<f32>(name)? {
        return Ok(Some(values.into_iter().map(f64::from).collect()));
    }
    let Some(proto) = node.get_attr_opt::<&TensorProto>(&format!("{name}_as_tensor"))? else { return Ok(None) };
    Ok(Some(tensor_values(ctx, proto)?))
}

fn tensor_values(ctx: &ParsingContext, proto: &TensorProto) -> TractResult<Vec<f64>> {
    let tensor = ctx.load_tensor(proto)?.cast_to::<f64>()?.into_owned();
    Ok(tensor.to_plain_array_view::<f64>()?.iter().copied().collect())
}

fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_vec::<i64>(name)?.unwrap_or_default())
}

fn index(value: i64, what: &str) -> TractResult<usize> {
    usize::try_from(value).map_err(|_| format_err!("{what} {value} is negative"))
}

fn same_length(lists: &[(&str, usize)]) -> TractResult<usize> {
    let (first, length) = lists[0];
    for (name, len) in &lists[1..] {
        ensure!(*len == length, "{name} has {len} values but {first} has {length}; they are parallel lists");
    }
    Ok(length)
}

fn aggregate(name: &str) -> TractResult<Aggregate> {
    Ok(match name {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => bail!("aggregate_function {other:?} is not one of SUM, AVERAGE, MIN, MAX"),
    })
}

/// The ensemble of a TreeEnsembleRegressor (`leaf_prefix` "target") or
/// TreeEnsembleClassifier ("class") with `targets` outputs per row.
pub(crate) fn legacy(
    ctx: &ParsingContext,
    node: &NodeProto,
    leaf_prefix: &str,
    targets: usize,
) -> TractResult<Ensemble> {
    let tree_ids = ints(node, "nodes_treeids")?;
    let node_ids = ints(node, "nodes_nodeids")?;
    let features = ints(node, "nodes_featureids")?;
    let modes: Vec<String> = node.get_attr_opt_vec::<String>("nodes_modes")?.unwrap_or_default();
    let thresholds = floats(ctx, node, "nodes_values")?.unwrap_or_default();
    let true_ids = ints(node, "nodes_truenodeids")?;
    let false_ids = ints(node, "nodes_falsenodeids")?;
    let missing = ints(node, "nodes_missing_value_tracks_true")?;
    let n = same_length(&[
        ("nodes_treeids", tree_ids.len()),
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", thresholds.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
    ])?;
    ensure!(n > 0, "the ensemble has no nodes");
    ensure!(
        missing.is_empty() || missing.len() == n,
        "nodes_missing_value_tracks_true has {} values, not {n}",
        missing.len()
    );

    // Leaves become `Child::Leaf`, branches `Child::Branch`, numbered in listing order.
    let mut children: HashMap<(i64, i64), Child> = HashMap::with_capacity(n);
    let (mut branches, mut leaves) = (0, 0);
    for i in 0..n {
        let child = if modes[i] == "LEAF" {
            leaves += 1;
            Child::Leaf(leaves - 1)
        } else {
            branches += 1;
            Child::Branch(branches - 1)
        };
        ensure!(
            children.insert((tree_ids[i], node_ids[i]), child).is_none(),
            "node {} of tree {} is listed twice",
            node_ids[i],
            tree_ids[i]
        );
    }
    let child = |tree: i64, id: i64| {
        children.get(&(tree, id)).copied().ok_or_else(|| format_err!("tree {tree} has no node {id}"))
    };
    let mut ensemble = Ensemble {
        roots: vec![],
        branches: Vec::with_capacity(branches),
        leaves: vec![0..0; leaves],
        weights: vec![],
        members: vec![],
        targets,
        aggregate: aggregate(node.get_attr_opt::<&str>("aggregate_function")?.unwrap_or("SUM"))?,
    };
    for i in 0..n {
        // A tree starts where the tree id changes, as onnxruntime reads the lists.
        if i == 0 || tree_ids[i] != tree_ids[i - 1] {
            ensemble.roots.push(child(tree_ids[i], node_ids[i])?);
        }
        if modes[i] == "LEAF" {
            continue;
        }
        let comparison = match modes[i].as_str() {
            "BRANCH_LEQ" => Comparison::LessOrEqual,
            "BRANCH_LT" => Comparison::Less,
            "BRANCH_GTE" => Comparison::GreaterOrEqual,
            "BRANCH_GT" => Comparison::Greater,
            "BRANCH_EQ" => Comparison::Equal,
            "BRANCH_NEQ" => Comparison::NotEqual,
            other => bail!(
                "node mode {other:?} is not one of LEAF, BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ"
            ),
        };
        ensemble.branches.push(Branch {
            feature: index(features[i], "nodes_featureids")?,
            comparison,
            threshold: thresholds[i],
            members: 0..0,
            missing_goes_true: missing.get(i).is_some_and(|&m| m == 1),
            if_true: child(tree_ids[i], true_ids[i])?,
            if_false: child(tree_ids[i], false_ids[i])?,
        });
    }

    let name = |suffix: &str| format!("{leaf_prefix}_{suffix}");
    let leaf_trees = ints(node, &name("treeids"))?;
    let leaf_nodes = ints(node, &name("nodeids"))?;
    let leaf_targets = ints(node, &name("ids"))?;
    let leaf_weights = floats(ctx, node, &name("weights"))?.unwrap_or_default();
    let weights = same_length(&[
        (&name("ids"), leaf_targets.len()),
        (&name("treeids"), leaf_trees.len()),
        (&name("nodeids"), leaf_nodes.len()),
        (&name("weights"), leaf_weights.len()),
    ])?;
    let mut per_leaf: Vec<Vec<(usize, f32)>> = vec![vec![]; leaves];
    for i in 0..weights {
        let target = index(leaf_targets[i], &name("ids"))?;
        // Weights on a branch are never read (onnxruntime keeps and ignores them too).
        if let Child::Leaf(leaf) = child(leaf_trees[i], leaf_nodes[i])? {
            per_leaf[leaf].push((target, leaf_weights[i] as f32));
        }
    }
    for (leaf, weights) in per_leaf.into_iter().enumerate() {
        let start = ensemble.weights.len();
        ensemble.weights.extend(weights);
        ensemble.leaves[leaf] = start..ensemble.weights.len();
    }
    ensemble.check().map_err(TractError::msg)?;
    Ok(ensemble)
}

/// The ensemble of opset 5's TreeEnsemble, and its post transform.
pub(crate) fn opset5(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Ensemble, PostTransform)> {
    let tensor = |name: &str| -> TractResult<Vec<f64>> {
        match node.get_attr_opt::<&TensorProto>(name)? {
            Some(proto) => tensor_values(ctx, proto),
            None => Ok(vec![]),
        }
    };
    let roots = ints(node, "tree_roots")?;
    let features = ints(node, "nodes_featureids")?;
    let splits = tensor("nodes_splits")?;
    let modes = tensor("nodes_modes")?;
    let true_ids = ints(node, "nodes_truenodeids")?;
    let true_leafs = ints(node, "nodes_trueleafs")?;
    let false_ids = ints(node, "nodes_falsenodeids")?;
    let false_leafs = ints(node, "nodes_falseleafs")?;
    let missing = ints(node, "nodes_missing_value_tracks_true")?;
    let members = tensor("membership_values")?;
    let n = same_length(&[
        ("nodes_featureids", features.len()),
        ("nodes_splits", splits.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_trueleafs", true_leafs.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_falseleafs", false_leafs.len()),
    ])?;
    ensure!(
        missing.is_empty() || missing.len() == n,
        "nodes_missing_value_tracks_true has {} values, not {n}",
        missing.len()
    );
    let leaf_targets = ints(node, "leaf_targetids")?;
    let leaf_weights = tensor("leaf_weights")?;
    let leaves = same_length(&[("leaf_targetids", leaf_targets.len()), ("leaf_weights", leaf_weights.len())])?;
    let targets = index(node.get_attr::<i64>("n_targets")?, "n_targets")?;

    let to_child = |id: i64, leaf: i64| -> TractResult<Child> {
        let id = index(id, "a child id")?;
        Ok(if leaf == 1 { Child::Leaf(id) } else { Child::Branch(id) })
    };
    // The members of each BRANCH_MEMBER node, in node order, each set ended by a NaN.
    let mut sets = members.split(|v| v.is_nan()).scan(0, |start, set| {
        let range = *start..*start + set.len();
        *start += set.len() + 1;
        Some(range)
    });
    let mut branches = Vec::with_capacity(n);
    for i in 0..n {
        let comparison = match modes[i] as i64 {
            0 => Comparison::LessOrEqual,
            1 => Comparison::Less,
            2 => Comparison::GreaterOrEqual,
            3 => Comparison::Greater,
            4 => Comparison::Equal,
            5 => Comparison::NotEqual,
            6 => Comparison::Member,
            other => bail!("node mode {other} is not one of 0-6 (BRANCH_LEQ ... BRANCH_MEMBER)"),
        };
        let members = if comparison == Comparison::Member {
            sets.next().ok_or_else(|| format_err!("membership_values has fewer sets than BRANCH_MEMBER nodes"))?
        } else {
            0..0
        };
        branches.push(Branch {
            feature: index(features[i], "nodes_featureids")?,
            comparison,
            threshold: splits[i],
            members,
            missing_goes_true: missing.get(i).is_some_and(|&m| m == 1),
            if_true: to_child(true_ids[i], true_leafs[i])?,
            if_false: to_child(false_ids[i], false_leafs[i])?,
        });
    }
    let aggregate = match node.get_attr_opt::<i64>("aggregate_function")?.unwrap_or(1) {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => bail!("aggregate_function {other} is not one of 0 (AVERAGE), 1 (SUM), 2 (MIN), 3 (MAX)"),
    };
    let post_transform = match node.get_attr_opt::<i64>("post_transform")?.unwrap_or(0) {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => bail!(
            "post_transform {other} is not one of 0 (NONE), 1 (SOFTMAX), 2 (LOGISTIC), 3 (SOFTMAX_ZERO), 4 (PROBIT)"
        ),
    };
    let ensemble = Ensemble {
        roots: roots.iter().map(|&root| Ok(Child::Branch(index(root, "tree_roots")?))).collect::<TractResult<_>>()?,
        branches,
        leaves: (0..leaves).map(|leaf| leaf..leaf + 1).collect(),
        weights: leaf_targets
            .iter()
            .zip(&leaf_weights)
            .map(|(&target, &weight)| Ok((index(target, "leaf_targetids")?, weight as f32)))
            .collect::<TractResult<_>>()?,
        members,
        targets,
        aggregate,
    };
    ensemble.check().map_err(TractError::msg)?;
    Ok((ensemble, post_transform))
}
