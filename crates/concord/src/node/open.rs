//! Opening a member: storage, Raft, the peer server, and — on pristine
//! storage only — the cluster's initial membership.
//!
//! Every member of a new cluster initializes with the identical membership
//! (computed from `initial_cluster` with etcd's member ids), which openraft
//! allows; a member with data never initializes again, whatever its
//! `initial_*` settings say. A member alone (the embedded default) waits to
//! lead before `open` returns; a member of several returns once its peer
//! server runs (the cluster elects a leader when a quorum is up:
//! [`Concord::wait_for_leader`]).

use std::sync::{Arc, Weak};

use openraft::ServerState;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Concord, Config, Inner, PeerListen, proposer, tasks};
use crate::error::{Error, Result};
use crate::replication::ConcordRaft;
use crate::replication::files;
use crate::replication::log_store::LogStore;
use crate::replication::log_writer::LogWriter;
use crate::replication::network::PeerNetwork;
use crate::replication::network::server::{
    ClusterInfoHandler, ForwardHandler, Handlers, MembershipHandler, PeerService, ReadIndexHandler, TransferHandler,
};
use crate::replication::snapshot_store::SnapshotStore;
use crate::replication::state_store::StateStore;
use crate::replication::wal::{Replayed, Wal};

impl Concord {
    /// Opens (or creates) a member.
    pub async fn open_with(config: Config) -> Result<Concord> {
        let raft_config = Arc::new(config.raft_config()?);
        let created = files::create_data_dir(&config.data_dir).map_err(Error::Storage)?;
        let path = config.data_dir.join("concord.redb");
        // redb caches up to 1 GiB by default; the log is written far more
        // than read (memory holds what apply needs), so a small cache does.
        let db =
            files::open_database(&path, config.storage_cache_bytes, config.storage.as_ref()).map_err(Error::Storage)?;
        let (wal, replayed) = open_log(&config, &db).map_err(Error::Storage)?;
        let wal_index = wal.index();
        let stored_log = LogStore::load(&db, replayed).map_err(Error::Storage)?;
        let stored_cluster_id = stored_log.cluster_id;
        let stored_member_id = stored_log.member_id;
        let stored_log_is_pristine = stored_log.is_pristine();
        let snapshots = SnapshotStore::open(&config.data_dir.join("snapshot.redb"), config.storage.as_ref())
            .map_err(Error::Storage)?;
        // The files' directory entries must be durable before anything
        // written in them is acknowledged.
        files::sync_dir(&config.data_dir).map_err(Error::Storage)?;
        if let Some(parent) = created {
            files::sync_dir(&parent).map_err(Error::Storage)?;
        }
        let db = Arc::new(parking_lot::RwLock::new(db));
        // Only the writer thread writes the file; log reads share it.
        let writer = LogWriter::spawn(db.clone(), wal, config.fsync_observer.clone())
            .map_err(|e| Error::Storage(e.to_string()))?;
        let (state_store, shared) = StateStore::load(snapshots.clone()).map_err(Error::Storage)?;
        drop(db);
        let log = LogStore::new(
            stored_log,
            writer.sender(),
            wal_index,
            shared.applied_index.clone(),
            shared.log_bytes_since_snapshot.clone(),
            snapshots.coverage(),
        );
        let last_index = log.last_index();

        // A member joining a running cluster learns its id and the cluster's
        // from the members it was told of; it never initializes.
        let joined = match stored_member_id {
            None if stored_log_is_pristine && config.join_existing => Some(super::join::discover(&config).await?),
            _ => None,
        };
        let member_id = match (stored_member_id, &joined) {
            (Some(id), _) => id,
            (None, Some(joined)) => joined.member_id,
            (None, None) => config.member_id(),
        };
        let network = PeerNetwork::new(member_id, config.peer_dial_map.clone(), config.peer_tls.clone());
        // Known before Raft starts (recorded, learned from the cluster, or
        // from the initial members of a new cluster): then even the first
        // vote requests carry it.
        if let Some(id) = stored_cluster_id.or(joined.as_ref().map(|j| j.cluster_id)) {
            network.set_cluster_id(id);
        } else if stored_log_is_pristine {
            network.set_cluster_id(crate::cluster::cluster_id(config.initial_members()?.into_keys()));
        }
        if let Some(joined) = &joined {
            record_identity(&writer, joined.cluster_id, member_id).await?;
        }
        let raft = ConcordRaft::new(member_id, raft_config, network.clone(), log, state_store)
            .await
            .map_err(|e| Error::Storage(format!("raft failed to start: {e}")))?;
        network.set_metrics(raft.server_metrics());
        let initialized = raft.is_initialized().await.map_err(|e| Error::Storage(e.to_string()))?;
        // Waiting for the leader to send the log (or a snapshot): a member
        // that joined, also when it restarts before it got anything.
        let joining = !initialized && (joined.is_some() || stored_member_id.is_some());
        if !initialized && !joining {
            let members = config.initial_members()?;
            tracing::info!(members = members.len(), "initializing a new cluster");
            raft.initialize(members).await.map_err(|e| Error::Storage(format!("cannot initialize: {e}")))?;
        }
        let mut voters: Vec<u64> = Vec::new();
        if !joining {
            // The membership (just initialized, or loaded from the log)
            // reaches the metrics asynchronously.
            raft.wait(Some(config.open_timeout))
                .metrics(|m| m.membership_config.membership().nodes().next().is_some(), "open: load the membership")
                .await
                .map_err(|e| Error::NotReady(format!("the membership did not load: {e}")))?;
            voters = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
            let known = raft.metrics().borrow().membership_config.membership().get_node(&member_id).is_some();
            if !known && stored_member_id.is_none() {
                let _ = raft.shutdown().await;
                return Err(Error::InvalidRequest(format!(
                    "this member ({member_id:x}, {}) is not in the cluster its data belongs to; its peer URLs or \
                     cluster token differ from those it was created with",
                    config.advertise_peer_urls.join(",")
                )));
            }
            if !known {
                // Removed, or added and still catching up: the removal
                // watch asks the cluster which (removal.rs).
                tracing::warn!(member = %format!("{member_id:x}"), "this member is not in the membership it has; asking the cluster whether it was removed");
            }
        }
        // The cluster id is the first configuration's (etcd's: from the
        // initial members), recorded at the first open so that later
        // membership changes do not change it.
        let cluster_id = match (stored_cluster_id, &joined) {
            (Some(id), _) => id,
            (None, Some(joined)) => joined.cluster_id,
            (None, None) => crate::cluster::cluster_id(voters.iter().copied()),
        };
        if (stored_cluster_id.is_none() || stored_member_id.is_none()) && joined.is_none() {
            record_identity(&writer, cluster_id, member_id).await?;
        }
        network.set_cluster_id(cluster_id);
        let alone = voters == [member_id];

        let (stop_tasks, stop_rx) = watch::channel(false);
        let read_index = super::read_index::ReadIndexRounds::spawn(raft.clone(), network.clone());
        let network_handle = network.clone();
        let node = Concord {
            inner: Arc::new(Inner {
                proposer: proposer::Proposer::spawn(raft.clone(), config.max_pending_proposals),
                forwarder: super::forwarder::Forwarder::spawn(network, raft.clone(), config.max_pending_proposals),
                raft,
                shared,
                config,
                member_id,
                cluster_id,
                read_index,
                network: network_handle,
                snapshots,
                membership_lock: tokio::sync::Mutex::new(()),
                removed: watch::Sender::new(false),
                stop_peer_server: Mutex::new(None),
                forwarded_writes: Default::default(),
                forwarded_reads: Default::default(),
                transferring: Default::default(),
                transfers: Default::default(),
                leader_changes: Default::default(),
                stop_tasks,
                tasks: Mutex::new(Vec::new()),
                log_in_use: writer.in_use(),
                log_segment_bytes: writer.segment_bytes(),
                writer: Mutex::new(Some(writer)),
            }),
        };
        node.start_peer_server().await?;
        if alone {
            node.wait_ready(last_index).await?;
            node.set_initial_lease_limits().await?;
        }
        let handles = tasks::spawn_all(&node, stop_rx);
        node.inner.tasks.lock().extend(handles);
        if let Some(joined) = &joined {
            tracing::info!(
                cluster = %format!("{:x}", joined.cluster_id),
                member = %format!("{member_id:x}"),
                role = if joined.learner { "learner" } else { "voter" },
                "joining cluster {:x} as {}; waiting for the leader to send the data",
                joined.cluster_id,
                if joined.learner { "learner" } else { "voter" },
            );
        }
        tracing::info!(
            data_dir = %node.inner.config.data_dir.display(),
            member = %format!("{member_id:x}"),
            cluster = %format!("{cluster_id:x}"),
            revision = node.revision(),
            "concord is open"
        );
        Ok(node)
    }

