//! A tree ensemble as an `ai.onnx.ml` tree operator and its head. The operator yields
//! the raw outputs as `TreeEnsemble::predict` adds them up (the same f32 thresholds,
//! `value ≤ threshold` true, NaN following each node's learned side, the base scores
//! added, forests averaged); the head then turns margins into what the native model
//! answers: values, or class probabilities and the label.
//!
//! Trees over numbers are TreeEnsembleRegressor (ai.onnx.ml 3, read by every
//! onnxruntime). Trees over categorical columns need opset 5's TreeEnsemble, whose
//! BRANCH_MEMBER nodes hold category sets; their string columns become codes first, as
//! `Step::Categories` makes them: one LabelEncoder per column (category → its index,
//! a missing marker → NaN, anything else → -1, the "other" code).

use modelplane_model::{CategorySet, Combine, Head, MISSING_MARKERS, Model, TreeEnsemble};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, NodeProto};

use crate::graph::{
    ML_DOMAIN, float, float_tensor, floats, int, int64_tensor, ints, node, string, string_tensor, strings,
    tensor_attribute, uint8_tensor, value,
};
use crate::{Error, Result};

/// The ensemble's node arrays, in TreeEnsembleRegressor's attribute layout.
#[derive(Default)]
struct Arrays {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    feature_ids: Vec<i64>,
    values: Vec<f32>,
    modes: Vec<String>,
    true_ids: Vec<i64>,
    false_ids: Vec<i64>,
    missing_true: Vec<i64>,
    target_tree_ids: Vec<i64>,
    target_node_ids: Vec<i64>,
    target_ids: Vec<i64>,
    target_weights: Vec<f32>,
}

fn arrays(ensemble: &TreeEnsemble) -> Arrays {
    let mut a = Arrays::default();
    for (t, (tree, target)) in ensemble.trees.iter().zip(&ensemble.target).enumerate() {
        for (n, node) in tree.nodes.iter().enumerate() {
            a.tree_ids.push(t as i64);
            a.node_ids.push(n as i64);
            if node.is_leaf() {
                a.feature_ids.push(0);
                a.values.push(0.0);
                a.modes.push("LEAF".into());
                a.true_ids.push(0);
                a.false_ids.push(0);
                a.missing_true.push(0);
                let values = tree.leaf_values(n);
                let targets: Vec<(usize, f32)> = match target {
                    Some(output) => vec![(*output as usize, values[0])],
                    None => values.iter().copied().enumerate().collect(),
                };
                for (output, weight) in targets {
                    a.target_tree_ids.push(t as i64);
                    a.target_node_ids.push(n as i64);
                    a.target_ids.push(output as i64);
                    a.target_weights.push(weight);
                }
            } else {
                a.feature_ids.push(i64::from(node.feature));
                a.values.push(node.threshold);
                a.modes.push("BRANCH_LEQ".into());
                a.true_ids.push(i64::from(node.left));
                a.false_ids.push(i64::from(node.right));
                a.missing_true.push(i64::from(node.missing_left));
            }
        }
    }
    a
}

/// Opset 5's TreeEnsemble arrays: interior nodes and leaves apart, one target per leaf.
#[derive(Default)]
struct Arrays5 {
    roots: Vec<i64>,
    features: Vec<i64>,
    splits: Vec<f32>,
    modes: Vec<u8>,
    true_ids: Vec<i64>,
    true_leafs: Vec<i64>,
    false_ids: Vec<i64>,
    false_leafs: Vec<i64>,
    missing_true: Vec<i64>,
    members: Vec<f32>,
    leaf_targets: Vec<i64>,
    leaf_weights: Vec<f32>,
}

impl Arrays5 {
    /// Appends an interior node: (feature, split, mode, missing goes true), and its
    /// children as (is a leaf, index).
    fn branch(&mut self, (feature, split, mode, missing): (i64, f32, u8, bool), yes: (bool, usize), no: (bool, usize)) {
        self.features.push(feature);
        self.splits.push(split);
        self.modes.push(mode);
        self.missing_true.push(i64::from(missing));
        self.true_ids.push(yes.1 as i64);
        self.true_leafs.push(i64::from(yes.0));
        self.false_ids.push(no.1 as i64);
        self.false_leafs.push(i64::from(no.0));
    }
}

const BRANCH_LEQ: u8 = 0;
const BRANCH_MEMBER: u8 = 6;

