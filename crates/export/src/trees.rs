//! A tree ensemble as `ai.onnx.ml` TreeEnsembleRegressor and its head. The regressor
//! yields the raw outputs exactly as `TreeEnsemble::predict` adds them up (the same
//! f32 thresholds, `value ≤ threshold` true, NaN following each node's learned side,
//! the base scores added, forests averaged); the head then turns margins into what the
//! native model answers: values, or class probabilities and the label.

use modelplane_model::{Combine, Head, Model, TreeEnsemble};
use tract_onnx::pb::GraphProto;
use tract_onnx::pb::tensor_proto::DataType;

use crate::graph::{
    ML_DOMAIN, float_tensor, floats, int, int64_tensor, ints, node, string, string_tensor, strings, value,
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

pub fn graph(model: &Model, ensemble: &TreeEnsemble) -> Result<GraphProto> {
    let manifest = &model.manifest;
    let input_name = manifest.signature.inputs.first().map_or("input", |i| i.name.as_str());
    let output_names: Vec<&str> = manifest.signature.outputs.iter().map(|o| o.name.as_str()).collect();
    let outputs = ensemble.outputs();
    let a = arrays(ensemble);
    let scores =
        if manifest.head == Head::Identity { output_names.first().copied().unwrap_or("predictions") } else { "scores" };
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
        int("n_targets", outputs as i64),
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
    let mut nodes = vec![node("TreeEnsembleRegressor", ML_DOMAIN, &[input_name], &[scores], attributes)];
    let mut initializers = Vec::new();
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
    Ok(GraphProto {
        name: manifest.kind.name().to_owned(),
        node: nodes,
        initializer: initializers,
        input: vec![value(input_name, DataType::Float, &[None, Some(model.features() as i64)])],
        output: graph_outputs,
        ..Default::default()
    })
}
