//! Backups: a point-in-time copy of the replicated state in one file, and
//! restoring one into a new data directory (etcd's `Maintenance.Snapshot`,
//! `etcdctl snapshot save`, `etcdutl snapshot restore`).
//!
//! The file is what etcd's snapshots are: a bolt database ([`bolt`]) and a
//! SHA-256 of it at the end (etcdctl checks that shape and the checksum),
//! so etcd's tools read it — `etcdctl snapshot status` reports its revision
//! and keys, `etcdctl snapshot restore` makes an etcd member of it. The
//! database holds etcd's buckets filled from Concord's state (`etcd`) and
//! one more, `concord`, holding Concord's own encoding of the rest of the
//! state in chunks: [`MAGIC_KEYS_APART`], a length-prefixed
//! [`BackupHeader`] (postcard), the state as snapshots encode it without
//! its keys. The keys are read back from etcd's `key` bucket (written in the
//! order they were written, so the store comes back exactly), so nothing
//! Concord-only (anonymous leases, lease generations, limits) has to fit
//! etcd's buckets and nothing is stored twice. It is written and read as a
//! stream, never whole in memory: a first pass lays the pages out (the meta
//! pages at the front name the last one), a second writes them. Files
//! written before (the bare `concord-backup/1` stream, padded, with the
//! same checksum; or a bolt file whose `concord` bucket holds [`MAGIC`] and
//! the whole state) still read and restore. An etcd snapshot (no `concord`
//! bucket) restores as the state its buckets hold (`etcd_import`).
//!
//! What a backup holds: every key with its history since the last
//! compaction, the revision counters, leases with their remaining time as
//! last recorded (checkpointed every few seconds, so a restored lease never
//! expires earlier than it would have), the lease limits, users and roles.
//! What it does not carry over: members (a restore names the new cluster's),
//! alarms and pending promotions.
//!
//! A restore writes a data directory in which the state is the snapshot of
//! a new cluster's first log entry (index 0, as `initialize` writes its
//! first membership): the members started on it find themselves
//! initialized, with the restored state, and elect a leader.

pub mod bolt;
mod etcd;
mod etcd_import;

pub use etcd::EtcdStatus;

use std::io::{Read, Write};
use std::path::Path;

