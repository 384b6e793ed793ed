//! The Rust `etcd-client` crate (and raw gRPC for what it cannot express)
//! against a real `concord serve`: lease keep-alive streams, error mapping,
//! and bad input that must be refused without writing anything.

mod common;

use std::collections::BTreeMap;

use common::Server;
use concord_etcd::pb::etcdserverpb as pb;
use concord_etcd::pb::etcdserverpb::lease_client::LeaseClient;
use etcd_client::{
    Client, Compare, CompareOp, Error, EventType, GetOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tonic::Code;

async fn client(s: &Server) -> Client {
    Client::connect([s.endpoint.as_str()], None).await.unwrap()
}

#[track_caller]
fn status_of(e: Error) -> (Code, String) {
    match e {
        Error::GRpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Awaits `f`, failing the test after 10 s: a stream read never hangs a test.
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(10), f).await.expect("nothing arrived within 10 s")
}

async fn revision(c: &mut Client) -> i64 {
    c.get("any", None).await.unwrap().header().unwrap().revision()
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_stream_renews_and_reports_unknown_leases_as_ttl_zero() {
    let s = Server::start();
    let mut c = client(&s).await;
    let lease = c.lease_grant(5, None).await.unwrap();
    assert_eq!(lease.ttl(), 5);
    c.put("leased", "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    let (mut keeper, mut stream) = c.lease_keep_alive(lease.id()).await.unwrap();
    for _ in 0..3 {
        keeper.keep_alive().await.unwrap();
        let resp = bounded(stream.message()).await.unwrap().unwrap();
        assert_eq!((resp.id(), resp.ttl()), (lease.id(), 5));
    }
    let ttl = c.lease_time_to_live(lease.id(), Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 5);
    assert!(ttl.ttl() >= 4 && ttl.ttl() <= 5);
    assert_eq!(ttl.keys(), [b"leased".to_vec()]);

    // The server answers TTL 0 for an unknown lease (not an error status);
    // the crate turns that first answer into its "lease not found" error,
    // as it does against etcd. (The raw TTL 0 is checked in the next test.)
    match c.lease_keep_alive(987_654).await {
        Err(Error::LeaseKeepAliveError(msg)) => assert_eq!(msg, "lease not found"),
        other => panic!("expected the crate's lease-not-found, got {:?}", other.map(|_| ())),
    }

    let missing = c.lease_time_to_live(987_654, None).await.unwrap();
    assert_eq!(missing.ttl(), -1);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_stream_carries_many_leases() {
    let s = Server::start();
    let mut c = client(&s).await;
    let mut ttls = BTreeMap::new();
    for i in 0..50 {
        let lease = c.lease_grant(10 + i, None).await.unwrap();
        ttls.insert(lease.id(), lease.ttl());
    }
    let mut raw = LeaseClient::connect(format!("http://{}", s.endpoint)).await.unwrap();
    let requests: Vec<pb::LeaseKeepAliveRequest> =
        ttls.keys().chain([&424_242]).map(|id| pb::LeaseKeepAliveRequest { id: *id }).collect();
    let n = requests.len();
    let mut stream = raw.lease_keep_alive(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut seen = BTreeMap::new();
    while seen.len() < n {
        let resp = bounded(stream.message()).await.unwrap().expect("a response per request");
        seen.insert(resp.id, resp.ttl);
    }
    for (id, ttl) in &ttls {
        assert_eq!(seen[id], *ttl, "lease {id} renewed to its granted TTL");
    }
    assert_eq!(seen[&424_242], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_map_to_etcds_codes_and_texts() {
    let s = Server::start();
    let mut c = client(&s).await;
    let too_large = c.lease_grant(9_000_000_001, None).await.unwrap_err();
    assert_eq!(status_of(too_large), (Code::OutOfRange, "etcdserver: too large lease TTL".into()));
    let unknown = c.lease_revoke(31337).await.unwrap_err();
    assert_eq!(status_of(unknown), (Code::NotFound, "etcdserver: requested lease not found".into()));
    let lease = c.lease_grant(30, None).await.unwrap();
    c.lease_revoke(lease.id()).await.unwrap();
    let twice = c.lease_revoke(lease.id()).await.unwrap_err();
    assert_eq!(status_of(twice), (Code::NotFound, "etcdserver: requested lease not found".into()));
    let put = c.put("k", "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap_err();
    assert_eq!(status_of(put), (Code::NotFound, "etcdserver: requested lease not found".into()));

    let with_id = c.lease_grant(30, Some(etcd_client::LeaseGrantOptions::new().with_id(77))).await.unwrap();
    assert_eq!(with_id.id(), 77);
    let dup = c.lease_grant(30, Some(etcd_client::LeaseGrantOptions::new().with_id(77))).await.unwrap_err();
    assert_eq!(status_of(dup), (Code::FailedPrecondition, "etcdserver: lease already exists".into()));

    for v in ["1", "2", "3"] {
        c.put("c", v, None).await.unwrap();
    }
    let rev = revision(&mut c).await;
    c.compact(rev, None).await.unwrap();
    let old = c.get("c", Some(GetOptions::new().with_revision(rev - 1))).await.unwrap_err();
    assert_eq!(status_of(old), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
    let future = c.get("c", Some(GetOptions::new().with_revision(rev + 100))).await.unwrap_err();
    assert_eq!(
        status_of(future),
        (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_writes_nothing() {
    let s = Server::start();
    let mut c = client(&s).await;
    c.put("keep", "me", None).await.unwrap();
    let before = revision(&mut c).await;

    let empty = c.put("", "v", None).await.unwrap_err();
    assert_eq!(status_of(empty), (Code::InvalidArgument, "etcdserver: key is not provided".into()));
    let big = c.put("big", vec![0u8; 2 * 1024 * 1024], None).await.unwrap_err();
    assert_eq!(status_of(big), (Code::InvalidArgument, "etcdserver: request is too large".into()));
    let ops: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("t{i}"), "v", None)).collect();
    let many = c.txn(Txn::new().and_then(ops)).await.unwrap_err();
    assert_eq!(status_of(many), (Code::InvalidArgument, "etcdserver: too many operations in txn request".into()));
    let dup = c.txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)])).await.unwrap_err();
    assert_eq!(status_of(dup), (Code::InvalidArgument, "etcdserver: duplicate key given in txn request".into()));
    let unknown_lease_in_txn = Txn::new()
        .and_then([TxnOp::put("x", "1", None), TxnOp::put("y", "1", Some(PutOptions::new().with_lease(4242)))]);
    let err = c.txn(unknown_lease_in_txn).await.unwrap_err();
    assert_eq!(status_of(err), (Code::NotFound, "etcdserver: requested lease not found".into()));

    // A range whose end is before its start selects nothing (as in etcd).
    let backwards = c.get("z", Some(GetOptions::new().with_range("a"))).await.unwrap();
    assert_eq!(backwards.count(), 0);
    let nothing = c.delete("z", Some(etcd_client::DeleteOptions::new().with_range("a"))).await.unwrap();
    assert_eq!(nothing.deleted(), 0);

    // A malformed transaction: an operation with no request in it.
    let mut raw =
        concord_etcd::pb::etcdserverpb::kv_client::KvClient::connect(format!("http://{}", s.endpoint)).await.unwrap();
    let malformed = pb::TxnRequest { success: vec![pb::RequestOp { request: None }], ..Default::default() };
    let err = raw.txn(malformed).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let bad_compare = pb::TxnRequest {
        compare: vec![pb::Compare { key: "k".into(), result: 99, ..Default::default() }],
        ..Default::default()
    };
    assert_eq!(raw.txn(bad_compare).await.unwrap_err().code(), Code::InvalidArgument);

    assert_eq!(revision(&mut c).await, before, "nothing was written");
    assert!(c.get("x", None).await.unwrap().kvs().is_empty());

    // TTL 0 and negative are raised to the minimum as etcd raises them (to
    // Concord's 1 s, where etcd's minimum is 2 s).
    for ttl in [0, -5] {
        let lease = c.lease_grant(ttl, None).await.unwrap();
        assert_eq!(lease.ttl(), 1);
    }

    // The server is still up and writing.
    let cas =
        Txn::new().when([Compare::value("keep", CompareOp::Equal, "me")]).and_then([TxnOp::put("keep", "you", None)]);
    assert!(c.txn(cas).await.unwrap().succeeded());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_member_list() {
    let s = Server::start();
    let mut c = client(&s).await;
    let status = c.status().await.unwrap();
    assert_eq!(status.version(), "3.4.0");
    let header = status.header().unwrap();
    assert_eq!(status.leader(), header.member_id());
    assert!(status.raft_index() >= 1 && status.raft_term() >= 1);
    assert!(status.db_size() > 0);
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].id(), header.member_id());
    assert_eq!(members.members()[0].client_urls(), [format!("http://{}", s.endpoint)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_stream_with_many_watches_progress_and_cancel() {
    let s = Server::start();
    let mut c = client(&s).await;
    c.put("a/1", "x", None).await.unwrap();
    let options = WatchOptions::new().with_prefix().with_start_revision(1).with_prev_key();
    let mut stream = c.watch("a/", Some(options)).await.unwrap();
    let created = bounded(stream.message()).await.unwrap().unwrap();
    assert!(created.created());
    let first = created.watch_id();
    stream.watch("b", None).await.unwrap();

    let mut second = None;
    let mut seen = Vec::new();
    let mut wrote = false;
    while seen.len() < 4 {
        let resp = bounded(stream.message()).await.unwrap().unwrap();
        if resp.created() {
            second = Some(resp.watch_id());
        }
        if second.is_some() && !wrote {
            // Both watches exist: now write.
            c.put("a/1", "y", None).await.unwrap();
            c.put("b", "z", None).await.unwrap();
            c.delete("a/1", None).await.unwrap();
            wrote = true;
        }
        for e in resp.events() {
            let kv = e.kv().unwrap();
            let prev = e.prev_kv().map(|p| p.value_str().unwrap().to_string());
            seen.push((resp.watch_id(), e.event_type(), kv.key_str().unwrap().to_string(), prev));
        }
    }
    assert_ne!(Some(first), second);
    let a: Vec<_> = seen.iter().filter(|s| s.0 == first).collect();
    assert_eq!(a.len(), 3, "{seen:?}");
    assert_eq!((a[0].1, a[0].3.as_deref()), (EventType::Put, None));
    assert_eq!((a[1].1, a[1].3.as_deref()), (EventType::Put, Some("x")));
    assert_eq!((a[2].1, a[2].3.as_deref()), (EventType::Delete, Some("y")));
    assert!(seen.iter().any(|s| Some(s.0) == second && s.2 == "b"));

    stream.request_progress().await.unwrap();
    let rev = c.get("b", None).await.unwrap().header().unwrap().revision();
    loop {
        let resp = bounded(stream.message()).await.unwrap().unwrap();
        if resp.events().is_empty() && !resp.created() && !resp.canceled() {
            assert!(resp.header().unwrap().revision() >= rev);
            break;
        }
    }
    stream.cancel(first).await.unwrap();
    loop {
        let resp = bounded(stream.message()).await.unwrap().unwrap();
        if resp.canceled() {
            assert_eq!(resp.watch_id(), first);
            break;
        }
    }
    c.put("a/2", "after cancel", None).await.unwrap();
    c.put("b", "still watched", None).await.unwrap();
    let resp = bounded(stream.message()).await.unwrap().unwrap();
    assert_eq!(resp.watch_id(), second.unwrap(), "the canceled watch sends nothing more");
}
