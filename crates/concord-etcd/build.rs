//! Compiles the vendored etcd v3 protos with protox (pure Rust, no protoc)
//! into tonic servers and clients.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/etcd/api/etcdserverpb/rpc.proto"];
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
