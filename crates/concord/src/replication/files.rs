//! The data directory as a place on disk.
//!
//! A file's data being fsynced does not make the file itself durable: its
//! directory entry lives in the directory, which needs an fsync of its own.
//! Without it, a crash right after the first start can lose the files
//! (and with them writes already acknowledged). So the data directory is
//! fsynced once its files exist, and the parent of a directory we created is
//! fsynced too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, StorageBackend};

/// Opens the storage behind one data file (given its path). The default is
/// the file itself; tests plug in simulated disks.
pub type StorageFactory = Arc<dyn Fn(&Path) -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync>;

/// Opens (or creates) the redb database at `path`, on `storage` if given.
pub(crate) fn open_database(
    path: &Path,
    cache_bytes: usize,
    storage: Option<&StorageFactory>,
) -> Result<Database, String> {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    let opened = match storage {
        None => builder.create(path),
        Some(factory) => {
            let backend = factory(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            builder.create_with_backend(DynBackend(backend))
        }
    };
    opened.map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// A boxed backend is a backend (redb takes a concrete type).
#[derive(Debug)]
struct DynBackend(Box<dyn StorageBackend>);

impl StorageBackend for DynBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.0.close()
    }
}

/// Creates `dir` if it does not exist. Returns the parent whose entry for
/// it is new (to be fsynced once the files exist), if it was created.
pub(crate) fn create_data_dir(dir: &Path) -> Result<Option<PathBuf>, String> {
    if dir.is_dir() {
        return Ok(None);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(Some(parent))
}

/// Makes the entries of `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), String> {
    let handle = std::fs::File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    handle.sync_all().map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}
