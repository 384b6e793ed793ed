//! Any member serves any client: writes go to the leader, linearizable
//! reads confirm with it.
//!
//! - A write on the leader is proposed here (group commit). A write on a
//!   follower is handed to the leader over the peer protocol, once: the
//!   leader proposes it or refuses it, it never forwards it again. With no
//!   leader known the write fails at once with `NotReady` (etcd's "no
//!   leader", which clients retry).
//! - A linearizable read on the leader confirms leadership with a quorum
//!   (`ensure_linearizable`). On a follower it asks the leader for its read
//!   index (a fresh request each time) and waits until it has applied that
//!   far, then reads locally.
//! - Checks that need the leader's clock (a keep-alive past the lease's
//!   deadline) run where the command is proposed: on the leader, for
//!   forwarded commands too.

use std::time::Duration;

use super::{Concord, Consistency, leader_error};
use crate::command::{Applied, Command};
use crate::error::{Error, Result};

impl Concord {
    pub(super) async fn route_write(&self, command: Command, timeout: Duration) -> Result<Applied> {
        match self.leader() {
            Some(leader) if leader == self.inner.member_id => self.write_as_leader(command, timeout).await,
            Some(leader) => {
                self.inner.forwarded_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Answers "leader changed" at once if this member learns of
                // a new leader while the write is out (forwarder.rs).
                self.inner.forwarder.forward(leader, command, timeout).await
            }
            None => Err(Error::NotReady("no leader".into())),
        }
    }

    /// Proposes `command` on this member, which must lead (a forwarded write
    /// lands here and is never forwarded again).
    pub(super) async fn write_as_leader(&self, command: Command, timeout: Duration) -> Result<Applied> {
        if let Command::LeaseKeepAlive { id, .. } = command {
            match self.refuse_expired_renewal(id, timeout).await {
                Err(Error::NotLeader { .. }) => return Err(Error::NotReady("leader changed".into())),
                other => other?,
            }
        }
        match self.inner.proposer.propose(command, timeout).await {
            Err(Error::NotLeader { .. }) => Err(Error::NotReady("leader changed".into())),
            other => other,
        }
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
