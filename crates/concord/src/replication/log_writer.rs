//! The one thread that writes the log, with group commit.
//!
//! Every durable write of the log (entries, vote, committed pointer,
//! truncation, purge) is a [`WriteOp`] sent to this thread. (Snapshots have
//! their own file: see `snapshot_store`.) It takes every op that is
//! waiting and makes them durable in arrival order: entries, truncations
//! and the committed pointer as records appended to the log's segment
//! files (`wal`: one write and one fdatasync for the whole batch), the
//! rare rest (vote, purge point, identity) in `concord.redb`'s `raft_meta`
//! through a redb commit, after the records queued before them are synced
//! — and only then acknowledges each op. So a burst of N appends costs one
//! fsync, and IO stays serialized as openraft requires (a later op never
//! lands before an earlier one).
//!
//! Defragmenting the file ([`WriteOp::Defragment`]) runs on this thread
//! too, between two batches: appends wait for it, as etcd's writes wait
//! for its defragmentation.
//!
//! The thread also keeps [`LogWriter::in_use`], the bytes of the log that
//! hold data: the segments' bytes, plus what `concord.redb` has allocated
//! (measured — a walk of redb's trees — at start, after each purge and
//! defragmentation, moments that are rare).
//!
//! A failed commit poisons the writer: the failing ops and every later op are
//! answered with an error, and openraft stops the member. Nothing is
//! acknowledged that was not fsynced.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use openraft::storage::LogFlushed;
use redb::{Database, TableDefinition};

use super::files::SharedDatabase;
use super::wal::Wal;
use tokio::sync::oneshot;

use super::TypeConfig;

/// Called with the duration of every durable commit of the data file (one
/// fsync'd batch), for metrics.
pub type FsyncObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// Where entries were kept before the segment files (`wal`); read once to
/// move them there.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

pub(crate) const META_VOTE: &str = "vote";
pub(crate) const META_COMMITTED: &str = "committed";
pub(crate) const META_LAST_PURGED: &str = "last_purged";
/// The cluster id, stored once (membership changes must not change it).
pub(crate) const META_CLUSTER_ID: &str = "cluster_id";
/// This member's id, stored once: a member added at runtime has an id its
/// settings cannot recompute (etcd's time-salted one).
pub(crate) const META_MEMBER_ID: &str = "member_id";

/// Most ops folded into one transaction.
const MAX_BATCH: usize = 4096;

pub(crate) type Ack = oneshot::Sender<Result<(), String>>;

pub(crate) enum WriteOp {
    /// Encoded entries `(index, bytes)`; the callback fires once they are durable.
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        callback: LogFlushed<TypeConfig>,
    },
    /// Delete entries with index >= `from`.
    Truncate {
        from: u64,
        ack: Ack,
    },
    /// Delete entries with index <= `upto`, and record the purged log id.
    Purge {
        upto: u64,
        last_purged: Vec<u8>,
        ack: Ack,
    },
    Vote {
        vote: Vec<u8>,
        ack: Ack,
    },
    /// Records the cluster id and this member's id (little-endian u64s).
    Identity {
        cluster_id: u64,
        member_id: u64,
        ack: Ack,
    },
    /// Not acknowledged: a stale committed pointer is safe.
    Committed {
        committed: Vec<u8>,
    },
    /// Compacts the file in place once what came before is written; the
    /// ack says whether anything moved.
    Defragment {
        ack: oneshot::Sender<Result<bool, String>>,
    },
    /// Finish what came before, close the file, end the thread.
    Stop,
}

/// Handle to the writer thread.
pub(crate) struct LogWriter {
    tx: mpsc::Sender<WriteOp>,
    thread: Option<JoinHandle<()>>,
    poisoned: Arc<AtomicBool>,
    in_use: Arc<AtomicU64>,
    segment_bytes: Arc<AtomicU64>,
}

