//! `ai.onnx.ml` feature steps tract lacks, as scikit-learn pipelines export them
//! (skl2onnx): Imputer (SimpleImputer), Binarizer, and ArrayFeatureExtractor (column
//! selection, and picking a linear classifier's scores).

use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use crate::ml_kernel::{Kernel, KernelOp};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("Imputer", imputer);
    register.insert("Binarizer", binarizer);
    register.insert("ArrayFeatureExtractor", array_feature_extractor);
}

/// An element-wise kernel: the output has the input's type and shape.
fn same_fact(inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
    Ok(tvec!(inputs[0].without_value()))
}

/// The rules of an operator whose one output has its first input's type and shape.
fn same_type_and_shape<'r, 'p: 'r>(
    solver: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    arity: usize,
) -> InferenceResult {
    check_input_arity(inputs, arity)?;
    check_output_arity(outputs, 1)?;
    solver.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
    solver.equals(&inputs[0].shape, &outputs[0].shape)?;
    Ok(())
}

/// Replaces a marker value (NaN by default for floats) with a value per column, or one
/// for all.
#[derive(Debug, Clone, PartialEq)]
struct Imputer {
    floats: Vec<f32>,
    replaced_float: f32,
    ints: Vec<i64>,
    replaced_int: i64,
}

fn imputer(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let imputer = Imputer {
        floats: node.get_attr_opt_vec::<f32>("imputed_value_floats")?.unwrap_or_default(),
        replaced_float: node.get_attr_opt::<f32>("replaced_value_float")?.unwrap_or(0.0),
        ints: node.get_attr_opt_vec::<i64>("imputed_value_int64s")?.unwrap_or_default(),
        replaced_int: node.get_attr_opt::<i64>("replaced_value_int64")?.unwrap_or(0),
    };
    ensure!(
        imputer.floats.is_empty() != imputer.ints.is_empty(),
        "Imputer takes exactly one of imputed_value_floats and imputed_value_int64s"
    );
    Ok((expand(imputer), vec![]))
}

/// The value for column `column` of `width`: one per column, or one for all.
fn per_column<T: Copy>(values: &[T], column: usize, width: usize) -> TractResult<T> {
    match values.len() {
        1 => Ok(values[0]),
        n if n == width => Ok(values[column]),
        n => bail!("Imputer has {n} imputed values but its input rows have {width} columns; expected 1 or {width}"),
    }
}

impl Kernel for Imputer {
    fn name(&self) -> &'static str {
        "Imputer"
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        same_fact(inputs)
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let width = input.shape().last().copied().unwrap_or(1).max(1);
        let datum_type = input.datum_type();
        let output = if datum_type.is_float() {
            ensure!(!self.floats.is_empty(), "this Imputer imputes integers but its input is {datum_type:?}");
            let mut values = input.cast_to::<f64>()?.into_owned();
            let replaced = f64::from(self.replaced_float);
            for (index, value) in values.to_plain_array_view_mut::<f64>()?.iter_mut().enumerate() {
                let missing = if replaced.is_nan() { value.is_nan() } else { *value == replaced };
                if missing {
                    *value = f64::from(per_column(&self.floats, index % width, width)?);
                }
            }
            values.cast_to_dt(datum_type)?.into_owned()
        } else {
            ensure!(!self.ints.is_empty(), "this Imputer imputes floats but its input is {datum_type:?}");
            let mut values = input.cast_to::<i64>()?.into_owned();
            for (index, value) in values.to_plain_array_view_mut::<i64>()?.iter_mut().enumerate() {
                if *value == self.replaced_int {
                    *value = per_column(&self.ints, index % width, width)?;
                }
            }
            values.cast_to_dt(datum_type)?.into_owned()
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl Expansion for Imputer {
    fn name(&self) -> StaticName {
        "Imputer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        same_type_and_shape(solver, inputs, outputs, 1)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, KernelOp(Arc::new(self.clone())), inputs)
    }
}

/// `1` where the input is above the threshold, else `0`, in the input's type.
#[derive(Debug, Clone, PartialEq)]
struct Binarizer {
    threshold: f32,
}

fn binarizer(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = node.get_attr_opt::<f32>("threshold")?.unwrap_or(0.0);
    Ok((expand(Binarizer { threshold }), vec![]))
}

impl Kernel for Binarizer {
    fn name(&self) -> &'static str {
        "Binarizer"
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        same_fact(inputs)
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let mut values = input.cast_to::<f64>()?.into_owned();
        let threshold = f64::from(self.threshold);
        values.to_plain_array_view_mut::<f64>()?.iter_mut().for_each(|v| *v = if *v > threshold { 1.0 } else { 0.0 });
        Ok(tvec!(values.cast_to_dt(input.datum_type())?.into_owned().into_tvalue()))
    }
}

impl Expansion for Binarizer {
    fn name(&self) -> StaticName {
        "Binarizer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        same_type_and_shape(solver, inputs, outputs, 1)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, KernelOp(Arc::new(self.clone())), inputs)
    }
}

/// `Z[..., i] = X[..., Y[i]]`: picks columns of the last axis by index; a rank-1 `X`
/// is one row.
#[derive(Debug, Clone, PartialEq)]
struct ArrayFeatureExtractor;

fn array_feature_extractor(_: &ParsingContext, _: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(ArrayFeatureExtractor), vec![]))
}

impl Kernel for ArrayFeatureExtractor {
    fn name(&self) -> &'static str {
        "ArrayFeatureExtractor"
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let picked = inputs[1].shape.volume();
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        if shape.len() == 1 {
            shape.insert(0, 1.to_dim());
        }
        let Some(last) = shape.last_mut() else { bail!("ArrayFeatureExtractor takes a tensor of rank 1 or more") };
        *last = picked;
        Ok(tvec!(inputs[0].datum_type.fact(&*shape)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, indices) = args_2!(inputs);
        let mut x = x.into_tensor();
        if x.rank() == 1 {
            x.insert_axis(0)?;
        }
        let axis = x.rank() - 1;
        let width = x.shape()[axis];
        let indices = indices.cast_to::<i64>()?;
        let columns = indices
            .to_plain_array_view::<i64>()?
            .iter()
            .map(|&index| {
                usize::try_from(index).ok().filter(|&i| i < width).ok_or_else(|| {
                    format_err!("ArrayFeatureExtractor index {index} is out of range for rows of {width} values")
                })
            })
            .collect::<TractResult<Vec<usize>>>()?;
        ensure!(!columns.is_empty(), "ArrayFeatureExtractor was given no indices");
        let picked = dispatch_datum!(select(x.datum_type())(&x, axis, &columns))?;
        Ok(tvec!(picked.into_tvalue()))
    }
}

fn select<T: Datum>(x: &Tensor, axis: usize, columns: &[usize]) -> TractResult<Tensor> {
    Ok(x.to_plain_array_view::<T>()?.select(tract_ndarray::Axis(axis), columns).into_tensor())
}

impl Expansion for ArrayFeatureExtractor {
    fn name(&self) -> StaticName {
        "ArrayFeatureExtractor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        solver.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        solver.given(&inputs[0].rank, move |solver, rank| {
            solver.equals(&outputs[0].rank, rank.max(2))?;
            if rank >= 2 {
                for axis in 0..rank as usize - 1 {
                    solver.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
                }
            }
            Ok(())
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, KernelOp(Arc::new(self.clone())), inputs)
    }
}
