//! Bad peers: messages sent straight to a member's peer port that a real
//! member would never send — for another cluster, for another member, from
//! a member outside the configuration, with a payload that does not decode,
//! larger than any peer message may be — are refused with a specific error, logged, and change nothing (the
//! leader, the term and the revision stay; the cluster keeps working).

use std::time::Duration;

use concord_etcd::pb::etcdserverpb as pb;
use concord_torture::cluster::Cluster;
use tonic::Code;

/// The peer protocol's request (concord's proto/peer.proto), written out
/// here as a stranger would.
#[derive(Clone, PartialEq, prost::Message)]
struct PeerRequest {
    #[prost(uint64, tag = "1")]
    cluster_id: u64,
    #[prost(uint64, tag = "2")]
    target: u64,
    #[prost(uint64, tag = "3")]
    from: u64,
    #[prost(bytes = "vec", tag = "4")]
    payload: Vec<u8>,
    #[prost(uint64, tag = "5")]
    timeout_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PeerReply {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
}

const METHODS: [&str; 4] = [
    "/concord.peer.Peer/AppendEntries",
    "/concord.peer.Peer/Vote",
    "/concord.peer.Peer/Forward",
    "/concord.peer.Peer/ReadIndex",
];

async fn send(peer: std::net::SocketAddr, method: &'static str, request: PeerRequest) -> tonic::Status {
    let channel = tonic::transport::Channel::from_shared(format!("http://{peer}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    let codec = tonic_prost::ProstCodec::<PeerRequest, PeerReply>::default();
    let call = grpc.unary(tonic::Request::new(request), path, codec);
    match tokio::time::timeout(Duration::from_secs(10), call).await.expect("the member answered") {
        Ok(_) => panic!("{method} accepted a bad message"),
        Err(status) => status,
    }
}

async fn status(cluster: &Cluster, i: usize) -> pb::StatusResponse {
    let mut client = pb::maintenance_client::MaintenanceClient::new(cluster.members[i].channel.clone());
    client.status(pb::StatusRequest {}).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_no_member_would_send_are_refused_logged_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(env!("CARGO_BIN_EXE_concord").as_ref(), 3, dir.path()).await.unwrap();
    let leader = cluster.leader().await.expect("a leader");
    let target = (leader + 1) % 3;
    let before = status(&cluster, target).await;
    let header = before.header.unwrap();
    let leader_id = status(&cluster, leader).await.header.unwrap().member_id;
    let good = PeerRequest {
        cluster_id: header.cluster_id,
        target: header.member_id,
        from: leader_id,
        payload: vec![0xff; 64],
        timeout_ms: 1000,
    };
    let peer = cluster.members[target].peer;

    for method in METHODS {
        let other_cluster = PeerRequest { cluster_id: header.cluster_id ^ 1, ..good.clone() };
        let refused = send(peer, method, other_cluster).await;
        assert_eq!(refused.code(), Code::FailedPrecondition, "{method}: {refused:?}");
        assert!(refused.message().contains("belongs to cluster"), "{method}: {refused:?}");

        let other_member = PeerRequest { target: header.member_id ^ 1, ..good.clone() };
        let refused = send(peer, method, other_member).await;
        assert_eq!(refused.code(), Code::FailedPrecondition, "{method}: {refused:?}");
        assert!(refused.message().contains("this is member"), "{method}: {refused:?}");

        let stranger = PeerRequest { from: 0x5eed, ..good.clone() };
        let refused = send(peer, method, stranger).await;
        assert_eq!(refused.code(), Code::FailedPrecondition, "{method}: {refused:?}");
        assert!(refused.message().contains("not in this cluster's configuration"), "{method}: {refused:?}");

        let refused = send(peer, method, good.clone()).await;
        assert_eq!(refused.code(), Code::InvalidArgument, "{method}: {refused:?}");
        assert!(refused.message().contains("malformed peer message"), "{method}: {refused:?}");
    }

    // Oversized: past the 256 MiB a peer message may have, refused by the
    // transport before anything reads it.
    let oversized = PeerRequest { payload: vec![0; 257 << 20], ..good.clone() };
    let refused = send(peer, METHODS[0], oversized).await;
    assert!(matches!(refused.code(), Code::OutOfRange | Code::ResourceExhausted), "{refused:?}");

    let after = status(&cluster, target).await;
    assert_eq!(after.leader, before.leader, "the leader changed");
    assert_eq!(after.raft_term, before.raft_term, "the term changed");
    assert_eq!(after.header.unwrap().revision, header.revision, "something was written");
    let log = std::fs::read_to_string(dir.path().join(format!("m{target}.log"))).unwrap();
    for refusal in [
        "peer message for another cluster refused",
        "peer message for another member refused",
        "peer message from a member outside the configuration refused",
        "malformed peer message refused",
    ] {
        assert!(log.contains(refusal), "not logged: {refusal}");
    }
    // Still a working cluster.
    let mut kv = pb::kv_client::KvClient::new(cluster.members[target].channel.clone());
    kv.put(pb::PutRequest { key: "after".into(), value: "v".into(), ..Default::default() }).await.unwrap();
}
