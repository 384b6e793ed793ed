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
        self.admit(&command)?;
        match self.inner.proposer.propose(command, timeout).await {
            Err(Error::NotLeader { .. }) => Err(Error::NotReady("leader changed".into())),
            other => other,
        }
    }

    /// Leader-side checks before proposing.
    fn admit(&self, command: &Command) -> Result<()> {
        if let Command::LeaseKeepAlive { id, .. } = command {
            // A lease past its deadline is expired even if its expiry is not
            // committed yet: renewing it would resurrect it (etcd answers
            // "lease not found" too). The race left is one commit long.
            if self.inner.shared.deadlines.lock().is_past_deadline(*id, tokio::time::Instant::now()) {
                return Err(Error::LeaseNotFound(*id));
            }
        }
        Ok(())
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
        if consistency == Consistency::Serializable {
            return Ok(());
        }
        let confirm = async {
            match self.leader() {
                Some(leader) if leader == self.inner.member_id => {
                    self.inner.raft.ensure_linearizable().await.map(|_| ()).map_err(leader_error)
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