use openraft::{CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::{Member, MemberId};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::replication::files;
use crate::replication::log_writer::{LOG, META, META_CLUSTER_ID, META_COMMITTED, META_LAST_PURGED, META_MEMBER_ID};
use crate::replication::snapshot_store::SnapshotStore;
use crate::state_machine::State;
use crate::types::Revision;
use bolt::{BoltFile, BoltSummary, BoltWriter};

/// The first bytes of a backup file.
pub const MAGIC: &[u8; 16] = b"concord-backup/1";

/// The first bytes of Concord's encoding in the `concord` bucket when the
/// keys are not in it: the store is read from etcd's `key` bucket of the
/// same file (the encoding holds the rest of the state).
pub const MAGIC_KEYS_APART: &[u8; 16] = b"concord-backup/2";

/// Bytes of Concord's encoding per entry of the `concord` bucket: one entry
/// with its page header, element and 8-byte key fills 256 pages exactly.
const CHUNK: usize = 256 * bolt::PAGE_SIZE as usize - 40;

/// The bucket holding Concord's own encoding of the state.
const CONCORD_BUCKET: &[u8] = b"concord";

/// What a backup says about itself, ahead of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The store revision the backup was taken at.
    pub revision: Revision,
    /// The compaction point at that revision.
    pub compact_revision: Revision,
    /// Keys that existed at `revision`.
    pub keys: u64,
    /// Leases active at `revision`.
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

/// Lays a backup of `state` out without writing it: what the file's meta
/// pages must say, and with it the file's size ([`backup_size`]).
pub(crate) fn plan_backup(state: &State, header: &BackupHeader) -> Result<BoltSummary> {
    write_database(state, header, BoltSummary::default(), &mut std::io::sink()).map_err(cannot_write)
}

/// The size in bytes of the backup `plan` lays out, checksum included.
pub(crate) fn backup_size(plan: &BoltSummary) -> u64 {
    plan.bytes() + 32
}

/// Writes the backup of `state` that `plan` (from [`plan_backup`] of the same
/// state and header) laid out, and its checksum.
pub(crate) fn write_backup(
    state: &State,
    header: &BackupHeader,
    plan: &BoltSummary,
    out: &mut dyn Write,
) -> Result<()> {
    let mut out = HashingWriter { inner: out, hasher: Sha256::new() };
    let written = write_database(state, header, *plan, &mut out).map_err(cannot_write)?;
    if written != *plan {
        return Err(Error::Storage("a backup laid out differently on its second pass".into()));
    }
    let digest = out.hasher.finalize();
    out.inner.write_all(&digest).map_err(cannot_write)?;
    out.inner.flush().map_err(cannot_write)
}

fn cannot_write(e: std::io::Error) -> Error {
    Error::Storage(format!("cannot write the backup: {e}"))
}

/// The bolt database: etcd's buckets, then Concord's encoding in `concord`.
fn write_database(
    state: &State,
    header: &BackupHeader,
    plan: BoltSummary,
    out: &mut dyn Write,
) -> std::io::Result<BoltSummary> {
    let mut db = BoltWriter::new(out, plan)?;
    etcd::write_buckets(&mut db, state, header.raft_index)?;
    db.begin_bucket();
    let mut chunks = ChunkWriter { db: &mut db, chunk: Vec::with_capacity(CHUNK), next: 0 };
    let encoded = postcard::to_stdvec(header).map_err(std::io::Error::other)?;
    chunks.write_all(MAGIC_KEYS_APART)?;
    chunks.write_all(&(encoded.len() as u32).to_be_bytes())?;
    chunks.write_all(&encoded)?;
    // The keys are in etcd's `key` bucket already: not a second time here.
    let rest = State {
        kv: crate::mvcc::KvStore::default(),
        leases: state.leases.clone(),
        lease_limits: state.lease_limits,
        member_attributes: state.member_attributes.clone(),
        pending_voters: state.pending_voters.clone(),
        alarms: state.alarms.clone(),
        auth: state.auth.clone(),
    };
    rest.encode_snapshot_to(&mut chunks).map_err(std::io::Error::other)?;
    chunks.flush()?;
    db.end_bucket(CONCORD_BUCKET)?;
    db.finish()
}

/// Cuts what is written into the entries of the open bucket, keyed by their
/// big-endian number.
struct ChunkWriter<'a, 'b> {
    db: &'a mut BoltWriter<'b>,
    chunk: Vec<u8>,
    next: u64,
}

impl Write for ChunkWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.chunk.is_empty() {
            self.db.put(&self.next.to_be_bytes(), &self.chunk)?;
            self.next += 1;
            self.chunk.clear();
        }
        Ok(())
    }
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A backup file, checked: its header, size and checksum.
#[derive(Debug, Clone)]
pub struct BackupStatus {
    /// What the backup says about itself.
    pub header: BackupHeader,
    /// The file's size in bytes.
    pub size: u64,
    /// The SHA-256 the file ends with (checked against its contents).
    pub sha256: [u8; 32],
    /// What `etcdctl snapshot status` reports of it; `None` for a file from
    /// before backups were bolt files.
    pub etcd: Option<EtcdStatus>,
}

/// Reads `path` through once: its header, and whether its checksum holds.
pub fn status(path: &Path) -> Result<BackupStatus> {
    let size = std::fs::metadata(path).map_err(|e| cannot_read(path, e))?.len();
    let digest = verify(path, size)?;
    let header = match etcd_snapshot(path)? {
        Some(db) => etcd_import::read(&db).map_err(|e| not_readable(path, e))?.0,
        None => read_header(path)?.0,
    };
    let etcd = match BoltFile::open(open(path)?).map_err(|e| cannot_read(path, e))? {
        Some(db) => Some(etcd::status(&db).map_err(|e| cannot_read(path, e))?),
        None => None,
    };
    Ok(BackupStatus { header, size, sha256: digest, etcd })
}

