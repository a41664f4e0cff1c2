//! Compiles the wire protocols with protox (pure Rust, no system protoc) and writes the
//! encoded descriptor set that the reflection service serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["inference/grpc_service.proto", "modelplane/registry.proto", "modelplane/trainer.proto"];
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files)?;
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("modelplane_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        // Every bytes field of the registry is a transfer chunk: shared, not copied.
        .bytes(".modelplane.registry")
        .compile_fds(descriptors)?;
    Ok(())
}
