//! Watch: ordered, resumable streams of changes.
//!
//! `db.watch(range).from_revision(r).prev_kv().await?` (the builder is
//! `node::WatchBuilder`, beside the other views) gives a [`Watcher`],
//! a stream of [`WatchMessage`]s. Every committed change to a key in the
//! range reaches it exactly once, in revision order (apply order within a
//! revision), with nothing lost: first replayed from history, then live from
//! the [hub](hub::WatchHub), and back to history whenever the consumer falls
//! behind — a slow watcher never blocks apply. Dropping the watcher cancels
//! it.
//!
//! Each watcher has a task that does its catching up; the hub only ever
//! `try_send`s to live watchers.

pub mod hub;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::error::Result;
use crate::replication::state_store::Shared;
use crate::request::ApplyError;
use crate::types::{EventKind, KeyRange, Revision, WatchEvent};
use hub::LiveWatcher;

/// Most events read from history per message, and most changes looked at
/// per read (a revision is never split): catching up never holds the
/// state's lock long, however little of the history a watcher's range matches.
const REPLAY_BATCH: usize = 1000;
const REPLAY_SCAN: usize = 16 * 1024;

/// What a watcher receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes, oldest first; `revision` is the store revision they bring
    /// the watcher up to.
    Events {
        /// The revision they bring the watcher up to.
        revision: Revision,
        /// The changes.
        events: Arc<[WatchEvent]>,
    },
    /// Every change up to `revision` has been delivered.
    Progress {
        /// The revision delivered up to.
        revision: Revision,
    },
    /// The watcher needs history that was compacted away; it has ended.
    Canceled {
        /// The compaction point that passed the watcher by.
        compact_revision: Revision,
    },
}

/// Which events a watcher wants, and in which shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchFilter {
    pub range: KeyRange,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

impl WatchFilter {
    pub fn matches(&self, e: &WatchEvent) -> bool {
        let kind_ok = match e.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        };
        kind_ok && self.range.contains(&e.kv.key)
    }

    /// Drops the previous version unless asked for.
    pub fn shape(&self, mut e: WatchEvent) -> WatchEvent {
        if !self.prev_kv {
            e.prev_kv = None;
        }
        e
    }
}

/// Starts a watcher of `filter` from `start_revision` (0: after `current`,
/// the store's revision now), with a buffer of `buffer` messages and a
/// progress notification every `progress` while caught up. Its task replays
/// history, then follows the hub.
pub(crate) fn start(
    shared: Arc<Shared>,
    filter: WatchFilter,
    start_revision: Revision,
    current: Revision,
    buffer: usize,
    progress: Option<Duration>,
) -> Result<Watcher> {
    let next_rev = if start_revision > 0 { start_revision } else { current + 1 };
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let control = Arc::new(ProgressFlag::default());
    let Some(id) = shared.hub.register() else {
        return Err(crate::Error::Shutdown);
    };
    let task = WatchTask { shared, id, filter, next_rev, tx, control: control.clone(), progress };
    tokio::spawn(task.run());
    Ok(Watcher { id, rx, control, created_revision: current })
}

/// A progress request: a flag, so a flood of requests costs one
/// notification, not a queue that grows while the watcher catches up.
#[derive(Default)]
struct ProgressFlag {
    requested: AtomicBool,
    notify: Notify,
}

impl ProgressFlag {
    fn request(&self) {
        if !self.requested.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Waits for a request and clears it.
    async fn requested(&self) {
        loop {
            if self.requested.swap(false, Ordering::AcqRel) {
                return;
            }
            self.notify.notified().await;
        }
    }
}

/// A stream of [`WatchMessage`]s; dropping it cancels the watch.
pub struct Watcher {
    id: u64,
    rx: mpsc::Receiver<WatchMessage>,
    control: Arc<ProgressFlag>,
    created_revision: Revision,
}

impl Watcher {
    /// The next message; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<WatchMessage> {
        self.rx.recv().await
    }

    /// Asks for a [`WatchMessage::Progress`] once the watcher is caught up.
    pub fn request_progress(&self) {
        self.control.request();
    }