/// The header and the state a backup holds (checksum checked first); an
/// etcd snapshot is read from etcd's buckets (`etcd_import`).
pub fn read(path: &Path) -> Result<(BackupHeader, State)> {
    read_checked(path, true)
}

/// [`read`], or without the checksum check (a bolt database file that
/// `etcdctl snapshot save` did not write, so nothing ends it: etcdutl's
/// `--skip-hash-check`).
fn read_checked(path: &Path, check_hash: bool) -> Result<(BackupHeader, State)> {
    if check_hash {
        // The checksum only: `status` would also hash every bucket for
        // etcdctl's figures, which a restore does not need.
        let size = std::fs::metadata(path).map_err(|e| cannot_read(path, e))?.len();
        verify(path, size)?;
    }
    if let Some(db) = etcd_snapshot(path)? {
        return etcd_import::read(&db).map_err(|e| not_readable(path, e));
    }
    let (header, _, keys_apart) = read_header(path)?;
    let mut state =
        State::decode_snapshot_from(|| read_header(path).map(|(_, state, _)| state).map_err(|e| e.to_string()))
            .map_err(|e| Error::InvalidRequest(format!("{}: {e}", path.display())))?;
    if keys_apart {
        let db = BoltFile::open(open(path)?).map_err(|e| cannot_read(path, e))?;
        let db = db.ok_or_else(|| cannot_read(path, "the keys are in a bolt database it does not hold"))?;
        state.kv = etcd_import::read_kv(&db).map_err(|e| cannot_read(path, e))?;
        if (state.kv.revision(), state.kv.compact_revision()) != (header.revision, header.compact_revision) {
            return Err(cannot_read(path, "its keys do not end at the revision its header names"));
        }
    }
    Ok((header, state))
}

/// The file's bolt database if it is an etcd snapshot (no `concord` bucket).
fn etcd_snapshot(path: &Path) -> Result<Option<BoltFile>> {
    let Some(db) = BoltFile::open(open(path)?).map_err(|e| cannot_read(path, e))? else { return Ok(None) };
    match db.bucket(CONCORD_BUCKET).map_err(|e| cannot_read(path, e))? {
        Some(_) => Ok(None),
        None => Ok(Some(db)),
    }
}

