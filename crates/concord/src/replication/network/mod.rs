//! The peer network: openraft's `RaftNetwork` over gRPC (tonic), plus the
//! two requests a follower sends its leader (a write to propose, a read
//! index).
//!
//! - One long-lived channel per peer, connected lazily and shared by every
//!   client openraft asks for (`new_client` runs for every vote round and
//!   every linearizability check, so it must be cheap).
//! - Every request names the cluster and the target member; the receiver
//!   refuses a request meant for another (a wrong address must never make a
//!   member talk to itself or to another cluster).
//! - Errors are mapped so openraft backs off correctly: a peer that cannot
//!   be reached (connection refused, gRPC `Unavailable`) is `Unreachable`,
//!   any other transport failure a `NetworkError`, a Raft error in the reply
//!   a `RemoteError`, an oversized message `PayloadTooLarge`.
//! - Snapshots go whole, as one client stream (the vote, meta and size,
//!   then the stored 1 MiB chunks, read a few ahead of the wire and never
//!   whole), with a deadline of their own and honouring cancel; the
//!   receiver writes the chunks to its snapshot store as they arrive, then
//!   installs with `install_full_snapshot`.

pub(crate) mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
    tonic::include_proto!("concord.peer");
}
pub(crate) mod server;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    Fatal, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{AnyError, Snapshot, Vote};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::TypeConfig;
use crate::cluster::{Member, MemberId};
use crate::command::{Command, Written};
use crate::error::Error;
use pb::peer_client::PeerClient;

/// Metadata on a refusal of a sender outside the receiver's configuration:
/// the log index of the receiver's membership.
pub(crate) const REFUSED_AT_MEMBERSHIP: &str = "concord-refused-at-membership";

pub(crate) use crate::limits::MAX_PEER_MESSAGE;
/// How long sending a whole snapshot may take.
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(120);

pub(crate) fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(postcard::to_stdvec(value).expect("peer messages always encode"))
}

/// Decodes a whole message: bytes left over make it malformed too.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| format!("malformed peer message: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("malformed peer message: {} bytes after its end", rest.len()));
    }
    Ok(value)
}

/// Channels to peers, shared by every client.
#[derive(Clone)]
pub struct PeerNetwork {
    inner: Arc<PeerNetworkInner>,
}

struct PeerNetworkInner {
    /// Known once the membership is (right after Raft starts).
    cluster_id: std::sync::atomic::AtomicU64,
    /// The highest membership log index of a peer that refused this member
    /// as not in its configuration (0: none). A peer whose membership is
    /// newer than this member's and leaves it out means it was removed.
    refused_at: tokio::sync::watch::Sender<u64>,
    me: MemberId,
    channels: Mutex<HashMap<(MemberId, String), Channel>>,
    /// Advertised peer URL → URL dialled instead (`Config::peer_dial_map`).
    dial_map: HashMap<String, String>,
    /// The last leader that said it hands leadership over, and when.
    handover: Mutex<Option<(MemberId, std::time::Instant)>>,
    /// How `https` peer URLs are dialled.
    tls: Option<tls::PeerTls>,
    /// This member's Raft metrics once Raft runs: every request carries
    /// the log index of its membership (`PeerRequest::membership_index`).
    metrics: std::sync::OnceLock<tokio::sync::watch::Receiver<RaftMetrics>>,
}

type RaftMetrics = openraft::metrics::RaftServerMetrics<MemberId, Member>;

/// How long a leader's word that it hands leadership over is believed.
const HANDOVER_NOTICE: Duration = Duration::from_secs(10);

impl PeerNetwork {
    pub(crate) fn new(me: MemberId, dial_map: HashMap<String, String>, tls: Option<tls::PeerTls>) -> Self {
        let cluster_id = std::sync::atomic::AtomicU64::new(0);
        let channels = Mutex::new(HashMap::new());
        let refused_at = tokio::sync::watch::Sender::new(0);
        let handover = Mutex::new(None);
        let metrics = std::sync::OnceLock::new();
        let inner = PeerNetworkInner { cluster_id, me, refused_at, channels, dial_map, handover, tls, metrics };
        PeerNetwork { inner: Arc::new(inner) }
    }

