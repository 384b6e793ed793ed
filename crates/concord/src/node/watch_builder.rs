//! The watch view: `db.watch(range)` builds a watch; awaiting it starts a
//! [`Watcher`] (`crate::watch`: the stream, its catch-up task and the hub).

use std::future::IntoFuture;

use super::Concord;
use super::kv::BoxFuture;
use crate::error::Result;
use crate::types::{KeyRange, Revision};
use crate::watch::{WatchFilter, Watcher};

/// A watch being set up; `.await` it for a [`Watcher`].
#[must_use = "a watch does nothing until awaited"]
pub struct WatchBuilder {
    node: Concord,
    filter: WatchFilter,
    start_revision: Revision,
    progress_notify: bool,
}

impl WatchBuilder {
    pub(crate) fn new(node: Concord, range: KeyRange) -> Self {
        WatchBuilder {
            node,
            filter: WatchFilter { range, prev_kv: false, no_put: false, no_delete: false },
            start_revision: 0,
            progress_notify: false,
        }
    }

    /// Replays history from `revision` (inclusive) before going live.
    /// 0 (the default) starts after the current revision.
    pub fn from_revision(mut self, revision: Revision) -> Self {
        self.start_revision = revision;
        self
    }

    /// Includes each key's previous version in its events.
    pub fn prev_kv(mut self) -> Self {
        self.filter.prev_kv = true;
        self
    }

    /// Leaves out puts.
    pub fn no_put(mut self) -> Self {
        self.filter.no_put = true;
        self
    }

    /// Leaves out deletes.
    pub fn no_delete(mut self) -> Self {
        self.filter.no_delete = true;
        self
    }

    /// Sends a [`WatchMessage::Progress`](crate::WatchMessage::Progress) every
    /// [`Config::watch_progress_interval`](crate::Config) while caught up.
    pub fn progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }
}

impl IntoFuture for WatchBuilder {
    type Output = Result<Watcher>;
    type IntoFuture = BoxFuture<Watcher>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let config = self.node.config();
            config.limits.check_range(&self.filter.range)?;
            let progress = self.progress_notify.then_some(config.watch_progress_interval);
            let shared = self.node.shared().clone();
            crate::watch::start(
                shared,
                self.filter,
                self.start_revision,
                self.node.revision(),
                config.watch_buffer,
                progress,
            )
        })
    }
}
