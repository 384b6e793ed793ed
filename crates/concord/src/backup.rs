//! Backups: a point-in-time copy of the replicated state in one file, and
//! restoring one into a new data directory (etcd's `Maintenance.Snapshot`,
//! `etcdctl snapshot save`, `etcdutl snapshot restore`).
//!
//! The file: [`MAGIC`], a length-prefixed [`BackupHeader`] (postcard), the
//! state as snapshots encode it, zeros up to a multiple of 512 bytes, and a
//! SHA-256 of everything before it (as etcd ends its snapshot stream with a
//! SHA-256 of the data; etcdctl checks that shape). It is written
//! and read as a stream, never whole in memory.
//!
//! What a backup holds: every key with its history since the last
//! compaction, the revision counters, leases with their remaining time as
//! last recorded (checkpointed every few seconds, so a restored lease never
//! expires earlier than it would have), the lease limits. What it does not
//! carry over: members (a restore names the new cluster's), alarms and
//! pending promotions.
//!
//! A restore writes a data directory in which the state is the snapshot of
//! a new cluster's first log entry (index 0, as `initialize` writes its
//! first membership): the members started on it find themselves
//! initialized, with the restored state, and elect a leader.

use std::io::{Read, Write};
use std::path::Path;

use openraft::{CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::{Member, MemberId};
use crate::error::{Error, Result};
use crate::node::Config;
use crate::replication::files;
use crate::replication::log_writer::{LOG, META, META_CLUSTER_ID, META_COMMITTED, META_LAST_PURGED, META_MEMBER_ID};
use crate::replication::snapshot_store::SnapshotStore;
use crate::state_machine::State;
use crate::types::Revision;

/// The first bytes of a backup file.
pub const MAGIC: &[u8; 16] = b"concord-backup/1";

/// The contents before the checksum are padded to a multiple of this.
const BLOCK: u64 = 512;

/// What a backup says about itself, ahead of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The store revision the backup was taken at.
    pub revision: Revision,
    pub compact_revision: Revision,
    /// Keys that existed at `revision`.
    pub keys: u64,
    pub leases: u64,
    /// The applied log index of the member that took it.
    pub raft_index: u64,
    /// The cluster it was taken from.
    pub cluster_id: u64,
    /// Milliseconds since the Unix epoch when it was taken.
    pub taken_at_ms: u64,
}

impl BackupHeader {
    pub(crate) fn of(state: &State, raft_index: u64, cluster_id: u64) -> Self {
        let taken_at_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        BackupHeader {
            revision: state.kv.revision(),
            compact_revision: state.kv.compact_revision(),
            keys: state.kv.live_keys(),
            leases: state.leases.len() as u64,
            raft_index,
            cluster_id,
            taken_at_ms,
        }
    }
}

/// Writes a backup of `state` to `out`, as it is encoded.
pub(crate) fn write_backup(state: &State, header: &BackupHeader, out: &mut dyn Write) -> Result<()> {
    let mut out = HashingWriter { inner: out, hasher: Sha256::new(), written: 0 };
    let header = postcard::to_stdvec(header).map_err(|e| Error::Storage(format!("cannot encode a backup: {e}")))?;
    let io = |e: std::io::Error| Error::Storage(format!("cannot write the backup: {e}"));
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&(header.len() as u32).to_be_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    state.encode_snapshot_to(&mut out).map_err(Error::Storage)?;
    // etcdctl takes a snapshot only if its size is a multiple of 512 plus
    // the checksum (a bolt file's pages); zeros after the state (hashed
    // with it) make ours one.
    let padding = (BLOCK - out.written % BLOCK) % BLOCK;
    out.write_all(&vec![0u8; padding as usize]).map_err(io)?;
    let digest = out.hasher.finalize();
    out.inner.write_all(&digest).map_err(io)?;
    out.inner.flush().map_err(io)
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A backup file, checked: its header, size and checksum.
#[derive(Debug, Clone)]
pub struct BackupStatus {
    pub header: BackupHeader,
    /// The file's size in bytes.
    pub size: u64,
    /// The SHA-256 the file ends with (checked against its contents).
    pub sha256: [u8; 32],
}

/// Reads `path` through once: its header, and whether its checksum holds.
pub fn status(path: &Path) -> Result<BackupStatus> {
    let size = std::fs::metadata(path).map_err(|e| cannot_read(path, e))?.len();
    let digest = verify(path, size)?;
    let (header, _) = read_header(&mut open(path)?, path)?;
    Ok(BackupStatus { header, size, sha256: digest })
}

/// The header and the state a backup holds (checksum checked first).
pub fn read(path: &Path) -> Result<(BackupHeader, State)> {
    let status = status(path)?;
    let (header, state_at) = read_header(&mut open(path)?, path)?;
    let state_len = status.size.saturating_sub(state_at + 32);
    let state = State::decode_snapshot_from(|| {
        let mut file = open(path).map_err(|e| e.to_string())?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(state_at)).map_err(|e| e.to_string())?;
        Ok(std::io::BufReader::new(file.take(state_len)))
    })
    .map_err(|e| Error::InvalidRequest(format!("{}: {e}", path.display())))?;
    Ok((header, state))
}

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| cannot_read(path, e))
}

fn cannot_read(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("cannot read {}: {e}", path.display()))
}

