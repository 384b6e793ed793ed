//! Fuzzing the gRPC request layer: arbitrary bytes, and well-formed
//! messages with adversarial fields, sent to every unary method of a real
//! server on loopback. Whatever arrives, the server answers (never drops
//! the connection, never panics), keeps serving, and a refused request
//! writes nothing; a refusal of a well-formed message is one of etcd's
//! (its codes, its "etcdserver: " texts).
//!
//! Bounded in the suite (proptest's default case count); a long run:
//! `PROPTEST_CASES=20000 cargo test -p concord-etcd --test fuzz_requests`.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use concord_etcd::pb::etcdserverpb as pb;
use proptest::prelude::*;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Sends and receives message bodies as they are.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

const UNARY: [&str; 11] = [
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseLeases",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Cluster/MemberList",
];

/// The server's decode limit with default options: twice the 1.5 MiB
/// request limit plus 512 KiB of gRPC overhead (server.rs).
const DECODE_LIMIT: usize = 2 * 1536 * 1024 + 512 * 1024;

struct Server {
    channel: Channel,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let channel = runtime.block_on(async {
            // Expiry paused: the revision moves only by the requests sent (a
            // lease granted by one case must not expire during another).
            let config = concord::Config::new(dir.path()).request_timeout(Duration::from_secs(5)).lease_expiry_batch(0);
            let db = config.open().await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let options = concord_etcd::ServerOptions::default();
            let metrics = concord_etcd::Metrics::new();
            tokio::spawn(concord_etcd::serve(db, listener, options, metrics, std::future::pending()));
            Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
        });
        Server { channel, runtime, _dir: dir }
    }

    /// Sends `body` to `path`: the answer, or the status.
    fn call(&self, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
        self.runtime.block_on(async {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
            let mut request = tonic::Request::new(body);
            request.set_timeout(Duration::from_secs(10));
            let call = grpc.unary(request, path, Raw);
            let answer = tokio::time::timeout(Duration::from_secs(15), call).await.expect("the server answered");
            answer.map(tonic::Response::into_inner)
        })
    }

    /// The current revision (through Status, which must always work).
    fn revision(&self) -> i64 {
        let body = self.call("/etcdserverpb.Maintenance/Status", Vec::new()).expect("the server still serves");
        pb::StatusResponse::decode(body.as_slice()).unwrap().header.unwrap().revision
    }
}

fn server() -> &'static Server {
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(Server::start)
}

/// Sends `body` and checks the promises; `well_formed` adds that a refusal
/// is one of etcd's.
fn exercise(path: &'static str, body: Vec<u8>, well_formed: bool) -> Result<(), TestCaseError> {
    // Past the decode limit the transport refuses before any handler (with
    // tonic's code and text, where etcd's grpc-go says ResourceExhausted).
    let well_formed = well_formed && body.len() <= DECODE_LIMIT;
    // One request at a time on the shared server, so a revision that moves
    // moved for this request.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = server();
    let before = s.revision();
    let answer = s.call(path, body);
    let after = s.revision();
    if let Err(status) = &answer {
        prop_assert_eq!(before, after, "refused with {:?} yet the revision moved", status);
        prop_assert!(
            status.code() != Code::Unknown && status.code() != Code::Unavailable,
            "an answer that is no refusal: {:?}",
            status
        );
        if well_formed {
            prop_assert!(
                matches!(
                    status.code(),
                    Code::InvalidArgument
                        | Code::NotFound
                        | Code::OutOfRange
                        | Code::FailedPrecondition
                        | Code::ResourceExhausted
                ),
                "not an etcd refusal: {:?}",
                status
            );
            prop_assert!(status.message().starts_with("etcdserver: "), "not etcd's text: {:?}", status);
        }
    }
    Ok(())
}

fn key() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        Just(Bytes::from_static(b"\0")),
        "[a-c]{1,3}".prop_map(Bytes::from),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from),
        (1usize..4).prop_map(|mb| Bytes::from(vec![b'k'; mb << 20])),
    ]
}

fn lease() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), Just(-1i64), Just(i64::MAX), Just(i64::MIN), any::<i64>()]
}