    /// Notes that `leader` said it hands leadership over: it stays up and
    /// answers what it was given (`node/transfer.rs`).
    pub(crate) fn note_handover(&self, leader: MemberId) {
        *self.inner.handover.lock() = Some((leader, std::time::Instant::now()));
    }

    /// Whether a leader said within `within` that it hands leadership over.
    pub(crate) fn handover_under_way(&self, within: Duration) -> bool {
        self.inner.handover.lock().is_some_and(|(_, at)| at.elapsed() < within)
    }

    /// Whether `leader` said lately that it hands leadership over.
    pub(crate) fn handed_over(&self, leader: MemberId) -> bool {
        self.inner.handover.lock().is_some_and(|(l, at)| l == leader && at.elapsed() < HANDOVER_NOTICE)
    }

    /// Membership log indexes of peers that refused this member (see
    /// `PeerNetworkInner::refused_at`).
    pub(crate) fn refusals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.refused_at.subscribe()
    }

    /// Notes a peer's refusal of this member as outside its configuration.
    fn note_refusal(&self, status: &tonic::Status) {
        if status.code() != tonic::Code::FailedPrecondition {
            return;
        }
        let index = status.metadata().get(REFUSED_AT_MEMBERSHIP).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(index) = index {
            self.inner.refused_at.send_if_modified(|at| {
                let newer = index > *at;
                *at = (*at).max(index);
                newer
            });
        }
    }

    pub(crate) fn set_cluster_id(&self, cluster_id: u64) {
        self.inner.cluster_id.store(cluster_id, std::sync::atomic::Ordering::Release);
    }

    fn cluster_id(&self) -> u64 {
        self.inner.cluster_id.load(std::sync::atomic::Ordering::Acquire)
    }

    /// From now on, requests say which membership this member has.
    pub(crate) fn set_metrics(&self, metrics: tokio::sync::watch::Receiver<RaftMetrics>) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// The log index of this member's membership (0 before Raft runs).
    fn membership_index(&self) -> u64 {
        let Some(metrics) = self.inner.metrics.get() else { return 0 };
        metrics.borrow().membership_config.log_id().as_ref().map_or(0, |id| id.index)
    }

    /// The channel to `target` at its first peer URL (created on first use;
    /// dialled where the dial map says, if it names that URL).
    fn channel(&self, target: MemberId, member: &Member) -> Result<Channel, String> {
        let url = member.peer_urls.first().ok_or_else(|| format!("member {target:x} has no peer URL"))?.clone();
        let mut channels = self.inner.channels.lock();
        if let Some(channel) = channels.get(&(target, url.clone())) {
            return Ok(channel.clone());
        }
        let dialled = self.inner.dial_map.get(&url).unwrap_or(&url).clone();
        let channel = tls::endpoint(&url, &dialled, self.inner.tls.as_ref())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(5))
            .connect_lazy();
        channels.insert((target, url), channel.clone());
        Ok(channel)
    }

    fn client(&self, target: MemberId, member: &Member) -> Result<PeerClient<Channel>, String> {
        Ok(PeerClient::new(self.channel(target, member)?)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE))
    }

    /// Hands a membership change to the leader.
    pub(crate) async fn change_membership(
        &self,
        leader: MemberId,
        member: &Member,
        change: &crate::cluster::MembershipChange,
        timeout: Duration,
    ) -> Result<crate::cluster::MembershipChanged, Error> {
        let mut client = self.client(leader, member).map_err(Error::NotReady)?;
        let request = self.request(leader, encode(change), timeout);
        let reply = client.change_membership(request).await.map_err(status_error)?;
        decode::<Result<crate::cluster::MembershipChanged, Error>>(&reply.into_inner().payload)
            .map_err(Error::Storage)?
    }

    /// Asks whoever serves `peer_url` for its cluster id and membership (a
    /// fresh connection: the asker may not know the member's id yet).
    pub(crate) async fn cluster_info(
        &self,
        peer_url: &str,
        timeout: Duration,
    ) -> Result<crate::cluster::ClusterInfo, String> {
        let dialled = self.inner.dial_map.get(peer_url).map_or(peer_url, String::as_str);
        let endpoint =
            tls::endpoint(peer_url, dialled, self.inner.tls.as_ref())?.connect_timeout(timeout).timeout(timeout);
        let channel = endpoint.connect().await.map_err(|e| format!("{peer_url}: {e}"))?;
        let mut client = PeerClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE);
        let reply = client
            .cluster_info(self.request(0, Bytes::new(), timeout))
            .await
            .map_err(|s| format!("{peer_url}: {}", s.message()))?;
        decode(&reply.into_inner().payload)
    }

    fn request(&self, target: MemberId, payload: Bytes, timeout: Duration) -> tonic::Request<pb::PeerRequest> {
        let mut request = tonic::Request::new(pb::PeerRequest {
            cluster_id: self.cluster_id(),
            target,
            from: self.inner.me,
            payload,
            timeout_ms: timeout.as_millis() as u64,
            membership_index: self.membership_index(),
        });
        request.set_timeout(timeout);
        request
    }

    /// Hands writes to the leader, which proposes each (once: a forwarded
    /// write is never forwarded again) within its own time limit; one
    /// answer per command, in order, with the index of its entry.
    pub(crate) async fn forward(
        &self,
        leader: MemberId,
        member: &Member,
        commands: &[(Command, Duration)],
    ) -> Result<Vec<Result<Written, Error>>, Error> {
        let mut client = self.client(leader, member).map_err(Error::NotReady)?;
        let timeout = commands.iter().map(|(_, t)| *t).max().unwrap_or_default();
        let payload: Vec<(&Command, u64)> = commands.iter().map(|(c, t)| (c, t.as_millis() as u64)).collect();
        let reply = client.forward(self.request(leader, encode(&payload), timeout)).await.map_err(status_error)?;
        decode::<Vec<Result<Written, Error>>>(&reply.into_inner().payload).map_err(Error::Storage)
    }

    /// Tells `target` that the leader holding `from` hands leadership to
    /// `to` (`node/transfer.rs`).
    pub(crate) async fn transfer_leader(
        &self,
        target: MemberId,
        member: &Member,
        from: Vote<MemberId>,
        to: MemberId,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut client = self.client(target, member).map_err(Error::NotReady)?;
        let request = self.request(target, encode(&(from, to)), timeout);
        let reply = client.transfer_leader(request).await.map_err(status_error)?;
        decode::<Result<(), Error>>(&reply.into_inner().payload).map_err(Error::Storage)?
    }

    /// The leader's read index: a linearizable read on this member waits
    /// until it has applied that far.
    pub(crate) async fn read_index(&self, leader: MemberId, member: &Member, timeout: Duration) -> Result<u64, Error> {
        let mut client = self.client(leader, member).map_err(Error::NotReady)?;
        let reply = client.read_index(self.request(leader, Bytes::new(), timeout)).await.map_err(status_error)?;
        decode::<Result<u64, Error>>(&reply.into_inner().payload).map_err(Error::Storage)?
    }
}

