//! Any member serves any client: writes go to the leader, linearizable
//! reads confirm with it.
//!
//! - A write on the leader is proposed here (group commit). A write on a
//!   follower is handed to the leader over the peer protocol, once, and
//!   answered once this member has applied it too (`forwarder.rs`) — so a
//!   client that wrote through a member and then reads from it,
//!   serializable, or starts a watch there, sees its write (etcd's members
//!   too answer only what they applied). The leader proposes it or refuses
//!   it, it never forwards it again — save
//!   while it hands leadership over on purpose (`transfer.rs`): a write it
//!   held back and that was refused unproposed goes on to the new leader.
//!   With no leader known the write fails at once with `NotReady` (etcd's
//!   "no leader", which clients retry) — unless a leader just said it hands
//!   leadership over: then it waits for the successor.
//! - A linearizable read on the leader confirms leadership with a quorum
//!   (`ensure_linearizable`). On a follower it asks the leader for its read
//!   index (a fresh request each time) and waits until it has applied that
//!   far, then reads locally.
//! - Checks that need the leader's clock (a keep-alive past the lease's
//!   deadline) run where the command is proposed: on the leader, for
//!   forwarded commands too.

use std::time::Duration;

use super::{Concord, Consistency, leader_error};
use crate::command::{Command, Written};
use crate::error::{Error, Result};

impl Concord {
    pub(super) async fn route_write(&self, command: Command, timeout: Duration) -> Result<Written> {
        let leader = match self.leader() {
            Some(leader) => leader,
            None => self.leader_after_handover(timeout).await.ok_or_else(|| Error::NotReady("no leader".into()))?,
        };
        if leader == self.inner.member_id {
            return self.write_as_leader(command, timeout).await;
        }
        self.inner.forwarded_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Answers "leader changed" at once if this member learns of a new
        // leader while the write is out (forwarder.rs).
        self.inner.forwarder.forward(leader, command, timeout).await
    }

    /// With no leader known: if a leader said lately that it hands
    /// leadership over (`transfer.rs`), its successor is a round trip away,
    /// so this waits for it (two election timeouts at most, within
    /// `timeout`) rather than answer "no leader" in between.
    async fn leader_after_handover(&self, timeout: Duration) -> Option<u64> {
        let election = self.inner.config.election_timeout * 2;
        if !self.inner.network.handover_under_way(election) {
            return None;
        }
        let mut metrics = self.inner.raft.server_metrics();
        let known = tokio::time::timeout(timeout.min(election), async {
            metrics.wait_for(|m| m.current_leader.is_some()).await.ok().and_then(|m| m.current_leader)
        });
        known.await.ok().flatten()
    }

