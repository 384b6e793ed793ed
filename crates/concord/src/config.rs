//! How to open a member: data directory, timeouts, limits, background tasks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::lease::LeaseLimits;
use crate::limits::Limits;

pub use crate::replication::files::StorageFactory;
pub use crate::replication::log_writer::FsyncObserver;

/// Where a member serves its peers: an address to bind, or a socket the
/// caller already bound (so a port chosen free stays this member's).
#[derive(Debug, Clone)]
pub enum PeerListen {
    /// An address to bind.
    Addr(std::net::SocketAddr),
    /// A socket the caller already bound.
    Bound(Arc<std::net::TcpListener>),
}

/// Options for [`Concord::open_with`](crate::Concord::open_with). Start from [`Config::new`] and
/// change what you need.
#[derive(Clone)]
pub struct Config {
    /// Where the member keeps its data file. Created if missing.
    pub data_dir: PathBuf,
    /// Human-readable member name (etcd's `--name`).
    pub name: String,
    /// The peer URLs this member is reached at (etcd's
    /// `--initial-advertise-peer-urls`); with the cluster token they make
    /// the member id.
    pub advertise_peer_urls: Vec<String>,
    /// The client URLs this member reports to clients (MemberList).
    pub advertise_client_urls: Vec<String>,
    /// Where to serve the peer (Raft) protocol; `None` for a member that
    /// runs alone (the embedded default: no port is opened).
    pub listen_peer: Option<PeerListen>,
    /// The members of a new cluster, `(name, peer URLs)` (etcd's
    /// `--initial-cluster`); empty means this member alone. Used only to
    /// initialize pristine storage; a member with data ignores it.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// etcd's `--initial-cluster-state existing`: this member joins a
    /// running cluster instead of creating one (ignored once it has data).
    pub join_existing: bool,
    /// etcd's `--initial-cluster-token`: part of every member id, so two
    /// clusters built from the same URLs do not mistake each other.
    pub cluster_token: String,
    /// Default timeout of every call (each call can override it).
    pub request_timeout: Duration,
    /// How long `open` waits for the member to become ready.
    pub open_timeout: Duration,
    /// Size limits on requests.
    pub limits: Limits,
    /// The lease limits of a *new* cluster. Apply enforces the limits held
    /// in the replicated state, so a member that opens existing data ignores
    /// this (with a warning when it differs); change them with
    /// [`Concord::set_lease_limits`](crate::Concord::set_lease_limits).
    pub lease_limits: LeaseLimits,
    /// How stale a lease's recorded remaining time may get before the leader
    /// writes a fresh measurement to the log. Bounds how much longer than
    /// its TTL a lease can live across a restart.
    pub lease_checkpoint_interval: Duration,
    /// Most leases expired by one command. 0 pauses expiry (leases past
    /// their deadline are then only refused renewal): for maintenance and
    /// for tests that need a lease past its deadline but not yet expired.
    pub lease_expiry_batch: usize,
    /// Keep the last N revisions of history, compacting older ones
    /// automatically. `None` keeps everything until `compact` is called.
    pub auto_compaction_retention: Option<u64>,
    /// Keep the history of the last period, compacting what is older
    /// (etcd's `--auto-compaction-mode=periodic`; `node/retention.rs`).
    /// `None` (the default) leaves it to `auto_compaction_retention`.
    pub auto_compaction_period: Option<Duration>,
    /// Build a snapshot (and purge the log) after this many log entries...
    pub snapshot_after_entries: u64,
    /// ...or after this many bytes of log, whichever comes first (entries
    /// carry batches of commands, so their count alone does not bound the
    /// log's size, nor the replay at start).
    pub snapshot_after_bytes: u64,
    /// Log entries kept after a snapshot covers them (for followers that
    /// lag a little; older ones are purged).
    pub logs_kept_after_snapshot: u64,
    /// Raft heartbeat interval (etcd's `--heartbeat-interval`).
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for this long (randomised up to
    /// twice this) starts an election (etcd's `--election-timeout`).
    pub election_timeout: Duration,
    /// Memory redb may use to cache pages of the data file.
    pub storage_cache_bytes: usize,
    /// Told the duration of every durable commit (for metrics).
    pub fsync_observer: Option<FsyncObserver>,
    /// Where the data files' bytes live; `None` (the default) is the real
    /// files in `data_dir`. Tests plug in disks that lose unsynced writes on
    /// "power loss" or whose fsync fails.
    pub storage: Option<StorageFactory>,
    /// Messages buffered per watcher before it is switched to catching up
    /// from history.
    pub watch_buffer: usize,
    /// How often a watcher that asked for progress notifications gets one.
    pub watch_progress_interval: Duration,
    /// Most writes waiting to be proposed; more are refused at once with
    /// `Error::TooManyRequests` (etcd's "too many requests").
    pub max_pending_proposals: usize,
    /// Space quota in bytes (`crate::alarm`; etcd's `--quota-backend-bytes`,
    /// default 2 GiB), against [`Concord::space_used`](crate::Concord::space_used):
    /// the in-memory state plus the log. A write that would take the store
    /// past it raises the `NoSpace` alarm and is refused. `None`: no quota.
    pub space_quota: Option<u64>,
    /// Peer URL → URL actually dialled. Empty (the default) dials every
    /// peer at its advertised URL. Fault-injection runs put a proxy between
    /// each ordered pair of members this way, so that they can cut one
    /// direction of one link (`concord-torture`'s partitions).
    pub peer_dial_map: std::collections::HashMap<String, String>,
    /// TLS between members, for `https` peer URLs (etcd's `--peer-*` TLS
    /// flags; `replication/network/tls.rs`).
    pub peer_tls: Option<crate::replication::network::tls::PeerTls>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("name", &self.name)
            .field("advertise_peer_urls", &self.advertise_peer_urls)
            .field("listen_peer", &self.listen_peer)
            .field("initial_cluster", &self.initial_cluster)
            .field("request_timeout", &self.request_timeout)
            .field("limits", &self.limits)
            .field("lease_limits", &self.lease_limits)
            .field("lease_checkpoint_interval", &self.lease_checkpoint_interval)
            .field("auto_compaction_retention", &self.auto_compaction_retention)
            .field("auto_compaction_period", &self.auto_compaction_period)
            .field("snapshot_after_entries", &self.snapshot_after_entries)
            .field("space_quota", &self.space_quota)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults for a single member keeping its data in `data_dir`.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Config {
            data_dir: data_dir.as_ref().to_path_buf(),
            name: "default".into(),
            advertise_peer_urls: vec!["http://localhost:2380".into()],
            advertise_client_urls: Vec::new(),
            listen_peer: None,
            initial_cluster: Vec::new(),
            join_existing: false,
            cluster_token: "etcd-cluster".into(),
            request_timeout: Duration::from_secs(5),
            space_quota: Some(crate::alarm::DEFAULT_QUOTA_BYTES),
            open_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            lease_limits: LeaseLimits::default(),
            lease_checkpoint_interval: Duration::from_secs(5),
            lease_expiry_batch: 1000,
            auto_compaction_retention: Some(100_000),
            auto_compaction_period: None,
            snapshot_after_entries: 100_000,
            snapshot_after_bytes: 64 * 1024 * 1024,
            logs_kept_after_snapshot: 1000,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(300),
            storage_cache_bytes: 32 * 1024 * 1024,
            fsync_observer: None,
            storage: None,
            watch_buffer: 256,
            watch_progress_interval: Duration::from_secs(600),
            max_pending_proposals: 10_000,
            peer_dial_map: Default::default(),
            peer_tls: None,
        }
    }