/// Checks the trailing SHA-256 against the rest of the file.
fn verify(path: &Path, size: u64) -> Result<[u8; 32]> {
    if size < MAGIC.len() as u64 + 4 + 32 {
        return Err(Error::InvalidRequest(format!("{} is not a Concord backup (too short)", path.display())));
    }
    let mut file = std::io::BufReader::new(open(path)?);
    let mut hasher = Sha256::new();
    std::io::copy(&mut (&mut file).take(size - 32), &mut HashSink(&mut hasher)).map_err(|e| cannot_read(path, e))?;
    let mut stored = [0u8; 32];
    file.read_exact(&mut stored).map_err(|e| cannot_read(path, e))?;
    if hasher.finalize().as_slice() != stored {
        return Err(Error::InvalidRequest(format!(
            "{}: the checksum does not match the contents (a damaged or incomplete backup)",
            path.display()
        )));
    }
    Ok(stored)
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The header, and where the state starts.
fn read_header(file: &mut std::fs::File, path: &Path) -> Result<(BackupHeader, u64)> {
    let not_backup = || Error::InvalidRequest(format!("{} is not a Concord backup", path.display()));
    let mut magic = [0u8; 16];
    file.read_exact(&mut magic).map_err(|_| not_backup())?;
    if &magic != MAGIC {
        return Err(not_backup());
    }
    let mut len = [0u8; 4];
    file.read_exact(&mut len).map_err(|_| not_backup())?;
    let len = u32::from_be_bytes(len).min(1 << 20);
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|_| not_backup())?;
    let header = postcard::from_bytes(&header).map_err(|_| not_backup())?;
    Ok((header, MAGIC.len() as u64 + 4 + len as u64))
}

/// What [`restore`] made.
#[derive(Debug, Clone)]
pub struct Restored {
    pub header: BackupHeader,
    pub member_id: MemberId,
    pub cluster_id: u64,
}

/// Writes a new data directory for the member `config` describes, holding
/// the backup's state as the first state of the new cluster named by
/// `config.initial_cluster` (or this member alone). `config.data_dir` must
/// not exist yet (or be empty). Every member of the new cluster restores the
/// same backup with its own settings, as with `etcdutl snapshot restore`.
pub async fn restore(backup: &Path, config: &Config) -> Result<Restored> {
    let dir = &config.data_dir;
    if dir.exists() && std::fs::read_dir(dir).map_err(|e| cannot_read(dir, e))?.next().is_some() {
        return Err(Error::InvalidRequest(format!(
            "{} is not empty: a restore writes a new data directory",
            dir.display()
        )));
    }
    let (header, mut state) = read(backup)?;
    // Members, alarms and promotions belong to the old cluster.
    state.member_attributes.clear();
    state.pending_voters.clear();
    state.alarms.clear();
    let members = config.initial_members()?;
    let member_id = config.member_id();
    let cluster_id = crate::cluster::cluster_id(members.keys().copied());

    let created = files::create_data_dir(dir).map_err(Error::Storage)?;
    // The new cluster's first entry: its membership, at index 0 (where
    // `initialize` would write it), with the restored state applied.
    let first = LogId::new(CommittedLeaderId::new(0, 0), 0);
    let voters: std::collections::BTreeSet<MemberId> = members.keys().copied().collect();
    let membership: Membership<MemberId, Member> = Membership::new(vec![voters], members);
    let meta = SnapshotMeta {
        last_log_id: Some(first),
        last_membership: StoredMembership::new(Some(first), membership),
        snapshot_id: format!("restored-{}", header.revision),
    };
    let snapshots = SnapshotStore::open(&dir.join("snapshot.redb"), config.storage.as_ref()).map_err(Error::Storage)?;
    let meta = crate::replication::log_store::encode(&meta);
    snapshots
        .build(Some(0), meta, move |out| state.encode_snapshot_to(out))
        .await
        .map_err(Error::Storage)?
        .ok_or_else(|| Error::Storage("the new data directory already had a snapshot".into()))?;

    let log = files::open_database(&dir.join("concord.redb"), 1024 * 1024, config.storage.as_ref())
        .map_err(Error::Storage)?;
    let txn = log.begin_write().map_err(|e| Error::Storage(e.to_string()))?;
    {
        let storage = |e: redb::Error| Error::Storage(e.to_string());
        txn.open_table(LOG).map_err(|e| storage(e.into()))?;
        let mut meta = txn.open_table(META).map_err(|e| storage(e.into()))?;
        let purged = crate::replication::log_store::encode(&first);
        meta.insert(META_LAST_PURGED, purged.as_slice()).map_err(|e| storage(e.into()))?;
        let committed = crate::replication::log_store::encode(&Some(first));
        meta.insert(META_COMMITTED, committed.as_slice()).map_err(|e| storage(e.into()))?;
        meta.insert(META_CLUSTER_ID, cluster_id.to_le_bytes().as_slice()).map_err(|e| storage(e.into()))?;
        meta.insert(META_MEMBER_ID, member_id.to_le_bytes().as_slice()).map_err(|e| storage(e.into()))?;
    }
    txn.commit().map_err(|e| Error::Storage(e.to_string()))?;
    drop(log);
    drop(snapshots);
    files::sync_dir(dir).map_err(Error::Storage)?;
    if let Some(parent) = created {
        files::sync_dir(&parent).map_err(Error::Storage)?;
    }
    Ok(Restored { header, member_id, cluster_id })
}
