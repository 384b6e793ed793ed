//! Snapshots in a redb file of their own (`DATA_DIR/snapshot.redb`), kept,
//! written, sent and read in chunks, so no snapshot is ever held whole in
//! memory: a member with a 500 MiB store builds, sends, receives and loads
//! its snapshots with a few MiB of buffers beside the state itself.
//!
//! Layout: the table `snapshot` holds the current snapshot's `meta`, the
//! log `index` it covers, its size in `bytes`, and `current`: the name of
//! the table (`snapshot-chunks-N`, u64 → bytes) holding its data in
//! [`CHUNK`]-sized pieces. A snapshot is written into a table of its own
//! and becomes current in one commit that also drops the previous one, so
//! a reader (a snapshot being sent) keeps reading a consistent snapshot
//! whatever is written meanwhile (redb's read transactions are snapshots).
//! Stores from before chunking kept the data whole under `data`; opening
//! one moves it into chunks once.
//!
//! A snapshot is big (tens of MB and more), so writing it through the log
//! writer would hold up every log append queued behind it (measured: a 52 MB
//! snapshot stalled writes for ~230 ms). Here it is written on a blocking
//! thread of its own while the log keeps flowing; the build or install still
//! completes only once the snapshot is durable, so openraft purges the log
//! only after that.
//!
//! Invariants:
//! - the current snapshot never goes back in the log. openraft builds
//!   snapshots in a task of its own, so a build that started before a newer
//!   snapshot was installed (from a leader) can finish after it; such a
//!   build is not made current and the newer one stays;
//! - a chunk table that is not current belongs to a snapshot being built or
//!   received; one found on open was left by a crash and is dropped;
//! - every transaction lives under the file's read lock (a chunk reader
//!   and a snapshot being received hold it until they end), so
//!   [`SnapshotStore::defragment`] runs with no transaction open;
//! - once [`SnapshotStore::close`] returns, the file is closed and nothing
//!   touches it again: a snapshot being received is cancelled, one being
//!   built or installed finishes first, and every later call fails. A
//!   member reopened in the same process (an embedded restart) thus never
//!   shares the file with its former self — redb's file locks are the
//!   process's, so they do not keep two instances apart, and a late commit
//!   or close by the old one corrupted the new one's file.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::lock_api::ArcRwLockReadGuard;
use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};
use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction,
};
use tokio::sync::mpsc;

/// The snapshot file, shared by the threads that use it (as
/// `files::SharedDatabase`); `None` once closed.
type SharedFile = Arc<RwLock<Option<Database>>>;

/// The file's read lock, held for as long as a transaction is open.
type InUse = ArcRwLockReadGuard<parking_lot::RawRwLock, Option<Database>>;

/// Why a call after [`SnapshotStore::close`] fails.
const CLOSED: &str = "the member is stopping: its snapshot file is closed";

/// How long closing waits for the transactions open on the file to end.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The open database behind a held read lock.
fn opened(in_use: &InUse) -> Result<&Database, String> {
    in_use.as_ref().ok_or_else(|| CLOSED.to_string())
}

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const META: &str = "meta";
/// The last log index the current snapshot covers (8 bytes, big-endian;
/// absent for an empty snapshot).
const INDEX: &str = "index";
const BYTES: &str = "bytes";
const CURRENT: &str = "current";
/// The whole data of a snapshot stored before chunking.
const LEGACY_DATA: &str = "data";
const CHUNK_TABLE_PREFIX: &str = "snapshot-chunks-";
/// Bytes per stored chunk (and per peer message when a snapshot is sent):
/// a little under 1 MiB, so a chunk and its leaf's header fit a 1 MiB page
/// (redb allocates pages in powers of two: a chunk of exactly 1 MiB took a
/// 2 MiB page, and the file twice the snapshot's size).
pub(crate) const CHUNK: usize = 1024 * 1024 - 4096;

