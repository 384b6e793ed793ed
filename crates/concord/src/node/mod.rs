//! The embedded API: a [`Concord`] handle and its views [`Kv`], [`Leases`]
//! and [`Txn`].
//!
//! Every write is a command proposed through Raft and acknowledged only
//! after its log entry is fsynced and applied; every read either confirms
//! leadership first (linearizable, the default) or reads this member's state
//! (serializable). Every call has a timeout. The same methods serve every
//! front end (one write path).

mod config;
pub(crate) mod kv;
mod lease;
mod proposer;
mod status;
mod tasks;
mod txn;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, FsyncObserver, StorageFactory};
pub use kv::{Delete, Get, History, Kv, Put, Range};
pub use lease::{Grant, Info, KeepAlive, LeaseGrant, LeaseInfo, LeaseKeepAlive, LeaseRevoke, Leases, List, Revoke};
pub use status::MemberStatus;
pub use txn::{NumberCompare, Txn, ValueCompare};

use crate::command::{Applied, ApplyError, Command};
use crate::error::{Error, Result};
use crate::lease::LeaseLimits;
use crate::replication::ConcordRaft;
use crate::replication::log_store::LogStore;
use crate::replication::log_writer::LogWriter;
use crate::replication::network::SingleMemberNetwork;
use crate::replication::snapshot_store::SnapshotStore;
use crate::replication::state_store::{Shared, StateStore};
use crate::state_machine::StateMachine;
use crate::types::{KeyRange, Revision};

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
    shared: Arc<Shared>,
    config: Config,
    stop_tasks: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    writer: Mutex<Option<LogWriter>>,
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

    /// Opens (or creates) a member.
    pub async fn open_with(config: Config) -> Result<Concord> {
        let raft_config = Arc::new(config.raft_config()?);
        let created = crate::replication::files::create_data_dir(&config.data_dir).map_err(Error::Storage)?;
        let path = config.data_dir.join("concord.redb");
        // redb caches up to 1 GiB by default; the log is written far more
        // than read (memory holds what apply needs), so a small cache does.
        let db = crate::replication::files::open_database(&path, config.storage_cache_bytes, config.storage.as_ref())
            .map_err(Error::Storage)?;
        let stored_log = LogStore::load(&db).map_err(Error::Storage)?;
        let snapshots = SnapshotStore::open(&config.data_dir.join("snapshot.redb"), config.storage.as_ref())
            .map_err(Error::Storage)?;
        // The files' directory entries must be durable before anything
        // written in them is acknowledged.
        crate::replication::files::sync_dir(&config.data_dir).map_err(Error::Storage)?;
        if let Some(parent) = created {
            crate::replication::files::sync_dir(&parent).map_err(Error::Storage)?;
        }
        let db = Arc::new(db);
        // Only the writer thread writes the file; log reads share it.
        let writer =
            LogWriter::spawn(db.clone(), config.fsync_observer.clone()).map_err(|e| Error::Storage(e.to_string()))?;
        let (state_store, shared) = StateStore::load(snapshots).map_err(Error::Storage)?;
        let log = LogStore::new(
            stored_log,
            writer.sender(),
            db,
            shared.applied_index.clone(),
            shared.log_bytes_since_snapshot.clone(),
        );
        let last_index = log.last_index();

        let raft = ConcordRaft::new(config.node_id, raft_config, SingleMemberNetwork, log, state_store)
            .await
            .map_err(|e| Error::Storage(format!("raft failed to start: {e}")))?;
        let initialized = raft.is_initialized().await.map_err(|e| Error::Storage(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(config.node_id, BasicNode::default())]);
            raft.initialize(members).await.map_err(|e| Error::Storage(format!("cannot initialize: {e}")))?;
        }

        let (stop_tasks, stop_rx) = watch::channel(false);
        let node = Concord {
            inner: Arc::new(Inner {
                proposer: proposer::Proposer::spawn(raft.clone(), config.max_pending_proposals),
                raft,
                shared,
                config,
                stop_tasks,
                tasks: Mutex::new(Vec::new()),
                writer: Mutex::new(Some(writer)),
            }),
        };
        node.wait_ready(last_index).await?;
        node.set_initial_lease_limits().await?;
        let handles = tasks::spawn_all(&node, stop_rx);
        node.inner.tasks.lock().extend(handles);
        tracing::info!(data_dir = %node.inner.config.data_dir.display(), revision = node.revision(), "concord is ready");
        Ok(node)
    }

    /// Waits until this member leads and has applied the log it had on disk.
    async fn wait_ready(&self, last_index: Option<u64>) -> Result<()> {
        let timeout = self.inner.config.open_timeout;
        let id = self.inner.config.node_id;
        let wait = self.inner.raft.wait(Some(timeout));
        wait.state(ServerState::Leader, "open: become leader")
            .await
            .map_err(|e| Error::NotReady(format!("no leader elected: {e}")))?;
        if let Some(index) = last_index {
            self.inner
                .raft
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), "open: replay the log")
                .await
                .map_err(|e| Error::NotReady(format!("log replay did not finish: {e}")))?;
        }
        tracing::debug!(node = id, "member is leader and caught up");
        Ok(())
    }

    /// A new cluster takes its lease limits from the settings of the member
    /// that creates it; afterwards they are part of the replicated state and
    /// change only through [`Concord::set_lease_limits`].
    async fn set_initial_lease_limits(&self) -> Result<()> {
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
    pub fn watch(&self, range: KeyRange) -> crate::watch::WatchBuilder {
        crate::watch::WatchBuilder::new(self.clone(), range)
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
    /// every pending write is durable. Other handles fail with
    /// [`Error::Shutdown`] afterwards.
    pub async fn shutdown(&self) -> Result<()> {
        if self.is_leader() {
            tasks::checkpoint_all_leases(&self.inner.raft, &self.inner.shared, self.default_timeout()).await;
        }
        let _ = self.inner.stop_tasks.send(true);
        let tasks: Vec<_> = self.inner.tasks.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        self.inner.shared.hub.close();
        self.inner.raft.shutdown().await.map_err(|e| Error::Storage(format!("raft did not stop cleanly: {e}")))?;
        let writer = self.inner.writer.lock().take();
        if let Some(writer) = writer {
            let poisoned = writer.is_poisoned();
            tokio::task::spawn_blocking(move || writer.stop()).await.map_err(|e| Error::Storage(e.to_string()))?;
            if poisoned {
                return Err(Error::Storage("a write to the data file failed; see the log".into()));
            }
        }
        Ok(())
    }

    fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.current_leader == Some(self.inner.config.node_id) && m.state == ServerState::Leader
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn default_timeout(&self) -> Duration {
        self.inner.config.request_timeout
    }

    /// Proposes a command and waits until it is durable and applied.
    pub(crate) async fn write(&self, command: Command, timeout: Duration) -> Result<Applied> {
        match tokio::time::timeout(timeout, self.inner.proposer.propose(command, timeout)).await {
            Err(_) => Err(Error::Timeout(timeout)),
            Ok(result) => result,
        }
    }

    /// Proposes a command and returns its reply, or its refusal as an error.
    pub(crate) async fn execute(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<(Revision, crate::command::Reply)> {
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
    ) -> Result<crate::command::RangeResponse> {
        let read = async {
            self.confirm_read(consistency, timeout).await?;
            let (at, mut resp) = {
                let applier = self.inner.shared.applier.read();
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

    /// Confirms a linearizable read may proceed (leadership and apply caught
    /// up); serializable reads need nothing.
    async fn confirm_read(&self, consistency: Consistency, timeout: Duration) -> Result<()> {
        if consistency == Consistency::Linearizable {
            match tokio::time::timeout(timeout, self.inner.raft.ensure_linearizable()).await {
                Err(_) => return Err(Error::Timeout(timeout)),
                Ok(Err(e)) => return Err(leader_error(e)),
                Ok(Ok(_)) => {}
            }
        }
        Ok(())
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

fn write_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader { leader: f.leader_id },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Error::InvalidRequest(e.to_string()),
        RaftError::Fatal(openraft::error::Fatal::Stopped) => Error::Shutdown,
        RaftError::Fatal(f) => Error::Storage(f.to_string()),
    }
}

fn leader_error(e: RaftError<u64, openraft::error::CheckIsLeaderError<u64, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f)) => {
            Error::NotLeader { leader: f.leader_id }
        }
        RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(q)) => Error::NotReady(q.to_string()),
        RaftError::Fatal(openraft::error::Fatal::Stopped) => Error::Shutdown,
        RaftError::Fatal(f) => Error::Storage(f.to_string()),
    }
}
