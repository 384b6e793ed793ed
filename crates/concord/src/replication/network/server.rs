//! The receiving side of the peer protocol: hands Raft messages to openraft
//! and a follower's writes and read-index requests to this member.
//!
//! A request for another cluster or another member, or from a member that
//! is not in this member's configuration (a removed member still talking),
//! is refused with `FailedPrecondition`; a malformed payload with
//! `InvalidArgument`. Every refusal is logged and changes nothing.
//!
//! The configuration check only holds where this member knows as much as
//! the sender: a sender whose membership is newer (its log index, carried
//! on every request) is taken even when it is outside this member's — a
//! member catching up from the start of the log has the cluster's first
//! configuration, in which today's leader may never have been, and learns
//! the rest from the entries that leader sends. A member with no
//! configuration at all (one waiting to join) takes messages from anyone
//! of its cluster. The check keeps removed members from disturbing the
//! cluster and tells them they were removed; it is no defence against a
//! hostile peer (peer TLS is: `docs/security.md`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Snapshot, SnapshotMeta};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::pb::peer_server::{Peer, PeerServer};
use super::pb::{PeerReply, PeerRequest, SnapshotChunk};
use super::{MAX_PEER_MESSAGE, decode, encode};
use crate::cluster::{ClusterInfo, Member, MemberId, MembershipChange, MembershipChanged};
use crate::command::{Command, Written};
use crate::error::Error;
use crate::replication::ConcordRaft;
use crate::replication::snapshot_store::{SnapshotData, SnapshotStore};

/// What this member does with a follower's write (propose it as leader).
pub type ForwardHandler =
    Arc<dyn Fn(Command, Duration) -> Pin<Box<dyn Future<Output = Result<Written, Error>> + Send>> + Send + Sync>;
/// What this member answers a follower's read-index request with.
pub type ReadIndexHandler = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<u64, Error>> + Send>> + Send + Sync>;
/// What this member does with a follower's membership change (carry it
/// out as leader).
pub type MembershipHandler = Arc<
    dyn Fn(MembershipChange, Duration) -> Pin<Box<dyn Future<Output = Result<MembershipChanged, Error>> + Send>>
        + Send
        + Sync,
>;
/// What this member does when the leader says it hands leadership over
/// (the leader's vote, the member leadership moves to).
pub type TransferHandler = Arc<
    dyn Fn(openraft::Vote<MemberId>, MemberId) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> + Send + Sync,
>;
/// What this member tells anyone about its cluster.
pub type ClusterInfoHandler = Arc<dyn Fn() -> ClusterInfo + Send + Sync>;

/// What the peer server hands to this member.
pub(crate) struct Handlers {
    pub forward: ForwardHandler,
    pub read_index: ReadIndexHandler,
    pub change_membership: MembershipHandler,
    pub transfer_leader: TransferHandler,
    pub cluster_info: ClusterInfoHandler,
}

pub(crate) struct PeerService {
    raft: ConcordRaft,
    snapshots: SnapshotStore,
    /// The membership, as every request's sender is checked against it
    /// (one receiver kept, rather than one made per request).
    membership: tokio::sync::watch::Receiver<openraft::metrics::RaftServerMetrics<MemberId, Member>>,
    cluster_id: u64,
    me: MemberId,
    handlers: Handlers,
}

impl PeerService {
    pub(crate) fn new(
        raft: ConcordRaft,
        snapshots: SnapshotStore,
        cluster_id: u64,
        me: MemberId,
        handlers: Handlers,
    ) -> PeerServer<PeerService> {
        let membership = raft.server_metrics();
        PeerServer::new(PeerService { raft, snapshots, membership, cluster_id, me, handlers })
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
    }