impl LogWriter {
    pub fn spawn(db: SharedDatabase, wal: Wal, observer: Option<FsyncObserver>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let poisoned = Arc::new(AtomicBool::new(false));
        let in_use = Arc::new(AtomicU64::new(0));
        let segment_bytes = Arc::new(AtomicU64::new(wal.file_bytes()));
        let thread = {
            let thread = Thread {
                db,
                wal,
                poisoned: poisoned.clone(),
                in_use: in_use.clone(),
                meta_in_use: 0,
                segment_bytes: segment_bytes.clone(),
                observer,
            };
            std::thread::Builder::new().name("concord-log-writer".into()).spawn(move || thread.run(rx))?
        };
        Ok(LogWriter { tx, thread: Some(thread), poisoned, in_use, segment_bytes })
    }

    /// Bytes of the log's segment files, kept up to date by the thread.
    pub fn segment_bytes(&self) -> Arc<AtomicU64> {
        self.segment_bytes.clone()
    }

    /// Asks for the file to be compacted once every op sent before is
    /// written; the answer says whether anything moved.
    pub fn defragment(&self) -> Result<oneshot::Receiver<Result<bool, String>>, String> {
        let (ack, done) = oneshot::channel();
        self.tx.send(WriteOp::Defragment { ack }).map_err(|_| "the log writer has stopped".to_string())?;
        Ok(done)
    }

    /// Bytes of the file holding data (see the module docs for how
    /// exact), kept up to date by the thread.
    pub fn in_use(&self) -> Arc<AtomicU64> {
        self.in_use.clone()
    }

    pub fn sender(&self) -> mpsc::Sender<WriteOp> {
        self.tx.clone()
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Finishes every op sent so far, closes the data file and ends the
    /// thread.
    pub fn stop(mut self) {
        let _ = self.tx.send(WriteOp::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // Without an explicit stop the thread still finishes what was sent
        // and closes the file; nobody waits for it.
        let _ = self.tx.send(WriteOp::Stop);
    }
}

/// What the writer thread owns.
struct Thread {
    db: SharedDatabase,
    wal: Wal,
    poisoned: Arc<AtomicBool>,
    /// Segments' bytes + `meta_in_use`.
    in_use: Arc<AtomicU64>,
    /// What `concord.redb` has allocated, as last measured.
    meta_in_use: u64,
    segment_bytes: Arc<AtomicU64>,
    observer: Option<FsyncObserver>,
}

impl Thread {
    fn run(mut self, rx: mpsc::Receiver<WriteOp>) {
        let mut batch = Vec::with_capacity(64);
        let mut stop = false;
        // The committed pointer rides along with the next durable write
        // instead of costing an fsync of its own (a stale pointer is safe).
        let mut pending_committed: Option<Vec<u8>> = None;
        self.measure();
        while !stop {
            let Ok(first) = rx.recv() else { break };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            stop = batch.iter().any(|op| matches!(op, WriteOp::Stop));
            let result = if self.poisoned.load(Ordering::SeqCst) {
                Err("the data file failed earlier; this member has stopped writing".to_string())
            } else {
                for op in &batch {
                    if let WriteOp::Committed { committed } = op {
                        pending_committed = Some(committed.clone());
                    }
                }
                self.write(&batch, &mut pending_committed)
            };
            if let Err(e) = &result {
                tracing::error!(error = %e, "durable write failed; refusing all further writes");
                self.poisoned.store(true, Ordering::SeqCst);
            }
            let defragment = batch.iter().any(|op| matches!(op, WriteOp::Defragment { .. }));
            // Measured once the batch is acknowledged: the walk costs
            // milliseconds nobody should wait for.
            let purged = result.is_ok() && batch.iter().any(|op| matches!(op, WriteOp::Purge { .. }));
            let defragmented = match &result {
                Ok(()) if defragment => {
                    let moved = super::files::defragment(&self.db);
                    self.measure();
                    moved
                }
                Ok(()) => Ok(false),
                Err(e) => Err(e.clone()),
            };
            for op in batch.drain(..) {
                match op {
                    WriteOp::Defragment { ack } => {
                        let _ = ack.send(defragmented.clone());
                    }
                    op => finish(op, &result),
                }
            }
            if purged {
                self.measure();
            }
        }
    }

    /// Makes the batch's durable ops durable, in order (see the module
    /// docs).
    fn write(&mut self, batch: &[WriteOp], pending_committed: &mut Option<Vec<u8>>) -> Result<(), String> {
        let durable = batch
            .iter()
            .any(|op| !matches!(op, WriteOp::Stop | WriteOp::Committed { .. } | WriteOp::Defragment { .. }));
        if !durable {
            return Ok(());
        }
        let start = std::time::Instant::now();
        let db = self.db.clone();
        let db = db.read_recursive();
        let mut purged = false;
        for op in batch {
            match op {
                WriteOp::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        self.wal.push_entry(*index, bytes);
                    }
                }
                WriteOp::Truncate { from, .. } => self.wal.push_truncate(*from),
                WriteOp::Purge { upto, last_purged, .. } => {
                    self.wal.flush(&db)?;
                    write_meta(&db, pending_committed.take(), |meta| {
                        meta.insert(META_LAST_PURGED, last_purged.as_slice()).map(|_| ())
                    })?;
                    self.wal.purge(&db, *upto)?;
                    purged = true;
                }
                WriteOp::Vote { vote, .. } => {
                    self.wal.flush(&db)?;
                    write_meta(&db, pending_committed.take(), |meta| {
                        meta.insert(META_VOTE, vote.as_slice()).map(|_| ())
                    })?;
                }
                WriteOp::Identity { cluster_id, member_id, .. } => {
                    self.wal.flush(&db)?;
                    write_meta(&db, pending_committed.take(), |meta| {
                        meta.insert(META_CLUSTER_ID, cluster_id.to_le_bytes().as_slice())?;
                        meta.insert(META_MEMBER_ID, member_id.to_le_bytes().as_slice()).map(|_| ())
                    })?;
                }
                WriteOp::Committed { .. } | WriteOp::Stop | WriteOp::Defragment { .. } => {}
            }
        }
        if self.wal.has_pending()
            && let Some(committed) = pending_committed.take()
        {
            self.wal.push_committed(&committed);
        }
        self.wal.flush(&db)?;
        drop(db);
        if let Some(observe) = &self.observer {
            observe(start.elapsed());
        }
        if purged {
            self.measure();
        } else {
            self.publish();
        }
        Ok(())
    }

