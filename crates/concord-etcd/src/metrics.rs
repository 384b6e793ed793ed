//! Prometheus metrics of the server: requests by RPC and status code, write
//! (commit) latency, fsync latency, and gauges read at scrape time: the
//! store (revision, keys, active leases) and the cluster (role, term, leader
//! changes, requests forwarded to the leader, each peer's replication lag).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::Concord;
use concord::node::FsyncObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tonic::Status;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    rpc: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    kind: &'static str,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    commit_seconds: Histogram,
    fsync_seconds: Histogram,
    revision: Gauge,
    keys: Gauge,
    leases: Gauge,
    role: Family<RoleLabels, Gauge>,
    term: Gauge,
    leader_changes: Gauge,
    forwarded: Family<ForwardLabels, Gauge>,
    leader_calls: Family<ForwardLabels, Gauge>,
    lag: Family<PeerLabels, Gauge>,
}

/// Shared handle to the metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Metrics {
    /// Empty metrics, registered under the `concord_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("concord");
        let requests = Family::<RequestLabels, Counter>::default();
        let commit_seconds = latency_histogram();
        let fsync_seconds = latency_histogram();
        let (revision, keys, leases) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("grpc_requests", "gRPC requests handled, by RPC and status code", requests.clone());
        registry.register(
            "commit_latency_seconds",
            "Time from receiving a write RPC to its durable, applied reply",
            commit_seconds.clone(),
        );
        registry.register(
            "fsync_latency_seconds",
            "Duration of each durable commit (fsync) of the data file",
            fsync_seconds.clone(),
        );
        registry.register("revision", "Current store revision", revision.clone());
        registry.register("keys", "Keys that currently exist", keys.clone());
        registry.register("active_leases", "Leases currently active", leases.clone());
        let role = Family::<RoleLabels, Gauge>::default();
        registry.register("role", "1 for this member's Raft role (leader, follower, candidate, learner)", role.clone());
        let term = Gauge::default();
        registry.register("raft_term", "Current Raft term", term.clone());
        let leader_changes = Gauge::default();
        registry.register("leader_changes", "Leader changes seen since the member opened", leader_changes.clone());
        let forwarded = Family::<ForwardLabels, Gauge>::default();
        registry.register(
            "forwarded_requests",
            "Requests this member handed to the leader since it opened (writes, linearizable reads)",
            forwarded.clone(),
        );
        let leader_calls = Family::<ForwardLabels, Gauge>::default();
        registry.register(
            "leader_calls",
            "Calls that carried the forwarded requests to the leader (requests waiting together share one)",
            leader_calls.clone(),
        );
        let lag = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "peer_replication_lag_entries",
            "On the leader: log entries each peer is behind",
            lag.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                commit_seconds,
                fsync_seconds,
                revision,
                keys,
                leases,
                role,
                term,
                leader_changes,
                forwarded,
                leader_calls,
                lag,
            }),
        }
    }

    /// Runs one RPC, counting it by its outcome; writes also feed the commit
    /// latency histogram.
    pub async fn track<T>(
        &self,
        rpc: &'static str,
        write: bool,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let start = Instant::now();
        let result = call.await;
        self.count(rpc, result.as_ref().err().map(Status::code));
        if write && result.is_ok() {
            self.inner.commit_seconds.observe(start.elapsed().as_secs_f64());
        }
        result
    }

    /// Counts one request of `rpc` that ended with `error` (`None` = OK).
    pub fn count(&self, rpc: &'static str, error: Option<tonic::Code>) {
        let code = match error {
            None => "OK".to_string(),
            Some(code) => format!("{code:?}"),
        };
        self.inner.requests.get_or_create(&RequestLabels { rpc, code }).inc();
    }

    /// A hook for [`concord::Config::fsync_observer`].
    pub fn fsync_observer(&self) -> FsyncObserver {
        let histogram = self.inner.fsync_seconds.clone();
        Arc::new(move |d: Duration| histogram.observe(d.as_secs_f64()))
    }

    /// The Prometheus text exposition, with gauges read from `db` now.
    pub fn encode(&self, db: &Concord) -> String {
        let status = db.status();
        self.inner.revision.set(status.revision);
        self.inner.keys.set(status.keys as i64);
        self.inner.leases.set(status.leases as i64);
        for role in ["leader", "follower", "candidate", "learner"] {
            self.inner.role.get_or_create(&RoleLabels { role }).set(i64::from(status.role == role));
        }
        self.inner.term.set(status.raft_term as i64);
        self.inner.leader_changes.set(status.leader_changes as i64);
        self.inner.forwarded.get_or_create(&ForwardLabels { kind: "write" }).set(status.forwarded_writes as i64);
        self.inner.forwarded.get_or_create(&ForwardLabels { kind: "read" }).set(status.forwarded_reads as i64);
        self.inner.leader_calls.get_or_create(&ForwardLabels { kind: "write" }).set(status.forward_calls as i64);
        self.inner.leader_calls.get_or_create(&ForwardLabels { kind: "read" }).set(status.read_index_rounds as i64);
        self.inner.lag.clear();
        for (peer, lag) in &status.replication_lag {
            self.inner.lag.get_or_create(&PeerLabels { peer: format!("{peer:x}") }).set(*lag as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.inner.registry).expect("writing to a String cannot fail");
        out
    }
}