/// A peer call that failed in transport: the leader may be gone or changing.
fn status_error(status: tonic::Status) -> Error {
    match status.code() {
        tonic::Code::DeadlineExceeded => Error::Timeout(Duration::ZERO),
        _ => Error::NotReady(format!("the leader could not be reached: {}", status.message())),
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: MemberId, node: &Member) -> Self::Network {
        PeerConnection { network: self.clone(), target, member: node.clone() }
    }
}

/// openraft's handle to one peer.
pub struct PeerConnection {
    network: PeerNetwork,
    target: MemberId,
    member: Member,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        payload: &Req,
        option: &RPCOption,
        send: impl AsyncFnOnce(
            PeerClient<Channel>,
            tonic::Request<pb::PeerRequest>,
        ) -> Result<tonic::Response<pb::PeerReply>, tonic::Status>,
    ) -> Result<Resp, RPCError<MemberId, Member, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self.network.client(self.target, &self.member).map_err(|e| unreachable(&e))?;
        let request = self.network.request(self.target, encode(payload), option.hard_ttl());
        let reply = send(client, request).await.map_err(|s| {
            self.network.note_refusal(&s);
            transport_error(&s)
        })?;
        match decode::<Result<Resp, E>>(&reply.into_inner().payload) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => {
                Err(RPCError::RemoteError(RemoteError::new_with_node(self.target, self.member.clone(), remote)))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&AnyError::error(e)))),
        }
    }
}

