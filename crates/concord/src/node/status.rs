//! What a member reports about itself: identity, Raft position, sizes.
//! Front ends build their status and response headers from this.

use super::Concord;
use crate::types::Revision;

/// A snapshot of a member's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// A stable 64-bit id for this member (derived from its name and Raft id).
    pub member_id: u64,
    /// A stable 64-bit id for the cluster.
    pub cluster_id: u64,
    /// The member's name.
    pub name: String,
    /// The store revision it has applied.
    pub revision: Revision,
    /// Its compaction point.
    pub compact_revision: Revision,
    /// Its Raft term.
    pub raft_term: u64,
    /// Index of the last entry in this member's log.
    pub raft_index: u64,
    /// The last log index it has applied.
    pub raft_applied_index: u64,
    /// Last log index covered by this member's latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Last log index removed from the log (covered by a snapshot).
    pub purged_index: Option<u64>,
    /// The leader's member id, if one is known.
    pub leader: Option<u64>,
    /// Whether it leads.
    pub is_leader: bool,
    /// Size of the data files (log and snapshot) in bytes.
    pub db_size: u64,
    /// Bytes of the data files holding data (the rest is free pages, which
    /// [`Concord::defragment`] returns to the file system).
    pub db_size_in_use: u64,
    /// Keys in its store.
    pub keys: u64,
    /// Active leases in its store.
    pub leases: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: &'static str,
    /// Leader changes this member has seen since it opened.
    pub leader_changes: u64,
    /// Writes this member handed to the leader.
    pub forwarded_writes: u64,
    /// Linearizable reads whose read index it asked of the leader.
    pub forwarded_reads: u64,
    /// Calls that carried `forwarded_writes` to the leader (writes waiting
    /// together share one).
    pub forward_calls: u64,
    /// Read-index rounds asked of the leader (reads waiting together share one).
    pub read_index_rounds: u64,
    /// On the leader: how many log entries each other member is behind.
    pub replication_lag: Vec<(u64, u64)>,
}

impl Concord {
    /// This member's id (etcd's, from its peer URLs and the cluster token).
    pub fn member_id(&self) -> u64 {
        self.inner.member_id
    }