    fn check(&self, cluster_id: u64, target: MemberId, from: MemberId, from_membership: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            tracing::warn!(from = %format!("{from:x}"), cluster = %format!("{cluster_id:x}"), "peer message for another cluster refused");
            return Err(Status::failed_precondition(format!(
                "this member belongs to cluster {:x}, not {cluster_id:x}",
                self.cluster_id
            )));
        }
        if target != self.me {
            tracing::warn!(from = %format!("{from:x}"), target = %format!("{target:x}"), "peer message for another member refused");
            return Err(Status::failed_precondition(format!("this is member {:x}, not {target:x}", self.me)));
        }
        // A member that has no configuration yet (one waiting to join)
        // takes messages from anyone of its cluster; one whose
        // configuration is older than the sender's, from the sender.
        let (known, membership_index) = {
            let metrics = self.membership.borrow();
            let config = &metrics.membership_config;
            let membership = config.membership();
            let membership_index = config.log_id().map_or(0, |id| id.index);
            let known = membership.nodes().next().is_none()
                || membership.get_node(&from).is_some()
                || from_membership > membership_index;
            (known, membership_index)
        };
        if !known {
            tracing::warn!(from = %format!("{from:x}"), "peer message from a member outside the configuration refused");
            // The sender compares this with its own membership: a newer one
            // that leaves it out means it was removed (and it stops).
            let mut status = Status::failed_precondition(format!(
                "member {from:x} is not in this cluster's configuration (as of log index {membership_index})"
            ));
            if let Ok(value) = membership_index.to_string().parse() {
                status.metadata_mut().insert(super::REFUSED_AT_MEMBERSHIP, value);
            }
            return Err(status);
        }
        Ok(())
    }

    /// Receives a snapshot's chunks into the snapshot store; its vote,
    /// meta and stored data once the whole announced size arrived.
    async fn receive_snapshot(
        &self,
        mut chunks: Streaming<SnapshotChunk>,
    ) -> Result<(openraft::Vote<MemberId>, SnapshotMeta<MemberId, Member>, SnapshotData), Status> {
        let mut header = None;
        let (mut sink, mut received, mut total) = (self.snapshots.receive(), 0u64, 0u64);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            self.check(chunk.cluster_id, chunk.target, chunk.from, chunk.membership_index)?;
            if header.is_none() {
                let decoded: (openraft::Vote<MemberId>, SnapshotMeta<MemberId, Member>) =
                    decode(&chunk.header).map_err(|e| {
                        tracing::warn!(from = %format!("{:x}", chunk.from), error = %e, "malformed snapshot header refused");
                        Status::invalid_argument(e)
                    })?;
                tracing::info!(from = %format!("{:x}", chunk.from), bytes = chunk.total_bytes, last = ?decoded.1.last_log_id, "receiving a snapshot");
                header = Some(decoded);
                total = chunk.total_bytes;
            }
            received += chunk.data.len() as u64;
            if !chunk.data.is_empty() {
                sink.push(chunk.data).await.map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
            }
        }
        let Some((vote, meta)) = header else {
            return Err(Status::invalid_argument("a snapshot stream without its header"));
        };
        if received != total {
            return Err(Status::data_loss(format!("the snapshot stream ended after {received} of {total} bytes")));
        }
        let data = sink.finish().await.map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
        Ok((vote, meta, data))
    }

    fn open<T: serde::de::DeserializeOwned>(&self, request: Request<PeerRequest>) -> Result<(T, PeerRequest), Status> {
        let request = request.into_inner();
        self.check(request.cluster_id, request.target, request.from, request.membership_index)?;
        let payload = decode(&request.payload).map_err(|e| {
            tracing::warn!(from = %format!("{:x}", request.from), error = %e, "malformed peer message refused");
            Status::invalid_argument(e)
        })?;
        Ok((payload, request))
    }
}

