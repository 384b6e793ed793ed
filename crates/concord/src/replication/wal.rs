//! The Raft log's entries in append-only segment files (`log-N.wal`),
//! written by the log writer thread: a batch of appends is one write and
//! one fdatasync, where a redb commit took eight page writes and an
//! fdatasync (measured on this disk: ~120–180 µs against ~300 µs per
//! commit, the floor of a single write's latency). The vote, the committed
//! pointer as last recorded, the purge point, the member's identity and the
//! list of live segments stay in `concord.redb`'s `raft_meta` table,
//! changed rarely and through redb's commits.
//!
//! The last segment's file is extended ahead of the writes, 64 KiB at a
//! time (`fallocate`, Linux, real files only), so an append does not change
//! the file's size and its fdatasync has no metadata to write (measured:
//! ~115 µs a sync, against ~185 µs when every append grows the file). The
//! space ahead reads as zeros, which end the replay; a closed segment is
//! cut to its records.
//!
//! A record is `len: u32 LE, crc32(payload): u32 LE, payload`, and a
//! payload is a kind byte then its fields: an entry (index, encoded
//! entry), a truncation (entries from an index on are gone) or the
//! committed pointer. Replay reads the segments in order and applies them
//! in order.
//!
//! Invariants:
//! - only the last segment is ever written; a segment before it was synced
//!   whole before the next one was created, so a bad record there is
//!   corruption and opening fails;
//! - in the last segment, the first record that is incomplete or fails its
//!   checksum is a torn write that was never acknowledged: it and
//!   everything after it are cut off at open, so nothing written later can
//!   line up with stale bytes;
//! - a segment is recorded in `raft_meta` (`wal_segments`) before anything
//!   is written into it, and dropped from it before its file is removed, so
//!   the live segments are exactly the recorded range (no directory
//!   listing: a simulated disk has none);
//! - a segment is removed only when every entry in it is at or below the
//!   purge point, which is durable first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use redb::backends::FileBackend;
use redb::{Database, ReadableDatabase, StorageBackend};

use super::files::StorageFactory;
use super::log_writer::META;

/// A segment is closed once it passes this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// `raft_meta` key: first and last live segment ids (u64 LE each).
pub(crate) const META_WAL_SEGMENTS: &str = "wal_segments";

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_COMMITTED: u8 = 3;
const HEADER: u64 = 8;
/// The last segment's file is extended this far ahead of the writes.
const PREALLOCATE: u64 = 64 * 1024;

/// One segment file, shared by the writer and readers of old entries.
pub(crate) struct Segment {
    id: u64,
    backend: Box<dyn StorageBackend>,
    /// The file itself, to extend ahead of the writes; `None` on storage
    /// that is not a plain file (tests' simulated disks).
    file: Option<std::fs::File>,
}

/// Where an entry's encoded bytes are.
#[derive(Clone)]
pub(crate) struct Location {
    segment: Arc<Segment>,
    offset: u64,
    len: u32,
}

impl Location {
    /// The entry's encoded bytes.
    pub(crate) fn read(&self) -> Result<Vec<u8>, String> {
        let mut out = vec![0; self.len as usize];
        self.segment
            .backend
            .read(self.offset, &mut out)
            .map_err(|e| format!("cannot read log segment {}: {e}", self.segment.id))?;
        Ok(out)
    }
}

/// Every live entry's location, for readers of entries that left memory.
pub(crate) type WalIndex = Arc<Mutex<BTreeMap<u64, Location>>>;

/// What replay found.
#[derive(Default)]
pub(crate) struct Replayed {
    /// Live entries, encoded, by index.
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// The last committed pointer recorded in the segments.
    pub committed: Option<Vec<u8>>,
}

/// An index change to make once the write holding it is durable.
enum Pending {
    Entry { index: u64, at: usize, len: u32 },
    Truncate { from: u64 },
}

/// The writer's side: the live segments and what is waiting to be written.
pub(crate) struct Wal {
    dir: PathBuf,
    storage: Option<StorageFactory>,
    /// Live segments, oldest first, each with the highest entry index in it.
    segments: Vec<(Arc<Segment>, Option<u64>)>,
    /// Bytes written into the last segment.
    end: u64,
    /// The last segment's file size (extended ahead of `end`); `u64::MAX`
    /// where it is not extended ahead.
    allocated: u64,
    /// A segment is closed once it passes this many bytes.
    segment_bytes: u64,
    /// Bytes of the segments before the last.
    closed_bytes: u64,
    buffer: Vec<u8>,
    pending: Vec<Pending>,
    index: WalIndex,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("log-{id:016x}.wal"))
}

