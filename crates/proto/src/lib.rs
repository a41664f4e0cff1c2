//! Generated gRPC types and services of modelplane.
//!
//! - [`inference`]: the KServe Open Inference Protocol v2 (`inference.GRPCInferenceService`).
//! - [`registry`]: `modelplane.registry.v1.Registry`.
//! - [`trainer`]: `modelplane.trainer.v1.Trainer`.
#![forbid(unsafe_code)]
#![allow(missing_docs, clippy::all)]

/// KServe v2 / Triton-compatible inference protocol.
pub mod inference {
    tonic::include_proto!("inference");
}

/// Registry management API.
pub mod registry {
    tonic::include_proto!("modelplane.registry.v1");
}

/// Trainer management API.
pub mod trainer {
    tonic::include_proto!("modelplane.trainer.v1");
}

/// Encoded `FileDescriptorSet` of every modelplane proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/modelplane_descriptor.bin"));

/// Largest chunk of a streamed artifact or dataset.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