/// A tree whose leaves add to several outputs becomes one copy per output (a leaf has
/// one target here); a forest's average is its leaves divided by the number of trees,
/// summed (the copies would otherwise count as trees).
fn arrays5(ensemble: &TreeEnsemble) -> Arrays5 {
    let mut a = Arrays5::default();
    let scale = match ensemble.combine {
        Combine::Sum => 1.0,
        Combine::Average => 1.0 / ensemble.trees.len().max(1) as f32,
    };
    for (tree, target) in ensemble.trees.iter().zip(&ensemble.target) {
        let copies: Vec<(usize, usize)> = match target {
            Some(output) => vec![(*output as usize, 0)],
            None => (0..tree.outputs).map(|k| (k, k)).collect(),
        };
        for (output, value) in copies {
            // Where each node goes: (is a leaf, its index among leaves or branches).
            let mut branches = a.features.len();
            let place: Vec<(bool, usize)> = tree
                .nodes
                .iter()
                .enumerate()
                .map(|(n, node)| {
                    if node.is_leaf() {
                        a.leaf_targets.push(output as i64);
                        a.leaf_weights.push(tree.leaf_values(n)[value] * scale);
                        (true, a.leaf_targets.len() - 1)
                    } else {
                        branches += 1;
                        (false, branches - 1)
                    }
                })
                .collect();
            match place.first() {
                // A lone leaf needs a branch to be reached from: both ways lead to it.
                Some(&(true, leaf)) => {
                    a.roots.push(a.features.len() as i64);
                    a.branch((0, 0.0, BRANCH_LEQ, false), (true, leaf), (true, leaf));
                }
                _ => a.roots.push(a.features.len() as i64),
            }
            for node in tree.nodes.iter().filter(|node| !node.is_leaf()) {
                let (left, right) = (place[node.left as usize], place[node.right as usize]);
                match tree.sets.get(node.set as usize) {
                    Some(set) => {
                        // Codes as `CategorySet::bit_of` reads them; "other" is -1.
                        a.members
                            .extend(set.bits().map(|bit| if bit == CategorySet::OTHER { -1.0 } else { bit as f32 }));
                        a.members.push(f32::NAN);
                        a.branch((i64::from(node.feature), 0.0, BRANCH_MEMBER, node.missing_left), left, right);
                    }
                    None => {
                        let test = (i64::from(node.feature), node.threshold, BRANCH_LEQ, node.missing_left);
                        a.branch(test, left, right);
                    }
                }
            }
        }
    }
    a
}

fn tree_ensemble(ensemble: &TreeEnsemble, input: &str, output: &str) -> NodeProto {
    let a = arrays5(ensemble);
    let attributes = vec![
        ints("tree_roots", a.roots),
        ints("nodes_featureids", a.features),
        tensor_attribute("nodes_splits", float_tensor("nodes_splits", vec![a.splits.len() as i64], a.splits)),
        tensor_attribute("nodes_modes", uint8_tensor("nodes_modes", a.modes)),
        ints("nodes_truenodeids", a.true_ids),
        ints("nodes_trueleafs", a.true_leafs),
        ints("nodes_falsenodeids", a.false_ids),
        ints("nodes_falseleafs", a.false_leafs),
        ints("nodes_missing_value_tracks_true", a.missing_true),
        tensor_attribute(
            "membership_values",
            float_tensor("membership_values", vec![a.members.len() as i64], a.members),
        ),
        ints("leaf_targetids", a.leaf_targets),
        tensor_attribute(
            "leaf_weights",
            float_tensor("leaf_weights", vec![a.leaf_weights.len() as i64], a.leaf_weights),
        ),
        int("n_targets", ensemble.outputs() as i64),
        int("aggregate_function", 1),
        int("post_transform", 0),
    ];
    node("TreeEnsemble", ML_DOMAIN, &[input], &[output], attributes)
}

fn tree_ensemble_regressor(ensemble: &TreeEnsemble, input: &str, output: &str) -> NodeProto {
    let a = arrays(ensemble);
    let mut attributes = vec![
        ints("nodes_treeids", a.tree_ids),
        ints("nodes_nodeids", a.node_ids),
        ints("nodes_featureids", a.feature_ids),
        floats("nodes_values", a.values),
        strings("nodes_modes", a.modes),
        ints("nodes_truenodeids", a.true_ids),
        ints("nodes_falsenodeids", a.false_ids),
        ints("nodes_missing_value_tracks_true", a.missing_true),
        ints("target_treeids", a.target_tree_ids),
        ints("target_nodeids", a.target_node_ids),
        ints("target_ids", a.target_ids),
        floats("target_weights", a.target_weights),
        int("n_targets", ensemble.outputs() as i64),
        string("post_transform", "NONE"),
        string(
            "aggregate_function",
            match ensemble.combine {
                Combine::Sum => "SUM",
                Combine::Average => "AVERAGE",
            },
        ),
    ];
    if ensemble.base.iter().any(|b| *b != 0.0) {
        attributes.push(floats("base_values", ensemble.base.clone()));
    }
    node("TreeEnsembleRegressor", ML_DOMAIN, &[input], &[output], attributes)
}