fn unreachable(message: &str) -> Unreachable {
    Unreachable::new(&AnyError::error(message))
}

fn transport_error<E: std::error::Error>(status: &tonic::Status) -> RPCError<MemberId, Member, E> {
    let message = format!("{}: {}", status.code(), status.message());
    match status.code() {
        // A peer that cannot be reached, or that refuses this member as
        // outside its configuration: openraft backs off before trying it
        // again (a refusing peer is not hammered with retries).
        tonic::Code::Unavailable | tonic::Code::FailedPrecondition => RPCError::Unreachable(unreachable(&message)),
        tonic::Code::ResourceExhausted if status.message().contains("message length") => {
            RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(1))
        }
        _ => RPCError::Network(NetworkError::new(&AnyError::error(message))),
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<MemberId>, RPCError<MemberId, Member, RaftError<MemberId>>> {
        self.call(&rpc, &option, async |mut c, r| c.append_entries(r).await).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MemberId>,
        option: RPCOption,
    ) -> Result<VoteResponse<MemberId>, RPCError<MemberId, Member, RaftError<MemberId>>> {
        self.call(&rpc, &option, async |mut c, r| c.vote(r).await).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<MemberId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<MemberId>, StreamingError<TypeConfig, Fatal<MemberId>>> {
        let mut client = self.network.client(self.target, &self.member).map_err(|e| unreachable(&e))?;
        let header = encode(&(vote, snapshot.meta.clone()));
        let (cluster_id, target, from) = (self.network.cluster_id(), self.target, self.network.inner.me);
        let membership_index = self.network.membership_index();
        let total_bytes = snapshot.snapshot.len();
        // Read from the store a few chunks ahead of the wire, never whole.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let data = snapshot.snapshot;
        tokio::task::spawn_blocking(move || {
            let chunks = match data.chunks() {
                Ok(chunks) => chunks,
                Err(e) => return tracing::warn!(error = %e, "cannot read the snapshot to send"),
            };
            for chunk in chunks {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => return tracing::warn!(error = %e, "cannot read the snapshot to send"),
                };
                if tx.blocking_send(chunk).is_err() {
                    // The stream was dropped: nothing more to send.
                    return;
                }
            }
        });
        let mut first = true;
        let chunks = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |data| pb::SnapshotChunk {
            cluster_id,
            target,
            from,
            header: if std::mem::take(&mut first) { header.clone() } else { Bytes::new() },
            data,
            total_bytes,
            membership_index,
        });
        // An empty snapshot is one message: the header.
        let chunks = tokio_stream::iter((total_bytes == 0).then(|| pb::SnapshotChunk {
            cluster_id,
            target,
            from,
            header: encode(&(vote, snapshot.meta.clone())),
            data: Bytes::new(),
            total_bytes,
            membership_index,
        }))
        .chain(chunks);
        let mut request = tonic::Request::new(chunks);
        request.set_timeout(SNAPSHOT_DEADLINE);
        let reply = tokio::select! {
            reply = client.install_snapshot(request) => reply,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let reply = reply.map_err(|status| match transport_error::<Fatal<MemberId>>(&status) {
            RPCError::Unreachable(e) => StreamingError::Unreachable(e),
            _ => StreamingError::Network(NetworkError::new(&AnyError::error(status.message()))),
        })?;
        match decode::<Result<SnapshotResponse<MemberId>, Fatal<MemberId>>>(&reply.into_inner().payload) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(self.target, fatal))),
            Err(e) => Err(StreamingError::Network(NetworkError::new(&AnyError::error(e)))),
        }
    }
}
