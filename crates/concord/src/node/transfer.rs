//! Leader transfer: etcd's MoveLeader, and the hand-over of a leader that
//! stops.
//!
//! openraft 0.9 has no leader transfer. Concord does what etcd's raft does,
//! with one vendored openraft patch (`Trigger::transfer_leader`,
//! `vendor/README.md`):
//!
//! 1. The log stops growing. The leader holds the proposer's in-flight
//!    slot, so its clients' writes wait behind the transfer, and Raft on the
//!    leader, told of its own transfer, refuses new entries from anywhere
//!    (lease expiry, member records) for one leader lease, as etcd's raft
//!    drops proposals then.
//! 2. The leader waits until the target holds its whole log (replication
//!    metrics): a target that lags would lose its election by the log check.
//! 3. It tells every other voter, then the target: each grants the target
//!    its vote for the next term although the leader's lease — which
//!    otherwise keeps any election out while a leader is alive — has not run
//!    out; the target campaigns at once. Voters that cannot be reached are
//!    skipped: a majority is enough.
//! 4. It waits until the target leads, or answers `LeaderTransferTimeout`
//!    (etcd's "leader transfer took too long").
//!
//! Writes are not lost to the hand-over: those the old leader held back are
//! refused unproposed and passed on to the new leader (`route.rs`), as are,
//! for a second after, writes followers forwarded before they learnt of the
//! change; followers told of the transfer wait for the old leader's answer
//! rather than give up when the leader changes (`forwarder.rs`).
//!
//! Safety rests on none of this: Raft's vote and log checks stand as they
//! are; the lease only keeps a live leader from being disturbed. Leases stay
//! exact across the hand-over: the new leader takes over lease expiry only
//! once it has applied an entry of its own term (`tasks.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::ServerState;
use tokio::time::Instant;

use super::Concord;
use crate::cluster::{Member, MemberId};
use crate::error::{Error, Result};

impl Concord {
    /// Moves leadership from this member, which must lead, to the voter
    /// `to` (etcd's MoveLeader), within `timeout` — and within four
    /// election timeouts (at least 1 s) whatever `timeout` says, since this
    /// member's writes wait meanwhile. Moving it to the leader itself
    /// succeeds at once.
    ///
    /// Errors: [`Error::NotLeader`] on any other member,
    /// [`Error::BadLeaderTransferee`] if `to` is not a voter,
    /// [`Error::LeaderTransferTimeout`] if `to` does not lead in time.
    pub async fn move_leader(&self, to: MemberId, timeout: Duration) -> Result<()> {
        self.check_not_removed()?;
        let me = self.inner.member_id;
        let (vote, voters) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            if m.current_leader != Some(me) || m.state != ServerState::Leader {
                return Err(Error::NotLeader { leader: m.current_leader });
            }
            let membership = m.membership_config.membership();
            let voters: BTreeMap<MemberId, Member> =
                membership.voter_ids().filter_map(|id| Some((id, membership.get_node(&id)?.clone()))).collect();
            (m.vote, voters)
        };
        if !voters.contains_key(&to) {
            return Err(Error::BadLeaderTransferee(to));
        }
        if to == me {
            return Ok(());
        }
        // Writes wait while leadership moves, so the wait is bounded by
        // about what an election would cost (etcd's raft gives a transfer
        // one election timeout), whatever the caller's timeout.
        let bound = (self.inner.config.election_timeout * 4).max(Duration::from_secs(1));
        let deadline = Instant::now() + timeout.min(bound);
        let too_long = || Error::LeaderTransferTimeout(to);
        tracing::info!(to = %format!("{to:x}"), "leadership transfer starting");
        let started = std::time::Instant::now();

        // 1. No new proposals while leadership moves: none from clients
        // here, none from anywhere in Raft (the leader refuses new entries
        // once told of its own transfer).
        let _transferring = Transferring::start(self);
        self.inner.network.note_handover(me);
        let paused = tokio::time::timeout_at(deadline, self.inner.proposer.pause()).await.map_err(|_| too_long())?;
        self.inner.raft.trigger().transfer_leader(vote, to).await.map_err(|e| Error::Storage(e.to_string()))?;

