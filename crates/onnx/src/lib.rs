//! ONNX models made elsewhere, run with tract: load and optimise once, read the
//! signature from the graph, then run batches.
//!
//! Supported: FP16, FP32, FP64, INT8-INT64, UINT8-UINT64, BOOL and STRING (as BYTES) inputs and outputs of
//! any rank; dimensions the graph leaves symbolic (a `dim_param` such as the batch, or
//! no name at all, as skl2onnx writes it) are reported as `-1` and may take any size.
//!
//! A graph whose inputs and outputs all start with one shared symbolic dimension (the
//! batch, `[N, ...]`) and are fixed otherwise can merge requests ([`OnnxModel::batches`]):
//! the requests' tensors, concatenated input by input along that axis, run as one batch
//! whose outputs split back by rows.
#![forbid(unsafe_code)]

use std::sync::Arc;

mod external;
mod ml_encoders;
mod ml_features;
mod ml_kernel;
mod ml_scaler;
mod ml_scores;
mod ml_svm;
mod ml_tree;

pub use external::external_data_locations;

use modelplane_kserve::{Datatype, Output, Signature, TensorData, TensorSpec};
use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{DimFact, Factoid, GenericFactoid, ShapeFactoid};

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
    /// Whether the graph batches (module docs).
    batches: bool,
}

pub use modelplane_kserve::ShapedTensor;

fn datatype(dt: DatumType) -> Result<Datatype, Error> {
    match dt {
        DatumType::F32 => Ok(Datatype::Fp32),
        DatumType::F64 => Ok(Datatype::Fp64),
        DatumType::F16 => Ok(Datatype::Fp16),
        DatumType::I8 => Ok(Datatype::Int8),
        DatumType::I16 => Ok(Datatype::Int16),
        DatumType::I32 => Ok(Datatype::Int32),
        // tract reads ONNX's Cast-to-INT64 as a cast to its symbolic dimension type.
        DatumType::I64 | DatumType::TDim => Ok(Datatype::Int64),
        DatumType::U8 => Ok(Datatype::Uint8),
        DatumType::U16 => Ok(Datatype::Uint16),
        DatumType::U32 => Ok(Datatype::Uint32),
        DatumType::U64 => Ok(Datatype::Uint64),
        DatumType::Bool => Ok(Datatype::Bool),
        DatumType::String => Ok(Datatype::Bytes),
        other => Err(Error::Load(format!(
            "tensors of {other:?} are not supported; modelplane serves ONNX graphs whose inputs and outputs are \
             FP16, FP32, FP64, INT8-INT64, UINT8-UINT64, BOOL or STRING (BYTES)"
        ))),
    }
}

/// A tract tensor of `shape` holding `values`.
fn tensor(shape: &[usize], values: &TensorData) -> TractResult<Tensor> {
    match values {
        TensorData::F32(values) => Tensor::from_shape(shape, values),
        TensorData::F64(values) => Tensor::from_shape(shape, values),
        TensorData::F16(values) => Tensor::from_shape(shape, values),
        TensorData::I8(values) => Tensor::from_shape(shape, values),
        TensorData::I16(values) => Tensor::from_shape(shape, values),
        TensorData::I32(values) => Tensor::from_shape(shape, values),
        TensorData::I64(values) => Tensor::from_shape(shape, values),
        TensorData::U8(values) => Tensor::from_shape(shape, values),
        TensorData::U16(values) => Tensor::from_shape(shape, values),
        TensorData::U32(values) => Tensor::from_shape(shape, values),
        TensorData::U64(values) => Tensor::from_shape(shape, values),
        TensorData::Bool(values) => Tensor::from_shape(shape, values),
        TensorData::Bytes(elements) => {
            let strings = elements
                .iter()
                .enumerate()
                .map(|(index, bytes)| {
                    String::from_utf8(bytes.clone()).map_err(|_| {
                        TractError::msg(format!("element {index} is not UTF-8 text, which an ONNX STRING tensor holds"))
                    })
                })
                .collect::<TractResult<Vec<String>>>()?;
            Ok(tract_ndarray::ArrayD::from_shape_vec(shape, strings)?.into_tensor())
        }
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
        DatumType::F16 => TensorData::F16(all(tensor)?),
        DatumType::I8 => TensorData::I8(all(tensor)?),
        DatumType::I16 => TensorData::I16(all(tensor)?),
        DatumType::I32 => TensorData::I32(all(tensor)?),
        DatumType::I64 => TensorData::I64(all(tensor)?),
        DatumType::TDim => TensorData::I64(all(&*tensor.cast_to::<i64>()?)?),
        DatumType::U8 => TensorData::U8(all(tensor)?),
        DatumType::U16 => TensorData::U16(all(tensor)?),
        DatumType::U32 => TensorData::U32(all(tensor)?),
        DatumType::U64 => TensorData::U64(all(tensor)?),
        DatumType::Bool => TensorData::Bool(all(tensor)?),
        DatumType::String => TensorData::Bytes(
            tensor.to_plain_array_view::<String>()?.iter().map(|text| text.as_bytes().to_vec()).collect(),
        ),
        other => {
            return Err(TractError::msg(format!("the graph answered {other:?}, which its signature does not declare")));
        }
    })
}

