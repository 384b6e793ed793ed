//! openraft's log storage: entries in the log's segment files (`wal`), vote
//! and the rest in redb, all through the group-commit writer, with the
//! entries not yet applied also held decoded in memory.
//!
//! The in-memory copy is what readers (apply, replication) normally see; it
//! is updated before the write is sent, so an appended entry is readable at
//! once as openraft requires, and it is durable when the writer calls back.
//! Entries below the applied index are dropped from memory (they are durable
//! by then) and read back from the data file if ever asked for (a lagging
//! follower). The entry at the applied index stays, so the last log id and
//! truncation points are always known in memory.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::TypeConfig;
use super::log_writer::{
    LOG, META, META_CLUSTER_ID, META_COMMITTED, META_LAST_PURGED, META_MEMBER_ID, META_VOTE, WriteOp,
};
use super::snapshot_store::Coverage;
use super::wal::{Location, Replayed, WalIndex};

type NodeId = u64;

/// The log as read from the data file at start.
#[derive(Default)]
pub(crate) struct LogCache {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    /// The cluster id recorded at the first open (`None` on pristine
    /// storage, and on data written before it was recorded).
    pub(crate) cluster_id: Option<u64>,
    /// This member's id, recorded with the cluster id.
    pub(crate) member_id: Option<u64>,
}

impl LogCache {
    /// Nothing was ever written: no entry, no vote.
    pub(crate) fn is_pristine(&self) -> bool {
        self.entries.is_empty() && self.vote.is_none() && self.last_purged.is_none()
    }
}

/// How long a purge waits for the snapshot covering it to be durable (a
/// received snapshot is decoded and written by the state machine while
/// openraft already purges; decoding a large one takes seconds).
const SNAPSHOT_DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The Raft log. Cloning gives another handle to the same log (readers).
#[derive(Clone)]
pub struct LogStore {
    cache: Arc<Mutex<LogCache>>,
    writer: mpsc::Sender<WriteOp>,
    /// Where every durable entry is in the segment files.
    durable: WalIndex,
    /// Highest applied index, set by the state machine; entries below it
    /// may leave memory.
    applied: Arc<AtomicU64>,
    /// Encoded bytes appended since the last snapshot (drives snapshots).
    bytes_since_snapshot: Arc<AtomicU64>,
    /// How far the durable snapshot covers the log: the most a purge takes.
    snapshot: Coverage,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("encoding to a Vec cannot fail")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("corrupt record in the data file: {e}"))
}

fn io_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

impl LogStore {
    /// A log store over what [`Self::load`] read, writing through `writer`.
    pub(crate) fn new(
        cache: LogCache,
        writer: mpsc::Sender<WriteOp>,
        durable: WalIndex,
        applied: Arc<AtomicU64>,
        bytes_since_snapshot: Arc<AtomicU64>,
        snapshot: Coverage,
    ) -> Self {
        LogStore { cache: Arc::new(Mutex::new(cache)), writer, durable, applied, bytes_since_snapshot, snapshot }
    }

    /// Entries both applied and written to the segment files leave memory
    /// (it keeps the last applied one). Applied alone is not enough: a
    /// follower may apply an entry the leader committed before its own
    /// append of it is written, and an entry gone from memory before it is
    /// in the segment index was read back as a gap (a torture run's
    /// "try to get log at index N but got Some(N+4)").
    fn evict_applied(&self, cache: &mut LogCache) {
        let applied = self.applied.load(Ordering::Acquire);
        let durable = self.durable.lock();
        while cache.entries.first_key_value().is_some_and(|(index, _)| *index < applied && durable.contains_key(index))
        {
            cache.entries.pop_first();
        }
    }

    /// Entries `[from, to)` read back from the segment files.
    fn read_durable(&self, from: u64, to: u64) -> Result<Vec<Entry<TypeConfig>>, String> {
        // Locations hold their segment open: a purge meanwhile cannot take
        // the bytes away.
        let locations: Vec<Location> = self.durable.lock().range(from..to).map(|(_, l)| l.clone()).collect();
        locations.iter().map(|location| decode(&location.read()?)).collect()
    }

