//! Snapshots in a redb file of their own (`DATA_DIR/snapshot.redb`).
//!
//! A snapshot is the whole state machine (tens of MB and more), so writing
//! it through the log writer would hold up every log append queued behind it
//! (measured: a 52 MB snapshot stalled writes for ~230 ms). Here it is
//! written on a blocking thread of its own while the log keeps flowing; the
//! build or install still completes only once the snapshot is durable, so
//! openraft purges the log only after that.
//!
//! Invariant: the stored snapshot never goes back in the log. openraft
//! builds snapshots in a task of its own, so a build that started before a
//! newer snapshot was installed (from a leader) can finish after it; such a
//! build is not stored (`write` answers false) and the newer one stays.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const META: &str = "meta";
const DATA: &str = "data";
/// The last log index the stored snapshot covers (8 bytes, big-endian;
/// absent for an empty snapshot).
const INDEX: &str = "index";

/// A stored snapshot as `(meta, data)` bytes.
pub(crate) type StoredSnapshot = (Vec<u8>, Vec<u8>);

#[derive(Clone)]
pub(crate) struct SnapshotStore {
    db: Arc<Database>,
}

impl SnapshotStore {
    pub fn open(path: &Path, storage: Option<&super::files::StorageFactory>) -> Result<Self, String> {
        let db = super::files::open_database(path, 4 * 1024 * 1024, storage)?;
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

    /// Replaces the stored snapshot with one covering the log up to
    /// `last_index`, unless the stored one covers more; returns once it is
    /// durable, with whether it was stored.
    pub async fn write(&self, last_index: Option<u64>, meta: Vec<u8>, data: Arc<Vec<u8>>) -> Result<bool, String> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
                let stored = table.get(INDEX).map_err(|e| e.to_string())?.and_then(|v| decode_index(v.value()));
                if stored.is_some_and(|stored| last_index.is_none_or(|new| stored > new)) {
                    return Ok(false);
                }
                table.insert(META, meta.as_slice()).map_err(|e| e.to_string())?;
                table.insert(DATA, data.as_slice()).map_err(|e| e.to_string())?;
                match last_index {
                    Some(index) => table.insert(INDEX, index.to_be_bytes().as_slice()).map(|_| ()),
                    None => table.remove(INDEX).map(|_| ()),
                }
                .map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())?;
            Ok(true)
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

/// `None` for a malformed value: such a snapshot never blocks a newer one.
fn decode_index(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot built before a newer one was installed finished after it
    /// and replaced it.
    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(&dir.path().join("snapshot.redb"), None).unwrap();
        assert!(store.write(Some(10), b"meta10".to_vec(), Arc::new(b"data10".to_vec())).await.unwrap());
        assert!(!store.write(Some(5), b"meta5".to_vec(), Arc::new(b"data5".to_vec())).await.unwrap());
        assert!(!store.write(None, b"empty".to_vec(), Arc::new(Vec::new())).await.unwrap());
        assert_eq!(store.read().unwrap(), Some((b"meta10".to_vec(), b"data10".to_vec())));
        assert!(store.write(Some(10), b"again".to_vec(), Arc::new(b"d".to_vec())).await.unwrap());
        assert!(store.write(Some(11), b"meta11".to_vec(), Arc::new(b"data11".to_vec())).await.unwrap());
        assert_eq!(store.read().unwrap(), Some((b"meta11".to_vec(), b"data11".to_vec())));
    }
}