fn open_segment(dir: &Path, storage: Option<&StorageFactory>, id: u64) -> Result<Segment, String> {
    let path = segment_path(dir, id);
    let cannot = |e: &dyn std::fmt::Display| format!("cannot open {}: {e}", path.display());
    match storage {
        Some(factory) => Ok(Segment { id, backend: factory(&path).map_err(|e| cannot(&e))?, file: None }),
        None => {
            let file = super::files::open_data_file(&path).map_err(|e| cannot(&e))?;
            let handle = file.try_clone().map_err(|e| cannot(&e))?;
            let backend = Box::new(FileBackend::new(file).map_err(|e| cannot(&e))?);
            Ok(Segment { id, backend, file: Some(handle) })
        }
    }
}

/// Extends `file` to `len` bytes with allocated space that reads as zeros;
/// false where the file system cannot.
fn extend(file: &std::fs::File, from: u64, len: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), from, len - from).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, from, len);
        false
    }
}

fn decode_range(bytes: &[u8]) -> Result<(u64, u64), String> {
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| "the stored log segment range is not 16 bytes".to_string())?;
    let first = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let last = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
    Ok((first, last))
}

fn record_range(db: &Database, first: u64, last: u64) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let mut range = first.to_le_bytes().to_vec();
        range.extend_from_slice(&last.to_le_bytes());
        meta.insert(META_WAL_SEGMENTS, range.as_slice()).map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())
}

