//! Generates the CSI and kubelet plugin-registration stubs without `protoc`.
//!
//! protox parses the vendored protos; tonic-prost-build turns them into
//! messages, clients and servers. The encoded descriptor set (with imports and
//! with extension options such as `csi.v1.csi_secret`) is written next to the
//! generated code so the crate can embed it for prost-reflect.

use std::path::PathBuf;

const PROTO_ROOT: &str = "../proto";
const PROTOS: [&str; 2] = ["csi/v1.12.0/csi.proto", "pluginregistration/v1/api.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // Source info keeps the proto comments as rustdoc on the generated items;
    // prost-build needs the imported files to resolve message types, and
    // maps google.protobuf ones to prost-types instead of generating them.
    let codegen_fds = protox::Compiler::new([PROTO_ROOT])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(PROTOS)?
        .file_descriptor_set();

    // prost_types drops extension options, so the embedded set must come from
    // protox's own encoder, which keeps them; that is where csi_secret lives.
    let embedded = protox::Compiler::new([PROTO_ROOT])?
        .include_source_info(false)
        .include_imports(true)
        .open_files(PROTOS)?
        .encode_file_descriptor_set();
    std::fs::write(out_dir.join("csi_descriptor_set.bin"), embedded)?;

    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Fake drivers in tests implement only the RPCs they exercise.
        .generate_default_stubs(true)
        .compile_fds_with_config(codegen_fds, config)?;
    Ok(())
}
