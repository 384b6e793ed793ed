//! Compiles the peer protocol (proto/peer.proto) with protox (pure Rust, no
//! protoc) into a tonic server and client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["proto/peer.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(true).build_client(true).bytes(".").compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