/// Entries must follow `prev_log_id` one index at a time, terms never
/// going back: openraft's follower takes what it is sent (it checks only in
/// debug builds), and a log stored with a gap stops the member at its next
/// read of it. A leader that sends one has a bug; refusing keeps the
/// follower's log whole (the leader retries).
fn check_contiguous(rpc: &openraft::raft::AppendEntriesRequest<super::TypeConfig>) -> Result<(), String> {
    let first = rpc.prev_log_id.map_or(0, |id| id.index + 1);
    let mut term = rpc.prev_log_id.map_or(0, |id| id.leader_id.term);
    for (expected, entry) in (first..).zip(&rpc.entries) {
        if entry.log_id.index != expected || entry.log_id.leader_id.term < term {
            return Err(format!(
                "append entries after {:?}: entry {} where {expected} (term {term} or later) was due",
                rpc.prev_log_id, entry.log_id
            ));
        }
        term = entry.log_id.leader_id.term;
    }
    Ok(())
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<PeerReply>, Status> {
    Ok(Response::new(PeerReply { payload: encode(value) }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let (rpc, request) = self.open(request)?;
        check_contiguous(&rpc).map_err(|e| {
            tracing::error!(from = %format!("{:x}", request.from), error = %e, "entries with a gap refused");
            Status::invalid_argument(e)
        })?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let (rpc, _) = self.open(request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<PeerReply>, Status> {
        // Given up when the member stops: the chunks written so far are
        // dropped with the transaction, and the store closes with nothing
        // of this snapshot in its file.
        let received = tokio::select! {
            received = self.receive_snapshot(request.into_inner()) => received?,
            () = self.snapshots.closed() => return Err(Status::unavailable("the member is stopping")),
        };
        let (vote, meta, data) = received;
        let kept = SnapshotData::clone_handle(&data);
        let installed = self.raft.install_full_snapshot(vote, Snapshot { meta, snapshot: Box::new(data) }).await;
        // Answered: installed (current, it stays) or found stale (its
        // chunks are dropped). Not answered (Raft stopped): the state
        // machine may still be installing it, so it is left alone — the
        // next open drops it unless it became current.
        if installed.is_ok()
            && let Err(e) = self.snapshots.discard(&kept).await
        {
            tracing::warn!(error = %e, "cannot drop a received snapshot");
        }
        reply(&installed)
    }

    async fn forward(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let (commands, _): (Vec<(Command, u64)>, _) = self.open(request)?;
        let answers = commands.into_iter().map(|(command, timeout_ms)| {
            (self.handlers.forward)(command, Duration::from_millis(timeout_ms.clamp(1, 60_000)))
        });
        let answers = futures_util::future::join_all(answers).await;
        // The follower answers its clients once it has applied these
        // writes, so it needs the committed index now: a heartbeat carries
        // it at once, rather than after the wait for entries to ride on
        // (`vendor/README.md`; coalesced with one already due).
        if answers.iter().any(Result::is_ok) {
            let _ = self.raft.trigger().heartbeat().await;
        }
        reply(&answers)
    }

    async fn read_index(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        // No payload: an empty one is the unit value.
        let ((), _) = self.open(request)?;
        reply(&(self.handlers.read_index)().await)
    }

    async fn change_membership(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let (change, request): (MembershipChange, _) = self.open(request)?;
        let timeout = Duration::from_millis(request.timeout_ms.clamp(1, 60_000));
        reply(&(self.handlers.change_membership)(change, timeout).await)
    }

    async fn transfer_leader(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let ((from, to), _): ((openraft::Vote<MemberId>, MemberId), _) = self.open(request)?;
        reply(&(self.handlers.transfer_leader)(from, to).await)
    }

    async fn cluster_info(&self, _request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        reply(&(self.handlers.cluster_info)())
    }
}

#[cfg(test)]
mod tests {
    use openraft::raft::AppendEntriesRequest;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    use super::check_contiguous;
    use crate::replication::TypeConfig;

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn request(prev: Option<(u64, u64)>, entries: &[(u64, u64)]) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: prev.map(|(term, index)| log_id(term, index)),
            entries: entries
                .iter()
                .map(|(term, index)| Entry { log_id: log_id(*term, *index), payload: EntryPayload::Blank })
                .collect(),
            leader_commit: None,
        }
    }

    /// A follower refuses entries that do not follow the previous one index
    /// by index (a leader's bug once sent a log with a gap, and the
    /// follower stored it and stopped).
    #[test]
    fn entries_must_follow_the_previous_one_without_a_gap() {
        assert!(check_contiguous(&request(Some((2, 10)), &[(2, 11), (3, 12)])).is_ok());
        assert!(check_contiguous(&request(None, &[(0, 0), (1, 1)])).is_ok());
        assert!(check_contiguous(&request(Some((2, 10)), &[])).is_ok(), "a heartbeat");
        assert!(check_contiguous(&request(Some((2, 10)), &[(2, 12)])).is_err(), "11 missing");
        assert!(check_contiguous(&request(Some((2, 10)), &[(2, 11), (2, 13)])).is_err(), "12 missing");
        assert!(check_contiguous(&request(Some((3, 10)), &[(2, 11)])).is_err(), "a term going back");
        assert!(check_contiguous(&request(None, &[(1, 1)])).is_err(), "0 missing");
    }
}