/// tract's ONNX parser with the `ai.onnx.ml` operators it lacks added.
fn parser() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    ml_scaler::register(&mut onnx.op_register);
    ml_features::register(&mut onnx.op_register);
    ml_encoders::register(&mut onnx.op_register);
    ml_tree::register(&mut onnx.op_register);
    ml_svm::register(&mut onnx.op_register);
    onnx
}

/// Refuses a graph using an operator tract's parser does not know, naming each such
/// operator with its domain and a node using it; tract alone would stop later, at typing,
/// with a message that names neither.
fn check_operators(onnx: &tract_onnx::Onnx, model: &tract_onnx::pb::ModelProto) -> Result<(), Error> {
    fn walk<'a>(
        onnx: &tract_onnx::Onnx,
        graph: &'a tract_onnx::pb::GraphProto,
        unknown: &mut std::collections::BTreeMap<(&'a str, &'a str), &'a str>,
    ) {
        for node in &graph.node {
            if !onnx.op_register.0.contains_key(&node.op_type) {
                let domain = if node.domain.is_empty() { "ai.onnx" } else { node.domain.as_str() };
                unknown.entry((domain, node.op_type.as_str())).or_insert(node.name.as_str());
            }
            for attribute in &node.attribute {
                attribute.g.iter().chain(&attribute.graphs).for_each(|subgraph| walk(onnx, subgraph, unknown));
            }
        }
    }
    let mut unknown = std::collections::BTreeMap::new();
    if let Some(graph) = &model.graph {
        walk(onnx, graph, &mut unknown);
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> =
        unknown.iter().map(|((domain, op), node)| format!("{op} (domain {domain}, node {node:?})")).collect();
    Err(Error::Load(format!(
        "the graph uses operators modelplane cannot run: {}; it runs the ONNX operators tract implements and the \
         ai.onnx.ml operators docs/models.md lists",
        listed.join(", ")
    )))
}

fn load_error(e: TractError) -> Error {
    Error::Load(format!("{e:#}"))
}

fn spec(model: &TypedModel, outlet: OutletId) -> Result<TensorSpec, Error> {
    let fact = model.outlet_fact(outlet).map_err(|e| Error::Load(e.to_string()))?;
    let name = model.outlet_label(outlet).map(str::to_owned).unwrap_or_else(|| model.node(outlet.node).name.clone());
    let shape = fact.shape.iter().map(|dim| dim.as_i64().unwrap_or(-1)).collect();
    Ok(TensorSpec { name, datatype: datatype(fact.datum_type)?, shape })
}

impl OnnxModel {
    /// Parses, checks and optimises an ONNX graph held in memory (its tensors inside it).
    pub fn load(bytes: &[u8]) -> Result<Self, Error> {
        let onnx = parser();
        let proto = onnx.proto_model_for_read(&mut &*bytes).map_err(load_error)?;
        check_operators(&onnx, &proto)?;
        let model = onnx.model_for_proto_model(&proto).map_err(load_error)?;
        Self::optimise(model)
    }

