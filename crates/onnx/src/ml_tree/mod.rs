//! The `ai.onnx.ml` tree operators — TreeEnsembleRegressor, TreeEnsembleClassifier
//! (ai.onnx.ml 1–3, what skl2onnx, onnxmltools and XGBoost/LightGBM converters write)
//! and opset 5's TreeEnsemble — answering as onnxruntime does. tract has its own
//! TreeEnsembleClassifier; this one replaces it because tract's labels a binary model
//! that weighs one class by the arg-max of a single column (always the first class).

mod ensemble;
mod heads;
mod parse;

use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use crate::ml_kernel::{Kernel, KernelOp};
use ensemble::{Ensemble, Scores};
use heads::{Classifier, Regressor};

/// Adds the tree operators to those tract parses (replacing its TreeEnsembleClassifier).
pub fn register(register: &mut OnnxOpRegister) {
    register.insert("TreeEnsembleRegressor", regressor);
    register.insert("TreeEnsembleClassifier", classifier);
    register.insert("TreeEnsemble", tree_ensemble);
}

/// What the operator answers.
#[derive(Debug, Clone, PartialEq)]
enum Head {
    /// `Y`: FP32 `[N, targets]`.
    Regressor(Regressor),
    /// `Y`: labels `[N]` (INT64 or STRING); `Z`: FP32 scores `[N, classes]`.
    Classifier { classifier: Classifier, labels: Arc<Tensor> },
    /// Opset 5: `Y` of the input's float type, `[N, targets]`.
    Targets(Regressor),
}

#[derive(Debug, Clone)]
struct Trees {
    name: &'static str,
    ensemble: Arc<Ensemble>,
    head: Arc<Head>,
}

fn regressor(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let targets = usize::try_from(node.get_attr_opt::<i64>("n_targets")?.unwrap_or(1))?;
    let ensemble = parse::legacy(ctx, node, "target", targets)?;
    let regressor = Regressor {
        base_values: base_values(ctx, node)?,
        post_transform: crate::ml_scores::post_transform(node)?,
        aggregate: ensemble.aggregate,
        trees: ensemble.roots.len(),
    };
    Ok((expand(trees("TreeEnsembleRegressor", ensemble, Head::Regressor(regressor))), vec![]))
}

fn classifier(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ints = node.get_attr_opt_vec::<i64>("classlabels_int64s")?;
    let strings = node.get_attr_opt_vec::<String>("classlabels_strings")?;
    let labels = match (ints, strings) {
        (Some(ints), None) => rctensor1(&ints),
        (None, Some(strings)) => rctensor1(&strings),
        _ => bail!("TreeEnsembleClassifier takes exactly one of classlabels_int64s and classlabels_strings"),
    };
    let classes = labels.len();
    ensure!(classes >= 2, "TreeEnsembleClassifier has {classes} class label; it needs two or more");
    let ensemble = parse::legacy(ctx, node, "class", classes)?;
    let weighed: std::collections::BTreeSet<usize> = ensemble.weights.iter().map(|(class, _)| *class).collect();
    let classifier = Classifier {
        base_values: base_values(ctx, node)?,
        post_transform: crate::ml_scores::post_transform(node)?,
        binary_case: classes == 2 && weighed.len() == 1,
        weights_all_positive: ensemble.weights.iter().all(|(_, weight)| *weight >= 0.0),
    };
    Ok((expand(trees("TreeEnsembleClassifier", ensemble, Head::Classifier { classifier, labels })), vec![]))
}

fn tree_ensemble(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (ensemble, post_transform) = parse::opset5(ctx, node)?;
    let regressor =
        Regressor { base_values: vec![], post_transform, aggregate: ensemble.aggregate, trees: ensemble.roots.len() };
    Ok((expand(trees("TreeEnsemble", ensemble, Head::Targets(regressor))), vec![]))
}

fn base_values(ctx: &ParsingContext, node: &NodeProto) -> TractResult<Vec<f32>> {
    let values = match node.get_attr_opt_vec::<f32>("base_values")? {
        Some(values) => values,
        None => match node.get_attr_opt::<&tract_onnx::pb::TensorProto>("base_values_as_tensor")? {
            Some(proto) => {
                let tensor = ctx.load_tensor(proto)?.cast_to::<f32>()?.into_owned();
                tensor.to_plain_array_view::<f32>()?.iter().copied().collect()
            }
            None => vec![],
        },
    };
    Ok(values)
}

