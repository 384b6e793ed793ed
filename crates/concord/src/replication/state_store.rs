//! openraft's state machine: the in-memory [`StateMachine`] behind a lock,
//! snapshots of it persisted in the data file, and the lease deadline tracker
//! fed from what apply reports.
//!
//! The state machine is rebuilt on start from the last snapshot plus the log
//! after it, so apply never writes to disk; the log is the durable record.
//! A snapshot is written before openraft purges the log it covers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::TypeConfig;
use super::log_store::{decode, encode};
use super::snapshot_store::{SnapshotData, SnapshotStore};
use crate::cluster::Member;
use crate::command::{Applied, Command, LeaseEffect, Reply};
use crate::lease::deadlines::LeaseDeadlines;
use crate::lease::ttl_ms;
use crate::state_machine::{State, StateMachine};
use crate::watch::hub::WatchHub;

type NodeId = u64;

/// The state machine as openraft sees it: the data plus the log position.
pub struct Applier {
    pub machine: StateMachine,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Member>,
}

/// What readers and the leader's tasks share with apply.
pub struct Shared {
    pub applier: RwLock<Applier>,
    pub deadlines: Mutex<LeaseDeadlines>,
    /// Signalled when a lease deadline moved earlier than the earliest one.
    pub deadline_moved: Notify,
    /// Receives every applied change, for watchers.
    pub hub: WatchHub,
    /// Highest applied log index (the log store drops older entries from memory).
    pub applied_index: Arc<AtomicU64>,
    /// Log bytes appended since the last snapshot (a task triggers snapshots).
    pub log_bytes_since_snapshot: Arc<AtomicU64>,
    /// Whether auth is enabled, and what the state counts for in the space
    /// quota, as of the last apply: read before every request without the
    /// state's lock (which apply may hold).
    pub auth_enabled: std::sync::atomic::AtomicBool,
    /// The auth store's revision as of the last apply.
    pub auth_revision: AtomicU64,
    pub space_used: AtomicU64,
    /// The auth tokens this member issued: apply drops those an auth
    /// change ends (`crate::auth::tokens`).
    pub tokens: crate::auth::tokens::Tokens,
}

impl Shared {
    /// Publishes what requests read without the lock.
    fn publish_summary(&self, state: &State) {
        self.auth_revision.store(state.auth.revision, Ordering::Release);
        self.auth_enabled.store(state.auth.enabled, Ordering::Release);
        self.space_used.store(state.quota_bytes(), Ordering::Release);
    }
}

impl Shared {
    /// Resets the deadline tracker from the lease table (after a restart or a
    /// snapshot install): every lease resumes from its recorded remaining time.
    fn reset_deadlines(&self, state: &State, now: Instant) {
        let mut deadlines = self.deadlines.lock();
        deadlines.clear();
        for lease in state.leases.iter() {
            deadlines.observe(
                &LeaseEffect::Deadline {
                    id: lease.id,
                    generation: lease.generation,
                    remaining_ms: lease.remaining_ms.min(ttl_ms(lease.ttl_secs)),
                    checkpoint: false,
                },
                now,
            );
        }
        self.deadline_moved.notify_one();
    }
}

/// The openraft state-machine handle.
pub struct StateStore {
    shared: Arc<Shared>,
    snapshots: SnapshotStore,
}

