//! The V2 datatypes: their names on the wire, element sizes and Triton's enum.

use std::fmt;
use std::str::FromStr;

use modelplane_proto::inference as pb;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A tensor element type of the Open Inference Protocol. Names are the protocol's
/// (`FP32`, `BYTES`…), also in stored signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Datatype {
    /// `BOOL`, one byte per element on the wire.
    Bool,
    /// `UINT8`.
    Uint8,
    /// `UINT16`.
    Uint16,
    /// `UINT32`.
    Uint32,
    /// `UINT64`.
    Uint64,
    /// `INT8`.
    Int8,
    /// `INT16`.
    Int16,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `FP16`, IEEE half precision.
    Fp16,
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `BF16`, bfloat16.
    Bf16,
    /// `BYTES`: each element a byte string (length-prefixed when raw).
    Bytes,
}

impl Datatype {
    /// Every datatype, in the protocol's order.
    pub const ALL: [Datatype; 14] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
        Self::Bf16,
        Self::Bytes,
    ];

    /// The protocol's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bf16 => "BF16",
            Self::Bytes => "BYTES",
        }
    }

    /// The datatype a protocol name stands for (exact, upper case as the protocol
    /// writes them), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|datatype| datatype.name() == name)
    }

    /// Bytes per element in raw contents; `None` for BYTES, whose elements vary.
    pub const fn element_size(self) -> Option<usize> {
        match self {
            Self::Bool | Self::Int8 | Self::Uint8 => Some(1),
            Self::Int16 | Self::Uint16 | Self::Fp16 | Self::Bf16 => Some(2),
            Self::Int32 | Self::Uint32 | Self::Fp32 => Some(4),
            Self::Int64 | Self::Uint64 | Self::Fp64 => Some(8),
            Self::Bytes => None,
        }
    }

    /// Signed or unsigned integers.
    pub const fn is_integer(self) -> bool {
        matches!(
            self,
            Self::Int8
                | Self::Int16
                | Self::Int32
                | Self::Int64
                | Self::Uint8
                | Self::Uint16
                | Self::Uint32
                | Self::Uint64
        )
    }

    /// Triton's enum for this datatype (model configurations).
    pub const fn triton(self) -> pb::DataType {
        match self {
            Self::Bool => pb::DataType::TypeBool,
            Self::Uint8 => pb::DataType::TypeUint8,
            Self::Uint16 => pb::DataType::TypeUint16,
            Self::Uint32 => pb::DataType::TypeUint32,
            Self::Uint64 => pb::DataType::TypeUint64,
            Self::Int8 => pb::DataType::TypeInt8,
            Self::Int16 => pb::DataType::TypeInt16,
            Self::Int32 => pb::DataType::TypeInt32,
            Self::Int64 => pb::DataType::TypeInt64,
            Self::Fp16 => pb::DataType::TypeFp16,
            Self::Fp32 => pb::DataType::TypeFp32,
            Self::Fp64 => pb::DataType::TypeFp64,
            Self::Bf16 => pb::DataType::TypeBf16,
            Self::Bytes => pb::DataType::TypeString,
        }
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a V2 datatype.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a KServe v2 datatype (BOOL, UINT8-UINT64, INT8-INT64, FP16, FP32, FP64, BF16 or BYTES)")]
pub struct UnknownDatatype(pub String);

impl FromStr for Datatype {
    type Err = UnknownDatatype;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name).ok_or_else(|| UnknownDatatype(name.to_owned()))
    }
}

impl Serialize for Datatype {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Datatype {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_serialises_as_the_protocol_writes_it() {
        for datatype in Datatype::ALL {
            assert_eq!(Datatype::parse(datatype.name()), Some(datatype));
            let json = serde_json::to_string(&datatype).expect("serialises");
            assert_eq!(json, format!("\"{}\"", datatype.name()));
            assert_eq!(serde_json::from_str::<Datatype>(&json).expect("parses"), datatype);
        }
        assert_eq!(Datatype::parse("fp32"), None, "names are upper case");
        assert!(serde_json::from_str::<Datatype>("\"FLOAT\"").is_err());
        assert_eq!(Datatype::Bytes.element_size(), None);
        assert_eq!(Datatype::Bf16.element_size(), Some(2));
        assert_eq!(Datatype::Bytes.triton(), pb::DataType::TypeString);
    }
}
