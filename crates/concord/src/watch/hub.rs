//! The watch hub: hands each applied batch of changes to the watchers that
//! are live (caught up), without ever blocking apply.
//!
//! Invariants (all under the hub's lock):
//! - `last_published` is the store revision of the last batch handed out;
//! - a live watcher has received, in order, every matching event with a
//!   revision below its `next_rev`, and `next_rev > last_published` when it
//!   went live — so the next batch continues exactly where it stands;
//! - events below a watcher's `next_rev` are never sent again (no duplicate);
//! - a watcher whose buffer is full, or that may have missed a batch (one
//!   applied without capture), is *demoted*: removed from the live set and
//!   told the first revision it has not received; its own task then catches
//!   up from history (no gap), at its consumer's pace.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::{WatchFilter, WatchMessage};
use crate::types::{EventKind, Revision, WatchEvent};

/// A watcher that is caught up and fed by [`WatchHub::publish`].
pub(crate) struct LiveWatcher {
    pub filter: WatchFilter,
    pub tx: mpsc::Sender<WatchMessage>,
    pub next_rev: Revision,
    /// Told the first undelivered revision when the watcher is demoted.
    pub demote: oneshot::Sender<Revision>,
}

#[derive(Default)]
struct HubInner {
    live: HashMap<u64, LiveWatcher>,
    last_published: Revision,
}

/// Routes applied changes to live watchers.
pub struct WatchHub {
    inner: Mutex<HubInner>,
    /// Watchers in existence (live or catching up); apply records events
    /// only while this is non-zero.
    watchers: AtomicUsize,
    next_id: AtomicUsize,
    /// Set when the member shuts down: every watcher's task ends.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub {
            inner: Mutex::default(),
            watchers: AtomicUsize::new(0),
            next_id: AtomicUsize::new(0),
            closed: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl WatchHub {
    /// Whether apply should record events for this batch.
    pub fn wants_events(&self) -> bool {
        self.watchers.load(Ordering::SeqCst) > 0
    }

    /// A new watcher's id, or `None` once the hub is closed.
    pub(crate) fn register(&self) -> Option<u64> {
        if *self.closed.borrow() {
            return None;
        }
        self.watchers.fetch_add(1, Ordering::SeqCst);
        Some(self.next_id.fetch_add(1, Ordering::SeqCst) as u64)
    }

    /// Ends every watcher (the member is shutting down): their streams end.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
        self.inner.lock().live.clear();
    }