    /// Entries kept in `concord.redb` before the segment files, if any (to
    /// be moved into them once).
    pub(crate) fn legacy_entries(db: &Database) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        match txn.open_table(LOG) {
            Ok(table) => table
                .iter()
                .map_err(|e| e.to_string())?
                .map(|row| row.map(|(index, bytes)| (index.value(), bytes.value().to_vec())).map_err(|e| e.to_string()))
                .collect(),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The log as the segment files replayed it, with the vote, committed
    /// pointer and purge point from `concord.redb`.
    pub(crate) fn load(db: &Database, replayed: Replayed) -> Result<LogCache, String> {
        let mut cache = LogCache::default();
        let last_purged = {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            match txn.open_table(META) {
                Ok(table) => table
                    .get(META_LAST_PURGED)
                    .map_err(|e| e.to_string())?
                    .map(|v| decode::<LogId<NodeId>>(v.value()))
                    .transpose()?,
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.to_string()),
            }
        };
        let purged_index = last_purged.map(|id| id.index);
        for (index, bytes) in replayed.entries {
            if purged_index.is_some_and(|p| index <= p) {
                continue;
            }
            cache.entries.insert(index, decode(&bytes)?);
        }
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        match txn.open_table(META) {
            Ok(table) => {
                let get = |key: &str| -> Result<Option<Vec<u8>>, String> {
                    Ok(table.get(key).map_err(|e| e.to_string())?.map(|v| v.value().to_vec()))
                };
                cache.vote = get(META_VOTE)?.map(|b| decode(&b)).transpose()?;
                // The later of the two records of it.
                let in_wal = replayed.committed.as_deref().map(decode::<Option<LogId<NodeId>>>).transpose()?.flatten();
                let in_meta = get(META_COMMITTED)?.map(|b| decode::<Option<LogId<NodeId>>>(&b)).transpose()?.flatten();
                cache.committed = in_wal.max(in_meta);
                cache.last_purged = get(META_LAST_PURGED)?.map(|b| decode(&b)).transpose()?;
                let id = |key: &str| -> Result<Option<u64>, String> {
                    match get(key)? {
                        None => Ok(None),
                        Some(b) => Ok(Some(u64::from_le_bytes(
                            b.as_slice().try_into().map_err(|_| format!("the stored {key} is not 8 bytes"))?,
                        ))),
                    }
                };
                cache.cluster_id = id(META_CLUSTER_ID)?;
                cache.member_id = id(META_MEMBER_ID)?;
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        Ok(cache)
    }

    /// Sends an op that must be durable before we return.
    async fn write_and_wait(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), String>>) -> WriteOp,
    ) -> Result<(), StorageError<NodeId>> {
        let (ack, done) = oneshot::channel();
        self.writer.send(op(ack)).map_err(|_| io_err("the log writer has stopped"))?;
        done.await.map_err(|_| io_err("the log writer has stopped"))?.map_err(io_err)
    }

    /// Index of the last entry, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.cache.lock().entries.keys().next_back().copied()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let (cached, first_cached, last_purged) = {
            let cache = self.cache.lock();
            let cached: Vec<_> = cache.entries.range(range.clone()).map(|(_, e)| e.clone()).collect();
            (cached, cache.entries.keys().next().copied(), cache.last_purged.map(|id| id.index))
        };
        let entries = match first_cached {
            Some(first) if start >= first => cached,
            _ => {
                // Part of the range left memory after being applied.
                let end = match range.end_bound() {
                    Bound::Included(e) => e + 1,
                    Bound::Excluded(e) => *e,
                    Bound::Unbounded => u64::MAX,
                };
                let mut entries = self
                    .read_durable(start, end.min(first_cached.unwrap_or(u64::MAX)))
                    .map_err(|e| StorageIOError::read_logs(AnyError::error(e)))?;
                entries.extend(cached);
                entries
            }
        };
        check_no_gap(start, last_purged, &entries).map_err(|e| StorageIOError::read_logs(AnyError::error(e)))?;
        Ok(entries)
    }
}

