//! etcd's v3 API, generated: protobuf types, tonic clients and servers for
//! KV, Watch, Lease, Cluster, Maintenance, Auth, Lock and Election, and
//! the protos' descriptors.
//!
//! Why a crate of its own: tools that only talk to an etcd v3 endpoint (a
//! load generator, a fault-injection harness, an application's client)
//! need the wire types, not the server that implements them. The server,
//! `concord-etcd`, re-exports this crate as `concord_etcd::pb`.
//!
//! Built by `build.rs` from the vendored protos under `proto/` (etcd's,
//! unchanged), with protox: no `protoc` on the build machine. Byte
//! fields are `bytes::Bytes`; methods a server does not implement answer
//! `UNIMPLEMENTED` (tonic's default stubs).
#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// The protos' descriptors (a `FileDescriptorSet`, with the
/// `google.api.http` options), written by `build.rs`: what a JSON gateway
/// routes by, and what a test or tool can enumerate the RPCs from.
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptors.bin"));

/// The crate README's example, compiled as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_example {}