        // 2. The target must hold the whole log.
        let mut metrics = self.inner.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.vote != vote {
                    return if m.current_leader == Some(to) { Ok(()) } else { Err(Error::LeaderChanged) };
                }
                let last = m.last_log_index.unwrap_or(0);
                let matched = (m.replication.as_ref())
                    .and_then(|r| r.get(&to).cloned().flatten())
                    .map_or(0, |log_id| log_id.index);
                if matched >= last {
                    break;
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Shutdown),
                Err(_) => return Err(too_long()),
            }
        }

        // 3. Every other voter learns of the transfer, then the target, which
        // campaigns as soon as it is told.
        let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let others = voters.iter().filter(|(id, _)| **id != to && **id != me);
        let told = others.map(|(id, member)| async move {
            if let Err(e) = self.inner.network.transfer_leader(*id, member, vote, to, left()).await {
                tracing::warn!(member = %format!("{id:x}"), error = %e, "a voter was not told of the leader transfer");
            }
        });
        futures_util::future::join_all(told).await;
        self.inner.network.transfer_leader(to, &voters[&to], vote, to, left()).await?;

        // 4. Until the target leads.
        let led = tokio::time::timeout_at(deadline, metrics.wait_for(|m| m.current_leader == Some(to))).await;
        drop(paused);
        match led {
            Ok(Ok(_)) => {
                tracing::info!(to = %format!("{to:x}"), took = ?started.elapsed(), "leadership transfer finished");
                Ok(())
            }
            Ok(Err(_)) => Err(Error::Shutdown),
            Err(_) => {
                tracing::warn!(to = %format!("{to:x}"), "leadership transfer took too long");
                Err(too_long())
            }
        }
    }

    /// A leader's word that it hands leadership from its vote `from` to
    /// `to`: noted (this member's forwarded writes then wait for the old
    /// leader's answer rather than give up when the leader changes), then
    /// given to Raft, which grants `to` its vote despite the old leader's
    /// lease and, on `to`, campaigns.
    pub(super) async fn accept_leader_transfer(&self, from: openraft::Vote<MemberId>, to: MemberId) -> Result<()> {
        tracing::info!(from = %from, to = %format!("{to:x}"), "told of a leader transfer");
        if let Some(leader) = from.leader_id().voted_for() {
            self.inner.network.note_handover(leader);
        }
        self.inner.raft.trigger().transfer_leader(from, to).await.map_err(|e| Error::Storage(e.to_string()))
    }

    /// On a leader that stops: hands leadership to the voter with the most
    /// of the log (as etcd does on a graceful stop), so clients wait for
    /// one round trip instead of an election timeout. Best effort: a
    /// failure is logged and the stop goes on.
    pub(super) async fn hand_over_leadership(&self, timeout: Duration) {
        let me = self.inner.member_id;
        let target = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            if m.current_leader != Some(me) || m.state != ServerState::Leader {
                return;
            }
            let matched = |id: &MemberId| {
                (m.replication.as_ref()).and_then(|r| r.get(id).cloned().flatten()).map_or(0, |log_id| log_id.index)
            };
            let voters = m.membership_config.membership().voter_ids().filter(|id| *id != me);
            voters.max_by_key(|id| (matched(id), std::cmp::Reverse(*id)))
        };
        let Some(target) = target else { return };
        if let Err(e) = self.move_leader(target, timeout).await {
            tracing::warn!(to = %format!("{target:x}"), error = %e, "leadership was not handed over before stopping");
        }
    }
}

/// How long after a transfer the old leader still passes on writes it is
/// given to its successor: a follower's write forwarded just before it
/// learnt of the new leader arrives after the transfer has ended.
const PASS_ON_AFTER_TRANSFER: Duration = Duration::from_secs(1);

/// Marks a transfer under way, and for [`PASS_ON_AFTER_TRANSFER`] after it
/// ends (`route.rs`).
struct Transferring<'a>(&'a Concord, u64);

impl<'a> Transferring<'a> {
    fn start(db: &'a Concord) -> Self {
        let generation = db.inner.transfers.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        db.inner.transferring.store(true, std::sync::atomic::Ordering::Release);
        Transferring(db, generation)
    }
}

impl Drop for Transferring<'_> {
    fn drop(&mut self) {
        let (inner, generation) = (std::sync::Arc::downgrade(&self.0.inner), self.1);
        tokio::spawn(async move {
            tokio::time::sleep(PASS_ON_AFTER_TRANSFER).await;
            if let Some(inner) = inner.upgrade() {
                // Unless another transfer started meanwhile.
                if inner.transfers.load(std::sync::atomic::Ordering::Acquire) == generation {
                    inner.transferring.store(false, std::sync::atomic::Ordering::Release);
                }
            }
        });
    }
}
