//! Callers waiting in a batching queue (the proposer's group commit, the
//! follower's forwarding), and how a batch is gathered from the queue.
//!
//! A caller that gave up before its request was taken — its future was
//! dropped, or its deadline passed — is left out of the batch, so it is
//! never sent or proposed: a timeout reported before that point means
//! nothing was written.

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

/// One caller's request and where its answer goes.
pub(super) struct Waiting<T> {
    pub request: T,
    pub deadline: Instant,
    pub timeout: Duration,
    pub reply: oneshot::Sender<Result<Applied, Error>>,
}

impl<T> Waiting<T> {
    /// A waiting request with `timeout` from now, and the receiver of its answer.
    pub fn new(request: T, timeout: Duration) -> (Self, oneshot::Receiver<Result<Applied, Error>>) {
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

/// `first` and everything queued behind it now, up to the batch limits;
/// callers that gave up are left out. Also returns how many requests were
/// taken off the queue (wanted or not).
pub(super) fn gather<T>(
    first: Waiting<T>,
    rx: &mut mpsc::UnboundedReceiver<Waiting<T>>,
    payload_size: impl Fn(&T) -> usize,
) -> (Vec<Waiting<T>>, usize) {
    let now = Instant::now();
    let mut taken = 1;
    let mut batch = Vec::new();
    let mut bytes = 0;
    if let Some(w) = first.still_wanted(now) {
        bytes += payload_size(&w.request);
        batch.push(w);
    }
    while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
        let Ok(w) = rx.try_recv() else { break };
        taken += 1;
        if let Some(w) = w.still_wanted(now) {
            bytes += payload_size(&w.request);
            batch.push(w);
        }
    }
    (batch, taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose caller went away, or whose deadline passed, before it
    /// was taken is left out; the latter is told Timeout.
    #[tokio::test]
    async fn callers_that_gave_up_are_left_out() {
        let (wanted, _rx) = Waiting::new(1, Duration::from_secs(1));
        let (abandoned, rx) = Waiting::new(2, Duration::from_secs(1));
        drop(rx);
        let (late, late_rx) = Waiting::new(3, Duration::from_millis(5));
        let (tx, mut queue) = mpsc::unbounded_channel();
        let _ = tx.send(abandoned);
        let _ = tx.send(late);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (batch, taken) = gather(wanted, &mut queue, |_| 1);
        assert_eq!(taken, 3);
        assert_eq!(batch.iter().map(|w| w.request).collect::<Vec<_>>(), vec![1]);
        assert_eq!(late_rx.await.unwrap(), Err(Error::Timeout(Duration::from_millis(5))));
    }

    /// A batch stops at the byte limit (the request that crosses it is the last).
    #[tokio::test]
    async fn a_batch_stops_at_the_byte_limit() {
        let (tx, mut queue) = mpsc::unbounded_channel();
        let mut receivers = Vec::new();
        for i in 0..4 {
            let (w, rx) = Waiting::new(i, Duration::from_secs(1));
            receivers.push(rx);
            let _ = tx.send(w);
        }
        let (first, _rx) = Waiting::new(100, Duration::from_secs(1));
        let (batch, taken) = gather(first, &mut queue, |_| MAX_BATCH_BYTES / 2);
        assert_eq!((batch.len(), taken), (2, 2));
        assert_eq!(queue.len(), 3);
    }
}
