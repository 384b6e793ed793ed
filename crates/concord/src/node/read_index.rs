//! Linearizable reads share read-index rounds.
//!
//! A linearizable read needs the leader's read index obtained *after* the
//! read started. Reads waiting at the same moment share one round: a task
//! takes every read queued now, asks once, and answers them all; reads that
//! arrive while a round is out wait for the next one (the round in flight
//! may have started before them). On a follower a round is one request to
//! the leader; on the leader one confirmation of its leadership by a quorum
//! (`ensure_linearizable`: a heartbeat round in a cluster), which also
//! waits for this member's apply to reach the index.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::cluster::Member;
use crate::error::{Error, Result};
use crate::replication::ConcordRaft;
use crate::replication::network::PeerNetwork;

/// Most reads answered by one round (the rest wait for the next).
const MAX_ROUND: usize = 4096;

type Waiter = oneshot::Sender<Result<u64>>;
type LeaderWaiter = oneshot::Sender<Result<()>>;

/// Handle for asking the leader's read index; cheap to clone.
#[derive(Clone)]
pub(super) struct ReadIndexRounds {
    tx: mpsc::UnboundedSender<(Waiter, Duration)>,
    leader_tx: mpsc::UnboundedSender<(LeaderWaiter, Duration)>,
    rounds: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ReadIndexRounds {
    /// Starts the tasks; they end when every handle is dropped.
    pub fn spawn(raft: ConcordRaft, network: PeerNetwork) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (leader_tx, leader_rx) = mpsc::unbounded_channel();
        let rounds = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(run_leader(raft.clone(), leader_rx));
        tokio::spawn(run(raft, network, rx, rounds.clone()));
        ReadIndexRounds { tx, leader_tx, rounds }
    }

    /// On the leader: returns once a confirmation of its leadership that
    /// started after this call succeeded and this member applied up to the
    /// index it read.
    pub async fn confirm_as_leader(&self, timeout: Duration) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.leader_tx.send((reply, timeout)).map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)?
    }

    /// Rounds asked of the leader so far.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The leader's read index, from a round that started after this call.
    pub async fn read_index(&self, timeout: Duration) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((reply, timeout)).map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)?
    }
}

fn leader_member(raft: &ConcordRaft) -> Option<(u64, Member)> {
    let leader = raft.server_metrics().borrow().current_leader?;
    Some((leader, member_record(raft, leader)?))
}

/// The peer record of member `id` in this member's membership.
pub(super) fn member_record(raft: &ConcordRaft, id: u64) -> Option<Member> {
    raft.server_metrics().borrow().membership_config.membership().get_node(&id).cloned()
}

async fn run(
    raft: ConcordRaft,
    network: PeerNetwork,
    mut rx: mpsc::UnboundedReceiver<(Waiter, Duration)>,
    rounds: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(round) = next_round(&mut rx).await {
        if round.is_empty() {
            continue;
        }
        rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timeout = round.iter().map(|(_, t)| *t).max().unwrap_or(Duration::from_secs(5));
        let result = match leader_member(&raft) {
            Some((leader, member)) => {
                let ask = network.read_index(leader, &member, timeout);
                let changed = leader_changes_from(&raft, leader);
                tokio::select! {
                    index = ask => index,
                    () = changed => Err(Error::LeaderChanged),
                }
            }
            None => Err(Error::NotReady("no leader".into())),
        };
        for (waiter, _) in round {
            let _ = waiter.send(result.clone());
        }
    }
}

/// The leader's rounds: one `ensure_linearizable` for every read waiting.
async fn run_leader(raft: ConcordRaft, mut rx: mpsc::UnboundedReceiver<(LeaderWaiter, Duration)>) {
    while let Some(round) = next_round(&mut rx).await {
        if round.is_empty() {
            continue;
        }
        let timeout = round.iter().map(|(_, t)| *t).max().unwrap_or(Duration::from_secs(5));
        let result = match tokio::time::timeout(timeout, raft.ensure_linearizable()).await {
            Ok(confirmed) => confirmed.map(|_| ()).map_err(super::leader_error),
            Err(_) => Err(Error::Timeout(timeout)),
        };
        for (waiter, _) in round {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Every waiter queued now (at most [`MAX_ROUND`]), those that gave up
/// left out; `None` once every handle is gone.
async fn next_round<T>(
    rx: &mut mpsc::UnboundedReceiver<(oneshot::Sender<T>, Duration)>,
) -> Option<Vec<(oneshot::Sender<T>, Duration)>> {
    let first = rx.recv().await?;
    let mut round = vec![first];
    while round.len() < MAX_ROUND {
        match rx.try_recv() {
            Ok(waiter) => round.push(waiter),
            Err(_) => break,
        }
    }
    round.retain(|(waiter, _)| !waiter.is_closed());
    Some(round)
}

/// Resolves once a leader other than `leader` is known.
pub(super) async fn leader_changes_from(raft: &ConcordRaft, leader: u64) {
    let mut metrics = raft.server_metrics();
    loop {
        if metrics.borrow().current_leader.is_some_and(|now| now != leader) {
            return;
        }
        if metrics.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