    /// Proposes `command` on this member, which leads; a follower's
    /// forwarded write lands here too. "leader changed" if it does not lead
    /// any more — except when it hands leadership over (`transfer.rs`):
    /// then a write refused unproposed because leadership moved goes on to
    /// the new leader (one more hop, after a real change of leader, within
    /// the same deadline). A copy is kept for that (cheap: keys and values
    /// are shared buffers), since a write may already be waiting here when
    /// the transfer starts.
    pub(super) async fn write_as_leader(&self, command: Command, timeout: Duration) -> Result<Written> {
        let leader_changed = || Error::NotReady("leader changed".into());
        let deadline = tokio::time::Instant::now() + timeout;
        let copy = command.clone();
        match self.propose_here(command, timeout).await {
            Err(Error::NotLeader { .. }) if self.inner.transferring.load(std::sync::atomic::Ordering::Acquire) => {
                let me = self.inner.member_id;
                let mut metrics = self.inner.raft.server_metrics();
                let moved = metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != me));
                let new = match tokio::time::timeout_at(deadline, moved).await {
                    Ok(Ok(m)) => m.current_leader,
                    _ => None,
                };
                let Some(new) = new else { return Err(leader_changed()) };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                self.inner.forwarded_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.inner.forwarder.forward(new, copy, left).await
            }
            Err(Error::NotLeader { .. }) => Err(leader_changed()),
            other => other,
        }
    }

    /// Proposes `command` here. [`Error::NotLeader`] means it was refused
    /// unproposed (openraft refuses a write on a member that does not lead,
    /// or that hands leadership over, before appending it) and may go to
    /// another leader; a write whose entry was appended and then removed by
    /// a newer leader's log answers [`Error::LeaderChanged`] instead (a
    /// concord-raft patch): a leader that holds the entry may still commit
    /// it, so proposing it again could apply it twice.
    async fn propose_here(&self, command: Command, timeout: Duration) -> Result<Written> {
        // A client's renewal (wrapped with its caller) included.
        if let Command::LeaseKeepAlive { id, .. } = command.unwrapped() {
            self.refuse_expired_renewal(*id, timeout).await?;
        }
        self.inner.proposer.propose(command, timeout).await
    }

    /// A lease past its deadline is expired even if its expiry is not
    /// committed yet: renewing it would resurrect it, so the renewal is
    /// refused with "lease not found" (as etcd does). But not at once:
    /// - only after this member has confirmed that it still leads — a
    ///   deposed leader cut off from its followers saw no renewals commit,
    ///   and its deadlines are nobody's (the torture run caught one
    ///   answering "not found" for a lease the new leader kept alive);
    /// - only once the expiry is applied, since until then every reader
    ///   still sees the lease (etcd's Renew waits for the revoke too).
    ///
    /// With expiry paused (`lease_expiry_batch` 0) the refusal comes as
    /// soon as leadership is confirmed.
    async fn refuse_expired_renewal(&self, id: crate::types::LeaseId, timeout: Duration) -> Result<()> {
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            let now = tokio::time::Instant::now();
            if !self.inner.shared.deadlines.lock().is_past_deadline(id, now) {
                return Ok(());
            }
            let left = give_up.saturating_duration_since(now);
            if left.is_zero() {
                return Err(Error::Timeout(timeout));
            }
            let exists = self.read(Consistency::Linearizable, left, |sm| Ok(sm.leases().get(id).is_some())).await?;
            if !exists || self.inner.config.lease_expiry_batch == 0 {
                return Err(Error::LeaseNotFound(id));
            }
            tokio::time::sleep(Duration::from_millis(5).min(left)).await;
        }
    }

    /// On the leader: the log index a linearizable read must wait for.
    pub(super) async fn leader_read_index(&self) -> Result<u64> {
        let (read_log_id, _) = self.inner.raft.get_read_log_id().await.map_err(leader_error)?;
        Ok(read_log_id.map_or(0, |id| id.index))
    }

    /// Confirms a read may proceed: linearizable reads are confirmed with
    /// the leader and wait for this member's apply to catch up;
    /// serializable reads need nothing.
    pub(super) async fn confirm_read(&self, consistency: Consistency, timeout: Duration) -> Result<()> {
        self.check_not_removed()?;
        if consistency == Consistency::Serializable {
            return Ok(());
        }
        let confirm = async {
            match self.leader() {
                // Shared with the other reads waiting now (read_index.rs).
                Some(leader) if leader == self.inner.member_id => {
                    self.inner.read_index.confirm_as_leader(timeout).await
                }
                Some(_) => {
                    self.inner.forwarded_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Shared with the other reads waiting now (read_index.rs).
                    let index = self.inner.read_index.read_index(timeout).await?;
                    self.inner
                        .raft
                        .wait(Some(timeout))
                        .applied_index_at_least(Some(index), "linearizable read on a follower")
                        .await
                        .map(|_| ())
                        .map_err(|_| Error::Timeout(timeout))
                }
                None => Err(Error::NotReady("no leader".into())),
            }
        };
        tokio::time::timeout(timeout, confirm).await.map_err(|_| Error::Timeout(timeout))?
    }
}
