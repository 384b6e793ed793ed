//! Background tasks of a running member (`spawn_all`): lease expiry and
//! lease checkpoints, snapshots by log size, publishing this member's
//! attributes, noticing its removal and promoting caught-up voters
//! (`removal.rs`), counting leader changes, and automatic compaction (by age
//! or by revisions, when configured). Most act only while this member leads.
//!
//! A task never changes state itself: it proposes a command through Raft,
//! after confirming this member still leads, and the state machine decides.
//! On a member that does not lead, the tasks wait. Each task stops when the
//! member shuts down (or its last handle is dropped).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Concord, Config};
use crate::command::Command;
use crate::replication::ConcordRaft;
use crate::replication::state_store::Shared;

/// Most checkpoints written by one command, and commands per round.
const CHECKPOINT_BATCH: usize = 1000;
const CHECKPOINT_BATCHES_PER_ROUND: usize = 16;
/// How old a lease's record must be to be checkpointed right after this
/// member starts leading (see [`checkpoint_leases`]).
const FIRST_CHECKPOINT_AGE: Duration = Duration::from_millis(250);
/// Pause after a failed proposal before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How often automatic compaction looks, and the fewest revisions it
/// compacts at once while writes keep coming.
const COMPACTION_PERIOD: Duration = Duration::from_millis(100);
const COMPACTION_MIN_STEP: i64 = 1000;
/// The expiry task re-checks at least this often, even with no deadline near.
const EXPIRY_MAX_SLEEP: Duration = Duration::from_secs(1);

/// What a task needs; deliberately not a `Concord`, so tasks do not keep the
/// member alive.
#[derive(Clone)]
struct TaskContext {
    raft: ConcordRaft,
    shared: Arc<Shared>,
    config: Config,
    member_id: u64,
    /// The last term in which this member, leading, extended every lease
    /// (`expire_leases`): checkpoints of a term wait for it.
    promoted: Arc<watch::Sender<u64>>,
}

pub(super) fn spawn_all(node: &Concord, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let ctx = TaskContext {
        raft: node.inner.raft.clone(),
        shared: node.inner.shared.clone(),
        config: node.inner.config.clone(),
        member_id: node.inner.member_id,
        promoted: Arc::new(watch::Sender::new(0)),
    };
    let mut tasks = vec![
        tokio::spawn(expire_leases(ctx.clone(), stop.clone())),
        tokio::spawn(checkpoint_leases(ctx.clone(), stop.clone())),
    ];
    tasks.push(tokio::spawn(snapshot_by_size(ctx.clone(), stop.clone())));
    tasks.push(tokio::spawn(publish_member(Arc::downgrade(&node.inner), stop.clone())));
    tasks.push(tokio::spawn(super::removal::watch_for_removal(Arc::downgrade(&node.inner), stop.clone())));
    tasks.push(tokio::spawn(super::removal::promote_caught_up_voters(Arc::downgrade(&node.inner), stop.clone())));
    tasks.push(tokio::spawn(count_leader_changes(ctx.clone(), node.inner.leader_changes.clone(), stop.clone())));
    if let Some(period) = ctx.config.auto_compaction_period {
        tasks.push(tokio::spawn(compact_by_age(ctx.clone(), period, stop.clone())));
    }
    if let Some(retention) = ctx.config.auto_compaction_retention {
        tasks.push(tokio::spawn(compact_history(ctx, retention, stop)));
    }
    tasks
}

impl TaskContext {
    fn is_leader(&self) -> bool {
        let metrics = self.raft.server_metrics();
        let m = metrics.borrow();
        m.current_leader == Some(self.member_id) && m.state == openraft::ServerState::Leader
    }

    /// Waits until this member leads. Returns false if asked to stop.
    async fn until_leader(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let mut metrics = self.raft.server_metrics();
        loop {
            if *stop.borrow() {
                return false;
            }
            if self.is_leader() {
                return true;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return false },
                _ = stop.changed() => return false,
            }
        }
    }

    /// Waits until this member's promotion in `term` is done (every lease
    /// extended); false if it stops leading in that term first (or is
    /// asked to stop).
    async fn until_promoted(&self, term: u64, stop: &mut watch::Receiver<bool>) -> bool {
        let mut promoted = self.promoted.subscribe();
        let mut metrics = self.raft.server_metrics();
        loop {
            if *promoted.borrow_and_update() >= term {
                return true;
            }
            if *stop.borrow() || !self.is_leader() || metrics.borrow().vote.leader_id().get_term() != term {
                return false;
            }
            tokio::select! {
                changed = promoted.changed() => if changed.is_err() { return false },
                changed = metrics.changed() => if changed.is_err() { return false },
                _ = stop.changed() => return false,
            }
        }
    }

    /// Proposes `command` after confirming leadership. Logs and pauses on failure.
    async fn propose(&self, command: Command, what: &str) -> bool {
        match propose_as_leader(&self.raft, command, self.config.request_timeout).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "{what} was not committed; will retry");
                tokio::time::sleep(RETRY_PAUSE).await;
                false
            }
        }
    }
}