fn not_readable(path: &Path, e: String) -> Error {
    Error::InvalidRequest(format!("{}: an etcd snapshot Concord cannot take: {e}", path.display()))
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
    if size % 512 != 32 {
        return Err(Error::InvalidRequest(format!(
            "{} has no SHA-256 at its end (a database file rather than a snapshot?); \
             --skip-hash-check restores it without that check",
            path.display()
        )));
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

/// Concord's encoding in a backup, from its start: the `concord` bucket's
/// entries in order, or (a file from before the bolt container) the file.
fn payload(path: &Path) -> Result<Box<dyn Read>> {
    let Some(db) = BoltFile::open(open(path)?).map_err(|e| cannot_read(path, e))? else {
        return Ok(Box::new(std::io::BufReader::new(open(path)?)));
    };
    let root = db
        .bucket(CONCORD_BUCKET)
        .map_err(|e| cannot_read(path, e))?
        .ok_or_else(|| Error::InvalidRequest(format!("{} is not a Concord backup", path.display())))?;
    let leaves = db.leaves(&root).map_err(|e| cannot_read(path, e))?;
    Ok(Box::new(ChunkReader { db, leaves: leaves.into_iter(), chunk: Vec::new(), at: 0 }))
}

/// Reads the values of a bucket's leaves one after the other.
struct ChunkReader {
    db: BoltFile,
    leaves: std::vec::IntoIter<bolt::Leaf>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            let Some(leaf) = self.leaves.next() else { return Ok(0) };
            self.chunk.clear();
            self.at = 0;
            let chunk = &mut self.chunk;
            self.db
                .for_each_in_leaf(&leaf, &mut |_, _, value| {
                    chunk.extend_from_slice(value);
                    Ok(())
                })
                .map_err(std::io::Error::other)?;
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The header, the reader positioned where the state starts, and whether
/// the keys are apart from it (in the `key` bucket).
fn read_header(path: &Path) -> Result<(BackupHeader, Box<dyn Read>, bool)> {
    let not_backup = || Error::InvalidRequest(format!("{} is not a Concord backup", path.display()));
    let mut payload = payload(path)?;
    let mut magic = [0u8; 16];
    payload.read_exact(&mut magic).map_err(|_| not_backup())?;
    let keys_apart = match &magic {
        m if m == MAGIC => false,
        m if m == MAGIC_KEYS_APART => true,
        _ => return Err(not_backup()),
    };
    let mut len = [0u8; 4];
    payload.read_exact(&mut len).map_err(|_| not_backup())?;
    // Read, not allocated ahead: the length is the file's to claim.
    let len = u64::from(u32::from_be_bytes(len).min(1 << 20));
    let mut header = Vec::new();
    (&mut payload).take(len).read_to_end(&mut header).map_err(|_| not_backup())?;
    if header.len() as u64 != len {
        return Err(not_backup());
    }
    let header = postcard::from_bytes(&header).map_err(|_| not_backup())?;
    Ok((header, payload, keys_apart))
}

/// What [`restore`] made.
#[derive(Debug, Clone)]
pub struct Restored {
    /// What the restored backup said about itself.
    pub header: BackupHeader,
    /// The id of the member the restore made.
    pub member_id: MemberId,
    /// The id of its new cluster.
    pub cluster_id: u64,
}

/// Writes a new data directory for the member `config` describes, holding
/// the backup's state as the first state of the new cluster named by
/// `config.initial_cluster` (or this member alone). `config.data_dir` must
/// not exist yet (or be empty). Every member of the new cluster restores the
/// same backup with its own settings, as with `etcdutl snapshot restore`.
pub async fn restore(backup: &Path, config: &Config) -> Result<Restored> {
    restore_checked(backup, config, true).await
}

/// [`restore`] of a file whose checksum is not checked (or that has none):
/// etcdutl's `--skip-hash-check`.
pub async fn restore_unchecked(backup: &Path, config: &Config) -> Result<Restored> {
    restore_checked(backup, config, false).await
}

async fn restore_checked(backup: &Path, config: &Config, check_hash: bool) -> Result<Restored> {
    let dir = &config.data_dir;
    if dir.exists() && std::fs::read_dir(dir).map_err(|e| cannot_read(dir, e))?.next().is_some() {
        return Err(Error::InvalidRequest(format!(
            "{} is not empty: a restore writes a new data directory",
            dir.display()
        )));
    }
    let (header, mut state) = read_checked(backup, check_hash)?;
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

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// A state with history, a deletion, a compaction and a value larger
    /// than one `concord` chunk.
    fn state() -> State {
        let mut state = State::default();
        let mut revision = 1;
        let mut put = |state: &mut State, key: &str, value: Vec<u8>| {
            revision += 1;
            state.kv.put(revision, &Bytes::copy_from_slice(key.as_bytes()), Some(Bytes::from(value)), 0);
            state.kv.commit_revision(revision);
        };
        for i in 0..100 {
            put(&mut state, &format!("k/{i:03}"), format!("v{i}").into_bytes());
        }
        put(&mut state, "k/000", b"again".to_vec());
        put(&mut state, "large", vec![7u8; CHUNK + 10]);
        // One transaction writing keys out of key order (revision 104).
        state.kv.put(104, &Bytes::from_static(b"txn/z"), Some(Bytes::from_static(b"1")), 0);
        state.kv.put(104, &Bytes::from_static(b"txn/a"), Some(Bytes::from_static(b"2")), 0);
        state.kv.commit_revision(104);
        state.kv.delete_key(105, &Bytes::from_static(b"k/001"));
        state.kv.commit_revision(105);
        state.kv.compact(50).unwrap();
        state
    }

    fn write_to(path: &Path, state: &State) -> BackupHeader {
        let header = BackupHeader::of(state, 7, 9);
        let plan = plan_backup(state, &header).unwrap();
        let mut file = std::fs::File::create(path).unwrap();
        write_backup(state, &header, &plan, &mut file).unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), backup_size(&plan));
        header
    }

    #[test]
    fn a_backup_reads_back_as_the_state_it_was_written_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup");
        let state = state();
        let header = write_to(&path, &state);
        let (read_header, read_state) = read(&path).unwrap();
        assert_eq!(read_header, header);
        assert_eq!(read_state.kv, state.kv);
        let status = status(&path).unwrap();
        let etcd = status.etcd.expect("a bolt file");
        assert_eq!(etcd.revision, 105);
        assert_eq!(etcd.total_size + 32, status.size);
        // A damaged byte anywhere fails the checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5000] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(status_err(&path).contains("checksum"));
    }

    fn status_err(path: &Path) -> String {
        status(path).unwrap_err().to_string()
    }

    /// etcd's buckets alone for `state`, and their checksum: what an etcd
    /// snapshot holds.
    fn write_etcd_snapshot(path: &Path, state: &State) {
        std::fs::write(path, etcd_snapshot_bytes(state)).unwrap();
    }

    /// The bytes of an etcd snapshot of `state` (see `write_etcd_snapshot`).
    pub(super) fn etcd_snapshot_bytes(state: &State) -> Vec<u8> {
        let write = |plan: BoltSummary, out: &mut dyn Write| {
            let mut db = BoltWriter::new(out, plan).unwrap();
            etcd::write_buckets(&mut db, state, 7).unwrap();
            db.finish().unwrap()
        };
        let plan = write(BoltSummary::default(), &mut std::io::sink());
        let mut bytes = Vec::new();
        write(plan, &mut bytes);
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        bytes
    }

    /// An etcd snapshot (etcd's buckets only, as etcd writes them) reads
    /// as the state they were written from.
    #[test]
    fn an_etcd_snapshot_reads_as_the_state_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.db");
        let mut state = state();
        let lease = state.leases.grant(Some(0x5eed), 60, 105, false).unwrap().generation;
        state.leases.checkpoint(0x5eed, lease, 42_000);
        state.kv.put(106, &Bytes::from_static(b"leased"), Some(Bytes::from_static(b"x")), 0x5eed);
        state.kv.commit_revision(106);
        state.leases.attach(0x5eed, &Bytes::from_static(b"leased"));
        state
            .auth
            .users
            .insert("ann".into(), crate::auth::User { password_hash: Some("$2b$10$x".into()), ..Default::default() });
        write_etcd_snapshot(&path, &state);

        let (header, read_state) = read(&path).unwrap();
        assert_eq!(read_state.kv, state.kv);
        assert_eq!((header.revision, header.compact_revision, header.raft_index), (106, 50, 7));
        let lease = read_state.leases.get(0x5eed).unwrap();
        assert_eq!((lease.ttl_secs, lease.remaining_ms), (60, 42_000));
        assert_eq!(lease.keys.iter().collect::<Vec<_>>(), [&Bytes::from_static(b"leased")]);
        assert_eq!(read_state.auth.users["ann"].password_hash.as_deref(), Some("$2b$10$x"));
        assert_eq!(status(&path).unwrap().header, header);

        // A key attached to a lease the snapshot lacks is refused, not half taken.
        state.leases.remove(0x5eed);
        write_etcd_snapshot(&path, &state);
        let refused = read(&path).unwrap_err().to_string();
        assert!(refused.contains("which the snapshot does not have"), "{refused}");
    }

    /// Files written before backups were bolt files: the bare stream padded
    /// to 512 bytes, then its SHA-256.
    #[test]
    fn a_backup_from_before_the_bolt_container_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old");
        let state = state();
        let header = BackupHeader::of(&state, 7, 9);
        let mut bytes = MAGIC.to_vec();
        let encoded = postcard::to_stdvec(&header).unwrap();
        bytes.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&encoded);
        state.encode_snapshot_to(&mut bytes).unwrap();
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        std::fs::write(&path, &bytes).unwrap();
        let (read_header, read_state) = read(&path).unwrap();
        assert_eq!((read_header, read_state.kv), (header, state.kv));
        assert!(status(&path).unwrap().etcd.is_none());
    }
}