/// What a read of the log returns holds no gap: consecutive indexes, from
/// `start` on unless `start` was purged. A gap would be sent to a follower
/// as if whole (openraft's replication does not check), and the follower
/// would store it; an error here stops this member instead.
fn check_no_gap(start: u64, last_purged: Option<u64>, entries: &[Entry<TypeConfig>]) -> Result<(), String> {
    let Some(first) = entries.first() else { return Ok(()) };
    let purged = last_purged.is_some_and(|p| start <= p);
    if first.log_id.index != start && !purged {
        return Err(format!("the log read from {start} starts at {}: entries are missing", first.log_id.index));
    }
    for pair in entries.windows(2) {
        if pair[1].log_id.index != pair[0].log_id.index + 1 {
            return Err(format!("the log read from {start} skips from {} to {}", pair[0].log_id, pair[1].log_id));
        }
    }
    Ok(())
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let cache = self.cache.lock();
        let last_log_id = cache.entries.values().next_back().map(|e| e.log_id).or(cache.last_purged);
        Ok(LogState { last_purged_log_id: cache.last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(vote);
        self.write_and_wait(|ack| WriteOp::Vote { vote: bytes, ack }).await?;
        self.cache.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.cache.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        // Written with the next batch, never waited for: a committed pointer
        // that lags is safe (openraft re-commits the rest after election).
        self.cache.lock().committed = committed;
        self.writer
            .send(WriteOp::Committed { committed: encode(&committed) })
            .map_err(|_| io_err("the log writer has stopped"))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.cache.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        let mut bytes = 0;
        {
            let mut cache = self.cache.lock();
            for entry in entries {
                let data = encode(&entry);
                bytes += data.len() as u64;
                encoded.push((entry.log_id.index, data));
                cache.entries.insert(entry.log_id.index, entry);
            }
            self.evict_applied(&mut cache);
        }
        self.bytes_since_snapshot.fetch_add(bytes, Ordering::Relaxed);
        self.writer
            .send(WriteOp::Append { entries: encoded, callback })
            .map_err(|_| io_err("the log writer has stopped"))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.cache.lock().entries.split_off(&log_id.index);
        self.write_and_wait(|ack| WriteOp::Truncate { from: log_id.index, ack }).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Only what a durable snapshot covers (`Coverage`): a received
        // snapshot may still be on its way to the disk, and until it is
        // there the log is all a restart would have of what it covers. (Not
        // purging it at all would leave a gap before the entries after the
        // snapshot, which a restart cannot read past.)
        if !self.snapshot.covers(log_id.index, SNAPSHOT_DURABLE_WAIT).await {
            return Err(io_err(format!(
                "the log up to {} is not purged: no snapshot covering it became durable",
                log_id.index
            )));
        }
        {
            let mut cache = self.cache.lock();
            cache.entries = cache.entries.split_off(&(log_id.index + 1));
            cache.last_purged = Some(log_id);
        }
        let last_purged = encode(&log_id);
        self.write_and_wait(|ack| WriteOp::Purge { upto: log_id.index, last_purged, ack }).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
    }

    /// A log store over segment files holding entries `1..=written`, with
    /// entries applied up to `applied`.
    fn store_with_written(dir: &std::path::Path, written: u64, applied: u64) -> LogStore {
        let db = Database::create(dir.join("t.redb")).unwrap();
        let (mut wal, _) = crate::replication::wal::Wal::open(dir, None, &db).unwrap();
        for i in 1..=written {
            wal.push_entry(i, &encode(&entry(i)));
        }
        wal.flush(&db).unwrap();
        drop(wal);
        let (wal, replayed) = crate::replication::wal::Wal::open(dir, None, &db).unwrap();
        let cache = LogStore::load(&db, replayed).unwrap();
        let (tx, _rx) = mpsc::channel();
        let applied = Arc::new(AtomicU64::new(applied));
        LogStore::new(cache, tx, wal.index(), applied, Arc::new(AtomicU64::new(0)), Coverage::everything())
    }

    #[tokio::test]
    async fn entries_that_left_memory_are_read_back_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_written(dir.path(), 10, 8);
        store.evict_applied(&mut store.cache.clone().lock());
        assert_eq!(store.cache.lock().entries.keys().copied().collect::<Vec<_>>(), [8, 9, 10]);
        let all = store.try_get_log_entries(1..=10).await.unwrap();
        assert_eq!(all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        let middle = store.try_get_log_entries(5..9).await.unwrap();
        assert_eq!(middle.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [5, 6, 7, 8]);
        let recent = store.try_get_log_entries(9..).await.unwrap();
        assert_eq!(recent.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [9, 10]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|id| id.index), Some(10));
    }

    /// A read with a gap is an error, never a shorter log sent on as whole;
    /// a read from a purged index starts where the log does.
    #[test]
    fn a_read_with_a_gap_is_an_error() {
        let entries = |indexes: &[u64]| indexes.iter().map(|i| entry(*i)).collect::<Vec<_>>();
        assert!(check_no_gap(5, None, &entries(&[5, 6, 7])).is_ok());
        assert!(check_no_gap(5, None, &[]).is_ok());
        assert!(check_no_gap(5, Some(6), &entries(&[7, 8])).is_ok(), "5 and 6 were purged");
        let missing_first = check_no_gap(5, Some(4), &entries(&[6, 7])).unwrap_err();
        assert!(missing_first.contains("starts at 6"), "{missing_first}");
        let skipping = check_no_gap(5, None, &entries(&[5, 7])).unwrap_err();
        assert!(skipping.contains("skips"), "{skipping}");
    }

    /// An entry applied but not yet written to the segment files (a
    /// follower applies what the leader committed) stays in memory, so it
    /// is never read back as a gap.
    #[tokio::test]
    async fn applied_entries_not_yet_written_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        // Entries 5..=8 are in memory only (their write not done yet), and
        // applied up to 8.
        let mut store = store_with_written(dir.path(), 4, 8);
        for i in 5..=8 {
            store.cache.lock().entries.insert(i, entry(i));
        }
        store.evict_applied(&mut store.cache.clone().lock());
        assert_eq!(store.cache.lock().entries.keys().copied().collect::<Vec<_>>(), [5, 6, 7, 8]);
        let all = store.try_get_log_entries(1..=8).await.unwrap();
        assert_eq!(all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    }
}