fn chunk_table(name: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(name)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[derive(Clone)]
pub(crate) struct SnapshotStore {
    db: SharedFile,
    /// The number of the next chunk table.
    next_table: Arc<AtomicU64>,
    /// Bytes of the file holding data, measured after every change.
    in_use: Arc<AtomicU64>,
    /// Held while a snapshot is built; `true` once the member stops, after
    /// which nothing more is built (`close`).
    building: Arc<parking_lot::Mutex<bool>>,
    /// `true` once the member stops: snapshots being received give up.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// How far the durable current snapshot covers the log.
    covered: Coverage,
}

/// How far the durable current snapshot covers the log (the index after
/// its last): the log store purges only what it covers. (openraft 0.9
/// purges the log a received snapshot covers as soon as it hands the
/// snapshot to the state machine, before the snapshot is durable; a stop
/// in between left a log purged past the only stored snapshot, and a
/// member that could not restart.)
#[derive(Clone)]
pub(crate) struct Coverage(Arc<tokio::sync::watch::Sender<Covered>>);

/// What [`Coverage`] watches.
#[derive(Clone, Copy, Default)]
struct Covered {
    /// The index after the last one the durable snapshot covers.
    upto: u64,
    /// Installs that failed so far: a purge waiting for one gives up.
    failed_installs: u64,
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage(Arc::new(tokio::sync::watch::Sender::new(Covered::default())))
    }
}

impl Coverage {
    /// Waits until the stored snapshot covers the log up to `index`; false
    /// if an install fails meanwhile, or `within` passes.
    pub async fn covers(&self, index: u64, within: std::time::Duration) -> bool {
        let mut covered = self.0.subscribe();
        let failed_before = covered.borrow().failed_installs;
        let settled = covered.wait_for(|c| c.upto > index || c.failed_installs > failed_before);
        match tokio::time::timeout(within, settled).await {
            Ok(Ok(c)) => c.upto > index,
            _ => false,
        }
    }

    /// Notes a snapshot covering the log up to `last_index` made durable
    /// (the current snapshot never goes back).
    fn note(&self, last_index: Option<u64>) {
        if let Some(index) = last_index {
            self.0.send_if_modified(|c| {
                let more = index.saturating_add(1) > c.upto;
                c.upto = c.upto.max(index.saturating_add(1));
                more
            });
        }
    }

    /// Notes that installing a received snapshot failed: the purge that
    /// waits for it gives up (and with it Raft, on a storage error),
    /// rather than hold the member for the whole wait.
    pub fn note_failed_install(&self) {
        self.0.send_modify(|c| c.failed_installs += 1);
    }

    /// Covers every index (tests of the log store alone).
    #[cfg(test)]
    pub fn everything() -> Self {
        Coverage(Arc::new(tokio::sync::watch::Sender::new(Covered { upto: u64::MAX, failed_installs: 0 })))
    }
}

/// openraft's snapshot data: a snapshot stored in chunks (current, or
/// received and about to be installed).
pub struct SnapshotData {
    store: SnapshotStore,
    table: String,
    bytes: u64,
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotData").field("table", &self.table).field("bytes", &self.bytes).finish()
    }
}

impl SnapshotStore {
    pub fn open(path: &Path, storage: Option<&super::files::StorageFactory>) -> Result<Self, String> {
        let db = super::files::open_database(path, 4 * 1024 * 1024, storage)?;
        let store = SnapshotStore {
            db: Arc::new(RwLock::new(Some(db))),
            next_table: Arc::new(AtomicU64::new(0)),
            in_use: Arc::new(AtomicU64::new(0)),
            building: Arc::new(parking_lot::Mutex::new(false)),
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            covered: Coverage::default(),
        };
        store.tidy()?;
        store.measure();
        Ok(store)
    }

    /// How far the durable current snapshot covers the log (shared, kept
    /// up to date).
    pub fn coverage(&self) -> Coverage {
        self.covered.clone()
    }