    /// The cluster's id (etcd's, from the member ids).
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// Every member of the cluster, as the membership in this member's log
    /// has them, with what each published about itself.
    pub fn members(&self) -> Vec<crate::cluster::MemberInfo> {
        let published = self.inner.shared.applier.read().machine.state.member_attributes.clone();
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, member)| {
                let attributes = published.get(id);
                crate::cluster::MemberInfo {
                    id: *id,
                    name: attributes.map_or_else(|| member.name.clone(), |a| a.name.clone()),
                    peer_urls: member.peer_urls.clone(),
                    client_urls: attributes.map_or_else(|| member.client_urls.clone(), |a| a.client_urls.clone()),
                    is_learner: !voters.contains(id),
                }
            })
            .collect()
    }

    /// What this member knows of its cluster: members, leader, term and
    /// its own role (`db.cluster().view()`). A handle on a follower serves
    /// exactly like one on the leader; this is for applications that want
    /// to know.
    pub(super) fn cluster_view(&self) -> crate::cluster::ClusterView {
        let members = self.members();
        let metrics = self.inner.raft.server_metrics();
        let m = metrics.borrow();
        crate::cluster::ClusterView {
            cluster_id: self.inner.cluster_id,
            member_id: self.inner.member_id,
            role: role_of(m.state),
            leader: m.current_leader,
            term: m.vote.leader_id().get_term(),
            members,
        }
    }

    /// The leader's member id, if one is known.
    pub fn leader(&self) -> Option<u64> {
        self.inner.raft.server_metrics().borrow().current_leader
    }

    /// This member's checksum of the keyspace history up to `revision`
    /// (0 = latest): `(hash, compact_revision, revision hashed)`. Members
    /// that applied the same log agree (etcd's HashKV; a local read).
    pub fn hash_kv(&self, revision: Revision) -> crate::Result<(u32, Revision, Revision)> {
        let applier = self.inner.shared.applier.read();
        let kv = applier.machine.kv();
        let hashed = if revision > 0 { revision } else { kv.revision() };
        let (hash, compact) = kv.hash(revision)?;
        Ok((hash, compact, hashed))
    }

    /// A checksum of this member's whole replicated state — keys with their
    /// history, leases with their recorded remaining time, alarms, members'
    /// published attributes — and the revision it was taken at (etcd's
    /// Hash). Members at the same applied log position agree. It encodes
    /// the whole state (from a copy: apply waits only for the copy), so it
    /// is for checks, not for a hot path.
    pub fn hash(&self) -> crate::Result<(u32, Revision)> {
        let state = self.inner.shared.applier.read().machine.state.clone();
        let mut hasher = Crc32Writer(crc32fast::Hasher::new());
        state.encode_snapshot_to(&mut hasher).map_err(crate::Error::Storage)?;
        Ok((hasher.0.finalize(), state.kv.revision()))
    }

    /// Watchers currently open on this member.
    pub fn watchers(&self) -> usize {
        self.inner.shared.hub.watcher_count()
    }

    /// The current Raft term (cheap: read from the metrics channel).
    pub fn raft_term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    /// Identity, Raft position and sizes of this member.
    pub fn status(&self) -> MemberStatus {
        let (role, replication_lag) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            let role = role_of(m.state).as_str();
            let last = m.last_log_index.unwrap_or(0);
            let lag = (m.replication.iter().flatten())
                .filter(|(id, _)| **id != self.inner.member_id)
                .map(|(id, matched)| (*id, last.saturating_sub(matched.map_or(0, |l| l.index))))
                .collect();
            (role, lag)
        };
        let (term, last_index, applied, leader, is_leader, snapshot_index, purged_index) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            (
                m.current_term,
                m.last_log_index.unwrap_or(0),
                m.last_applied.map_or(0, |id| id.index),
                m.current_leader,
                m.state == openraft::ServerState::Leader,
                m.snapshot.map(|id| id.index),
                m.purged.map(|id| id.index),
            )
        };
        let (revision, compact_revision, keys, leases) = {
            let applier = self.inner.shared.applier.read();
            let kv = applier.machine.kv();
            (kv.revision(), kv.compact_revision(), kv.live_keys(), applier.machine.leases().len() as u64)
        };
        let db_size = self.data_files_size();
        let db_size_in_use = self.data_in_use().min(db_size);
        let name = &self.inner.config.name;
        MemberStatus {
            member_id: self.member_id(),
            cluster_id: self.cluster_id(),
            name: name.clone(),
            revision,
            compact_revision,
            raft_term: term,
            raft_index: last_index,
            raft_applied_index: applied,
            snapshot_index,
            purged_index,
            leader,
            is_leader,
            db_size,
            db_size_in_use,
            keys,
            leases,
            role,
            leader_changes: self.inner.leader_changes.load(std::sync::atomic::Ordering::Relaxed),
            forwarded_writes: self.inner.forwarded_writes.load(std::sync::atomic::Ordering::Relaxed),
            forwarded_reads: self.inner.forwarded_reads.load(std::sync::atomic::Ordering::Relaxed),
            forward_calls: self.inner.forwarder.calls(),
            read_index_rounds: self.inner.read_index.rounds(),
            replication_lag,
        }
    }
}

fn role_of(state: openraft::ServerState) -> crate::cluster::Role {
    use crate::cluster::Role;
    match state {
        openraft::ServerState::Leader => Role::Leader,
        openraft::ServerState::Follower => Role::Follower,
        openraft::ServerState::Candidate => Role::Candidate,
        openraft::ServerState::Learner => Role::Learner,
        openraft::ServerState::Shutdown => Role::Shutdown,
    }
}

/// A CRC-32 fed through `std::io::Write`.
struct Crc32Writer(crc32fast::Hasher);

impl std::io::Write for Crc32Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
