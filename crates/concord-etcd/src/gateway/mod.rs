//! etcd's JSON gateway (grpc-gateway, as etcd 3.4 serves it on the client
//! port): `POST /v3/kv/range` with a JSON body, and so on for every method
//! that etcd's `rpc.proto` gives an HTTP path (`google.api.http`), also
//! under the older `/v3beta` and `/v3alpha` prefixes.
//!
//! Why this shape: the paths and message shapes come from the same proto
//! descriptors the gRPC services are generated from, and every call goes
//! through the gRPC services themselves (in process, no socket), so the
//! gateway cannot drift from the gRPC API: same checks, same errors, same
//! metrics. It only translates:
//! - the request body: one JSON object (several, one after another, for a
//!   streaming method such as `/v3/watch`); an empty body is the empty
//!   message (`json`);
//! - the answer: the response as JSON, or for a streaming method one
//!   `{"result": …}` line per response, kept open as long as the gRPC
//!   stream is (a watch stays open after the request body ends, as etcd's);
//! - errors: `{"error", "message", "code"}` with the HTTP status
//!   grpc-gateway v1 gives the gRPC code;
//! - the `Authorization` header, passed on as the `token` metadata etcd's
//!   services read. Only the token: a gateway call is a new request,
//!   without the client connection's extensions, so a client certificate
//!   never names its user (under `--client-cert-auth`), as in etcd, whose
//!   gateway is a loopback client whose certificate it ignores.

mod call;
mod json;

pub use call::RawCodec;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};
use tonic::service::Routes;

use crate::DESCRIPTORS;

/// Prefixes the gateway answers under: etcd 3.4's, and the older ones that
/// clients written for etcd 3.2 and 3.3 use.
const PREFIXES: [&str; 3] = ["/v3/", "/v3beta/", "/v3alpha/"];

/// The gateway's routes, calling the gRPC services in `grpc`. Bodies up to
/// `max_body` bytes are read (a value in base64 is a third bigger than the
/// request limit the services check).
pub fn routes(grpc: Routes, max_body: usize) -> Router {
    let pool = DescriptorPool::decode(DESCRIPTORS).expect("build.rs writes valid descriptors");
    let mut router = Router::new();
    for (path, method) in http_paths(&pool) {
        let gateway = Arc::new(call::Gateway::new(grpc.clone(), method));
        let Some(rest) = path.strip_prefix("/v3/") else { continue };
        for prefix in PREFIXES {
            let gateway = gateway.clone();
            router = router.route(
                &format!("{prefix}{rest}"),
                post(move |headers: HeaderMap, body: Bytes| async move { gateway.call(&headers, body).await }),
            );
        }
    }
    router.layer(axum::extract::DefaultBodyLimit::max(max_body))
}

/// Every method with a `google.api.http` POST path, with that path (a
/// method may have more than one: etcd keeps `/v3/kv/lease/…` beside
/// `/v3/lease/…`).
pub fn http_paths(pool: &DescriptorPool) -> Vec<(String, MethodDescriptor)> {
    let Some(http) = pool.get_extension_by_name("google.api.http") else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&http) {
                continue;
            }
            let rule = options.get_extension(&http);
            let Value::Message(rule) = rule.as_ref() else { continue };
            let mut rules = vec![rule.clone()];
            if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
                rules.extend(more.iter().filter_map(|m| m.as_message().cloned()));
            }
            for rule in rules {
                if let Some(Value::String(path)) = rule.get_field_by_name("post").as_deref()
                    && !path.is_empty()
                {
                    paths.push((path.clone(), method.clone()));
                }
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths come from the descriptors: every method etcd's gateway
    /// serves is there, with etcd's aliases.
    #[test]
    fn every_etcd_gateway_path_is_found_in_the_descriptors() {
        let pool = DescriptorPool::decode(DESCRIPTORS).unwrap();
        let paths: std::collections::HashMap<String, String> =
            http_paths(&pool).into_iter().map(|(p, m)| (p, m.full_name().to_string())).collect();
        for (path, method) in [
            ("/v3/kv/range", "etcdserverpb.KV.Range"),
            ("/v3/kv/put", "etcdserverpb.KV.Put"),
            ("/v3/kv/deleterange", "etcdserverpb.KV.DeleteRange"),
            ("/v3/kv/txn", "etcdserverpb.KV.Txn"),
            ("/v3/kv/compaction", "etcdserverpb.KV.Compact"),
            ("/v3/watch", "etcdserverpb.Watch.Watch"),
            ("/v3/lease/grant", "etcdserverpb.Lease.LeaseGrant"),
            ("/v3/lease/revoke", "etcdserverpb.Lease.LeaseRevoke"),
            ("/v3/kv/lease/revoke", "etcdserverpb.Lease.LeaseRevoke"),
            ("/v3/lease/keepalive", "etcdserverpb.Lease.LeaseKeepAlive"),
            ("/v3/lease/timetolive", "etcdserverpb.Lease.LeaseTimeToLive"),
            ("/v3/kv/lease/timetolive", "etcdserverpb.Lease.LeaseTimeToLive"),
            ("/v3/lease/leases", "etcdserverpb.Lease.LeaseLeases"),
            ("/v3/kv/lease/leases", "etcdserverpb.Lease.LeaseLeases"),
            ("/v3/maintenance/status", "etcdserverpb.Maintenance.Status"),
            ("/v3/maintenance/hashkv", "etcdserverpb.Maintenance.HashKV"),
            ("/v3/cluster/member/list", "etcdserverpb.Cluster.MemberList"),
            ("/v3/auth/authenticate", "etcdserverpb.Auth.Authenticate"),
        ] {
            assert_eq!(paths.get(path).map(String::as_str), Some(method), "{path}");
        }
    }
}
