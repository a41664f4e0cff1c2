//! ONNX models made elsewhere, run with tract: load and optimise once, read the
//! signature from the graph, then run batches.
//!
//! Supported: FP32, FP64, INT32, INT64 and BOOL inputs and outputs of any rank;
//! dimensions the graph leaves symbolic (a `dim_param` such as the batch) are reported as
//! `-1` and may take any size.
//!
//! A graph whose inputs and outputs all start with one shared symbolic dimension (the
//! batch, `[N, ...]`), are fixed otherwise and take FP32 can merge requests: each request's inputs
//! are laid side by side in one row per batch item ([`OnnxModel::stack_rows`]), rows of
//! many requests stack, and [`OnnxModel::predict_rows`] runs them as one batch.
#![forbid(unsafe_code)]

use std::sync::Arc;

use modelplane_model::{Output, Signature, TensorData, TensorSpec};
use ndarray::{Array2, ArrayView2, Axis, Slice};
use tract_onnx::prelude::*;

/// Errors of ONNX loading and inference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not an ONNX model tract can run.
    #[error("not a runnable ONNX model: {0}")]
    Load(String),
    /// An input does not fit the graph.
    #[error("{0}")]
    InvalidInput(String),
    /// tract failed while running.
    #[error("onnx inference failed: {0}")]
    Run(String),
}

/// An optimised, runnable ONNX graph with its signature.
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    signature: Signature,
    /// Values per batch item of each input, when the graph batches (module docs).
    row_widths: Option<Vec<usize>>,
}

/// An input or output tensor: its shape and values.
pub type ShapedTensor = (Vec<usize>, TensorData);

fn datatype(dt: DatumType) -> Result<&'static str, Error> {
    match dt {
        DatumType::F32 => Ok("FP32"),
        DatumType::F64 => Ok("FP64"),
        DatumType::I32 => Ok("INT32"),
        DatumType::I64 => Ok("INT64"),
        DatumType::Bool => Ok("BOOL"),
        other => Err(Error::Load(format!(
            "tensors of {other:?} are not supported; modelplane serves ONNX graphs whose inputs and outputs are \
             FP32, FP64, INT32, INT64 or BOOL"
        ))),
    }
}

/// A tract tensor of `shape` holding `values`.
fn tensor(shape: &[usize], values: TensorData) -> TractResult<Tensor> {
    match values {
        TensorData::F32(values) => Tensor::from_shape(shape, &values),
        TensorData::F64(values) => Tensor::from_shape(shape, &values),
        TensorData::I32(values) => Tensor::from_shape(shape, &values),
        TensorData::I64(values) => Tensor::from_shape(shape, &values),
        TensorData::Bool(values) => Tensor::from_shape(shape, &values),
        TensorData::Bytes(_) => Err(TractError::msg("BYTES tensors are not supported")),
    }
}

/// A tract tensor's values, when of a type the signature allows.
fn values(tensor: &Tensor) -> TractResult<TensorData> {
    fn all<T: Datum + Copy>(tensor: &Tensor) -> TractResult<Vec<T>> {
        Ok(tensor.to_plain_array_view::<T>()?.iter().copied().collect())
    }
    Ok(match tensor.datum_type() {
        DatumType::F32 => TensorData::F32(all(tensor)?),
        DatumType::F64 => TensorData::F64(all(tensor)?),
        DatumType::I32 => TensorData::I32(all(tensor)?),
        DatumType::I64 => TensorData::I64(all(tensor)?),
        DatumType::Bool => TensorData::Bool(all(tensor)?),
        other => {
            return Err(TractError::msg(format!("the graph answered {other:?}, which its signature does not declare")));
        }
    })
}

fn spec(model: &TypedModel, outlet: OutletId) -> Result<TensorSpec, Error> {
    let fact = model.outlet_fact(outlet).map_err(|e| Error::Load(e.to_string()))?;
    let name = model.outlet_label(outlet).map(str::to_owned).unwrap_or_else(|| model.node(outlet.node).name.clone());
    let shape = fact.shape.iter().map(|dim| dim.as_i64().unwrap_or(-1)).collect();
    Ok(TensorSpec { name, datatype: datatype(fact.datum_type)?.to_owned(), shape })
}