    /// Parses, checks and optimises an ONNX file read from disk (tract maps it rather
    /// than reading it into a buffer first). Tensors kept outside the graph (ONNX
    /// external data, for graphs past protobuf's 2 GB) are read from the files the graph
    /// names, relative to the graph's folder.
    pub fn load_file(path: &std::path::Path) -> Result<Self, Error> {
        let onnx = parser();
        let proto = onnx.proto_model_for_path(path).map_err(load_error)?;
        check_operators(&onnx, &proto)?;
        let folder = path.parent().and_then(|folder| folder.to_str());
        let parsed = onnx.parse(&proto, folder).map_err(load_error)?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(Error::Load(format!("the graph reads values nothing defines: {:?}", parsed.unresolved_inputs)));
        }
        Self::optimise(parsed.model)
    }

    fn optimise(mut model: InferenceModel) -> Result<Self, Error> {
        let load = load_error;
        name_unknown_input_dims(&mut model).map_err(load)?;
        let model = model.into_optimized().map_err(load)?;
        let inputs = model.input_outlets().map_err(load)?.iter().map(|o| spec(&model, *o)).collect::<Result<_, _>>()?;
        let outputs =
            model.output_outlets().map_err(load)?.iter().map(|o| spec(&model, *o)).collect::<Result<_, _>>()?;
        let signature = Signature { inputs, outputs };
        let batches = has_batch_axis(&model).map_err(load)?;
        let plan = model.into_runnable().map_err(load)?;
        Ok(Self { plan, signature, batches })
    }

    /// Inputs and outputs as the graph declares them.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Whether requests can be merged into one batch (module docs).
    pub fn batches(&self) -> bool {
        self.batches
    }

    /// Whether one request's inputs (signature order) can join a batch: the graph batches,
    /// and every input has the declared type and shape and the same number of rows.
    /// Others run alone through [`OnnxModel::predict`], which says what is wrong.
    pub fn fits_batch(&self, inputs: &[ShapedTensor]) -> bool {
        let rows = inputs.first().and_then(|(shape, _)| shape.first());
        self.batches
            && inputs.len() == self.signature.inputs.len()
            && inputs.iter().zip(&self.signature.inputs).all(|((shape, values), spec)| {
                shape.first() == rows
                    && fits(shape, &spec.shape)
                    && values.datatype() == spec.datatype
                    && values.len() == shape.iter().product::<usize>()
            })
    }

    /// Runs one batch: one tensor per input, in signature order, of the datatype the
    /// signature declares.
    pub fn predict(&self, inputs: &[ShapedTensor]) -> Result<Vec<Output>, Error> {
        if inputs.len() != self.signature.inputs.len() {
            return Err(Error::InvalidInput(format!(
                "the model takes {} inputs; got {}",
                self.signature.inputs.len(),
                inputs.len()
            )));
        }
        if self.batches {
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
        for ((shape, values), spec) in inputs.iter().zip(&self.signature.inputs) {
            if !fits(shape, &spec.shape) {
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
            let tensor = tensor(shape, values).map_err(|e| Error::InvalidInput(e.to_string()))?;
            tensors.push(tensor.into_tvalue());
        }
        // tract splits big matrix products over rayon's global pool (shared with the
        // native models' packed product); small ones it keeps on this thread.
        let results = multithread_tract_scope(Executor::RayonGlobal, || self.plan.run(tensors))
            .map_err(|e| Error::Run(format!("{e:#}")))?;
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

/// Names the input dimensions a graph leaves unknown: skl2onnx and onnxmltools write the
/// batch axis as `[None, k]` (no `dim_value`, no `dim_param`), and tract cannot plan a
/// graph with an input dimension it knows nothing about ("Source node without a
/// determined fact"). A leading one becomes the batch: the symbol another input starts
/// with, else `batch`, so such a graph batches like one that names its axis; any other
/// gets a symbol of its own.
fn name_unknown_input_dims(model: &mut InferenceModel) -> TractResult<()> {
    let inputs = model.input_outlets()?.len();
    let named_batch = (0..inputs).find_map(|input| match model.input_fact(input).ok()?.shape.dims().next()? {
        GenericFactoid::Only(dim) if dim.to_i64().is_err() => Some(dim.clone()),
        _ => None,
    });
    let batch = named_batch.unwrap_or_else(|| model.symbols.sym("batch").into());
    for input in 0..inputs {
        let mut fact = model.input_fact(input)?.clone();
        if fact.shape.is_open() || fact.shape.dims().all(|dim| dim.concretize().is_some()) {
            continue;
        }
        let dims: TVec<DimFact> = fact
            .shape
            .dims()
            .enumerate()
            .map(|(axis, dim)| match dim.concretize() {
                Some(known) => GenericFactoid::Only(known),
                None if axis == 0 => GenericFactoid::Only(batch.clone()),
                None => GenericFactoid::Only(model.symbols.sym(&format!("input{input}_axis{axis}")).into()),
            })
            .collect();
        fact.shape = ShapeFactoid::closed(dims);
        model.set_input_fact(input, fact)?;
    }
    Ok(())
}

/// Whether every input and output starts with the same symbolic dimension and every
/// other dimension is fixed.
fn has_batch_axis(model: &TypedModel) -> TractResult<bool> {
    let facts = |outlets: &[OutletId]| -> TractResult<Vec<TypedFact>> {
        outlets.iter().map(|outlet| model.outlet_fact(*outlet).cloned()).collect()
    };
    let inputs = facts(model.input_outlets()?)?;
    let outputs = facts(model.output_outlets()?)?;
    let Some(batch) = inputs.first().and_then(|fact| fact.shape.iter().next()) else { return Ok(false) };
    if batch.to_i64().is_ok() {
        return Ok(false);
    }
    let batched = |fact: &TypedFact| fact.shape.iter().next().as_ref() == Some(&batch);
    let fixed_after_batch = |fact: &TypedFact| fact.shape.iter().skip(1).all(|d| d.to_i64().is_ok());
    Ok(inputs.iter().chain(&outputs).all(batched) && inputs.iter().all(fixed_after_batch))
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
    use tract_onnx::pb::{self, attribute_proto::AttributeType, type_proto};

    use super::*;

    /// A dimension: a number, a symbol (`dim_param`), or neither (as skl2onnx writes
    /// the batch axis).
    #[derive(Clone, Copy)]
    enum Dim {
        Fixed(i64),
        Symbol(&'static str),
        Unnamed,
    }

    fn value(name: &str, elem_type: DataType, dims: &[Dim]) -> pb::ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: match d {
                    Dim::Fixed(n) => Some(dimension::Value::DimValue(*n)),
                    Dim::Symbol(s) => Some(dimension::Value::DimParam((*s).to_owned())),
                    Dim::Unnamed => None,
                },
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
    fn a_batch_of_many_requests_runs_as_one_and_answers_row_by_row() {
        let graph = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Symbol("N"), Dim::Fixed(3)]);
        assert!(graph.batches());
        // Two requests of two rows and one row, concatenated input by input (as the
        // worker's batcher does).
        let first = [f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]), f32s(&[2, 3], &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0])];
        let second = [f32s(&[1, 2], &[5.0, 6.0]), f32s(&[1, 3], &[70.0, 80.0, 90.0])];
        assert!(graph.fits_batch(&first) && graph.fits_batch(&second));
        let batch = [
            f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            f32s(&[3, 3], &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]),
        ];
        let outputs = graph.predict(&batch).expect("runs");
        assert_eq!(answer(&outputs, 0), (&[3, 2][..], &TensorData::F32(vec![-1.0, -2.0, -3.0, -4.0, -5.0, -6.0])));
        let negated_b = vec![-10.0, -20.0, -30.0, -40.0, -50.0, -60.0, -70.0, -80.0, -90.0];
        assert_eq!(answer(&outputs, 1), (&[3, 3][..], &TensorData::F32(negated_b)));
        // The second request alone gives its rows of the batch's answer.
        let alone = graph.predict(&second).expect("runs");
        assert_eq!(answer(&alone, 1).1, &TensorData::F32(vec![-70.0, -80.0, -90.0]));
    }

    #[test]
    fn inputs_that_do_not_fit_the_batch_are_left_to_run_alone() {
        let graph = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Symbol("N"), Dim::Fixed(3)]);
        let rows_differ = [f32s(&[2, 2], &[0.0; 4]), f32s(&[1, 3], &[0.0; 3])];
        assert!(!graph.fits_batch(&rows_differ));
        let too_wide = [f32s(&[1, 3], &[0.0; 3]), f32s(&[1, 3], &[0.0; 3])];
        assert!(!graph.fits_batch(&too_wide));
        assert!(!graph.fits_batch(&too_wide[..1]), "one input missing");
        let short = [f32s(&[1, 2], &[0.0]), f32s(&[1, 3], &[0.0; 3])];
        assert!(!graph.fits_batch(&short), "fewer values than the shape holds");
        let integers = [(vec![1, 2], TensorData::I64(vec![0; 2])), f32s(&[1, 3], &[0.0; 3])];
        assert!(!graph.fits_batch(&integers), "another datatype than the graph takes");
        let message = graph.predict(&rows_differ).map(|_| ()).expect_err("batch sizes differ").to_string();
        assert!(message.contains("batch sizes [2, 1]"), "{message}");
    }

    #[test]
    fn an_unnamed_leading_dimension_is_the_batch_axis() {
        // As skl2onnx exports: `[None, 2]`, `[None, 3]`.
        let graph = negate_both(&[Dim::Unnamed, Dim::Fixed(2)], &[Dim::Unnamed, Dim::Fixed(3)]);
        assert_eq!(graph.signature().inputs[0].shape, [-1, 2]);
        assert!(graph.batches(), "both inputs start with the same (unnamed) batch axis");
        let outputs = graph.predict(&[f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]), f32s(&[2, 3], &[0.0; 6])]).expect("runs");
        assert_eq!(answer(&outputs, 0), (&[2, 2][..], &TensorData::F32(vec![-1.0, -2.0, -3.0, -4.0])));
        // One input names its batch axis, the other leaves it unnamed: the same axis.
        let mixed = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Unnamed, Dim::Fixed(3)]);
        assert!(mixed.batches());
        // An unnamed dimension after the first is a size of its own, not the batch.
        let ragged = negate_both(&[Dim::Unnamed, Dim::Unnamed], &[Dim::Unnamed, Dim::Fixed(3)]);
        assert!(!ragged.batches());
        let outputs = ragged.predict(&[f32s(&[1, 4], &[1.0; 4]), f32s(&[1, 3], &[0.0; 3])]).expect("runs");
        assert_eq!(answer(&outputs, 0).0, &[1, 4][..]);
    }

    /// `scaled = Scaler(x)` (`ai.onnx.ml`) with these offsets and scales, as skl2onnx
    /// exports a StandardScaler, or why the graph is refused.
    fn scaler(input_type: DataType, width: i64, offset: &[f32], scale: &[f32]) -> Result<OnnxModel, Error> {
        let floats = |name: &str, values: &[f32]| pb::AttributeProto {
            name: name.into(),
            r#type: AttributeType::Floats as i32,
            floats: values.to_vec(),
            ..Default::default()
        };
        let node = pb::NodeProto {
            input: vec!["x".into()],
            output: vec!["scaled".into()],
            op_type: "Scaler".into(),
            domain: "ai.onnx.ml".into(),
            attribute: vec![floats("offset", offset), floats("scale", scale)],
            ..Default::default()
        };
        let graph = pb::GraphProto {
            node: vec![node],
            name: "scaler".into(),
            input: vec![value("x", input_type, &[Dim::Unnamed, Dim::Fixed(width)])],
            output: vec![value("scaled", DataType::Float, &[Dim::Unnamed, Dim::Fixed(width)])],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![
                pb::OperatorSetIdProto { domain: String::new(), version: 13 },
                pb::OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 3 },
            ],
            graph: Some(graph),
            ..Default::default()
        };
        OnnxModel::load(&model.encode_to_vec())
    }

    #[test]
    fn scaler_centres_and_scales_each_feature_as_the_onnx_ml_spec_says() {
        let graph = scaler(DataType::Float, 2, &[1.0, -2.0], &[0.5, 4.0]).expect("loads");
        assert!(graph.batches());
        let outputs = graph.predict(&[f32s(&[2, 2], &[3.0, 0.0, 1.0, -2.5])]).expect("runs");
        // (3 - 1) * 0.5, (0 + 2) * 4, (1 - 1) * 0.5, (-2.5 + 2) * 4
        assert_eq!(answer(&outputs, 0), (&[2, 2][..], &TensorData::F32(vec![1.0, 8.0, 0.0, -2.0])));
        // One offset and scale for every feature; integer input answered as FP32.
        let graph = scaler(DataType::Int64, 3, &[10.0], &[0.1]).expect("loads");
        assert_eq!(graph.signature().inputs[0].datatype.name(), "INT64");
        let outputs = graph.predict(&[(vec![1, 3], TensorData::I64(vec![10, 20, 0]))]).expect("runs");
        assert_eq!(answer(&outputs, 0), (&[1, 3][..], &TensorData::F32(vec![0.0, 1.0, -1.0])));
    }

    #[test]
    fn a_scaler_whose_values_do_not_match_the_features_is_refused_at_load() {
        let refused = scaler(DataType::Float, 3, &[1.0, 2.0], &[1.0]).map(|_| ()).expect_err("2 offsets, 3 features");
        let message = refused.to_string();
        assert!(message.contains("offset has 2 values but its input has 3 features"), "{message}");
    }

    #[test]
    fn only_graphs_with_one_shared_batch_dimension_batch() {
        let fixed = negate_both(&[Dim::Fixed(1), Dim::Fixed(2)], &[Dim::Fixed(1), Dim::Fixed(3)]);
        assert!(!fixed.batches(), "a fixed first dimension");
        let two_symbols = negate_both(&[Dim::Symbol("N"), Dim::Fixed(2)], &[Dim::Symbol("M"), Dim::Fixed(3)]);
        assert!(!two_symbols.batches(), "inputs with unrelated first dimensions");
        let ragged = negate_both(&[Dim::Symbol("N"), Dim::Symbol("L")], &[Dim::Symbol("N"), Dim::Fixed(3)]);
        assert!(!ragged.batches(), "a second symbolic dimension (say, sequence length)");
        assert!(!ragged.fits_batch(&[f32s(&[1, 4], &[0.0; 4]), f32s(&[1, 3], &[0.0; 3])]));
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
        let datatypes = |specs: &[TensorSpec]| specs.iter().map(|s| s.datatype.name()).collect::<Vec<_>>();
        assert_eq!(datatypes(&graph.signature().inputs), ["INT64", "BOOL"]);
        assert_eq!(datatypes(&graph.signature().outputs), ["INT64", "FP64", "BOOL", "INT32"]);
        assert!(graph.batches(), "every input and output starts with N");
        let ids = (vec![2, 2], TensorData::I64(vec![7, 1 << 40, 0, 3]));
        let flags = (vec![2, 1], TensorData::Bool(vec![true, false]));
        assert!(graph.fits_batch(&[ids.clone(), flags.clone()]));
        let outputs = graph.predict(&[ids, flags]).expect("runs");
        assert_eq!(answer(&outputs, 0), (&[2][..], &TensorData::I64(vec![1, 1])));
        assert_eq!(answer(&outputs, 1).1, &TensorData::F64(vec![7.0, (1u64 << 40) as f64, 0.0, 3.0]));
        assert_eq!(answer(&outputs, 2).1, &TensorData::Bool(vec![true, true, false, true]));
        assert_eq!(answer(&outputs, 3), (&[2, 1][..], &TensorData::I32(vec![1, 0])));
    }

    #[test]
    fn graphs_take_uint8_pixels_and_answer_half_precision_and_narrow_integers() {
        let (n, three) = (Dim::Symbol("N"), Dim::Fixed(3));
        let graph = load(
            vec![
                node("Cast", "pixels", "half", &[("to", DataType::Float16 as i64)]),
                node("Cast", "pixels", "signed", &[("to", DataType::Int8 as i64)]),
                node("Cast", "pixels", "wide", &[("to", DataType::Uint64 as i64)]),
            ],
            vec![value("pixels", DataType::Uint8, &[n, three])],
            vec![
                value("half", DataType::Float16, &[n, three]),
                value("signed", DataType::Int8, &[n, three]),
                value("wide", DataType::Uint64, &[n, three]),
            ],
        );
        let datatypes = |specs: &[TensorSpec]| specs.iter().map(|s| s.datatype.name()).collect::<Vec<_>>();
        assert_eq!(datatypes(&graph.signature().inputs), ["UINT8"]);
        assert_eq!(datatypes(&graph.signature().outputs), ["FP16", "INT8", "UINT64"]);
        assert!(graph.batches());
        let pixels = (vec![2, 3], TensorData::U8(vec![0, 1, 127, 128, 200, 255]));
        let outputs = graph.predict(&[pixels]).expect("runs");
        let halves = [0.0, 1.0, 127.0, 128.0, 200.0, 255.0].map(f16::from_f32).to_vec();
        assert_eq!(answer(&outputs, 0), (&[2, 3][..], &TensorData::F16(halves)));
        // ONNX's Cast wraps out-of-range integers, as C does.
        assert_eq!(answer(&outputs, 1).1, &TensorData::I8(vec![0, 1, 127, -128, -56, -1]));
        assert_eq!(answer(&outputs, 2).1, &TensorData::U64(vec![0, 1, 127, 128, 200, 255]));
    }

    #[test]
    fn an_input_of_another_datatype_than_the_graph_takes_is_refused() {
        let graph = typed_graph();
        let ids = f32s(&[1, 2], &[7.0, 1.0]);
        let flags = (vec![1, 1], TensorData::Bool(vec![true]));
        assert!(!graph.fits_batch(&[ids.clone(), flags.clone()]));
        let message = graph.predict(&[ids, flags]).map(|_| ()).expect_err("FP32 ids").to_string();
        assert_eq!(message, "input \"ids\" is FP32; the model takes INT64");
    }
}