/// The graph and the ai.onnx.ml opset it needs.
pub fn graph(model: &Model, ensemble: &TreeEnsemble) -> Result<(GraphProto, i64)> {
    let manifest = &model.manifest;
    let input_names: Vec<&str> = manifest.signature.inputs.iter().map(|i| i.name.as_str()).collect();
    let output_names: Vec<&str> = manifest.signature.outputs.iter().map(|o| o.name.as_str()).collect();
    let outputs = ensemble.outputs();
    let scores =
        if manifest.head == Head::Identity { output_names.first().copied().unwrap_or("predictions") } else { "scores" };
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut graph_inputs = Vec::new();
    let columns = model.categorical_columns();
    let numeric = model.numeric_features();
    let ml_opset = if columns.is_empty() {
        let input = input_names.first().copied().unwrap_or("input");
        graph_inputs.push(value(input, DataType::Float, &[None, Some(numeric as i64)]));
        nodes.push(tree_ensemble_regressor(ensemble, input, scores));
        3
    } else {
        // The rows as the trees read them: the numbers, then one code per column.
        let (numbers, categories) = match input_names.as_slice() {
            [numbers, categories] => (Some(*numbers), *categories),
            [categories] => (None, *categories),
            _ => return Err(Error::Unsupported("a categorical model without its two inputs".into())),
        };
        let mut parts: Vec<String> = Vec::new();
        if let Some(numbers) = numbers {
            graph_inputs.push(value(numbers, DataType::Float, &[None, Some(numeric as i64)]));
            parts.push(numbers.to_owned());
        }
        graph_inputs.push(value(categories, DataType::String, &[None, Some(columns.len() as i64)]));
        for (c, column) in columns.iter().enumerate() {
            let (index, text, code) = (format!("column_{c}"), format!("text_{c}"), format!("code_{c}"));
            initializers.push(int64_tensor(&index, vec![1], vec![c as i64]));
            nodes.push(node("Gather", "", &[categories, &index], &[&text], vec![int("axis", 1)]));
            let keys = column.categories.iter().cloned().chain(MISSING_MARKERS.iter().map(|m| (*m).to_owned()));
            let codes = (0..column.categories.len()).map(|i| i as f32).chain(MISSING_MARKERS.iter().map(|_| f32::NAN));
            let attributes = vec![
                strings("keys_strings", keys),
                floats("values_floats", codes.collect()),
                float("default_float", -1.0),
            ];
            nodes.push(node("LabelEncoder", ML_DOMAIN, &[&text], &[&code], attributes));
            parts.push(code);
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        nodes.push(node("Concat", "", &parts, &["features"], vec![int("axis", 1)]));
        initializers.push(float_tensor("base", vec![outputs as i64], ensemble.base.clone()));
        nodes.push(tree_ensemble(ensemble, "features", "raw"));
        nodes.push(node("Add", "", &["raw", "base"], &[scores], vec![]));
        5
    };
    let mut graph_outputs = vec![];
    let labels = || manifest.labels.iter().cloned();
    let (probabilities, label) =
        (output_names.first().copied().unwrap_or("probabilities"), output_names.get(1).copied().unwrap_or("label"));
    match manifest.head {
        Head::Identity => graph_outputs.push(value(scores, DataType::Float, &[None, Some(outputs as i64)])),
        Head::Margin => return Err(Error::Unsupported("a tree model with margins has no ONNX head".into())),
        Head::Sigmoid => {
            // probabilities = [1 - p, p]; the label is class 1 when p ≥ 0.5, as served.
            initializers.push(float_tensor("one", vec![1], vec![1.0]));
            initializers.push(float_tensor("half", vec![1], vec![0.5]));
            initializers.push(int64_tensor("flat", vec![1], vec![-1]));
            initializers.push(string_tensor("labels", vec![manifest.labels.len() as i64], labels()));
            nodes.push(node("Sigmoid", "", &["scores"], &["positive"], vec![]));
            nodes.push(node("Sub", "", &["one", "positive"], &["negative"], vec![]));
            nodes.push(node("Concat", "", &["negative", "positive"], &[probabilities], vec![int("axis", 1)]));
            nodes.push(node("GreaterOrEqual", "", &["positive", "half"], &["is_positive"], vec![]));
            nodes.push(node("Cast", "", &["is_positive"], &["class_column"], vec![int("to", DataType::Int64 as i64)]));
            nodes.push(node("Reshape", "", &["class_column", "flat"], &["class"], vec![]));
            nodes.push(node("Gather", "", &["labels", "class"], &[label], vec![int("axis", 0)]));
        }
        Head::Softmax | Head::Probabilities => {
            initializers.push(string_tensor("labels", vec![manifest.labels.len() as i64], labels()));
            // A forest's class shares are the probabilities as they are.
            let (op, attributes) = match manifest.head {
                Head::Softmax => ("Softmax", vec![int("axis", 1)]),
                _ => ("Identity", vec![]),
            };
            nodes.push(node(op, "", &["scores"], &[probabilities], attributes));
            nodes.push(node("ArgMax", "", &[probabilities], &["class"], vec![int("axis", 1), int("keepdims", 0)]));
            nodes.push(node("Gather", "", &["labels", "class"], &[label], vec![int("axis", 0)]));
        }
    }
    if manifest.head != Head::Identity {
        let classes = if manifest.head == Head::Sigmoid { 2 } else { outputs as i64 };
        graph_outputs.push(value(probabilities, DataType::Float, &[None, Some(classes)]));
        graph_outputs.push(value(label, DataType::String, &[None]));
    }
    let graph = GraphProto {
        name: manifest.kind.name().to_owned(),
        node: nodes,
        initializer: initializers,
        input: graph_inputs,
        output: graph_outputs,
        ..Default::default()
    };
    Ok((graph, ml_opset))
}