    /// Serves the peer protocol on `listen_peer`, if set.
    /// The TLS this member serves peers with: its peer TLS settings when it
    /// advertises an `https` peer URL (an https URL without them is refused).
    fn peer_tls_served(&self) -> Result<Option<crate::replication::network::tls::PeerTls>> {
        let config = &self.inner.config;
        let https = config.advertise_peer_urls.iter().find(|u| u.starts_with("https://"));
        match (https, &config.peer_tls) {
            (Some(_), Some(tls)) => Ok(Some(tls.clone())),
            (Some(url), None) => Err(Error::InvalidRequest(format!(
                "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {url} with HTTPS scheme"
            ))),
            (None, _) => Ok(None),
        }
    }

    async fn start_peer_server(&self) -> Result<()> {
        let listener = match &self.inner.config.listen_peer {
            None => return Ok(()),
            Some(PeerListen::Addr(addr)) => tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::InvalidRequest(format!("cannot listen for peers on {addr}: {e}")))?,
            Some(PeerListen::Bound(socket)) => {
                let socket = socket.try_clone().and_then(|s| {
                    s.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(s)
                });
                socket.map_err(|e| Error::InvalidRequest(format!("cannot serve peers on the given socket: {e}")))?
            }
        };
        let addr = listener.local_addr().map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let weak = Arc::downgrade(&self.inner);
        let forward: ForwardHandler = {
            let weak = weak.clone();
            Arc::new(move |command, timeout| {
                let weak = weak.clone();
                Box::pin(async move { upgrade(&weak)?.write_as_leader(command, timeout).await })
            })
        };
        let read_index: ReadIndexHandler = {
            let weak = weak.clone();
            Arc::new(move || {
                let weak = weak.clone();
                Box::pin(async move { upgrade(&weak)?.leader_read_index().await })
            })
        };
        let change_membership: MembershipHandler = {
            let weak = weak.clone();
            Arc::new(move |change, timeout| {
                let weak = weak.clone();
                Box::pin(async move { upgrade(&weak)?.change_membership_as_leader(change, timeout).await })
            })
        };
        let transfer_leader: TransferHandler = {
            let weak = weak.clone();
            Arc::new(move |from, to| {
                let weak = weak.clone();
                Box::pin(async move { upgrade(&weak)?.accept_leader_transfer(from, to).await })
            })
        };
        let cluster_info: ClusterInfoHandler = {
            let cluster_id = self.inner.cluster_id;
            Arc::new(move || match upgrade(&weak) {
                Ok(node) => node.cluster_info(),
                Err(_) => crate::cluster::ClusterInfo {
                    cluster_id,
                    from_leader: false,
                    membership_index: 0,
                    members: Vec::new(),
                },
            })
        };
        let handlers = Handlers { forward, read_index, change_membership, transfer_leader, cluster_info };
        let service = PeerService::new(
            self.inner.raft.clone(),
            self.inner.snapshots.clone(),
            self.inner.cluster_id,
            self.inner.member_id,
            handlers,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        *self.inner.stop_peer_server.lock() = Some(stop);
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let tls = self.peer_tls_served()?;
        tracing::info!(%addr, tls = tls.is_some(), "serving peers");
        tokio::spawn(async move {
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = &tls {
                builder = match builder.tls_config(tls.server_config()) {
                    Ok(builder) => builder,
                    Err(e) => return tracing::error!(error = %e, "the peer TLS settings were refused"),
                };
            }
            let served = builder
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the peer server failed");
            }
        });
        Ok(())
    }

    /// Waits until this member (alone in its cluster) leads and has applied
    /// the log it had on disk.
    async fn wait_ready(&self, last_index: Option<u64>) -> Result<()> {
        let timeout = self.inner.config.open_timeout;
        let wait = self.inner.raft.wait(Some(timeout));
        wait.state(ServerState::Leader, "open: become leader")
            .await
            .map_err(|e| Error::NotReady(format!("no leader elected: {e}")))?;
        if let Some(index) = last_index {
            self.inner
                .raft
                .wait(Some(timeout))
                .applied_index_at_least(Some(index), "open: replay the log")
                .await
                .map_err(|e| Error::NotReady(format!("log replay did not finish: {e}")))?;
        }
        Ok(())
    }

    /// Waits until the cluster has a leader that this member knows (at
    /// most `timeout`); returns its member id.
    pub async fn wait_for_leader(&self, timeout: std::time::Duration) -> Result<u64> {
        let mut metrics = self.inner.raft.server_metrics();
        let wait = async {
            loop {
                if let Some(leader) = metrics.borrow().current_leader {
                    return Ok(leader);
                }
                if metrics.changed().await.is_err() {
                    return Err(Error::Shutdown);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| Error::NotReady("no leader elected".into()))?
    }
}

/// Records the cluster id and this member's id, durably.
async fn record_identity(writer: &LogWriter, cluster_id: u64, member_id: u64) -> Result<()> {
    let (ack, stored) = tokio::sync::oneshot::channel();
    let sent = writer.sender().send(crate::replication::log_writer::WriteOp::Identity { cluster_id, member_id, ack });
    let stored = match sent {
        Ok(()) => stored.await.unwrap_or_else(|_| Err("the log writer stopped".into())),
        Err(_) => Err("the log writer stopped".into()),
    };
    stored.map_err(|e| Error::Storage(format!("cannot record the cluster and member ids: {e}")))
}

fn upgrade(weak: &Weak<Inner>) -> Result<Concord> {
    weak.upgrade().map(|inner| Concord { inner }).ok_or(Error::Shutdown)
}

/// Opens the log's segment files and replays them; entries still kept in
/// `concord.redb` (data from before the segment files) are moved into them
/// first — durably, then dropped from `concord.redb`; a crash in between
/// moves the same entries again.
fn open_log(config: &Config, db: &redb::Database) -> std::result::Result<(Wal, Replayed), String> {
    let (mut wal, mut replayed) = Wal::open(&config.data_dir, config.storage.as_ref(), db)?;
    let legacy = LogStore::legacy_entries(db)?;
    if legacy.is_empty() {
        return Ok((wal, replayed));
    }
    tracing::info!(entries = legacy.len(), "moving the log's entries from concord.redb into segment files");
    for (index, bytes) in &legacy {
        wal.push_entry(*index, bytes);
    }
    wal.flush(db)?;
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.delete_table(crate::replication::log_writer::LOG).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    for (index, bytes) in legacy {
        replayed.entries.entry(index).or_insert(bytes);
    }
    Ok((wal, replayed))
}

impl Config {
    /// Opens the member.
    pub async fn open(self) -> Result<Concord> {
        Concord::open_with(self).await
    }
}
