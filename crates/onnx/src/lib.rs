//! ONNX models made elsewhere, run with tract: load and optimise once, read the
//! signature from the graph, then run batches.
//!
//! Supported: FP32 inputs and outputs of any rank; dimensions the graph leaves symbolic
//! (a `dim_param` such as the batch) are reported as `-1` and may take any size.
//!
//! A graph whose inputs and outputs all start with one shared symbolic dimension (the
//! batch, `[N, ...]`) and are fixed otherwise can merge requests: each request's inputs
//! are laid side by side in one row per batch item ([`OnnxModel::stack_rows`]), rows of
//! many requests stack, and [`OnnxModel::predict_rows`] runs them as one batch.
#![forbid(unsafe_code)]

use std::sync::Arc;

use modelplane_model::{Output, OutputData, Signature, TensorSpec};
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

fn datatype(dt: DatumType) -> Result<&'static str, Error> {
    match dt {
        DatumType::F32 => Ok("FP32"),
        other => {
            Err(Error::Load(format!("tensors of {other:?} are not supported; modelplane serves FP32 ONNX graphs")))
        }
    }
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
    pub fn stack_rows(&self, inputs: &[(Vec<usize>, Vec<f32>)]) -> Option<Array2<f32>> {
        let widths = self.row_widths.as_ref()?;
        if inputs.len() != widths.len() {
            return None;
        }
        let rows = *inputs.first()?.0.first()?;
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
                (shape, columns.iter().copied().collect())
            })
            .collect();
        self.predict(inputs)
    }

    /// Runs one batch: one FP32 tensor per input, in signature order, as (shape, values).
    pub fn predict(&self, inputs: Vec<(Vec<usize>, Vec<f32>)>) -> Result<Vec<Output>, Error> {
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
            let tensor = Tensor::from_shape(&shape, &values).map_err(|e| Error::InvalidInput(e.to_string()))?;
            tensors.push(tensor.into_tvalue());
        }
        let results = self.plan.run(tensors).map_err(|e| Error::Run(format!("{e:#}")))?;
        results
            .into_iter()
            .zip(&self.signature.outputs)
            .map(|(value, spec)| {
                let view = value.to_plain_array_view::<f32>().map_err(|e| Error::Run(e.to_string()))?;
                let values: Vec<f32> = view.iter().copied().collect();
                Ok(Output { name: spec.name.clone(), shape: value.shape().to_vec(), data: OutputData::F32(values) })
            })
            .collect()
    }
}

/// Whether `shape` fits a signature's `declared` shape (`-1`: any size).
fn fits(shape: &[usize], declared: &[i64]) -> bool {
    shape.len() == declared.len() && shape.iter().zip(declared).all(|(got, want)| *want < 0 || *got as i64 == *want)
}

/// Values per batch item of each input, when every input and output starts with the same
/// symbolic dimension and every other dimension is fixed; else `None`.
fn batch_row_widths(model: &TypedModel) -> TractResult<Option<Vec<usize>>> {
    let facts = |outlets: &[OutletId]| -> TractResult<Vec<TypedFact>> {
        outlets.iter().map(|outlet| model.outlet_fact(*outlet).cloned()).collect()
    };
    let inputs = facts(model.input_outlets()?)?;
    let outputs = facts(model.output_outlets()?)?;
    let Some(batch) = inputs.first().and_then(|fact| fact.shape.iter().next()) else { return Ok(None) };
    if batch.to_i64().is_ok() {
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
    use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
    use tract_onnx::pb::{self, type_proto};

    use super::*;

    /// A dimension: a number, or a symbol (`dim_param`).
    enum Dim {
        Fixed(i64),
        Symbol(&'static str),
    }

    fn value(name: &str, dims: &[Dim]) -> pb::ValueInfoProto {
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
        let tensor = type_proto::Tensor {
            elem_type: pb::tensor_proto::DataType::Float as i32,
            shape: Some(pb::TensorShapeProto { dim }),
        };
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
            ..Default::default()
        }
    }

    /// `neg_a = -a`, `neg_b = -b`: two inputs of different widths, two outputs.
    fn negate_both(a: &[Dim], b: &[Dim]) -> OnnxModel {
        let node = |input: &str, output: &str| pb::NodeProto {
            input: vec![input.into()],
            output: vec![output.into()],
            op_type: "Neg".into(),
            ..Default::default()
        };
        let out = |input: &[Dim]| {
            input
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => Dim::Fixed(*n),
                    Dim::Symbol(s) => Dim::Symbol(s),
                })
                .collect::<Vec<_>>()
        };
        let graph = pb::GraphProto {
            node: vec![node("a", "neg_a"), node("b", "neg_b")],
            name: "negate_both".into(),
            input: vec![value("a", a), value("b", b)],
            output: vec![value("neg_a", &out(a)), value("neg_b", &out(b))],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(graph),
            ..Default::default()
        };
        OnnxModel::load(&model.encode_to_vec()).expect("the test graph loads")
    }

    fn values(outputs: &[Output], index: usize) -> (&[usize], &[f32]) {
        match &outputs[index].data {
            OutputData::F32(values) => (&outputs[index].shape, values),
            OutputData::Bytes(_) => panic!("FP32 expected"),
        }
    }

    #[test]
    fn requests_stack_into_one_batch_and_come_apart_by_row() {
        let graph = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Symbol("N"), Dim::Fixed(3)]);
        assert!(graph.batches());
        // Two requests: one of two rows, one of one row.
        let first = [(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]), (vec![2, 3], vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0])];
        let second = [(vec![1, 2], vec![5.0, 6.0]), (vec![1, 3], vec![70.0, 80.0, 90.0])];
        let rows = [graph.stack_rows(&first).expect("fits"), graph.stack_rows(&second).expect("fits")];
        assert_eq!(rows[0].row(1).to_vec(), [3.0, 4.0, 40.0, 50.0, 60.0], "batch item 1 of a, then of b");
        let batch = ndarray::concatenate(Axis(0), &[rows[0].view(), rows[1].view()]).expect("same width");
        let outputs = graph.predict_rows(batch.view()).expect("runs");
        assert_eq!(values(&outputs, 0), (&[3, 2][..], &[-1.0, -2.0, -3.0, -4.0, -5.0, -6.0][..]));
        assert_eq!(values(&outputs, 1).0, [3, 3]);
        assert_eq!(values(&outputs, 1).1, [-10.0, -20.0, -30.0, -40.0, -50.0, -60.0, -70.0, -80.0, -90.0]);
        // The same request alone gives the same answer.
        let alone = graph.predict(second.to_vec()).expect("runs");
        assert_eq!(values(&alone, 1).1, [-70.0, -80.0, -90.0]);
    }

    #[test]
    fn inputs_that_do_not_fit_the_batch_are_left_to_run_alone() {
        let graph = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Symbol("N"), Dim::Fixed(3)]);
        let rows_differ = [(vec![2, 2], vec![0.0; 4]), (vec![1, 3], vec![0.0; 3])];
        assert!(graph.stack_rows(&rows_differ).is_none());
        let too_wide = [(vec![1, 3], vec![0.0; 3]), (vec![1, 3], vec![0.0; 3])];
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
        assert!(ragged.stack_rows(&[(vec![1, 4], vec![0.0; 4]), (vec![1, 3], vec![0.0; 3])]).is_none());
    }
}