fn sm_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl StateStore {
    /// Restores the state machine from the stored snapshot, if any.
    pub(crate) fn load(snapshots: SnapshotStore) -> Result<(Self, Arc<Shared>), String> {
        let mut applier =
            Applier { machine: StateMachine::default(), last_applied: None, membership: StoredMembership::default() };
        if let Some((meta, data)) = snapshots.current()? {
            let meta: SnapshotMeta<NodeId, Member> = decode(&meta)?;
            applier.machine = StateMachine::with_state(State::decode_snapshot_from(|| data.reader())?);
            applier.last_applied = meta.last_log_id;
            applier.membership = meta.last_membership;
        }
        let shared = Arc::new(Shared {
            applier: RwLock::new(applier),
            deadlines: Mutex::new(LeaseDeadlines::default()),
            deadline_moved: Notify::new(),
            hub: WatchHub::default(),
            applied_index: Arc::new(AtomicU64::new(0)),
            log_bytes_since_snapshot: Arc::new(AtomicU64::new(0)),
            auth_enabled: Default::default(),
            auth_revision: AtomicU64::new(0),
            space_used: AtomicU64::new(0),
            tokens: Default::default(),
        });
        shared.reset_deadlines(&shared.applier.read().machine.state, Instant::now());
        shared.publish_summary(&shared.applier.read().machine.state);
        Ok((StateStore { shared: shared.clone(), snapshots }, shared))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateStore {
    /// Apply waits only while the state is copied (keys and values are
    /// shared, not copied); it is encoded into the store from the copy.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        self.shared.log_bytes_since_snapshot.store(0, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let (meta, state) = {
            let applier = self.shared.applier.read();
            let snapshot_id = match applier.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, applier.machine.kv().revision()),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: applier.last_applied,
                last_membership: applier.membership.clone(),
                snapshot_id,
            };
            (meta, applier.machine.state.clone())
        };
        let locked = started.elapsed();
        let last_index = meta.last_log_id.map(|id| id.index);
        let built = self
            .snapshots
            .build(last_index, encode(&meta).to_vec(), move |out| state.encode_snapshot_to(out))
            .await
            .map_err(sm_err)?;
        let Some(data) = built else {
            // A newer snapshot was installed while this one was built.
            tracing::debug!(last = ?meta.last_log_id, "a newer snapshot is stored; the built one is dropped");
            return match self.get_current_snapshot().await? {
                Some(newer) => Ok(newer),
                None => Err(sm_err("the newer snapshot is gone")),
            };
        };
        tracing::debug!(last = ?meta.last_log_id, bytes = data.len(), ?locked, total = ?started.elapsed(), "snapshot written");
        Ok(Snapshot { meta, snapshot: Box::new(data) })
    }
}

