//! The embedded API: a [`Concord`] handle and its views [`Kv`], [`Leases`]
//! and [`Txn`].
//!
//! Every write is a command proposed through Raft and acknowledged only
//! after its log entry is fsynced and applied; every read either confirms
//! leadership first (linearizable, the default) or reads this member's state
//! (serializable). Every call has a timeout. The same methods serve every
//! front end (one write path).

mod alarm;
mod auth;
mod backup;
mod defrag;
mod forwarder;
mod join;
pub(crate) mod kv;
mod lease;
mod membership;
mod open;
mod proposer;
mod read_index;
mod removal;
mod retention;
mod route;
mod status;
mod tasks;
mod transfer;
mod txn;
mod waiting;
mod watch_builder;

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::config::{Config, FsyncObserver, PeerListen, StorageFactory};
pub use auth::{TOKEN_TTL, TokenError};
pub use defrag::DefragmentReport;
pub use kv::{Delete, Get, History, Kv, Put, Range};
pub use lease::{Grant, Info, KeepAlive, LeaseGrant, LeaseInfo, LeaseKeepAlive, LeaseRevoke, Leases, List, Revoke};
pub use membership::Cluster;
pub use status::MemberStatus;
pub use txn::{NumberCompare, Txn, ValueCompare};
pub use watch_builder::WatchBuilder;

use crate::command::{Applied, ApplyError, Command};
use crate::error::{Error, Result};
use crate::lease::LeaseLimits;
use crate::replication::ConcordRaft;
use crate::replication::log_writer::LogWriter;
use crate::replication::state_store::Shared;
use crate::state_machine::StateMachine;
use crate::types::{KeyRange, Revision};

/// How long `shutdown` lets a background task stop on its own.
const TASK_STOP_GRACE: Duration = Duration::from_millis(500);

/// Keys visited per chunk of a long read (about 0.3 ms under the lock).
const READ_CHUNK_KEYS: usize = 2048;

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Confirms this member is the leader and has applied everything
    /// committed before the read started (etcd's default).
    #[default]
    Linearizable,
    /// Reads this member's state as it is: faster, possibly stale on a
    /// follower.
    Serializable,
}

/// A handle to an open member. Cheap to clone; all clones share the member.
#[derive(Clone)]
pub struct Concord {
    inner: Arc<Inner>,
}

struct Inner {
    raft: ConcordRaft,
    proposer: proposer::Proposer,
    forwarder: forwarder::Forwarder,
    shared: Arc<Shared>,
    config: Config,
    member_id: crate::cluster::MemberId,
    cluster_id: u64,
    read_index: read_index::ReadIndexRounds,
    network: crate::replication::network::PeerNetwork,
    /// Where received snapshots are written as they arrive.
    snapshots: crate::replication::snapshot_store::SnapshotStore,
    /// Held by the leader while it carries out a membership change.
    membership_lock: tokio::sync::Mutex<()>,
    /// Set once this member learns it was removed from the cluster.
    removed: watch::Sender<bool>,
    /// Stops the peer server, if this member runs one.
    stop_peer_server: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Requests this member handed to the leader (writes, read indexes).
    forwarded_writes: std::sync::atomic::AtomicU64,
    forwarded_reads: std::sync::atomic::AtomicU64,
    /// Set while this leader hands leadership over, and shortly after
    /// (`transfer.rs`): writes taken meanwhile keep a copy, so that one
    /// refused unproposed once leadership has moved goes on to the new
    /// leader.
    transferring: std::sync::atomic::AtomicBool,
    /// Transfers this member started (so that a later one keeps the flag).
    transfers: std::sync::atomic::AtomicU64,
    /// Times this member saw the leader change (counted by a task).
    leader_changes: Arc<std::sync::atomic::AtomicU64>,
    stop_tasks: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    writer: Mutex<Option<LogWriter>>,
    /// Bytes of the log holding data, and of its segment files (kept by
    /// the log writer).
    log_in_use: Arc<std::sync::atomic::AtomicU64>,
    log_segment_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop_tasks.send(true);
    }
}

impl Concord {
    /// Opens (or creates) a single member with its data in `data_dir`, with
    /// default settings.
    pub async fn open(data_dir: impl AsRef<std::path::Path>) -> Result<Concord> {
        Config::new(data_dir).open().await
    }