/// Confirms this member leads, then proposes `command`, within `timeout`.
async fn propose_as_leader(raft: &ConcordRaft, command: Command, timeout: Duration) -> Result<(), String> {
    let proposal = async {
        raft.ensure_linearizable().await.map_err(|e| e.to_string())?;
        raft.client_write(command).await.map(|_| ()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, proposal).await.map_err(|_| format!("timed out after {timeout:?}"))?
}

/// Proposes the expiry of leases whose deadline has passed, in batches.
///
/// On becoming leader it first confirms leadership in its own term
/// (`ensure_linearizable`: everything the old leader committed is applied
/// here), then extends every deadline to at least two election timeouts
/// from now — leases kept alive through the old leader get time to be kept
/// alive here — and, for a new cluster, proposes its lease limits. Only then
/// does it expire anything.
async fn expire_leases(ctx: TaskContext, mut stop: watch::Receiver<bool>) {
    // The term this member was promoted in: leadership lost and regained
    // within one sleep is a new term, and is promoted again.
    let mut promoted_in: Option<u64> = None;
    loop {
        if !ctx.until_leader(&mut stop).await {
            return;
        }
        let term = ctx.raft.server_metrics().borrow().vote.leader_id().get_term();
        if promoted_in != Some(term) {
            // Not confirmed without a quorum, which may be gone for good:
            // the stop must not wait for it.
            let confirmed = tokio::select! {
                confirmed = ctx.raft.ensure_linearizable() => confirmed,
                _ = stop.changed() => return,
            };
            if let Err(e) = confirmed {
                tracing::debug!(error = %e, "leadership not confirmed yet");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            let grace = ctx.config.election_timeout * 2;
            ctx.shared.deadlines.lock().extend_all(Instant::now(), grace);
            promoted_in = Some(term);
            ctx.promoted.send_replace(term);
            let unset = ctx.shared.applier.read().machine.state.lease_limits.is_none();
            if unset {
                ctx.propose(Command::SetLeaseLimits(ctx.config.lease_limits), "initial lease limits").await;
            }
        }
        let now = Instant::now();
        let wake =
            ctx.shared.deadlines.lock().next_deadline().unwrap_or(now + EXPIRY_MAX_SLEEP).min(now + EXPIRY_MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = ctx.shared.deadline_moved.notified() => continue,
            _ = stop.changed() => return,
        }
        if !ctx.is_leader() || ctx.raft.server_metrics().borrow().vote.leader_id().get_term() != term {
            continue;
        }
        let expired = ctx.shared.deadlines.lock().expired(Instant::now(), ctx.config.lease_expiry_batch);
        if !expired.is_empty() {
            let count = expired.len();
            if ctx.propose(Command::LeaseExpire { leases: expired, term }, "lease expiry").await {
                tracing::debug!(count, "leases expired");
            }
        }
    }
}

/// Writes the remaining time of running leases to the log, so a restart
/// resumes them from a recent measurement.
///
/// A record is due once it is `lease_checkpoint_interval` old, except right
/// after this member starts leading: then the age at which a record is due
/// starts at [`FIRST_CHECKPOINT_AGE`] and grows with half the time spent
/// leading, up to the interval. A member that restarts (or loses leadership)
/// over and over thus still records at least half of each term's time on
/// every lease, short leases included, so a lease nobody keeps alive runs
/// out whatever the restart rhythm; in a steady state each lease costs one
/// record per interval. Records are served oldest first, in batches.
async fn checkpoint_leases(ctx: TaskContext, mut stop: watch::Receiver<bool>) {
    let interval = ctx.config.lease_checkpoint_interval.max(Duration::from_millis(10));
    loop {
        if !ctx.until_leader(&mut stop).await {
            return;
        }
        let term = ctx.raft.server_metrics().borrow().vote.leader_id().get_term();
        // Not before this term's extension of every lease: a measurement
        // taken before it and applied after would cut the grace back (the
        // tracker keeps the earlier of a checkpoint and its own deadline).
        if !ctx.until_promoted(term, &mut stop).await {
            continue;
        }
        let leading_since = Instant::now();
        while ctx.is_leader() && ctx.raft.server_metrics().borrow().vote.leader_id().get_term() == term {
            let age = (leading_since.elapsed() / 2).clamp(FIRST_CHECKPOINT_AGE.min(interval), interval);
            tokio::select! {
                _ = tokio::time::sleep((age / 4).max(Duration::from_millis(10))) => {}
                _ = stop.changed() => return,
            }
            for _ in 0..CHECKPOINT_BATCHES_PER_ROUND {
                let due = ctx.shared.deadlines.lock().due_checkpoints(Instant::now(), age, CHECKPOINT_BATCH);
                if due.is_empty()
                    || !ctx.propose(Command::LeaseCheckpoint { checkpoints: due, term }, "lease checkpoint").await
                {
                    break;
                }
            }
        }
    }
}

/// Records every running lease's remaining time (a clean shutdown), so a
/// restart resumes each lease where it was. Only a leader proposes.
pub(super) async fn checkpoint_all_leases(raft: &ConcordRaft, shared: &Shared, timeout: Duration) {
    let all = shared.deadlines.lock().all_checkpoints(Instant::now());
    let term = raft.server_metrics().borrow().vote.leader_id().get_term();
    for chunk in all.chunks(CHECKPOINT_BATCH) {
        let command = Command::LeaseCheckpoint { checkpoints: chunk.to_vec(), term };
        if let Err(e) = propose_as_leader(raft, command, timeout).await {
            return tracing::warn!(error = %e, "final lease checkpoint not written");
        }
    }
    if !all.is_empty() {
        tracing::debug!(leases = all.len(), "remaining lease time recorded before shutdown");
    }
}

/// Keeps the last `retention` revisions of history.
async fn compact_history(ctx: TaskContext, retention: u64, mut stop: watch::Receiver<bool>) {
    let mut last_seen = 0;
    loop {
        if !ctx.until_leader(&mut stop).await {
            return;
        }
        // Often and in small steps: a compaction runs under the state
        // machine's write lock, so one big step every second (25k revisions
        // at 25k puts/s) showed up as 30-45 ms write latency spikes.
        tokio::select! {
            _ = tokio::time::sleep(COMPACTION_PERIOD) => {}
            _ = stop.changed() => return,
        }
        let (revision, compacted) = {
            let applier = ctx.shared.applier.read();
            (applier.machine.kv().revision(), applier.machine.kv().compact_revision())
        };
        let target = revision - retention as i64;
        // Small steps are left to pile up while writes continue; once the
        // store is idle, whatever is due is compacted.
        let idle = revision == last_seen;
        last_seen = revision;
        if target > compacted && (target - compacted >= COMPACTION_MIN_STEP || idle) {
            ctx.propose(Command::Compact { revision: target }, "automatic compaction").await;
        }
    }
}

/// etcd's periodic auto-compaction: keeps the history of the last
/// `period` (`retention.rs`), on the leader.
async fn compact_by_age(ctx: TaskContext, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut window = super::retention::AgeWindow::new(period);
    loop {
        if !ctx.is_leader() {
            window.reset();
            if !ctx.until_leader(&mut stop).await {
                return;
            }
        }
        let (revision, compacted) = {
            let applier = ctx.shared.applier.read();
            (applier.machine.kv().revision(), applier.machine.kv().compact_revision())
        };
        if let Some(target) = window.observe(Instant::now(), revision)
            && target > compacted
        {
            ctx.propose(Command::Compact { revision: target }, "periodic compaction").await;
        }
        tokio::select! {
            _ = tokio::time::sleep(window.interval()) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Asks openraft for a snapshot once the log since the last one exceeds
/// `snapshot_after_bytes` (its own policy counts entries only). Every member
/// snapshots its own log, leader or not.
async fn snapshot_by_size(ctx: TaskContext, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
        let bytes = ctx.shared.log_bytes_since_snapshot.load(std::sync::atomic::Ordering::Relaxed);
        if bytes > ctx.config.snapshot_after_bytes {
            tracing::debug!(bytes, "log size reached the snapshot threshold");
            // Reset now so a slow snapshot is not asked for twice.
            ctx.shared.log_bytes_since_snapshot.store(0, std::sync::atomic::Ordering::Relaxed);
            if ctx.raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    }
}

/// Publishes this member's name and client URLs through the log (for
/// MemberList on every member) whenever the replicated record differs, on
/// any member, leader or not: the write goes to the leader.
async fn publish_member(inner: std::sync::Weak<super::Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        // A weak handle: this task must not keep a dropped member alive.
        let Some(node) = inner.upgrade().map(|inner| Concord { inner }) else { return };
        let attributes = crate::cluster::MemberAttributes {
            name: node.inner.config.name.clone(),
            client_urls: node.inner.config.advertise_client_urls.clone(),
        };
        let id = node.inner.member_id;
        let published = node.inner.shared.applier.read().machine.state.member_attributes.get(&id).cloned();
        let pause = if published.as_ref() == Some(&attributes) {
            Duration::from_secs(5)
        } else {
            let command = Command::PublishMember { id, attributes };
            match node.write(command, node.default_timeout()).await {
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "member attributes not published yet; will retry");
                    Duration::from_millis(500)
                }
            }
        };
        drop(node);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Counts the times this member sees the leader change (for /metrics).
async fn count_leader_changes(
    ctx: TaskContext,
    changes: Arc<std::sync::atomic::AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut metrics = ctx.raft.server_metrics();
    let mut last = metrics.borrow().current_leader;
    loop {
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        let now = metrics.borrow().current_leader;
        if now.is_some() && now != last {
            changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if now.is_some() {
            last = now;
        }
    }
}