    /// Publishes the log's sizes.
    fn publish(&self) {
        self.segment_bytes.store(self.wal.file_bytes(), Ordering::Relaxed);
        self.in_use.store(self.wal.bytes() + self.meta_in_use, Ordering::Relaxed);
    }

    /// Measures what `concord.redb` has allocated, and publishes.
    fn measure(&mut self) {
        match bytes_in_use(&self.db.read_recursive()) {
            Ok(bytes) => self.meta_in_use = bytes,
            Err(e) => tracing::warn!(error = %e, "cannot measure the log file's use"),
        }
        self.publish();
    }
}

/// The bytes of the pages a database has allocated (its file less the free
/// pages). Costs a write transaction and a walk of the trees.
pub(crate) fn bytes_in_use(db: &Database) -> Result<u64, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let stats = txn.stats().map_err(|e| e.to_string())?;
    let bytes = stats.allocated_pages() * stats.page_size() as u64;
    txn.abort().map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Commits one change to `raft_meta`, with the latest committed pointer
/// if one is waiting (one redb commit, one fsync).
fn write_meta(
    db: &Database,
    committed: Option<Vec<u8>>,
    change: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<(), redb::StorageError>,
) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        change(&mut meta).map_err(|e| e.to_string())?;
        if let Some(committed) = committed {
            meta.insert(META_COMMITTED, committed.as_slice()).map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

fn finish(op: WriteOp, result: &Result<(), String>) {
    match op {
        WriteOp::Append { callback, .. } => {
            let io = result.clone().map_err(std::io::Error::other);
            callback.log_io_completed(io);
        }
        WriteOp::Truncate { ack, .. }
        | WriteOp::Purge { ack, .. }
        | WriteOp::Vote { ack, .. }
        | WriteOp::Identity { ack, .. } => {
            let _ = ack.send(result.clone());
        }
        WriteOp::Committed { .. } | WriteOp::Stop | WriteOp::Defragment { .. } => {}
    }
}