fn trees(name: &'static str, ensemble: Ensemble, head: Head) -> Trees {
    Trees { name, ensemble: Arc::new(ensemble), head: Arc::new(head) }
}

impl Trees {
    fn outputs(&self) -> usize {
        match *self.head {
            Head::Classifier { .. } => 2,
            Head::Regressor(_) | Head::Targets(_) => 1,
        }
    }

    fn output_type(&self, input: DatumType) -> DatumType {
        match *self.head {
            Head::Targets(_) if input == DatumType::F64 => DatumType::F64,
            _ => DatumType::F32,
        }
    }
}

impl Expansion for Trees {
    fn name(&self) -> StaticName {
        self.name.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, self.outputs())?;
        solver.equals(&inputs[0].rank, 2)?;
        let scores = outputs.last().expect("one output or more");
        solver.equals(&scores.rank, 2)?;
        solver.equals(&scores.shape[0], &inputs[0].shape[0])?;
        solver.equals(&scores.shape[1], self.ensemble.targets.to_dim())?;
        solver.given(&inputs[0].datum_type, move |solver, input| {
            solver.equals(&scores.datum_type, self.output_type(input))
        })?;
        if let Head::Classifier { labels, .. } = &*self.head {
            solver.equals(&outputs[0].datum_type, labels.datum_type())?;
            solver.equals(&outputs[0].rank, 1)?;
            solver.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        }
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let features = model.outlet_fact(inputs[0])?.shape.last().and_then(|dim| dim.to_usize().ok());
        if let Some(width) = features {
            ensure!(
                width >= self.ensemble.features(),
                "{} reads feature {} but its input rows have {width} values",
                self.name,
                self.ensemble.features() - 1
            );
        }
        model.wire_node(prefix, KernelOp(Arc::new(self.clone())), inputs)
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.outputs())
    }
}

impl Kernel for Trees {
    fn name(&self) -> &'static str {
        self.name
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        let scores = self.output_type(inputs[0].datum_type).fact(&[rows.clone(), self.ensemble.targets.to_dim()]);
        Ok(match &*self.head {
            Head::Classifier { labels, .. } => tvec!(labels.datum_type().fact(&[rows]), scores),
            Head::Regressor(_) | Head::Targets(_) => tvec!(scores),
        })
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let output_type = self.output_type(input.datum_type());
        let rows_in = input.cast_to::<f64>()?;
        let rows_in = rows_in.to_plain_array_view::<f64>()?.into_dimensionality::<tract_ndarray::Ix2>()?;
        let (rows, width) = rows_in.dim();
        ensure!(
            width >= self.ensemble.features(),
            "{} reads feature {} but the rows have {width} values",
            self.name,
            self.ensemble.features() - 1
        );
        let targets = self.ensemble.targets;
        let mut out = vec![0f32; rows * targets];
        let mut label_indices = Vec::with_capacity(rows);
        let mut scores = Scores::new(targets);
        let mut row_values = Vec::with_capacity(width);
        for (row, out) in rows_in.outer_iter().zip(out.chunks_mut(targets.max(1))) {
            row_values.clear();
            row_values.extend(row.iter().copied());
            self.ensemble.score(&row_values, &mut scores);
            match &*self.head {
                Head::Regressor(regressor) | Head::Targets(regressor) => regressor.finish(&scores, out),
                Head::Classifier { classifier, .. } => label_indices.push(classifier.finish(&scores, out)),
            }
        }
        let scores = Tensor::from_shape(&[rows, targets], &out)?.cast_to_dt(output_type)?.into_owned();
        Ok(match &*self.head {
            Head::Classifier { labels, .. } => {
                let picked = tensor1(&label_indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
                let labels = pick(labels, &picked)?;
                tvec!(labels.into_tvalue(), scores.into_tvalue())
            }
            Head::Regressor(_) | Head::Targets(_) => tvec!(scores.into_tvalue()),
        })
    }
}

/// `labels[indices]`, for INT64 or STRING labels.
pub(crate) fn pick(labels: &Tensor, indices: &Tensor) -> TractResult<Tensor> {
    let indices = indices.to_plain_array_view::<i64>()?;
    Ok(match labels.datum_type() {
        DatumType::I64 => {
            let all = labels.to_plain_array_view::<i64>()?;
            tensor1(&indices.iter().map(|&i| all[i as usize]).collect::<Vec<_>>())
        }
        _ => {
            let all = labels.to_plain_array_view::<String>()?;
            tensor1(&indices.iter().map(|&i| all[i as usize].clone()).collect::<Vec<_>>())
        }
    })
}
