//! Compiles the gRPC contract in `proto/` with protox, a pure-Rust protobuf
//! compiler, so that building needs no system `protoc`. The same descriptor set
//! (with source comments, so grpcurl `describe` shows the docs) is written to
//! `OUT_DIR` for the server's reflection service and the JSON mapping.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTOS: &[&str] = &[
    "proto/cantina/v1/command.proto",
    "proto/cantina/v1/plan.proto",
    "proto/cantina/v1/log.proto",
    "proto/cantina/v1/system.proto",
    "proto/cantina/v1/speech.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;
    let fds = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("cantina_descriptor.bin"), fds.encode_to_vec())?;

    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
