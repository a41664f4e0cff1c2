//! The KServe Open Inference Protocol (v2), as modelplane speaks it: the [`Datatype`]
//! enum (the one place datatype names are read), tensor specs and signatures, tensor
//! values, the raw little-endian / length-prefixed BYTES codec and the exact conversions
//! between datatypes ([`codec`]), the JSON view of tensors used by REST and the CLI
//! ([`json`]), and, in [`grpc`], Triton's stream adapter, method paths and the server
//! metadata every inference endpoint reports.
//!
//! No service logic lives here: the worker, the router, the CLI and the model crates
//! share this one reading of the protocol.
#![forbid(unsafe_code)]

pub mod codec;
mod datatype;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod json;
mod tensor;

pub use datatype::{Datatype, UnknownDatatype};
pub use error::{Error, Result};
pub use tensor::{Output, ShapedTensor, Signature, TensorData, TensorSpec};
