//! Tensors as the protocol describes them: specs and signatures (what a model takes and
//! answers) and values (row-major, one variant per datatype).

use serde::{Deserialize, Serialize};

use crate::Datatype;

/// One named tensor of a signature; `-1` marks a variable dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name as used in inference requests.
    pub name: String,
    /// The V2 datatype.
    pub datatype: Datatype,
    /// Dimensions; -1 is variable.
    pub shape: Vec<i64>,
}

/// Inputs and outputs of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Signature {
    /// Inputs, in order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in order.
    pub outputs: Vec<TensorSpec>,
}

/// Values of a tensor, row-major. Native models answer FP32 and BYTES; ONNX graphs may
/// also take and answer the other types.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// FP32.
    F32(Vec<f32>),
    /// FP64.
    F64(Vec<f64>),
    /// FP16 (half-precision graphs).
    F16(Vec<half::f16>),
    /// INT8.
    I8(Vec<i8>),
    /// INT16.
    I16(Vec<i16>),
    /// INT32.
    I32(Vec<i32>),
    /// INT64 (class indices, say).
    I64(Vec<i64>),
    /// UINT8 (image pixels, say).
    U8(Vec<u8>),
    /// UINT16.
    U16(Vec<u16>),
    /// UINT32.
    U32(Vec<u32>),
    /// UINT64.
    U64(Vec<u64>),
    /// BOOL.
    Bool(Vec<bool>),
    /// BYTES, one element per entry.
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the values of whichever variant `$data` is, bound as `$values`;
/// `$wrap` names the variant for bodies that build one of the same kind.
macro_rules! each_variant {
    ($data:expr, $values:ident, $wrap:ident => $body:expr) => {
        each_variant!(@arms $data, $values, $wrap, $body; F32 F64 F16 I8 I16 I32 I64 U8 U16 U32 U64 Bool Bytes)
    };
    (@arms $data:expr, $values:ident, $wrap:ident, $body:expr; $($variant:ident)*) => {
        match $data {
            $(TensorData::$variant($values) => {
                #[allow(unused_imports)]
                use TensorData::$variant as $wrap;
                $body
            })*
        }
    };
}

impl TensorData {
    /// The V2 datatype.
    pub fn datatype(&self) -> Datatype {
        match self {
            TensorData::F32(_) => Datatype::Fp32,
            TensorData::F64(_) => Datatype::Fp64,
            TensorData::F16(_) => Datatype::Fp16,
            TensorData::I8(_) => Datatype::Int8,
            TensorData::I16(_) => Datatype::Int16,
            TensorData::I32(_) => Datatype::Int32,
            TensorData::I64(_) => Datatype::Int64,
            TensorData::U8(_) => Datatype::Uint8,
            TensorData::U16(_) => Datatype::Uint16,
            TensorData::U32(_) => Datatype::Uint32,
            TensorData::U64(_) => Datatype::Uint64,
            TensorData::Bool(_) => Datatype::Bool,
            TensorData::Bytes(_) => Datatype::Bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, values, Kind => values.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements of `parts` one after another, when all are of one type.
    pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
        let (first, rest) = parts.split_first()?;
        let mut joined = (*first).clone();
        for part in rest {
            each_variant!(&mut joined, all, Kind => {
                let Kind(more) = part else { return None };
                all.extend_from_slice(more);
            });
        }
        Some(joined)
    }

    /// Elements `range` (row-major) as values of the same type.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        each_variant!(self, values, Kind => Kind(values[range].to_vec()))
    }
}

/// A model's output tensor with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// Output name from the signature.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values.
    pub data: TensorData,
}

/// An input or output tensor: its shape and values.
pub type ShapedTensor = (Vec<usize>, TensorData);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_data_concatenates_and_slices_within_one_type() {
        let joined = TensorData::concat(&[&TensorData::I64(vec![1, 2]), &TensorData::I64(vec![3])]);
        assert_eq!(joined, Some(TensorData::I64(vec![1, 2, 3])));
        assert_eq!(TensorData::concat(&[&TensorData::I64(vec![1]), &TensorData::F32(vec![1.0])]), None, "mixed types");
        assert_eq!(TensorData::concat(&[]), None);
        let pixels = TensorData::concat(&[&TensorData::U8(vec![1]), &TensorData::U8(vec![2, 3])]);
        assert_eq!(pixels, Some(TensorData::U8(vec![1, 2, 3])));
        assert_eq!(TensorData::concat(&[&TensorData::U8(vec![1]), &TensorData::I8(vec![1])]), None, "signedness");
        let halves = TensorData::F16(vec![half::f16::ONE, half::f16::ZERO, half::f16::NAN]);
        assert_eq!(halves.slice(0..2), TensorData::F16(vec![half::f16::ONE, half::f16::ZERO]));
        assert_eq!((halves.len(), halves.datatype()), (3, Datatype::Fp16));
        let bools = TensorData::Bool(vec![true, false, true]);
        assert_eq!(bools.slice(1..3), TensorData::Bool(vec![false, true]));
        assert_eq!(bools.datatype(), Datatype::Bool);
    }
}
