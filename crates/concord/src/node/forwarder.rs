//! Group commit for forwarded writes: a follower hands its clients' writes
//! to the leader in batches, and answers each once it has applied the
//! entry it was written in (the leader says which).
//!
//! One peer call per write costs as much CPU on both members as the write
//! itself (an HTTP/2 stream each side, a task, a protobuf frame). The
//! forwarder instead collects the writes waiting at the moment into one
//! `Forward` call; the leader proposes each command of it on its own (its
//! own deadline, its own result, the same admission checks as a local
//! write) — they join the leader's next log entry with its own clients'
//! writes — and answers them together.
//!
//! As in the proposer (`proposer.rs`), an uncontended write is sent at once
//! by its caller, a command whose caller gave up before it was sent is
//! left out (nothing written), and the queue is bounded. Unlike the
//! proposer, [`FORWARDS_IN_FLIGHT`] calls may be out at once: a forwarded
//! batch waits a whole leader round trip, and with one call out the next
//! batch would miss every other leader entry. A call to a leader that this
//! member has seen replaced is abandoned at once (its writes answer "leader
//! changed"), so a stalled old leader does not hold the slots that writes
//! to the new one need — unless that leader said it hands leadership over
//! on purpose (`transfer.rs`): then it is alive and its answer is awaited.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::waiting::{Batches, Queue, Waiting, bounded_queue};
use crate::cluster::MemberId;
use crate::command::{Command, Written};
use crate::error::Error;
use crate::replication::ConcordRaft;
use crate::replication::network::PeerNetwork;

/// Forward calls out at once per member.
const FORWARDS_IN_FLIGHT: usize = 2;

/// A write for the leader `leader`.
struct Forward {
    leader: MemberId,
    command: Command,
}

/// What a call needs: the peer network, this member's view of the leader,
/// and the call counter.
#[derive(Clone)]
struct Link {
    network: PeerNetwork,
    raft: ConcordRaft,
    /// `Forward` calls made so far.
    calls: Arc<AtomicU64>,
}

/// Handle for forwarding writes to the leader; cheap to clone.
#[derive(Clone)]
pub(super) struct Forwarder {
    queue: Queue<Forward, Written>,
    link: Link,
    in_flight: Arc<Semaphore>,
}

impl Forwarder {
    /// Starts the batching task. It ends when every handle is dropped.
    pub fn spawn(network: PeerNetwork, raft: ConcordRaft, max_pending: usize) -> Self {
        let (queue, batches) = bounded_queue(max_pending);
        let in_flight = Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT));
        let link = Link { network, raft, calls: Arc::new(AtomicU64::new(0)) };
        tokio::spawn(run(link.clone(), batches, in_flight.clone()));
        Forwarder { queue, link, in_flight }
    }

    /// `Forward` calls made so far (each carries one or more writes).
    pub fn calls(&self) -> u64 {
        self.link.calls.load(Ordering::Relaxed)
    }

    /// Hands `command` to `leader`, which proposes it (never forwarding it
    /// again); resolves with the leader's answer once this member has
    /// applied the entry too (read-your-writes through this member; a
    /// write the leader applied and this member cannot catch up with
    /// within `timeout` answers `Timeout`, its outcome unknown to the
    /// client, as etcd's would).
    pub async fn forward(&self, leader: MemberId, command: Command, timeout: Duration) -> Result<Written, Error> {
        if timeout.is_zero() {
            return Err(Error::Timeout(timeout));
        }
        let deadline = Instant::now() + timeout;
        let (waiting, answer) = Waiting::new(Forward { leader, command }, timeout);
        let written = if self.queue.is_empty()
            && let Ok(slot) = self.in_flight.clone().try_acquire_owned()
        {
            send(self.link.clone(), vec![waiting], slot).await;
            answer.await.map_err(|_| Error::Shutdown)??
        } else {
            self.queue.submit(waiting, answer).await?
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = self.link.raft.wait(Some(left));
        wait.applied_index_at_least(Some(written.index), "a forwarded write")
            .await
            .map_err(|_| Error::Timeout(timeout))?;
        Ok(written)
    }
}

async fn run(link: Link, mut batches: Batches<Forward, Written>, in_flight: Arc<Semaphore>) {
    while let Some(first) = batches.first().await {
        let Ok(slot) = in_flight.clone().acquire_owned().await else { return };
        let batch = batches.gather(first, |f| f.command.payload_size());
        if !batch.is_empty() {
            tokio::spawn(send(link.clone(), batch, slot));
        }
    }
}

/// Sends `batch` (holding an in-flight slot until answered), one call per
/// leader named in it — one, unless the leader changed while it gathered.
async fn send(link: Link, mut batch: Vec<Waiting<Forward, Written>>, slot: OwnedSemaphorePermit) {
    while !batch.is_empty() {
        let leader = batch[0].request.leader;
        let (to_leader, rest): (Vec<_>, Vec<_>) = batch.into_iter().partition(|w| w.request.leader == leader);
        batch = rest;
        let now = Instant::now();
        let mut commands = Vec::with_capacity(to_leader.len());
        let mut replies = Vec::with_capacity(to_leader.len());
        for w in to_leader {
            commands.push((w.request.command, w.deadline.saturating_duration_since(now)));
            replies.push(w.reply);
        }
        // Once this member knows another leader, the fate of the writes is
        // unknown and their callers hear so at once — unless that leader
        // said it hands leadership over: it stays up and answers them
        // (passing on what it held back to its successor, transfer.rs).
        let answers = match super::read_index::member_record(&link.raft, leader) {
            Some(member) => {
                link.calls.fetch_add(1, Ordering::Relaxed);
                let call = link.network.forward(leader, &member, &commands);
                tokio::pin!(call);
                tokio::select! {
                    answers = &mut call => answers,
                    () = super::read_index::leader_changes_from(&link.raft, leader) => {
                        if link.network.handed_over(leader) { call.await } else { Err(Error::LeaderChanged) }
                    }
                }
            }
            None => Err(Error::LeaderChanged),
        };
        match answers {
            Ok(results) if results.len() == replies.len() => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Ok(results) => {
                let e = Error::Storage(format!(
                    "internal error: the leader answered {} of {} forwarded writes",
                    results.len(),
                    replies.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
    drop(slot);
}