    pub(crate) fn closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Forgets watcher `id` (live or not) when its task ends.
    pub(crate) fn unregister(&self, id: u64) {
        self.inner.lock().live.remove(&id);
        self.watchers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Hands the changes of one applied batch (which brought the store to
    /// `revision`) to live watchers. `captured: None` means the batch was
    /// applied without recording events: every live watcher that may have
    /// missed something is demoted to catch up from history.
    pub(crate) fn publish(&self, captured: Option<Vec<WatchEvent>>, revision: Revision) {
        let mut inner = self.inner.lock();
        let mut demoted = Vec::new();
        let mut closed = Vec::new();
        let batch = match captured {
            None => None,
            Some(events) if events.is_empty() => Some(None),
            Some(events) => Some(Some(Batch::new(events))),
        };
        for (id, watcher) in inner.live.iter_mut() {
            let events = match &batch {
                // Applied without capture: whoever may have missed it catches up.
                None => {
                    if watcher.next_rev <= revision {
                        demoted.push(*id);
                    }
                    continue;
                }
                Some(None) => continue,
                Some(Some(batch)) => match batch.for_watcher(&watcher.filter, watcher.next_rev) {
                    Some(events) => events,
                    None => continue,
                },
            };
            let last = events.last().map_or(revision, WatchEvent::revision);
            match watcher.tx.try_send(WatchMessage::Events { revision, events }) {
                Ok(()) => watcher.next_rev = last + 1,
                Err(mpsc::error::TrySendError::Full(_)) => demoted.push(*id),
                Err(mpsc::error::TrySendError::Closed(_)) => closed.push(*id),
            }
        }
        for id in demoted {
            if let Some(watcher) = inner.live.remove(&id) {
                let _ = watcher.demote.send(watcher.next_rev);
            }
        }
        for id in closed {
            inner.live.remove(&id);
        }
        inner.last_published = inner.last_published.max(revision);
    }

    /// Makes a caught-up watcher live, if nothing was published since it
    /// read history up to `watcher.next_rev - 1`; otherwise hands it back
    /// to catch up some more.
    pub(crate) fn go_live(&self, id: u64, watcher: LiveWatcher) -> Result<(), LiveWatcher> {
        let mut inner = self.inner.lock();
        if watcher.next_rev > inner.last_published {
            inner.live.insert(id, watcher);
            Ok(())
        } else {
            Err(watcher)
        }
    }

    /// Queues a progress notification behind the events already queued for a
    /// live watcher. Returns false if the watcher is not live (or its buffer
    /// is full; it will be demoted by the next batch anyway). `applied` is
    /// the store's revision: a watcher that starts in the future is told the
    /// revision the store has reached, not its start.
    pub(crate) fn notify_progress(&self, id: u64, applied: Revision) -> bool {
        let inner = self.inner.lock();
        match inner.live.get(&id) {
            Some(w) => {
                let revision = inner.last_published.max((w.next_rev - 1).min(applied));
                w.tx.try_send(WatchMessage::Progress { revision }).is_ok()
            }
            None => false,
        }
    }

    /// Number of watchers in existence.
    pub fn watcher_count(&self) -> usize {
        self.watchers.load(Ordering::SeqCst)
    }
}

/// One published batch, shared by every watcher it fully concerns: most
/// watchers of a busy prefix get the same `Arc` instead of a copy.
struct Batch {
    events: Arc<[WatchEvent]>,
    without_prev: std::sync::OnceLock<Arc<[WatchEvent]>>,
    first_key: Bytes,
    last_key: Bytes,
    first_rev: Revision,
    has_put: bool,
    has_delete: bool,
}

impl Batch {
    fn new(events: Vec<WatchEvent>) -> Self {
        let first_key = events.iter().map(|e| &e.kv.key).min().cloned().unwrap_or_default();
        let last_key = events.iter().map(|e| &e.kv.key).max().cloned().unwrap_or_default();
        let first_rev = events.first().map_or(0, WatchEvent::revision);
        let has_put = events.iter().any(|e| e.kind == EventKind::Put);
        let has_delete = events.iter().any(|e| e.kind == EventKind::Delete);
        Batch {
            events: events.into(),
            without_prev: std::sync::OnceLock::new(),
            first_key,
            last_key,
            first_rev,
            has_put,
            has_delete,
        }
    }

    /// The events `filter` wants from revision `next_rev` on, or `None`.
    fn for_watcher(&self, filter: &WatchFilter, next_rev: Revision) -> Option<Arc<[WatchEvent]>> {
        // A range is an interval: holding the smallest and largest key of
        // the batch means holding all of them.
        let covers = next_rev <= self.first_rev
            && filter.range.contains(&self.first_key)
            && filter.range.contains(&self.last_key)
            && !(filter.no_put && self.has_put)
            && !(filter.no_delete && self.has_delete);
        if covers {
            return Some(if filter.prev_kv {
                self.events.clone()
            } else {
                self.without_prev
                    .get_or_init(|| self.events.iter().map(|e| WatchEvent { prev_kv: None, ..e.clone() }).collect())
                    .clone()
            });
        }
        let matching: Vec<WatchEvent> = self
            .events
            .iter()
            .filter(|e| e.revision() >= next_rev && filter.matches(e))
            .map(|e| filter.shape(e.clone()))
            .collect();
        (!matching.is_empty()).then(|| matching.into())
    }
}