    /// A new cluster takes its lease limits from the settings of the member
    /// that creates it; afterwards they are part of the replicated state and
    /// change only through [`Concord::set_lease_limits`].
    pub(super) async fn set_initial_lease_limits(&self) -> Result<()> {
        let (in_state, in_force) = {
            let applier = self.inner.shared.applier.read();
            (applier.machine.state.lease_limits, *applier.machine.limits())
        };
        if in_state.is_none() {
            return self.set_lease_limits(self.inner.config.lease_limits).await;
        }
        if in_force != self.inner.config.lease_limits {
            tracing::warn!(
                ?in_force,
                configured = ?self.inner.config.lease_limits,
                "the cluster's lease limits differ from this member's settings; the cluster's apply \
                 (settings only choose the limits of a new cluster; use set_lease_limits to change them)"
            );
        }
        Ok(())
    }

    /// Changes the lease limits of the whole cluster (replicated, so every
    /// member enforces the same). Leases and keys already over a lowered
    /// limit stay; only new ones are refused.
    pub async fn set_lease_limits(&self, limits: LeaseLimits) -> Result<()> {
        if limits.max_leases == 0 || limits.max_keys_per_lease == 0 {
            return Err(Error::InvalidRequest("lease limits must be positive".into()));
        }
        self.execute(Command::SetLeaseLimits(limits), self.default_timeout()).await.map(|_| ())
    }

    /// The lease limits the cluster enforces (from the replicated state).
    pub fn lease_limits(&self) -> LeaseLimits {
        *self.inner.shared.applier.read().machine.limits()
    }

    /// Key-value operations.
    pub fn kv(&self) -> Kv {
        Kv::new(self.clone())
    }

    /// Lease operations.
    pub fn lease(&self) -> Leases {
        Leases::new(self.clone())
    }

    /// Watches the keys of `range`: `db.watch(range).from_revision(r).await`.
    pub fn watch(&self, range: KeyRange) -> WatchBuilder {
        WatchBuilder::new(self.clone(), range)
    }

    /// A transaction: `db.txn().when(..).and_then(..).or_else(..).await`.
    pub fn txn(&self) -> Txn {
        Txn::new(self.clone())
    }

    /// The revision this member has applied up to (a local, serializable read).
    pub fn revision(&self) -> Revision {
        self.inner.shared.applier.read().machine.kv().revision()
    }

