//! Generates the bus's gRPC code from `proto/bus.proto` (needs `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["../../proto/bus.proto"], &["../../proto"])?;
    println!("cargo:rerun-if-changed=../../proto/bus.proto");
    Ok(())
}