impl Wal {
    /// Opens the segments recorded in `db` (creating the first on a new
    /// data directory), replays them and cuts off a torn tail.
    pub(crate) fn open(dir: &Path, storage: Option<&StorageFactory>, db: &Database) -> Result<(Wal, Replayed), String> {
        let recorded = {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            match txn.open_table(META) {
                Ok(meta) => meta.get(META_WAL_SEGMENTS).map_err(|e| e.to_string())?.map(|v| decode_range(v.value())),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.to_string()),
            }
            .transpose()?
        };
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            storage: storage.cloned(),
            segments: Vec::new(),
            end: 0,
            allocated: u64::MAX,
            segment_bytes: SEGMENT_BYTES,
            closed_bytes: 0,
            buffer: Vec::with_capacity(64 * 1024),
            pending: Vec::new(),
            index: Arc::default(),
        };
        let mut replayed = Replayed::default();
        let Some((first, last)) = recorded else {
            wal.create_segment(db, 1, 1)?;
            return Ok((wal, replayed));
        };
        let mut locations: BTreeMap<u64, Location> = BTreeMap::new();
        for id in first..=last {
            let segment = Arc::new(open_segment(dir, storage, id)?);
            let len = segment.backend.len().map_err(|e| format!("log segment {id}: {e}"))?;
            let mut max_index = None;
            let (end, torn) = replay_segment(&segment, len, &mut replayed, &mut locations, &mut max_index)?;
            if torn && id != last {
                return Err(format!(
                    "log segment {} is damaged at byte {end} of {len} (a segment before the last is never torn)",
                    segment_path(dir, id).display()
                ));
            }
            if end < len {
                // Zeros extended ahead of the writes, or a torn write.
                if torn {
                    tracing::warn!(segment = id, kept = end, "cutting off a torn write at the log's end");
                }
                segment.backend.set_len(end).map_err(|e| e.to_string())?;
                segment.backend.sync_data().map_err(|e| e.to_string())?;
            }
            if id == last {
                wal.end = end;
                wal.allocated = if segment.file.is_some() { end } else { u64::MAX };
            } else {
                wal.closed_bytes += end;
            }
            wal.segments.push((segment, max_index));
        }
        *wal.index.lock() = locations;
        if storage.is_none() {
            remove_stale_segments(dir, first, last);
        }
        Ok((wal, replayed))
    }

    /// Readers' view of where entries are.
    pub(crate) fn index(&self) -> WalIndex {
        self.index.clone()
    }

    /// Bytes of records in the live segments.
    pub(crate) fn bytes(&self) -> u64 {
        self.closed_bytes + self.end
    }

    /// Bytes of the live segments' files (the last one extended ahead).
    pub(crate) fn file_bytes(&self) -> u64 {
        self.closed_bytes + if self.allocated == u64::MAX { self.end } else { self.allocated }
    }

    fn push(&mut self, kind: u8, fields: &[&[u8]]) -> usize {
        let len: usize = 1 + fields.iter().map(|f| f.len()).sum::<usize>();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        for field in fields {
            crc.update(field);
        }
        self.buffer.extend_from_slice(&(len as u32).to_le_bytes());
        self.buffer.extend_from_slice(&crc.finalize().to_le_bytes());
        self.buffer.push(kind);
        let payload = self.buffer.len();
        for field in fields {
            self.buffer.extend_from_slice(field);
        }
        payload
    }

    /// Queues an entry (written by the next [`Self::flush`]).
    pub(crate) fn push_entry(&mut self, index: u64, bytes: &[u8]) {
        let at = self.push(KIND_ENTRY, &[&index.to_le_bytes(), bytes]) + 8;
        self.pending.push(Pending::Entry { index, at, len: bytes.len() as u32 });
    }

    /// Queues the removal of every entry from `from` on.
    pub(crate) fn push_truncate(&mut self, from: u64) {
        self.push(KIND_TRUNCATE, &[&from.to_le_bytes()]);
        self.pending.push(Pending::Truncate { from });
    }

    /// Queues the committed pointer.
    pub(crate) fn push_committed(&mut self, committed: &[u8]) {
        self.push(KIND_COMMITTED, &[committed]);
    }

    /// Whether anything waits to be written.
    pub(crate) fn has_pending(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Writes what is queued in one write and makes it durable (one
    /// fdatasync), moving to a new segment first if the last one is full.
    pub(crate) fn flush(&mut self, db: &Database) -> Result<(), String> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.end > 0 && self.end + self.buffer.len() as u64 > self.segment_bytes {
            self.rotate(db)?;
        }
        let needed = self.end + self.buffer.len() as u64;
        if needed > self.allocated {
            self.extend_to(needed);
        }
        let (segment, max_index) = self.segments.last_mut().expect("a live segment");
        let segment = segment.clone();
        let write = segment
            .backend
            .write(self.end, &self.buffer)
            .and_then(|()| segment.backend.sync_data())
            .map_err(|e| format!("cannot write log segment {}: {e}", segment.id));
        if let Err(e) = write {
            self.buffer.clear();
            self.pending.clear();
            return Err(e);
        }
        let base = self.end;
        self.end += self.buffer.len() as u64;
        let mut index = self.index.lock();
        for pending in self.pending.drain(..) {
            match pending {
                Pending::Entry { index: i, at, len } => {
                    *max_index = Some(max_index.map_or(i, |m| m.max(i)));
                    index.insert(i, Location { segment: segment.clone(), offset: base + at as u64, len });
                }
                Pending::Truncate { from } => {
                    index.split_off(&from);
                }
            }
        }
        self.buffer.clear();
        Ok(())
    }

    /// Forgets entries up to `upto` (the purge point, already durable):
    /// removes every segment whose entries are all at or below it, first
    /// moving to a new segment if that is true of the last one too.
    pub(crate) fn purge(&mut self, db: &Database, upto: u64) -> Result<(), String> {
        debug_assert!(self.buffer.is_empty(), "flush before purging");
        {
            let mut index = self.index.lock();
            *index = index.split_off(&(upto + 1));
        }
        let all_purged = |max: &Option<u64>| max.is_none_or(|m| m <= upto);
        if self.end > 0 && self.segments.last().is_some_and(|(_, max)| all_purged(max)) {
            self.rotate(db)?;
        }
        let dead = self.segments[..self.segments.len() - 1].iter().take_while(|(_, max)| all_purged(max)).count();
        if dead == 0 {
            return Ok(());
        }
        let removed: Vec<_> = self.segments.drain(..dead).collect();
        let (first, last) = (self.segments[0].0.id, self.segments.last().expect("the last stays").0.id);
        record_range(db, first, last)?;
        for (segment, _) in removed {
            self.closed_bytes -= segment.backend.len().unwrap_or(0).min(self.closed_bytes);
            let path = segment_path(&self.dir, segment.id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot remove a purged log segment"),
            }
        }
        Ok(())
    }

    /// Extends the last segment's file past `needed`, 64 KiB at a time.
    fn extend_to(&mut self, needed: u64) {
        let target = needed.div_ceil(PREALLOCATE) * PREALLOCATE;
        let (segment, _) = self.segments.last().expect("a live segment");
        match &segment.file {
            Some(file) if extend(file, self.allocated, target) => self.allocated = target,
            _ => {
                tracing::debug!(
                    segment = segment.id,
                    "the log's segment cannot be extended ahead; it grows as written"
                );
                self.allocated = u64::MAX;
            }
        }
    }

    /// Closes the last segment (cut to its records) and starts the next.
    fn rotate(&mut self, db: &Database) -> Result<(), String> {
        if let Some((last, _)) = self.segments.last()
            && self.allocated != u64::MAX
            && self.allocated > self.end
        {
            last.backend.set_len(self.end).map_err(|e| e.to_string())?;
        }
        let next = self.segments.last().map_or(1, |(s, _)| s.id + 1);
        let first = self.segments.first().map_or(next, |(s, _)| s.id);
        self.closed_bytes += self.end;
        self.create_segment(db, first, next)
    }

    /// Creates segment `id` empty, records `first..=id` as the live range
    /// and makes the file's directory entry durable, before anything is
    /// written into it.
    fn create_segment(&mut self, db: &Database, first: u64, id: u64) -> Result<(), String> {
        let segment = open_segment(&self.dir, self.storage.as_ref(), id)?;
        segment.backend.set_len(0).map_err(|e| e.to_string())?;
        segment.backend.sync_data().map_err(|e| e.to_string())?;
        record_range(db, first, id)?;
        super::files::sync_dir(&self.dir)?;
        self.allocated = if segment.file.is_some() { 0 } else { u64::MAX };
        self.segments.push((Arc::new(segment), None));
        self.end = 0;
        Ok(())
    }
}