    /// The configuration this member was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Stops the background tasks and Raft, then closes the data file once
    /// every pending write is durable. A leader first records its leases'
    /// remaining time and hands leadership to the voter with the most of
    /// the log (`transfer.rs`), so the cluster does not wait an election
    /// timeout for a new one. Other handles fail with
    /// [`Error::Shutdown`] afterwards.
    pub async fn shutdown(&self) -> Result<()> {
        if self.is_leader() {
            tasks::checkpoint_all_leases(&self.inner.raft, &self.inner.shared, self.default_timeout()).await;
            // As etcd does on a graceful stop, within about what an election
            // without it would cost (followers that are down or far behind
            // make it give up, and the stop goes on).
            self.hand_over_leadership((self.inner.config.election_timeout * 2).max(Duration::from_millis(500))).await;
        }
        let _ = self.inner.stop_tasks.send(true);
        let tasks: Vec<_> = self.inner.tasks.lock().drain(..).collect();
        for mut task in tasks {
            // A task waits on Raft at times (a leader confirming itself
            // with a quorum that is gone never hears back): it gets a
            // moment to see the stop, then is cancelled.
            if tokio::time::timeout(TASK_STOP_GRACE, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        self.inner.shared.hub.close();
        if let Some(stop) = self.inner.stop_peer_server.lock().take() {
            let _ = stop.send(());
        }
        self.inner.raft.shutdown().await.map_err(|e| Error::Storage(format!("raft did not stop cleanly: {e}")))?;
        self.inner.snapshots.close().await;
        // openraft's shutdown answers Ok even when its core had already
        // stopped on an error (a failed snapshot or vote write, say); the
        // metrics keep why it stopped.
        let core_failed = match &self.inner.raft.metrics().borrow().running_state {
            Ok(()) | Err(openraft::error::Fatal::Stopped) => None,
            Err(e) => Some(e.to_string()),
        };
        let writer = self.inner.writer.lock().take();
        if let Some(writer) = writer {
            let poisoned = writer.is_poisoned();
            tokio::task::spawn_blocking(move || writer.stop()).await.map_err(|e| Error::Storage(e.to_string()))?;
            if poisoned {
                return Err(Error::Storage("a write to the data file failed; see the log".into()));
            }
        }
        match core_failed {
            Some(e) => Err(Error::Storage(format!("Raft stopped on an error: {e}"))),
            None => Ok(()),
        }
    }

    fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.server_metrics();
        let m = metrics.borrow();
        m.current_leader == Some(self.inner.member_id) && m.state == ServerState::Leader
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn default_timeout(&self) -> Duration {
        self.inner.config.request_timeout
    }

    /// Proposes a command and waits until it is durable and applied: here
    /// if this member leads, else through the leader (`route.rs`).
    pub(crate) async fn write(&self, command: Command, timeout: Duration) -> Result<Applied> {
        self.check_not_removed()?;
        match tokio::time::timeout(timeout, self.route_write(command, timeout)).await {
            Err(_) => Err(Error::Timeout(timeout)),
            Ok(result) => result.map(|written| written.applied),
        }
    }

    /// Proposes a command and returns its reply, or its refusal as an error.
    pub(crate) async fn execute(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<(Revision, crate::command::Reply)> {
        if command.grows_store() {
            self.check_space_quota(&command, timeout).await?;
        }
        let applied = self.write(command, timeout).await?;
        applied.result.map(|reply| (applied.revision, reply)).map_err(Error::from)
    }

    /// A range read in chunks of [`READ_CHUNK_KEYS`] keys, each under the
    /// state's read lock and all at one revision: a read over millions of
    /// keys holds the lock for well under a millisecond at a time, so apply
    /// (and every other reader behind it) never waits for the whole read
    /// (measured: 1M keys held it ~140 ms, puts behind it waited as long).
    /// Fails with `Compacted` if a compaction passes the read's revision
    /// while it runs.
    pub(crate) async fn read_range(
        &self,
        req: crate::command::RangeRequest,
        consistency: Consistency,
        timeout: Duration,
        caller: Option<&crate::auth::Caller>,
    ) -> Result<crate::command::RangeResponse> {
        let read = async {
            self.confirm_read(consistency, timeout).await?;
            let (at, mut resp) = {
                let applier = self.inner.shared.applier.read();
                if let (Some(caller), Some(range)) = (caller, &req.range) {
                    applier.machine.state.auth.authorize(caller, range, crate::auth::Access::Read)?;
                }
                let kv = applier.machine.kv();
                let at = kv.read_revision(req.revision)?;
                (at, crate::command::RangeResponse { revision: kv.revision(), ..Default::default() })
            };
            let mut resume: Option<bytes::Bytes> = None;
            loop {
                {
                    let applier = self.inner.shared.applier.read();
                    let kv = applier.machine.kv();
                    if at < kv.compact_revision() {
                        return Err(Error::Compacted { compact_revision: kv.compact_revision() });
                    }
                    resume = kv.range_chunk(&req, at, resume.as_ref(), READ_CHUNK_KEYS, &mut resp);
                }
                if resume.is_none() {
                    return Ok(resp);
                }
                tokio::task::yield_now().await;
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Runs `read` on the state machine with the requested consistency.
    pub(crate) async fn read<T>(
        &self,
        consistency: Consistency,
        timeout: Duration,
        read: impl FnOnce(&StateMachine) -> std::result::Result<T, ApplyError>,
    ) -> Result<T> {
        self.confirm_read(consistency, timeout).await?;
        let applier = self.inner.shared.applier.read();
        read(&applier.machine).map_err(Error::from)
    }
}

fn write_error(e: RaftError<u64, ClientWriteError<u64, crate::cluster::Member>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader { leader: f.leader_id },
        // Appended, then removed by a newer leader: it may still be
        // committed by a leader holding it, so it is never proposed again.
        RaftError::APIError(ClientWriteError::EntryTruncated(_)) => Error::LeaderChanged,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Error::InvalidRequest(e.to_string()),
        RaftError::Fatal(openraft::error::Fatal::Stopped) => Error::Shutdown,
        RaftError::Fatal(f) => Error::Storage(f.to_string()),
    }
}

fn leader_error(e: RaftError<u64, openraft::error::CheckIsLeaderError<u64, crate::cluster::Member>>) -> Error {
    match e {
        RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f)) => {
            Error::NotLeader { leader: f.leader_id }
        }
        RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(q)) => Error::NotReady(q.to_string()),
        RaftError::Fatal(openraft::error::Fatal::Stopped) => Error::Shutdown,
        RaftError::Fatal(f) => Error::Storage(f.to_string()),
    }
}
