//! Compiles the vendored etcd v3 protos with protox (pure Rust, no protoc)
//! into tonic servers and clients, and keeps their descriptors (with the
//! `google.api.http` paths) for the JSON gateway.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/etcd/api/etcdserverpb/rpc.proto",
        "proto/etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
        "proto/etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
    ];
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).open_files(protos)?;
    // Encoded by protox itself: prost's descriptor types would drop the
    // `google.api.http` options (extensions) the gateway reads.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("etcd_descriptors.bin"), compiler.encode_file_descriptor_set())?;
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Methods we do not implement answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .bytes(".")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
