//! etcd's v3 API types, servers and clients: the `concord-etcd-proto`
//! crate, re-exported under the name this crate has always used.

pub use concord_etcd_proto::{authpb, etcdserverpb, mvccpb, v3electionpb, v3lockpb};
