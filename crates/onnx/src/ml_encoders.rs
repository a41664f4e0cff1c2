//! `ai.onnx.ml` categorical steps tract lacks: LabelEncoder (category ↔ code, as
//! skl2onnx writes scikit-learn's LabelEncoder and OrdinalEncoder) and OneHotEncoder;
//! and ZipMap, refused with the export option that avoids it.

use std::collections::HashMap;
use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use crate::ml_kernel::{Kernel, KernelOp};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("LabelEncoder", label_encoder);
    register.insert("OneHotEncoder", one_hot_encoder);
    register.insert("ZipMap", zip_map);
}

fn zip_map(_: &ParsingContext, _: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    bail!(
        "ZipMap (ai.onnx.ml) turns probabilities into a list of maps, which inference tensors cannot carry; \
         export without it (skl2onnx: to_onnx(model, X, options={{'zipmap': False}}); onnxmltools: remove the \
         ZipMap node) and the probabilities come as an FP32 tensor, one column per class"
    )
}

/// A category as a lookup key: integers, text, or floats by their bits (one NaN for all).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Text(String),
    Float(u32),
}

fn float_key(value: f32) -> Key {
    Key::Float(if value.is_nan() { f32::NAN.to_bits() } else { (value + 0.0).to_bits() })
}

/// The keys of a tensor of `datum_type`, in order.
fn keys_of(tensor: &Tensor) -> TractResult<Vec<Key>> {
    Ok(match tensor.datum_type() {
        DatumType::String => tensor.to_plain_array_view::<String>()?.iter().map(|s| Key::Text(s.clone())).collect(),
        dt if dt.is_float() => {
            tensor.cast_to::<f32>()?.to_plain_array_view::<f32>()?.iter().map(|&v| float_key(v)).collect()
        }
        _ => tensor.cast_to::<i64>()?.to_plain_array_view::<i64>()?.iter().map(|&v| Key::Int(v)).collect(),
    })
}

/// Maps each element to the value of its key, or a default: `keys_*` / `values_*`
/// (opset 2 and later), or opset 1's `classes_strings` (text ↔ position).
#[derive(Debug, Clone)]
struct LabelEncoder {
    key_type: DatumType,
    lookup: HashMap<Key, usize>,
    values: Arc<Tensor>,
    /// One element, of the values' type.
    default: Arc<Tensor>,
}

/// A flat list attribute `{prefix}_int64s`, `_strings`, `_floats` or `_tensor`.
fn list_attribute(ctx: &ParsingContext, node: &NodeProto, prefix: &str) -> TractResult<Option<Tensor>> {
    if let Some(v) = node.get_attr_opt_vec::<i64>(&format!("{prefix}_int64s"))? {
        return Ok(Some(tensor1(&v)));
    }
    if let Some(v) = node.get_attr_opt_vec::<String>(&format!("{prefix}_strings"))? {
        return Ok(Some(tensor1(&v)));
    }
    if let Some(v) = node.get_attr_opt_vec::<f32>(&format!("{prefix}_floats"))? {
        return Ok(Some(tensor1(&v)));
    }
    match node.get_attr_opt::<&tract_onnx::pb::TensorProto>(&format!("{prefix}_tensor"))? {
        Some(proto) => {
            let tensor = ctx.load_tensor(proto)?;
            let len = tensor.len();
            Ok(Some(tensor.into_shape(&[len])?))
        }
        None => Ok(None),
    }
}

fn label_encoder(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (keys, values) = match node.get_attr_opt_vec::<String>("classes_strings")? {
        // Opset 1: text in and position out, or (with only default_string) the reverse.
        Some(classes) => {
            let positions: Vec<i64> = (0..classes.len() as i64).collect();
            if node.get_attr_opt::<String>("default_string")?.is_some()
                && node.get_attr_opt::<i64>("default_int64")?.is_none()
            {
                (tensor1(&positions), tensor1(&classes))
            } else {
                (tensor1(&classes), tensor1(&positions))
            }
        }
        None => (
            list_attribute(ctx, node, "keys")?.ok_or_else(|| format_err!("LabelEncoder has no keys_* attribute"))?,
            list_attribute(ctx, node, "values")?
                .ok_or_else(|| format_err!("LabelEncoder has no values_* attribute"))?,
        ),
    };
    ensure!(keys.len() == values.len(), "LabelEncoder has {} keys but {} values", keys.len(), values.len());
    let default = match values.datum_type() {
        DatumType::String => tensor1(&[node.get_attr_opt::<String>("default_string")?.unwrap_or("_Unused".into())]),
        DatumType::I64 => tensor1(&[node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1)]),
        dt => match list_attribute(ctx, node, "default")? {
            Some(tensor) => tensor.cast_to_dt(dt)?.into_owned(),
            None => tensor1(&[node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0)]).cast_to_dt(dt)?.into_owned(),
        },
    };
    ensure!(default.len() == 1, "LabelEncoder's default_tensor holds {} values, not one", default.len());
    let mut lookup = HashMap::new();
    for (index, key) in keys_of(&keys)?.into_iter().enumerate() {
        lookup.entry(key).or_insert(index);
    }
    let encoder =
        LabelEncoder { key_type: keys.datum_type(), lookup, values: Arc::new(values), default: Arc::new(default) };
    Ok((expand(encoder), vec![]))
}