    /// Bytes of the file holding data.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The open file, under its read lock (`Err` once closed).
    fn db(&self) -> Result<MappedRwLockReadGuard<'_, Database>, String> {
        RwLockReadGuard::try_map(self.db.read_recursive(), Option::as_ref).map_err(|_| CLOSED.to_string())
    }

    fn measure(&self) {
        let Ok(db) = self.db() else { return };
        match super::log_writer::bytes_in_use(&db) {
            Ok(bytes) => self.in_use.store(bytes, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "cannot measure the snapshot file's use"),
        }
    }

    /// Compacts the file in place (off the async threads), waiting for the
    /// snapshots being read or received to finish; whether anything moved.
    pub async fn defragment(&self) -> Result<bool, String> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let moved = super::files::lock_for_defragment(&store.db)
                .and_then(|mut db| super::files::compact(db.as_mut().ok_or_else(|| CLOSED.to_string())?));
            store.measure();
            moved
        })
        .await
        .map_err(err)?
    }

    /// Moves a snapshot stored whole into chunks, drops chunk tables left
    /// by a crash, and numbers new tables after the existing ones.
    fn tidy(&self) -> Result<(), String> {
        let db = self.db()?;
        let txn = db.begin_write().map_err(err)?;
        let mut highest = 0;
        {
            let mut table = txn.open_table(SNAPSHOT).map_err(err)?;
            let mut current = table.get(CURRENT).map_err(err)?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
            let legacy = table.get(LEGACY_DATA).map_err(err)?.map(|v| v.value().to_vec());
            if let (None, Some(data)) = (&current, legacy) {
                let name = format!("{CHUNK_TABLE_PREFIX}0");
                write_chunks(&txn, &name, |out| out.write_all(&data).map_err(err))?;
                table.insert(CURRENT, name.as_bytes()).map_err(err)?;
                table.insert(BYTES, (data.len() as u64).to_be_bytes().as_slice()).map_err(err)?;
                table.remove(LEGACY_DATA).map_err(err)?;
                tracing::info!(bytes = data.len(), "the stored snapshot was moved into chunks");
                current = Some(name);
            }
            self.covered.note(table.get(INDEX).map_err(err)?.and_then(|v| decode_u64(v.value())));
            let names: Vec<String> = txn.list_tables().map_err(err)?.map(|t| t.name().to_string()).collect();
            for name in names.iter().filter(|n| n.starts_with(CHUNK_TABLE_PREFIX)) {
                highest = highest.max(name[CHUNK_TABLE_PREFIX.len()..].parse::<u64>().unwrap_or(0));
                if current.as_deref() != Some(name.as_str()) {
                    tracing::info!(table = %name, "dropping a snapshot whose writing never completed");
                    txn.delete_table(chunk_table(name)).map_err(err)?;
                }
            }
        }
        txn.commit().map_err(err)?;
        self.next_table.store(highest + 1, Ordering::Relaxed);
        Ok(())
    }

    fn new_table_name(&self) -> String {
        format!("{CHUNK_TABLE_PREFIX}{}", self.next_table.fetch_add(1, Ordering::Relaxed))
    }

    /// The current snapshot's meta and data, if any.
    pub fn current(&self) -> Result<Option<(Vec<u8>, SnapshotData)>, String> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(err)?;
        let table = match txn.open_table(SNAPSHOT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let meta = table.get(META).map_err(err)?;
        let current = table.get(CURRENT).map_err(err)?;
        let bytes = table.get(BYTES).map_err(err)?.and_then(|v| decode_u64(v.value())).unwrap_or(0);
        Ok(match (meta, current) {
            (Some(meta), Some(current)) => Some((
                meta.value().to_vec(),
                SnapshotData {
                    store: self.clone(),
                    table: String::from_utf8_lossy(current.value()).into_owned(),
                    bytes,
                },
            )),
            _ => None,
        })
    }

    /// [`Self::current`] off the async threads.
    pub async fn current_async(&self) -> Result<Option<(Vec<u8>, SnapshotData)>, String> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.current()).await.map_err(err)?
    }

    /// Writes a snapshot covering the log up to `last_index` from what
    /// `encode` writes, and makes it current, unless the current one covers
    /// more (then `None`); returns once it is durable.
    pub async fn build(
        &self,
        last_index: Option<u64>,
        meta: Vec<u8>,
        encode: impl FnOnce(&mut dyn Write) -> Result<(), String> + Send + 'static,
    ) -> Result<Option<SnapshotData>, String> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let closed = store.building.lock();
            if *closed {
                return Err("the member is stopping: no snapshot is built".to_string());
            }
            let db = store.db()?;
            let txn = db.begin_write().map_err(err)?;
            if stored_is_newer(&txn, last_index)? {
                return Ok(None);
            }
            let name = store.new_table_name();
            let bytes = write_chunks(&txn, &name, encode)?;
            let data = SnapshotData { store: store.clone(), table: name, bytes };
            make_current(&txn, &data, last_index, &meta)?;
            txn.commit().map_err(err)?;
            store.covered.note(last_index);
            drop(db);
            store.measure();
            drop(closed);
            Ok(Some(data))
        })
        .await
        .map_err(err)?
    }

    /// Closes the file for good: cancels the snapshots being received,
    /// waits for one being built to be written (openraft builds snapshots
    /// in a task of its own, which its shutdown does not wait for: the
    /// member must not stop with one half written) and for every other
    /// transaction to end, then closes the database. Every later call
    /// fails.
    pub async fn close(&self) {
        self.closing.send_replace(true);
        let store = self.clone();
        let closed = tokio::task::spawn_blocking(move || {
            *store.building.lock() = true;
            let Some(mut db) = store.db.try_write_for(CLOSE_WAIT) else {
                return tracing::error!("the snapshot file stayed in use; left open");
            };
            if let Some(db) = db.take()
                && let Err(e) = db.close()
            {
                tracing::warn!(error = %e, "cannot close the snapshot file");
            }
        });
        let _ = closed.await;
    }

    /// Resolves once the member stops (receiving a snapshot is given up).
    pub async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|closing| *closing).await;
    }

    /// Starts receiving a snapshot's data: chunks pushed into the returned
    /// sink are written as they come.
    pub fn receive(&self) -> SnapshotSink {
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let store = self.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let in_use = store.db.read_arc_recursive();
            let txn = opened(&in_use)?.begin_write().map_err(err)?;
            let name = store.new_table_name();
            let bytes = write_chunks(&txn, &name, |out| {
                while let Some(chunk) = rx.blocking_recv() {
                    out.write_all(&chunk).map_err(err)?;
                }
                Ok(())
            })?;
            Ok(Received { txn, data: SnapshotData { store: store.clone(), table: name, bytes }, _in_use: in_use })
        });
        SnapshotSink { tx: Some(tx), writer }
    }

    /// Makes a received snapshot current unless the current one covers more
    /// (then it is dropped); returns once durable, with whether it is.
    pub async fn install(&self, data: &SnapshotData, last_index: Option<u64>, meta: Vec<u8>) -> Result<bool, String> {
        let store = self.clone();
        let (table, bytes) = (data.table.clone(), data.bytes);
        tokio::task::spawn_blocking(move || {
            let db = store.db()?;
            let txn = db.begin_write().map_err(err)?;
            let data = SnapshotData { store: store.clone(), table, bytes };
            let newer = stored_is_newer(&txn, last_index)?;
            if newer {
                txn.delete_table(chunk_table(&data.table)).map_err(err)?;
            } else {
                make_current(&txn, &data, last_index, &meta)?;
            }
            txn.commit().map_err(err)?;
            if !newer {
                store.covered.note(last_index);
            }
            drop(db);
            store.measure();
            Ok(!newer)
        })
        .await
        .map_err(err)?
    }

    /// Drops a received snapshot that was not installed (nothing if it is
    /// the current one).
    pub async fn discard(&self, data: &SnapshotData) -> Result<(), String> {
        let store = self.clone();
        let table = data.table.clone();
        tokio::task::spawn_blocking(move || {
            let db = store.db()?;
            let txn = db.begin_write().map_err(err)?;
            let current = txn
                .open_table(SNAPSHOT)
                .map_err(err)?
                .get(CURRENT)
                .map_err(err)?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            if current.as_deref() != Some(table.as_str()) {
                txn.delete_table(chunk_table(&table)).map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
        .map_err(err)?
    }
}

impl SnapshotData {
    /// Another handle on the same stored data.
    pub(crate) fn clone_handle(&self) -> SnapshotData {
        SnapshotData { store: self.store.clone(), table: self.table.clone(), bytes: self.bytes }
    }

    /// Size of the data in bytes.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// The data as one stream (a consistent view, whatever is written to
    /// the store meanwhile).
    pub fn reader(&self) -> Result<ChunkReader, String> {
        Ok(ChunkReader { chunks: self.chunks()?, chunk: Bytes::new() })
    }

    /// The data chunk by chunk (a consistent view, as [`Self::reader`]).
    pub fn chunks(&self) -> Result<Chunks, String> {
        let in_use = self.store.db.read_arc_recursive();
        let txn = opened(&in_use)?.begin_read().map_err(err)?;
        let table = txn.open_table(chunk_table(&self.table)).map_err(|e| format!("snapshot {}: {e}", self.table))?;
        Ok(Chunks { table, next: 0, _in_use: in_use })
    }
}

/// A snapshot's stored chunks, in order.
pub(crate) struct Chunks {
    table: ReadOnlyTable<u64, &'static [u8]>,
    next: u64,
    /// Declared after the table: released once the table is closed.
    _in_use: InUse,
}

impl Iterator for Chunks {
    type Item = Result<Bytes, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let chunk = match self.table.get(self.next) {
            Ok(chunk) => chunk?,
            Err(e) => return Some(Err(e.to_string())),
        };
        self.next += 1;
        Some(Ok(Bytes::copy_from_slice(chunk.value())))
    }
}

/// [`Chunks`] as a byte stream.
pub(crate) struct ChunkReader {
    chunks: Chunks,
    chunk: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.chunks.next() {
                None => return Ok(0),
                Some(chunk) => self.chunk = chunk.map_err(std::io::Error::other)?,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// A snapshot being received: [`SnapshotSink::push`] each piece, then
/// [`SnapshotSink::finish`]. Dropped unfinished, nothing is kept.
pub(crate) struct SnapshotSink {
    tx: Option<mpsc::Sender<Bytes>>,
    writer: tokio::task::JoinHandle<Result<Received, String>>,
}

/// A received snapshot's open transaction, not yet committed.
struct Received {
    txn: WriteTransaction,
    data: SnapshotData,
    /// Declared after the transaction: released once it ends.
    _in_use: InUse,
}

impl SnapshotSink {
    pub async fn push(&mut self, piece: Bytes) -> Result<(), String> {
        let tx = self.tx.as_ref().expect("not finished");
        if tx.send(piece).await.is_err() {
            // The writer stopped: its error says why.
            self.tx = None;
            return Err(self.wait().await.err().unwrap_or_else(|| "the snapshot writer stopped".into()));
        }
        Ok(())
    }

    /// Writes what was pushed durably (not yet as the current snapshot).
    pub async fn finish(mut self) -> Result<SnapshotData, String> {
        self.tx = None;
        self.wait().await
    }

    async fn wait(&mut self) -> Result<SnapshotData, String> {
        let Received { txn, data, _in_use } = (&mut self.writer).await.map_err(err)??;
        tokio::task::spawn_blocking(move || {
            let committed = txn.commit().map_err(err);
            drop(_in_use);
            committed
        })
        .await
        .map_err(err)??;
        Ok(data)
    }
}

/// Writes what `fill` writes into the chunk table `name`; returns the bytes.
fn write_chunks(
    txn: &WriteTransaction,
    name: &str,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), String>,
) -> Result<u64, String> {
    let table = txn.open_table(chunk_table(name)).map_err(err)?;
    let mut writer = ChunkWriter { table, pending: Vec::with_capacity(CHUNK), next: 0, bytes: 0 };
    fill(&mut writer)?;
    writer.flush().map_err(err)?;
    Ok(writer.bytes)
}

/// Cuts what is written into [`CHUNK`]-sized rows of a chunk table.
struct ChunkWriter<'txn> {
    table: Table<'txn, u64, &'static [u8]>,
    pending: Vec<u8>,
    next: u64,
    bytes: u64,
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let take = (CHUNK - self.pending.len()).min(buf.len());
            self.pending.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.pending.len() == CHUNK {
                self.flush()?;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.table.insert(self.next, self.pending.as_slice()).map_err(std::io::Error::other)?;
        self.next += 1;
        self.bytes += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

/// Whether the current snapshot covers more of the log than `last_index`.
fn stored_is_newer(txn: &WriteTransaction, last_index: Option<u64>) -> Result<bool, String> {
    let table = txn.open_table(SNAPSHOT).map_err(err)?;
    let stored = table.get(INDEX).map_err(err)?.and_then(|v| decode_u64(v.value()));
    Ok(stored.is_some_and(|stored| last_index.is_none_or(|new| stored > new)))
}

/// Makes `data` the current snapshot, dropping the one it replaces.
fn make_current(
    txn: &WriteTransaction,
    data: &SnapshotData,
    last_index: Option<u64>,
    meta: &[u8],
) -> Result<(), String> {
    let mut table = txn.open_table(SNAPSHOT).map_err(err)?;
    let previous = table.get(CURRENT).map_err(err)?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
    table.insert(META, meta).map_err(err)?;
    table.insert(CURRENT, data.table.as_bytes()).map_err(err)?;
    table.insert(BYTES, data.bytes.to_be_bytes().as_slice()).map_err(err)?;
    match last_index {
        Some(index) => table.insert(INDEX, index.to_be_bytes().as_slice()).map(|_| ()),
        None => table.remove(INDEX).map(|_| ()),
    }
    .map_err(err)?;
    drop(table);
    if let Some(previous) = previous.filter(|p| *p != data.table) {
        txn.delete_table(chunk_table(&previous)).map_err(err)?;
    }
    Ok(())
}

/// `None` for a malformed value: such a snapshot never blocks a newer one.
fn decode_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests;
