//! Callers waiting in a batching queue (the proposer's group commit, the
//! follower's forwarding), the bounded queue itself, and how a batch is
//! gathered from it.
//!
//! At most `max_pending` requests wait for the batching task; more are
//! refused at once with [`Error::TooManyRequests`] (as etcd answers "too
//! many requests" when apply lags).
//!
//! A caller that gave up before its request was taken — its future was
//! dropped, or its deadline passed — is left out of the batch, so it is
//! never sent or proposed: a timeout reported before that point means
//! nothing was written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::command::Applied;
use crate::error::Error;

/// Most requests in one batch.
pub(super) const MAX_BATCH_COMMANDS: usize = 512;
/// Most payload bytes (keys + values) in one batch, so one huge value does
/// not ride with hundreds of others in a giant entry or message.
pub(super) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// One caller's request and where its answer (`A`) goes.
pub(super) struct Waiting<T, A = Applied> {
    pub request: T,
    pub deadline: Instant,
    pub timeout: Duration,
    pub reply: oneshot::Sender<Result<A, Error>>,
}

impl<T, A> Waiting<T, A> {
    /// A waiting request with `timeout` from now, and the receiver of its answer.
    pub fn new(request: T, timeout: Duration) -> (Self, oneshot::Receiver<Result<A, Error>>) {
        let (reply, rx) = oneshot::channel();
        (Waiting { request, deadline: Instant::now() + timeout, timeout, reply }, rx)
    }

    /// Whether the caller still waits; answers it `Timeout` if its deadline passed.
    pub fn still_wanted(self, now: Instant) -> Option<Self> {
        if self.reply.is_closed() {
            return None;
        }
        if now >= self.deadline {
            let _ = self.reply.send(Err(Error::Timeout(self.timeout)));
            return None;
        }
        Some(self)
    }
}

/// A bounded queue to a batching task: the callers' side and the task's side.
pub(super) fn bounded_queue<T, A>(max_pending: usize) -> (Queue<T, A>, Batches<T, A>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (Queue { tx, queued: queued.clone(), max_pending: max_pending.max(1) }, Batches { rx, queued })
}

/// The callers' side of a batching queue; cheap to clone.
pub(super) struct Queue<T, A = Applied> {
    tx: mpsc::UnboundedSender<Waiting<T, A>>,
    /// Requests sent to the batching task and not yet taken by it.
    queued: Arc<AtomicUsize>,
    max_pending: usize,
}

impl<T, A> Clone for Queue<T, A> {
    fn clone(&self) -> Self {
        Queue { tx: self.tx.clone(), queued: self.queued.clone(), max_pending: self.max_pending }
    }
}

impl<T, A> Queue<T, A> {
    /// Whether no request waits for the batching task (a caller may then
    /// go straight, if nothing is in flight either).
    pub fn is_empty(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    /// Hands `waiting` to the batching task and waits for its answer on
    /// `answer`; refused at once when `max_pending` requests wait already.
    pub async fn submit(
        &self,
        waiting: Waiting<T, A>,
        answer: oneshot::Receiver<Result<A, Error>>,
    ) -> Result<A, Error> {
        let pending = self.queued.fetch_add(1, Ordering::AcqRel);
        if pending >= self.max_pending {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::TooManyRequests { pending });
        }
        if self.tx.send(waiting).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Shutdown);
        }
        answer.await.map_err(|_| Error::Shutdown)?
    }
}

/// The batching task's side of the queue.
pub(super) struct Batches<T, A = Applied> {
    rx: mpsc::UnboundedReceiver<Waiting<T, A>>,
    queued: Arc<AtomicUsize>,
}

impl<T, A> Batches<T, A> {
    /// Waits for the next request; `None` once every [`Queue`] is dropped.
    pub async fn first(&mut self) -> Option<Waiting<T, A>> {
        self.rx.recv().await
    }

    /// `first` and everything queued behind it now, up to the batch
    /// limits; callers that gave up are left out.
    pub fn gather(&mut self, first: Waiting<T, A>, payload_size: impl Fn(&T) -> usize) -> Vec<Waiting<T, A>> {
        let now = Instant::now();
        let mut taken = 1;
        let mut batch = Vec::new();
        let mut bytes = 0;
        if let Some(w) = first.still_wanted(now) {
            bytes += payload_size(&w.request);
            batch.push(w);
        }
        while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            let Ok(w) = self.rx.try_recv() else { break };
            taken += 1;
            if let Some(w) = w.still_wanted(now) {
                bytes += payload_size(&w.request);
                batch.push(w);
            }
        }
        self.queued.fetch_sub(taken, Ordering::AcqRel);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queues `requests`, as callers would, and returns their answers' receivers.
    fn queue_up(
        queue: &Queue<i32>,
        requests: impl IntoIterator<Item = (i32, Duration)>,
    ) -> Vec<oneshot::Receiver<Result<Applied, Error>>> {
        requests
            .into_iter()
            .map(|(request, timeout)| {
                let (w, rx) = Waiting::new(request, timeout);
                queue.queued.fetch_add(1, Ordering::AcqRel);
                assert!(queue.tx.send(w).is_ok());
                rx
            })
            .collect()
    }

    /// A request whose caller went away, or whose deadline passed, before it
    /// was taken is left out; the latter is told Timeout.
    #[tokio::test]
    async fn callers_that_gave_up_are_left_out() {
        let (queue, mut batches) = bounded_queue(10);
        let mut answers =
            queue_up(&queue, [(1, Duration::from_secs(1)), (2, Duration::from_secs(1)), (3, Duration::from_millis(5))]);
        drop(answers.remove(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let first = batches.first().await.unwrap();
        let batch = batches.gather(first, |_| 1);
        assert_eq!(batch.iter().map(|w| w.request).collect::<Vec<_>>(), vec![1]);
        assert!(queue.is_empty(), "every request taken off the queue is counted out");
        assert_eq!(answers.pop().unwrap().await.unwrap(), Err(Error::Timeout(Duration::from_millis(5))));
    }

    /// A batch stops at the byte limit (the request that crosses it is the last).
    #[tokio::test]
    async fn a_batch_stops_at_the_byte_limit() {
        let (queue, mut batches) = bounded_queue(10);
        let _answers = queue_up(&queue, (0..5).map(|i| (i, Duration::from_secs(1))));
        let first = batches.first().await.unwrap();
        let batch = batches.gather(first, |_| MAX_BATCH_BYTES / 2);
        assert_eq!(batch.len(), 2);
        assert_eq!(queue.queued.load(Ordering::Acquire), 3);
    }

    /// Past `max_pending` waiting requests, a caller is refused at once.
    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let (queue, _batches) = bounded_queue(2);
        let _answers = queue_up(&queue, [(1, Duration::from_secs(1)), (2, Duration::from_secs(1))]);
        let (w, rx) = Waiting::new(3, Duration::from_secs(1));
        assert_eq!(queue.submit(w, rx).await, Err(Error::TooManyRequests { pending: 2 }));
        assert_eq!(queue.queued.load(Ordering::Acquire), 2, "a refused request is not counted");
    }
}
