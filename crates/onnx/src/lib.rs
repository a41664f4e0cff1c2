//! ONNX models made elsewhere, run with tract: load and optimise once, read the
//! signature from the graph, then run batches.
//!
//! Supported: FP32 inputs and outputs of any rank; dimensions the graph leaves symbolic
//! (a `dim_param` such as the batch) are reported as `-1` and may take any size.
#![forbid(unsafe_code)]

use std::sync::Arc;

use modelplane_model::{Output, OutputData, Signature, TensorSpec};
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
        let plan = model.into_runnable().map_err(load)?;
        Ok(Self { plan, signature })
    }

    /// Inputs and outputs as the graph declares them.
    pub fn signature(&self) -> &Signature {
        &self.signature
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
        let mut tensors = TVec::new();
        for ((shape, values), spec) in inputs.into_iter().zip(&self.signature.inputs) {
            let fits = shape.len() == spec.shape.len()
                && shape.iter().zip(&spec.shape).all(|(got, want)| *want < 0 || *got as i64 == *want);
            if !fits {
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