/// Removes segment files outside the live range: left by a crash between
/// a purge's record of the new range and the removal of the files.
fn remove_stale_segments(dir: &Path, first: u64, last: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("log-"))
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|id| u64::from_str_radix(id, 16).ok())
        else {
            continue;
        };
        if id < first || id > last {
            tracing::info!(segment = id, "removing a log segment left by a purge that did not finish");
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(segment = id, error = %e, "cannot remove a stale log segment");
            }
        }
    }
}

/// Replays one segment's records into `replayed` and `locations`; returns
/// where its valid records end, and whether anything but zeros follows
/// (a torn write).
fn replay_segment(
    segment: &Arc<Segment>,
    len: u64,
    replayed: &mut Replayed,
    locations: &mut BTreeMap<u64, Location>,
    max_index: &mut Option<u64>,
) -> Result<(u64, bool), String> {
    let mut bytes = vec![0; len as usize];
    segment.backend.read(0, &mut bytes).map_err(|e| format!("cannot read log segment {}: {e}", segment.id))?;
    let mut at = 0usize;
    while at as u64 + HEADER <= len {
        let record_len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let start = at + HEADER as usize;
        if record_len == 0 || start + record_len > bytes.len() {
            break;
        }
        let payload = &bytes[start..start + record_len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let fields = &payload[1..];
        match payload[0] {
            KIND_ENTRY if fields.len() >= 8 => {
                let index = u64::from_le_bytes(fields[..8].try_into().expect("8 bytes"));
                let entry = &fields[8..];
                replayed.entries.insert(index, entry.to_vec());
                *max_index = Some(max_index.map_or(index, |m| m.max(index)));
                let offset = (start + 1 + 8) as u64;
                locations.insert(index, Location { segment: segment.clone(), offset, len: entry.len() as u32 });
            }
            KIND_TRUNCATE if fields.len() == 8 => {
                let from = u64::from_le_bytes(fields.try_into().expect("8 bytes"));
                replayed.entries.split_off(&from);
                locations.split_off(&from);
            }
            KIND_COMMITTED => replayed.committed = Some(fields.to_vec()),
            kind => return Err(format!("log segment {}: unknown record kind {kind} at byte {at}", segment.id)),
        }
        at = start + record_len;
    }
    let torn = bytes[at..].iter().any(|b| *b != 0);
    Ok((at as u64, torn))
}

#[cfg(test)]
mod tests;