    /// Messages buffered per watcher before it is switched to catching up
    /// from history.
    pub fn watch_buffer(mut self, messages: usize) -> Self {
        self.watch_buffer = messages;
        self
    }

    /// How often a watcher that asked for progress notifications gets one.
    pub fn watch_progress_interval(mut self, interval: Duration) -> Self {
        self.watch_progress_interval = interval;
        self
    }

    /// Most writes waiting to be proposed before more are refused with
    /// [`Error::TooManyRequests`](crate::Error::TooManyRequests).
    pub fn max_pending_proposals(mut self, proposals: usize) -> Self {
        self.max_pending_proposals = proposals;
        self
    }

    /// The member's name (etcd's `--name`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Joins a cluster: this member is `name`, reached by peers at
    /// `peer_url` (served on `listen_peer`), and a new cluster has the
    /// members of `initial_cluster` (`(name, peer URL)`, this one included).
    pub fn cluster(
        mut self,
        name: impl Into<String>,
        peer_url: impl Into<String>,
        listen_peer: PeerListen,
        initial_cluster: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        self.name = name.into();
        self.advertise_peer_urls = vec![peer_url.into()];
        self.listen_peer = Some(listen_peer);
        let mut members: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (name, url) in initial_cluster {
            members.entry(name).or_default().push(url);
        }
        self.initial_cluster = members.into_iter().collect();
        self
    }

    /// The cluster token (etcd's `--initial-cluster-token`).
    pub fn cluster_token(mut self, token: impl Into<String>) -> Self {
        self.cluster_token = token.into();
        self
    }

    /// The client URLs this member reports (MemberList).
    pub fn advertise_client_urls(mut self, urls: Vec<String>) -> Self {
        self.advertise_client_urls = urls;
        self
    }

    /// How often the leader sends heartbeats.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long a follower waits for the leader before it stands for
    /// election.
    pub fn election_timeout(mut self, timeout: Duration) -> Self {
        self.election_timeout = timeout;
        self
    }