impl RaftStateMachine<TypeConfig> for StateStore {
    type SnapshotBuilder = StateStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>> {
        let applier = self.shared.applier.read();
        Ok((applier.last_applied, applier.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut effects = Vec::new();
        let mut replies = Vec::new();
        let mut auth_changes = Vec::new();
        let capture = self.shared.hub.wants_events();
        let (captured, revision) = {
            let mut applier = self.shared.applier.write();
            applier.machine.state.kv.set_capture(capture);
            for entry in entries {
                applier.last_applied = Some(entry.log_id);
                let applied = match entry.payload {
                    // An expiry measured in another term than its entry's
                    // is ignored. Entries keep the term of the leader that
                    // appended them, so this only catches a member whose
                    // task measured in one of its terms and proposed in a
                    // later one (before that term's extension of every
                    // lease). A deposed leader's expiry that another leader
                    // commits is stopped elsewhere: the generation check
                    // (a renewal since makes it a no-op) and log order (it
                    // applies before the new leader's promotion and
                    // renewals) — docs/design.md, "Leases across leader
                    // changes".
                    EntryPayload::Normal(Command::LeaseExpire { term, .. }) if term != entry.log_id.leader_id.term => {
                        Applied {
                            revision: applier.machine.kv().revision(),
                            result: Ok(Reply::LeasesExpired { expired: 0 }),
                        }
                    }
                    // Likewise a checkpoint (it would cut back that term's
                    // extension).
                    EntryPayload::Normal(Command::LeaseCheckpoint { term, .. })
                        if term != entry.log_id.leader_id.term =>
                    {
                        Applied { revision: applier.machine.kv().revision(), result: Ok(Reply::Checkpointed) }
                    }
                    EntryPayload::Normal(command) => {
                        let auth_revision = applier.machine.state.auth.revision;
                        let applied = applier.machine.apply(&command, &mut effects);
                        if let Command::Auth(change) = command.unwrapped()
                            && applier.machine.state.auth.revision != auth_revision
                        {
                            auth_changes.push(change.clone());
                        }
                        applied
                    }
                    EntryPayload::Blank => {
                        Applied { revision: applier.machine.kv().revision(), result: Ok(Reply::None) }
                    }
                    EntryPayload::Membership(membership) => {
                        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
                        applier
                            .machine
                            .state
                            .pending_voters
                            .retain(|id| !voters.contains(id) && membership.get_node(id).is_some());
                        applier.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Applied { revision: applier.machine.kv().revision(), result: Ok(Reply::None) }
                    }
                };
                replies.push(applied);
            }
            if let Some(applied) = applier.last_applied {
                self.shared.applied_index.store(applied.index, Ordering::Release);
            }
            self.shared.publish_summary(&applier.machine.state);
            let captured = applier.machine.state.kv.take_captured();
            (captured, applier.machine.kv().revision())
        };
        // After the change is visible (so `authenticate` cannot issue a
        // token past it), drop the tokens it ends.
        for change in &auth_changes {
            self.shared.tokens.invalidate(change);
        }
        // Outside the lock: watchers catching up may read the new state
        // first; the hub's revision bookkeeping makes that harmless.
        self.shared.hub.publish(captured, revision);
        if !effects.is_empty() {
            let now = Instant::now();
            let mut deadlines = self.shared.deadlines.lock();
            let mut moved = false;
            for effect in &effects {
                moved |= deadlines.observe(effect, now);
            }
            if moved {
                self.shared.deadline_moved.notify_one();
            }
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateStore { shared: self.shared.clone(), snapshots: self.snapshots.clone() }
    }

    /// Only openraft's chunked snapshot protocol asks for this; Concord
    /// receives snapshots through its own stream (`network::server`).
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        Err(sm_err("snapshots are received whole, through the peer snapshot stream"))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let installed = self.install_received(meta, snapshot).await;
        if installed.is_err() {
            // openraft purges the log it covers without waiting for this;
            // the purge waits for the snapshot to be durable (`Coverage`).
            self.snapshots.coverage().note_failed_install();
        }
        installed
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some((meta, data)) = self.snapshots.current_async().await.map_err(sm_err)? else {
            return Ok(None);
        };
        let meta: SnapshotMeta<NodeId, Member> = decode(&meta).map_err(sm_err)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(data) }))
    }
}

impl StateStore {
    /// Makes a received snapshot the state machine's and the current one.
    async fn install_received(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        // Decoding a large snapshot takes seconds: off the async threads.
        let (state, data) =
            tokio::task::spawn_blocking(move || (State::decode_snapshot_from(|| snapshot.reader()), snapshot))
                .await
                .map_err(sm_err)?;
        let state = state.map_err(sm_err)?;
        tracing::info!(
            last = ?meta.last_log_id,
            bytes = data.len(),
            revision = state.kv.revision(),
            "snapshot received: {} keys, {} leases",
            state.kv.live_keys(),
            state.leases.len()
        );
        let last_index = meta.last_log_id.map(|id| id.index);
        if !self.snapshots.install(&data, last_index, encode(meta).to_vec()).await.map_err(sm_err)? {
            tracing::warn!(last = ?meta.last_log_id, "a newer snapshot is already stored; the received one is dropped");
        }
        let mut applier = self.shared.applier.write();
        applier.machine = StateMachine::with_state(state);
        applier.last_applied = meta.last_log_id;
        applier.membership = meta.last_membership.clone();
        if let Some(last) = meta.last_log_id {
            self.shared.applied_index.store(last.index, Ordering::Release);
        }
        self.shared.reset_deadlines(&applier.machine.state, Instant::now());
        self.shared.publish_summary(&applier.machine.state);
        let revision = applier.machine.kv().revision();
        drop(applier);
        self.shared.tokens.invalidate_all();
        // Live watchers cannot know what the snapshot changed: they catch up.
        self.shared.hub.publish(None, revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::command::{LeaseChoice, PutRequest};

    fn entry(term: u64, index: u64, command: Command) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Normal(command) }
    }

