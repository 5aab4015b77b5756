//! Compiles the `.proto` files with `protox` (pure Rust), so `cargo build` needs no system
//! `protoc` on a fresh machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/raft.proto",
        "proto/cairn/v1/kv.proto",
        "proto/cairn/v1/cluster.proto",
        "proto/cairn/v1/queue.proto",
        "proto/cairn/v1/object.proto",
        "proto/cairn/v1/fs.proto",
        "proto/cairn/v1/import.proto",
        "proto/cairn/v1/admin.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        // Carries credentials: its `Debug` (src/api/grpc/import.rs) redacts them.
        .skip_debug([".cairn.v1.S3Source"])
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
