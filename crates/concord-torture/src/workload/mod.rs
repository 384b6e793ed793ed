//! The clients of a torture run, and what they record.
//!
//! - [`register`]: clients doing get / put / compare-and-set on keys of
//!   their own prefix, recorded for the linearizability checker;
//! - [`leases`]: workers granting leases with keys attached, keeping some
//!   alive, revoking some, letting the rest expire while they watch;
//! - [`watchers`]: watchers of every key, resuming after each failure
//!   from the revision after the last they saw, as etcd clients do.
//!
//! A client that gets an error moves to the next member (as etcd clients
//! do). An operation whose request may have reached a member has an
//! unknown outcome unless the member answered; only a request that never
//! left (no connection) or that the member refused before proposing it
//! counts as failed.

pub mod leases;
pub mod register;
pub mod watchers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use concord_check::{LeaseHistory, Recorder, WatchHistory};
use parking_lot::Mutex;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// What every client shares: the members' channels, the clock and the
/// records.
pub struct Shared {
    pub channels: Vec<Channel>,
    /// The history's clock and the register history.
    pub recorder: Recorder<String, String>,
    pub watch: Mutex<WatchHistory>,
    pub leases: Mutex<LeaseHistory>,
    /// Read-your-writes: writes read back through the member that
    /// acknowledged them, and what those reads missed.
    pub own_writes: Mutex<(u64, Vec<String>)>,
    /// Longest a client waits for one answer.
    pub op_timeout: Duration,
    /// Register reads ask for etcd's serializable (local, possibly stale)
    /// reads instead of linearizable ones: a run that shows the checker
    /// catching stale reads under partitions.
    pub serializable_reads: bool,
    stop: AtomicBool,
}

impl Shared {
    pub fn new(channels: Vec<Channel>, op_timeout: Duration, serializable_reads: bool) -> Arc<Shared> {
        Arc::new(Shared {
            channels,
            recorder: Recorder::new(),
            watch: Mutex::new(WatchHistory::new()),
            leases: Mutex::new(LeaseHistory::new()),
            own_writes: Mutex::new((0, Vec::new())),
            op_timeout,
            serializable_reads,
            stop: AtomicBool::new(false),
        })
    }

    pub fn now(&self) -> u64 {
        self.recorder.now()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn members(&self) -> usize {
        self.channels.len()
    }

    /// A request with this run's timeout.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.op_timeout);
        request
    }

    /// Runs `call` with the run's timeout (plus slack for the server's
    /// own deadline answer to arrive).
    pub async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(self.op_timeout + Duration::from_millis(250), call).await {
            Ok(answer) => answer.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("no answer in time")),
        }
    }
}

/// Whether a request that failed with `status` certainly took no effect:
/// it never reached a member (no connection), or the member refused it
/// before proposing it (bad input, unknown lease, overload).
pub fn certainly_not_applied(status: &Status) -> bool {
    let never_sent = status.code() == Code::Unavailable && {
        let text = format!("{status:?}").to_lowercase();
        text.contains("tcp connect error") || text.contains("connection refused")
    };
    never_sent
        || matches!(status.code(), Code::InvalidArgument | Code::NotFound | Code::OutOfRange)
        || status.message() == "etcdserver: too many requests"
}

/// Sleeps a little after a failure (so a dead member is not hammered).
pub async fn back_off() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}