/// `values[index]`, or the default where there is no index, shaped `shape`.
fn gather<T: Datum>(
    values: &Tensor,
    default: &Tensor,
    picks: &[Option<usize>],
    shape: &[usize],
) -> TractResult<Tensor> {
    let values: Vec<T> = values.to_plain_array_view::<T>()?.iter().cloned().collect();
    let default = default.to_plain_array_view::<T>()?.iter().next().cloned().context("a default value")?;
    let picked: Vec<T> = picks.iter().map(|pick| pick.map_or_else(|| default.clone(), |i| values[i].clone())).collect();
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, picked)?.into_tensor())
}

impl Kernel for LabelEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.values.datum_type().fact(inputs[0].shape.clone())))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let picks: Vec<Option<usize>> = keys_of(&input)?.iter().map(|key| self.lookup.get(key).copied()).collect();
        let dt = self.values.datum_type();
        let output = dispatch_datum!(gather(dt)(&self.values, &self.default, &picks, input.shape()))?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl Expansion for LabelEncoder {
    fn name(&self) -> StaticName {
        "LabelEncoder".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        solver.equals(&inputs[0].shape, &outputs[0].shape)?;
        solver.equals(&outputs[0].datum_type, self.values.datum_type())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let input = model.outlet_fact(inputs[0])?.datum_type;
        let text = |dt: DatumType| dt == DatumType::String;
        ensure!(
            text(input) == text(self.key_type),
            "LabelEncoder maps {:?} keys but its input is {input:?}",
            self.key_type
        );
        model.wire_node(prefix, KernelOp(Arc::new(self.clone())), inputs)
    }
}

/// One FP32 column per category (`cats_int64s` or `cats_strings`), appended as a last
/// axis; an unknown category is all zeros, or an error with `zeros=0`.
#[derive(Debug, Clone)]
struct OneHotEncoder {
    categories: HashMap<Key, usize>,
    count: usize,
    text: bool,
    zeros: bool,
}

fn one_hot_encoder(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (keys, text): (Vec<Key>, bool) =
        match (node.get_attr_opt_vec::<i64>("cats_int64s")?, node.get_attr_opt_vec::<String>("cats_strings")?) {
            (Some(ints), None) => (ints.into_iter().map(Key::Int).collect(), false),
            (None, Some(strings)) => (strings.into_iter().map(Key::Text).collect(), true),
            _ => bail!("OneHotEncoder takes exactly one of cats_int64s and cats_strings"),
        };
    let count = keys.len();
    let mut categories = HashMap::new();
    for (index, key) in keys.into_iter().enumerate() {
        categories.entry(key).or_insert(index);
    }
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    Ok((expand(OneHotEncoder { categories, count, text, zeros }), vec![]))
}

impl Kernel for OneHotEncoder {
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        shape.push(self.count.to_dim());
        Ok(tvec!(f32::fact(&*shape)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        // onnxruntime truncates float categories to integers.
        let keys: Vec<Key> = if self.text {
            keys_of(&input)?
        } else {
            input.cast_to::<i64>()?.to_plain_array_view::<i64>()?.iter().map(|&v| Key::Int(v)).collect()
        };
        let mut out = vec![0f32; keys.len() * self.count];
        for (element, key) in keys.iter().enumerate() {
            match self.categories.get(key) {
                Some(&category) => out[element * self.count + category] = 1.0,
                None if self.zeros => {}
                None => {
                    bail!("OneHotEncoder met {key:?}, which is not among its categories (zeros=0 refuses unknowns)")
                }
            }
        }
        let mut shape: TVec<usize> = input.shape().into();
        shape.push(self.count);
        Ok(tvec!(Tensor::from_shape(&shape, &out)?.into_tvalue()))
    }
}

impl Expansion for OneHotEncoder {
    fn name(&self) -> StaticName {
        "OneHotEncoder".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        solver: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        solver.equals(&outputs[0].datum_type, f32::datum_type())?;
        solver.given(&inputs[0].shape, move |solver, shape| {
            let mut shape = shape.clone();
            shape.push(self.count.to_dim());
            solver.equals(&outputs[0].shape, shape)
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let input = model.outlet_fact(inputs[0])?.datum_type;
        ensure!(
            (input == DatumType::String) == self.text,
            "OneHotEncoder's categories are {} but its input is {input:?}",
            if self.text { "text" } else { "integers" }
        );
        model.wire_node(prefix, KernelOp(Arc::new(self.clone())), inputs)
    }
}