fn put() -> impl Strategy<Value = pb::PutRequest> {
    (key(), key(), lease(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(key, value, lease, prev_kv, ignore_value, ignore_lease)| pb::PutRequest {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        },
    )
}

fn range() -> impl Strategy<Value = pb::RangeRequest> {
    (key(), key(), any::<i64>(), prop_oneof![Just(0i64), any::<i64>()], any::<i32>(), any::<i32>()).prop_map(
        |(key, range_end, limit, revision, sort_order, sort_target)| pb::RangeRequest {
            key,
            range_end,
            limit,
            revision,
            sort_order,
            sort_target,
            ..Default::default()
        },
    )
}

fn request_op() -> impl Strategy<Value = pb::RequestOp> {
    use pb::request_op::Request;
    let leaf = prop_oneof![
        put().prop_map(|p| pb::RequestOp { request: Some(Request::RequestPut(p)) }),
        range().prop_map(|r| pb::RequestOp { request: Some(Request::RequestRange(r)) }),
        (key(), key()).prop_map(|(key, range_end)| pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest { key, range_end, prev_kv: false }))
        }),
        Just(pb::RequestOp { request: None }),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        (proptest::collection::vec(inner.clone(), 0..4), proptest::collection::vec(inner, 0..4)).prop_map(
            |(success, failure)| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
                    compare: vec![],
                    success,
                    failure,
                })),
            },
        )
    })
}

fn compare() -> impl Strategy<Value = pb::Compare> {
    (any::<i32>(), any::<i32>(), key(), key(), any::<i64>()).prop_map(|(result, target, key, range_end, n)| {
        let target_union = match target.rem_euclid(5) {
            0 => pb::compare::TargetUnion::Version(n),
            1 => pb::compare::TargetUnion::CreateRevision(n),
            2 => pb::compare::TargetUnion::ModRevision(n),
            3 => pb::compare::TargetUnion::Value(Bytes::from(n.to_le_bytes().to_vec())),
            _ => pb::compare::TargetUnion::Lease(n),
        };
        pb::Compare { result, target, key, range_end, target_union: Some(target_union) }
    })
}

fn txn() -> impl Strategy<Value = pb::TxnRequest> {
    (
        proptest::collection::vec(compare(), 0..3),
        proptest::collection::vec(request_op(), 0..5),
        proptest::collection::vec(request_op(), 0..3),
    )
        .prop_map(|(compare, success, failure)| pb::TxnRequest { compare, success, failure })
}

/// A well-formed message with adversarial fields, for some method.
fn well_formed() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    prop_oneof![
        put().prop_map(|m| ("/etcdserverpb.KV/Put", m.encode_to_vec())),
        range().prop_map(|m| ("/etcdserverpb.KV/Range", m.encode_to_vec())),
        (key(), key(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
            ("/etcdserverpb.KV/DeleteRange", pb::DeleteRangeRequest { key, range_end, prev_kv }.encode_to_vec())
        }),
        txn().prop_map(|m| ("/etcdserverpb.KV/Txn", m.encode_to_vec())),
        any::<i64>().prop_map(|revision| {
            ("/etcdserverpb.KV/Compact", pb::CompactionRequest { revision, physical: false }.encode_to_vec())
        }),
        (any::<i64>(), lease()).prop_map(|(ttl, id)| {
            ("/etcdserverpb.Lease/LeaseGrant", pb::LeaseGrantRequest { ttl, id }.encode_to_vec())
        }),
        lease().prop_map(|id| ("/etcdserverpb.Lease/LeaseRevoke", pb::LeaseRevokeRequest { id }.encode_to_vec())),
        (lease(), any::<bool>()).prop_map(|(id, keys)| {
            ("/etcdserverpb.Lease/LeaseTimeToLive", pb::LeaseTimeToLiveRequest { id, keys }.encode_to_vec())
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_to_any_method_are_answered_and_write_nothing_when_refused(
        method in 0..UNARY.len(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        exercise(UNARY[method], body, false)?;
    }

    #[test]
    fn adversarial_messages_get_etcds_refusals_and_write_nothing_when_refused(
        (path, body) in well_formed(),
    ) {
        exercise(path, body, true)?;
    }
}