    /// This member's id (etcd's: from its peer URLs and the cluster token).
    pub fn member_id(&self) -> crate::cluster::MemberId {
        crate::cluster::member_id(&self.advertise_peer_urls, &self.cluster_token)
    }

    /// The members of a new cluster by id, checked: this member must be one
    /// of them, under its own name and peer URLs.
    pub(crate) fn initial_members(
        &self,
    ) -> Result<std::collections::BTreeMap<crate::cluster::MemberId, crate::cluster::Member>> {
        let listed = if self.initial_cluster.is_empty() {
            vec![(self.name.clone(), self.advertise_peer_urls.clone())]
        } else {
            self.initial_cluster.clone()
        };
        let mut members = std::collections::BTreeMap::new();
        for (name, peer_urls) in listed {
            let id = crate::cluster::member_id(&peer_urls, &self.cluster_token);
            let client_urls = if name == self.name { self.advertise_client_urls.clone() } else { Vec::new() };
            members.insert(id, crate::cluster::Member { name, peer_urls, client_urls });
        }
        let Some(own) = members.values().find(|m| m.name == self.name) else {
            return Err(crate::Error::InvalidRequest(format!(
                "this member's name {:?} is not in the initial cluster ({}); add `{}={}` to it or fix --name",
                self.name,
                self.initial_cluster.iter().map(|(n, u)| format!("{n}={}", u.join(","))).collect::<Vec<_>>().join(","),
                self.name,
                self.advertise_peer_urls.join(",")
            )));
        };
        let mut own_urls = own.peer_urls.clone();
        let mut advertised = self.advertise_peer_urls.clone();
        own_urls.sort();
        advertised.sort();
        if own_urls != advertised {
            return Err(crate::Error::InvalidRequest(format!(
                "the initial cluster lists {:?} at {} but this member advertises {}; make them the same",
                self.name,
                own_urls.join(","),
                advertised.join(",")
            )));
        }
        Ok(members)
    }

    /// Told the duration of every durable commit (for metrics).
    pub fn fsync_observer(mut self, observer: FsyncObserver) -> Self {
        self.fsync_observer = Some(observer);
        self
    }

    /// Where the data files are kept (the default: real files in `data_dir`).
    pub fn storage(mut self, storage: StorageFactory) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The default timeout of every call.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The space quota in bytes (`None`: none).
    pub fn space_quota(mut self, bytes: Option<u64>) -> Self {
        self.space_quota = bytes;
        self
    }

    /// Size limits on requests.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The lease limits of a new cluster.
    pub fn lease_limits(mut self, limits: LeaseLimits) -> Self {
        self.lease_limits = limits;
        self
    }

    /// How often the leader records leases' remaining time in the log.
    pub fn lease_checkpoint_interval(mut self, interval: Duration) -> Self {
        self.lease_checkpoint_interval = interval;
        self
    }

    /// Most leases expired by one command (0 pauses expiry).
    pub fn lease_expiry_batch(mut self, leases: usize) -> Self {
        self.lease_expiry_batch = leases;
        self
    }

    /// Keep the last N revisions of history, compacting older ones
    /// automatically (`None`: everything, until `compact` is called).
    pub fn auto_compaction_retention(mut self, revisions: Option<u64>) -> Self {
        self.auto_compaction_retention = revisions;
        self
    }

    /// etcd's periodic auto-compaction: keep the history of the last
    /// `period` (`None`: off). Usually with `auto_compaction_retention(None)`.
    pub fn auto_compaction_period(mut self, period: Option<Duration>) -> Self {
        self.auto_compaction_period = period;
        self
    }

    /// Build a snapshot after this many log entries.
    pub fn snapshot_after_entries(mut self, entries: u64) -> Self {
        self.snapshot_after_entries = entries;
        self
    }

    /// Build a snapshot after this many bytes of log.
    pub fn snapshot_after_bytes(mut self, bytes: u64) -> Self {
        self.snapshot_after_bytes = bytes;
        self
    }

    /// Log entries kept after a snapshot (for followers a little behind).
    pub fn logs_kept_after_snapshot(mut self, entries: u64) -> Self {
        self.logs_kept_after_snapshot = entries;
        self
    }

    pub(crate) fn raft_config(&self) -> Result<openraft::Config> {
        let heartbeat = self.heartbeat_interval.as_millis().max(1) as u64;
        let election = (self.election_timeout.as_millis() as u64).max(heartbeat + 1);
        let config = openraft::Config {
            cluster_name: "concord".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries.max(1)),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            // An entry is a batch of up to 4 MiB: a few per AppendEntries keep
            // one message within a heartbeat on a real network.
            max_payload_entries: 16,
            ..Default::default()
        };
        config.validate().map_err(|e| crate::Error::InvalidRequest(format!("raft configuration: {e}")))
    }
}
