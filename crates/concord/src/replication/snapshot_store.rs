//! Snapshots in a redb file of their own (`DATA_DIR/snapshot.redb`).
//!
//! A snapshot is the whole state machine (tens of MB and more), so writing
//! it through the log writer would hold up every log append queued behind it
//! (measured: a 52 MB snapshot stalled writes for ~230 ms). Here it is
//! written on a blocking thread of its own while the log keeps flowing; the
//! build or install still completes only once the snapshot is durable, so
//! openraft purges the log only after that.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const META: &str = "meta";
const DATA: &str = "data";

/// A stored snapshot as `(meta, data)` bytes.
pub(crate) type StoredSnapshot = (Vec<u8>, Vec<u8>);

#[derive(Clone)]
pub(crate) struct SnapshotStore {
    db: Arc<Database>,
}

impl SnapshotStore {
    pub fn open(path: &Path) -> Result<Self, String> {
        let db = Database::builder()
            .set_cache_size(4 * 1024 * 1024)
            .create(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(SnapshotStore { db: Arc::new(db) })
    }

    /// The stored snapshot, if any.
    pub fn read(&self) -> Result<Option<StoredSnapshot>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = match txn.open_table(SNAPSHOT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let meta = table.get(META).map_err(|e| e.to_string())?;
        let data = table.get(DATA).map_err(|e| e.to_string())?;
        Ok(match (meta, data) {
            (Some(m), Some(d)) => Some((m.value().to_vec(), d.value().to_vec())),
            _ => None,
        })
    }

    /// Replaces the stored snapshot; returns once it is durable.
    pub async fn write(&self, meta: Vec<u8>, data: Arc<Vec<u8>>) -> Result<(), String> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
                table.insert(META, meta.as_slice()).map_err(|e| e.to_string())?;
                table.insert(DATA, data.as_slice()).map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// [`Self::read`] off the async threads.
    pub async fn read_async(&self) -> Result<Option<StoredSnapshot>, String> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read()).await.map_err(|e| e.to_string())?
    }
}