    /// A handle that can ask for progress from another task (for example
    /// while this watcher is being read elsewhere).
    pub fn progress_requester(&self) -> ProgressRequester {
        ProgressRequester { control: self.control.clone() }
    }

    /// The store revision when the watch was created.
    pub fn created_revision(&self) -> Revision {
        self.created_revision
    }

    /// An id unique within this member.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Asks a [`Watcher`] for a progress notification; see
/// [`Watcher::progress_requester`].
#[derive(Clone)]
pub struct ProgressRequester {
    control: Arc<ProgressFlag>,
}

impl ProgressRequester {
    /// Requests made while one is pending are merged into it.
    pub fn request(&self) {
        self.control.request();
    }
}

impl tokio_stream::Stream for Watcher {
    type Item = WatchMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchMessage>> {
        self.rx.poll_recv(cx)
    }
}

/// The task behind one watcher: catch up from history, go live, and catch
/// up again whenever the hub demotes it.
struct WatchTask {
    shared: Arc<Shared>,
    id: u64,
    filter: WatchFilter,
    /// The first revision not yet delivered.
    next_rev: Revision,
    tx: mpsc::Sender<WatchMessage>,
    control: Arc<ProgressFlag>,
    progress: Option<Duration>,
}

impl WatchTask {
    /// Runs until the consumer goes away, the watch is canceled, or the
    /// member shuts down (which ends every watcher's stream).
    async fn run(mut self) {
        let (shared, id) = (self.shared.clone(), self.id);
        let mut closed = shared.hub.closed();
        tokio::select! {
            _ = self.watch() => {}
            _ = closed.wait_for(|closed| *closed) => {}
        }
        shared.hub.unregister(id);
    }

    fn notify_progress(&self) -> bool {
        let applied = self.shared.applier.read().machine.kv().revision();
        self.shared.hub.notify_progress(self.id, applied)
    }

    async fn watch(&mut self) {
        let mut progress_pending = false;
        loop {
            let Some(demoted) = self.catch_up().await else { return };
            if progress_pending {
                progress_pending = !self.notify_progress();
            }
            let mut demoted = demoted;
            let mut ticker =
                self.progress.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
            loop {
                let tick = async {
                    match &mut ticker {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    first_missing = &mut demoted => match first_missing {
                        Ok(rev) => {
                            self.next_rev = rev;
                            break;
                        }
                        Err(_) => return,
                    },
                    _ = self.tx.closed() => return,
                    _ = self.control.requested() => progress_pending = !self.notify_progress(),
                    _ = tick => { self.notify_progress(); }
                }
            }
        }
    }

    /// Replays history until caught up, then registers with the hub as live.
    /// Returns the demotion signal, or `None` if the watch has ended.
    async fn catch_up(&mut self) -> Option<oneshot::Receiver<Revision>> {
        loop {
            let read = {
                let applier = self.shared.applier.read();
                let kv = applier.machine.kv();
                kv.events_since(self.next_rev, &self.filter.range, REPLAY_BATCH, REPLAY_SCAN)
                    .map(|(events, upto)| (events, upto, kv.revision()))
            };
            let (events, upto, current) = match read {
                Ok(read) => read,
                Err(ApplyError::Compacted { compact_revision }) => {
                    let _ = self.tx.send(WatchMessage::Canceled { compact_revision }).await;
                    return None;
                }
                Err(_) => return None,
            };
            let matching: Vec<WatchEvent> =
                events.into_iter().filter(|e| self.filter.matches(e)).map(|e| self.filter.shape(e)).collect();
            if !matching.is_empty() {
                let message = WatchMessage::Events { revision: upto, events: matching.into() };
                // The consumer sets the pace here; apply is not involved.
                if self.tx.send(message).await.is_err() {
                    return None;
                }
            }
            self.next_rev = self.next_rev.max(upto + 1);
            if upto < current {
                continue;
            }
            let (demote, demoted) = oneshot::channel();
            let live =
                LiveWatcher { filter: self.filter.clone(), tx: self.tx.clone(), next_rev: self.next_rev, demote };
            match self.shared.hub.go_live(self.id, live) {
                Ok(()) => return Some(demoted),
                Err(_) => continue,
            }
        }
    }
}