    /// A measurement taken in one term that reaches the log in a later term
    /// (a task that raced a leader change on the member that proposes it)
    /// is ignored: it predates that term's extension of every lease.
    #[tokio::test]
    async fn an_expiry_or_checkpoint_from_another_term_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotStore::open(&dir.path().join("snapshot.redb"), None).unwrap();
        let (mut store, shared) = StateStore::load(snapshots).unwrap();
        let put = PutRequest {
            key: bytes::Bytes::from_static(b"k"),
            value: Some(bytes::Bytes::from_static(b"v")),
            lease: LeaseChoice::Lease(7),
            prev_kv: false,
        };
        store
            .apply([entry(2, 1, Command::LeaseGrant { id: Some(7), ttl_secs: 10 }), entry(2, 2, Command::Put(put))])
            .await
            .unwrap();
        let generation = shared.applier.read().machine.leases().get(7).unwrap().generation;
        let stale = Command::LeaseExpire { leases: vec![(7, generation)], term: 1 };
        let replies = store.apply([entry(2, 3, stale)]).await.unwrap();
        assert_eq!(replies[0].result, Ok(Reply::LeasesExpired { expired: 0 }));
        assert!(shared.applier.read().machine.leases().get(7).is_some(), "an old term's expiry revoked the lease");
        let stale = Command::LeaseCheckpoint {
            checkpoints: vec![crate::command::LeaseCheckpoint { id: 7, generation, remaining_ms: 1 }],
            term: 1,
        };
        store.apply([entry(2, 4, stale)]).await.unwrap();
        assert_eq!(
            shared.applier.read().machine.leases().get(7).unwrap().remaining_ms,
            10_000,
            "an old term's checkpoint applied"
        );
        let current = Command::LeaseExpire { leases: vec![(7, generation)], term: 2 };
        let replies = store.apply([entry(2, 5, current)]).await.unwrap();
        assert_eq!(replies[0].result, Ok(Reply::LeasesExpired { expired: 1 }));
    }

    /// A deposed leader's expiry, measured at generation `g` and committed
    /// (by whichever leader) after a renewal was applied, is a no-op: the
    /// generation check, not the term, is what stops it (its entry and its
    /// measurement share the deposed leader's term).
    #[tokio::test]
    async fn a_deposed_leaders_expiry_after_a_renewal_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotStore::open(&dir.path().join("snapshot.redb"), None).unwrap();
        let (mut store, shared) = StateStore::load(snapshots).unwrap();
        store.apply([entry(1, 1, Command::LeaseGrant { id: Some(7), ttl_secs: 10 })]).await.unwrap();
        let measured = shared.applier.read().machine.leases().get(7).unwrap().generation;
        let renewal = Command::LeaseKeepAlive { id: 7, ttl_secs: None };
        let stale = Command::LeaseExpire { leases: vec![(7, measured)], term: 1 };
        let replies = store.apply([entry(1, 2, renewal), entry(1, 3, stale)]).await.unwrap();
        assert_eq!(replies[1].result, Ok(Reply::LeasesExpired { expired: 0 }));
        assert!(shared.applier.read().machine.leases().get(7).is_some(), "a renewed lease was expired");
        // Measured at the renewal's generation, it expires.
        let generation = shared.applier.read().machine.leases().get(7).unwrap().generation;
        assert_ne!(generation, measured, "a renewal moves the generation");
        let current = Command::LeaseExpire { leases: vec![(7, generation)], term: 2 };
        let replies = store.apply([entry(2, 4, current)]).await.unwrap();
        assert_eq!(replies[0].result, Ok(Reply::LeasesExpired { expired: 1 }));
    }
}