impl OnnxModel {
    /// Parses, checks and optimises an ONNX file.
    pub fn load(bytes: &[u8]) -> Result<Self, Error> {
        let load = |e: TractError| Error::Load(format!("{e:#}"));
        let model = tract_onnx::onnx().model_for_read(&mut &*bytes).map_err(load)?.into_optimized().map_err(load)?;
        let inputs = model.input_outlets().map_err(load)?.iter().map(|o| spec(&model, *o)).collect::<Result<_, _>>()?;
        let outputs =
            model.output_outlets().map_err(load)?.iter().map(|o| spec(&model, *o)).collect::<Result<_, _>>()?;
        let signature = Signature { inputs, outputs };
        let row_widths = batch_row_widths(&model).map_err(load)?;
        let plan = model.into_runnable().map_err(load)?;
        Ok(Self { plan, signature, row_widths })
    }

    /// Inputs and outputs as the graph declares them.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Whether requests can be merged into one batch (module docs).
    pub fn batches(&self) -> bool {
        self.row_widths.is_some()
    }

    /// One request's inputs (signature order, as (shape, values)) as rows of a matrix:
    /// batch item `i` of every input, side by side, in row `i`. `None` when the graph
    /// does not batch or the inputs do not fit it (wrong count or shape, or batch sizes
    /// that differ between inputs): such a request runs alone through
    /// [`OnnxModel::predict`], which says what is wrong.
    pub fn stack_rows(&self, inputs: &[ShapedTensor]) -> Option<Array2<f32>> {
        let widths = self.row_widths.as_ref()?;
        if inputs.len() != widths.len() {
            return None;
        }
        let rows = *inputs.first()?.0.first()?;
        // Batching graphs take FP32 inputs only (see `batch_row_widths`).
        let inputs: Vec<(&[usize], &[f32])> = inputs
            .iter()
            .map(|(shape, values)| match values {
                TensorData::F32(values) => Some((shape.as_slice(), values.as_slice())),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let fits = inputs.iter().zip(&self.signature.inputs).all(|((shape, values), spec)| {
            shape.first() == Some(&rows) && fits(shape, &spec.shape) && values.len() == shape.iter().product::<usize>()
        });
        if !fits {
            return None;
        }
        let width: usize = widths.iter().sum();
        let mut stacked = Vec::with_capacity(rows * width);
        for row in 0..rows {
            for ((_, values), &w) in inputs.iter().zip(widths) {
                stacked.extend_from_slice(&values[row * w..(row + 1) * w]);
            }
        }
        Array2::from_shape_vec((rows, width), stacked).ok()
    }

    /// Runs rows made by [`OnnxModel::stack_rows`] (of one or many requests) as one batch.
    pub fn predict_rows(&self, rows: ArrayView2<'_, f32>) -> Result<Vec<Output>, Error> {
        let widths = self.row_widths.as_ref().ok_or_else(|| Error::InvalidInput("this graph does not batch".into()))?;
        let width: usize = widths.iter().sum();
        if rows.ncols() != width {
            return Err(Error::InvalidInput(format!(
                "stacked rows have {} values; the graph takes {width}",
                rows.ncols()
            )));
        }
        let mut offset = 0;
        let inputs = widths
            .iter()
            .zip(&self.signature.inputs)
            .map(|(&w, spec)| {
                let columns = rows.slice_axis(Axis(1), Slice::from(offset..offset + w));
                offset += w;
                let mut shape = vec![rows.nrows()];
                shape.extend(spec.shape.iter().skip(1).map(|&d| d as usize));
                (shape, TensorData::F32(columns.iter().copied().collect()))
            })
            .collect();
        self.predict(inputs)
    }

    /// Runs one batch: one tensor per input, in signature order, of the datatype the
    /// signature declares.
    pub fn predict(&self, inputs: Vec<ShapedTensor>) -> Result<Vec<Output>, Error> {
        if inputs.len() != self.signature.inputs.len() {
            return Err(Error::InvalidInput(format!(
                "the model takes {} inputs; got {}",
                self.signature.inputs.len(),
                inputs.len()
            )));
        }
        if self.row_widths.is_some() {
            // Every input starts with the batch dimension, so they must agree on it.
            let sizes: Vec<usize> = inputs.iter().map(|(shape, _)| shape.first().copied().unwrap_or(0)).collect();
            if sizes.iter().any(|&size| size != sizes[0]) {
                return Err(Error::InvalidInput(format!(
                    "inputs {:?} have batch sizes {sizes:?}; every input of this model takes the same number of rows",
                    self.signature.inputs.iter().map(|spec| spec.name.as_str()).collect::<Vec<_>>()
                )));
            }
        }
        let mut tensors = TVec::new();
        for ((shape, values), spec) in inputs.into_iter().zip(&self.signature.inputs) {
            if !fits(&shape, &spec.shape) {
                return Err(Error::InvalidInput(format!(
                    "input {:?} has shape {shape:?}; the model expects {:?} (-1: any size)",
                    spec.name, spec.shape
                )));
            }
            if values.datatype() != spec.datatype {
                return Err(Error::InvalidInput(format!(
                    "input {:?} is {}; the model takes {}",
                    spec.name,
                    values.datatype(),
                    spec.datatype
                )));
            }
            let tensor = tensor(&shape, values).map_err(|e| Error::InvalidInput(e.to_string()))?;
            tensors.push(tensor.into_tvalue());
        }
        let results = self.plan.run(tensors).map_err(|e| Error::Run(format!("{e:#}")))?;
        results
            .into_iter()
            .zip(&self.signature.outputs)
            .map(|(value, spec)| {
                let data = values(&value).map_err(|e| Error::Run(e.to_string()))?;
                Ok(Output { name: spec.name.clone(), shape: value.shape().to_vec(), data })
            })
            .collect()
    }
}

/// Whether `shape` fits a signature's `declared` shape (`-1`: any size).
fn fits(shape: &[usize], declared: &[i64]) -> bool {
    shape.len() == declared.len() && shape.iter().zip(declared).all(|(got, want)| *want < 0 || *got as i64 == *want)
}

/// Values per batch item of each input, when every input and output starts with the same
/// symbolic dimension, every other dimension is fixed and the inputs are FP32 (they stack
/// as rows of one matrix); else `None`.
fn batch_row_widths(model: &TypedModel) -> TractResult<Option<Vec<usize>>> {
    let facts = |outlets: &[OutletId]| -> TractResult<Vec<TypedFact>> {
        outlets.iter().map(|outlet| model.outlet_fact(*outlet).cloned()).collect()
    };
    let inputs = facts(model.input_outlets()?)?;
    let outputs = facts(model.output_outlets()?)?;
    let Some(batch) = inputs.first().and_then(|fact| fact.shape.iter().next()) else { return Ok(None) };
    if batch.to_i64().is_ok() || inputs.iter().any(|fact| fact.datum_type != DatumType::F32) {
        return Ok(None);
    }
    let batched = |fact: &TypedFact| fact.shape.iter().next().as_ref() == Some(&batch);
    if !inputs.iter().chain(&outputs).all(batched) {
        return Ok(None);
    }
    let mut widths = Vec::with_capacity(inputs.len());
    for fact in &inputs {
        let dims: Option<Vec<i64>> = fact.shape.iter().skip(1).map(|d| d.to_i64().ok()).collect();
        match dims {
            Some(dims) => widths.push(dims.iter().map(|&d| d as usize).product()),
            None => return Ok(None),
        }
    }
    Ok(Some(widths))
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
    use tract_onnx::pb::{self, attribute_proto::AttributeType, type_proto};

    use super::*;

    /// A dimension: a number, or a symbol (`dim_param`).
    #[derive(Clone, Copy)]
    enum Dim {
        Fixed(i64),
        Symbol(&'static str),
    }

    fn value(name: &str, elem_type: DataType, dims: &[Dim]) -> pb::ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(n) => dimension::Value::DimValue(*n),
                    Dim::Symbol(s) => dimension::Value::DimParam((*s).to_owned()),
                }),
                ..Default::default()
            })
            .collect();
        let tensor = type_proto::Tensor { elem_type: elem_type as i32, shape: Some(pb::TensorShapeProto { dim }) };
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
            ..Default::default()
        }
    }

    /// A node `op(input) -> output` with integer attributes.
    fn node(op: &str, input: &str, output: &str, attributes: &[(&str, i64)]) -> pb::NodeProto {
        pb::NodeProto {
            input: vec![input.into()],
            output: vec![output.into()],
            op_type: op.into(),
            attribute: attributes
                .iter()
                .map(|(name, i)| pb::AttributeProto {
                    name: (*name).into(),
                    r#type: AttributeType::Int as i32,
                    i: *i,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn load(node: Vec<pb::NodeProto>, input: Vec<pb::ValueInfoProto>, output: Vec<pb::ValueInfoProto>) -> OnnxModel {
        let graph = pb::GraphProto { node, name: "test".into(), input, output, ..Default::default() };
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(graph),
            ..Default::default()
        };
        OnnxModel::load(&model.encode_to_vec()).expect("the test graph loads")
    }

    /// `neg_a = -a`, `neg_b = -b`: two FP32 inputs of different widths, two outputs.
    fn negate_both(a: &[Dim], b: &[Dim]) -> OnnxModel {
        load(
            vec![node("Neg", "a", "neg_a", &[]), node("Neg", "b", "neg_b", &[])],
            vec![value("a", DataType::Float, a), value("b", DataType::Float, b)],
            vec![value("neg_a", DataType::Float, a), value("neg_b", DataType::Float, b)],
        )
    }

    fn f32s(shape: &[usize], values: &[f32]) -> ShapedTensor {
        (shape.to_vec(), TensorData::F32(values.to_vec()))
    }

    fn answer(outputs: &[Output], index: usize) -> (&[usize], &TensorData) {
        (&outputs[index].shape, &outputs[index].data)
    }

    #[test]
    fn requests_stack_into_one_batch_and_come_apart_by_row() {
        let graph = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Symbol("N"), Dim::Fixed(3)]);
        assert!(graph.batches());
        // Two requests: one of two rows, one of one row.
        let first = [f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]), f32s(&[2, 3], &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0])];
        let second = [f32s(&[1, 2], &[5.0, 6.0]), f32s(&[1, 3], &[70.0, 80.0, 90.0])];
        let rows = [graph.stack_rows(&first).expect("fits"), graph.stack_rows(&second).expect("fits")];
        assert_eq!(rows[0].row(1).to_vec(), [3.0, 4.0, 40.0, 50.0, 60.0], "batch item 1 of a, then of b");
        let batch = ndarray::concatenate(Axis(0), &[rows[0].view(), rows[1].view()]).expect("same width");
        let outputs = graph.predict_rows(batch.view()).expect("runs");
        assert_eq!(answer(&outputs, 0), (&[3, 2][..], &TensorData::F32(vec![-1.0, -2.0, -3.0, -4.0, -5.0, -6.0])));
        let negated_b = vec![-10.0, -20.0, -30.0, -40.0, -50.0, -60.0, -70.0, -80.0, -90.0];
        assert_eq!(answer(&outputs, 1), (&[3, 3][..], &TensorData::F32(negated_b)));
        // The same request alone gives the same answer.
        let alone = graph.predict(second.to_vec()).expect("runs");
        assert_eq!(answer(&alone, 1).1, &TensorData::F32(vec![-70.0, -80.0, -90.0]));
    }

    #[test]
    fn inputs_that_do_not_fit_the_batch_are_left_to_run_alone() {
        let graph = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Symbol("N"), Dim::Fixed(3)]);
        let rows_differ = [f32s(&[2, 2], &[0.0; 4]), f32s(&[1, 3], &[0.0; 3])];
        assert!(graph.stack_rows(&rows_differ).is_none());
        let too_wide = [f32s(&[1, 3], &[0.0; 3]), f32s(&[1, 3], &[0.0; 3])];
        assert!(graph.stack_rows(&too_wide).is_none());
        assert!(graph.stack_rows(&too_wide[..1]).is_none(), "one input missing");
        let message = graph.predict(rows_differ.to_vec()).map(|_| ()).expect_err("batch sizes differ").to_string();
        assert!(message.contains("batch sizes [2, 1]"), "{message}");
    }

    #[test]
    fn only_graphs_with_one_shared_batch_dimension_batch() {
        let fixed = negate_both(&[Dim::Fixed(1), Dim::Fixed(2)], &[Dim::Fixed(1), Dim::Fixed(3)]);
        assert!(!fixed.batches(), "a fixed first dimension");
        let two_symbols = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Symbol("M"), Dim::Fixed(3)]);
        assert!(!two_symbols.batches(), "inputs with unrelated first dimensions");
        let ragged = negate_both(&[Dim::Symbol("N"), Dim::Symbol("L")], &[Dim::Symbol("N"), Dim::Fixed(3)]);
        assert!(!ragged.batches(), "a second symbolic dimension (say, sequence length)");
        assert!(ragged.stack_rows(&[f32s(&[1, 4], &[0.0; 4]), f32s(&[1, 3], &[0.0; 3])]).is_none());
    }

    /// INT64 ids and BOOL flags in; INT64, FP64, BOOL and INT32 out.
    fn typed_graph() -> OnnxModel {
        let (n, two, one) = (Dim::Symbol("N"), Dim::Fixed(2), Dim::Fixed(1));
        load(
            vec![
                node("ArgMax", "ids", "position", &[("axis", 1), ("keepdims", 0)]),
                node("Cast", "ids", "wide", &[("to", DataType::Double as i64)]),
                node("Cast", "ids", "nonzero", &[("to", DataType::Bool as i64)]),
                node("Cast", "flags", "flag_ints", &[("to", DataType::Int32 as i64)]),
            ],
            vec![value("ids", DataType::Int64, &[n, two]), value("flags", DataType::Bool, &[n, one])],
            vec![
                value("position", DataType::Int64, &[n]),
                value("wide", DataType::Double, &[n, two]),
                value("nonzero", DataType::Bool, &[n, two]),
                value("flag_ints", DataType::Int32, &[n, one]),
            ],
        )
    }

    #[test]
    fn graphs_take_and_answer_integer_float64_and_bool_tensors() {
        let graph = typed_graph();
        let datatypes = |specs: &[TensorSpec]| specs.iter().map(|s| s.datatype.clone()).collect::<Vec<_>>();
        assert_eq!(datatypes(&graph.signature().inputs), ["INT64", "BOOL"]);
        assert_eq!(datatypes(&graph.signature().outputs), ["INT64", "FP64", "BOOL", "INT32"]);
        assert!(!graph.batches(), "only FP32 inputs stack as rows");
        let ids = (vec![2, 2], TensorData::I64(vec![7, 1 << 40, 0, 3]));
        let flags = (vec![2, 1], TensorData::Bool(vec![true, false]));
        let outputs = graph.predict(vec![ids, flags]).expect("runs");
        assert_eq!(answer(&outputs, 0), (&[2][..], &TensorData::I64(vec![1, 1])));
        assert_eq!(answer(&outputs, 1).1, &TensorData::F64(vec![7.0, (1u64 << 40) as f64, 0.0, 3.0]));
        assert_eq!(answer(&outputs, 2).1, &TensorData::Bool(vec![true, true, false, true]));
        assert_eq!(answer(&outputs, 3), (&[2, 1][..], &TensorData::I32(vec![1, 0])));
    }

    #[test]
    fn an_input_of_another_datatype_than_the_graph_takes_is_refused() {
        let graph = typed_graph();
        let ids = f32s(&[1, 2], &[7.0, 1.0]);
        let flags = (vec![1, 1], TensorData::Bool(vec![true]));
        let message = graph.predict(vec![ids, flags]).map(|_| ()).expect_err("FP32 ids").to_string();
        assert_eq!(message, "input \"ids\" is FP32; the model takes INT64");
    }
}
