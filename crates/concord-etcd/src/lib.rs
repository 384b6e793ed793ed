//! The etcd v3 gRPC front end of Concord.
//!
//! It only translates: each RPC validates what the wire format implies,
//! calls the same embedded-API method an application would, and maps the
//! result back, with etcd's exact error codes and texts (`status`).
//!
//! Services: KV (Range, Put, DeleteRange, Txn, Compact), Lease (Grant,
//! Revoke, KeepAlive stream, TimeToLive, Leases), Watch (many watches per
//! stream, progress, cancel), Maintenance (Status, Alarm, Hash, HashKV,
//! Snapshot, Defragment), Cluster (MemberList, MemberAdd, MemberRemove,
//! MemberUpdate, MemberPromote), Auth, Lock (Lock, Unlock) and Election
//! (Campaign, Proclaim, Leader, Observe, Resign) — the last two built on the
//! KV API as etcd builds them (`recipes`). Everything else answers
//! UNIMPLEMENTED.

// The gRPC handlers' futures nest deeply; rustc's default query depth is
// exceeded computing their layouts in some builds (with concord's
// `failpoints` feature, for one).
#![recursion_limit = "256"]
#![warn(missing_docs)]

pub mod auth;
pub mod authz;
pub mod cluster;
mod connection;
pub mod convert;
pub mod election;
pub mod gateway;
pub mod header;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod pb;
pub mod recipes;
pub mod server;
pub mod status;
pub mod tls;
pub mod watch;

/// The etcd protos' descriptors (a `FileDescriptorSet`, with the
/// `google.api.http` options): what the JSON gateway routes by, and what a
/// test or tool can enumerate the served RPCs from.
pub use concord_etcd_proto::DESCRIPTORS;

pub use cluster::MemberUrls;
pub use metrics::Metrics;
pub use server::{ServerOptions, serve};
pub use tls::ClientTls;

/// The crate README's example, compiled as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_example {}
