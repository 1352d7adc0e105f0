//! Generates the gRPC code for `proto/` with a vendored protoc, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("admin_descriptor.bin"))
        .bytes(".")
        .compile_protos(&["proto/admin.proto", "proto/raft.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
