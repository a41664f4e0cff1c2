//! Building blocks of an ONNX graph on tract's protobuf types: attributes, tensors,
//! typed graph inputs and outputs, and the model around a graph.

use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{Tensor, Value};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// The domain of the classic-ML operators.
pub const ML_DOMAIN: &str = "ai.onnx.ml";
/// ONNX opset written (the ai.onnx.ml one depends on the operators used).
const OPSET: i64 = 17;
/// IR version 8 (ONNX 1.12+ readers, onnxruntime ≥ 1.12).
const IR_VERSION: i64 = 8;

pub fn ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: values, ..Default::default() }
}

pub fn floats(name: &str, values: Vec<f32>) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Floats as i32, floats: values, ..Default::default() }
}

pub fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: value, ..Default::default() }
}

pub fn tensor_attribute(name: &str, tensor: TensorProto) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Tensor as i32, t: Some(tensor), ..Default::default() }
}

pub fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

pub fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn strings(name: &str, values: impl IntoIterator<Item = String>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Strings as i32,
        strings: values.into_iter().map(String::into_bytes).collect(),
        ..Default::default()
    }
}

pub fn node(op: &str, domain: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        domain: domain.into(),
        name: outputs.first().map_or_else(|| op.to_owned(), |o| format!("{op}_{o}")),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: outputs.iter().map(|s| (*s).to_owned()).collect(),
        attribute: attributes,
        ..Default::default()
    }
}

pub fn float_tensor(name: &str, dims: Vec<i64>, values: Vec<f32>) -> TensorProto {
    TensorProto { name: name.into(), dims, data_type: DataType::Float as i32, float_data: values, ..Default::default() }
}

pub fn string_tensor(name: &str, dims: Vec<i64>, values: impl IntoIterator<Item = String>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims,
        data_type: DataType::String as i32,
        string_data: values.into_iter().map(String::into_bytes).collect(),
        ..Default::default()
    }
}

/// A dimension: a fixed size, or `None` for the batch (named `N`).
fn dimension(size: Option<i64>) -> Dimension {
    let value = match size {
        Some(size) => dimension::Value::DimValue(size),
        None => dimension::Value::DimParam("N".into()),
    };
    Dimension { value: Some(value), ..Default::default() }
}

/// A graph input or output of element type `elem` and shape `dims` (`None`: the batch).
pub fn value(name: &str, elem: DataType, dims: &[Option<i64>]) -> ValueInfoProto {
    let shape = TensorShapeProto { dim: dims.iter().map(|d| dimension(*d)).collect() };
    let tensor = Tensor { elem_type: elem as i32, shape: Some(shape) };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value: Some(Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// The graph as a serialized model with the opsets it uses.
pub fn encode(graph: GraphProto, ml_opset: i64) -> Vec<u8> {
    let opset = |domain: &str, version| OperatorSetIdProto { domain: domain.into(), version };
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![opset("", OPSET), opset(ML_DOMAIN, ml_opset)],
        producer_name: "modelplane".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn int64_tensor(name: &str, dims: Vec<i64>, values: Vec<i64>) -> TensorProto {
    TensorProto { name: name.into(), dims, data_type: DataType::Int64 as i32, int64_data: values, ..Default::default() }
}

pub fn uint8_tensor(name: &str, values: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Uint8 as i32,
        raw_data: values,
        ..Default::default()
    }
}
