//! The data directory as a place on disk.
//!
//! A file's data being fsynced does not make the file itself durable: its
//! directory entry lives in the directory, which needs an fsync of its own.
//! Without it, a crash right after the first start can lose the files
//! (and with them writes already acknowledged). So the data directory is
//! fsynced once its files exist, and the parent of a directory we created is
//! fsynced too.
//!
//! Creating a data file is not atomic either: redb initializes a new file
//! in several fsynced steps and writes its magic number last, so a crash
//! in between leaves a file that is neither empty nor a database, and that
//! redb refuses to open (found by the crash-point test). So a new file is
//! created under a marker, `<file>.creating`, made durable before the first
//! byte and removed (durably) once redb's creation is complete. A file
//! found with its marker never finished being created — nothing in it was
//! ever acknowledged — and is started afresh.
//!
//! A running member shares each open file as a [`SharedDatabase`]: every
//! transaction is begun and ended under its read lock, so defragmenting
//! (redb's in-place `compact`, which needs the database to itself) takes
//! the write lock and knows no transaction is open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use redb::backends::FileBackend;
use redb::{Database, StorageBackend};

/// An open data file shared by the threads that use it. Transactions are
/// begun and ended under the read lock (taken recursively, so a reader
/// never waits for a defragmentation queued behind another reader);
/// [`defragment`] takes the write lock.
pub(crate) type SharedDatabase = Arc<RwLock<Database>>;

/// How long a defragmentation waits for the transactions open on a file
/// (a snapshot being sent to a follower, say) to end.
const DEFRAGMENT_WAIT: Duration = Duration::from_secs(30);

/// Compacts the file in place (redb moves live pages to the front and
/// truncates the rest; every step is a durable commit, so a crash midway
/// leaves a valid file). Returns whether anything moved.
pub(crate) fn defragment(db: &SharedDatabase) -> Result<bool, String> {
    compact(&mut *lock_for_defragment(db)?)
}

/// The write lock of a shared file once no transaction is open on it
/// (waiting [`DEFRAGMENT_WAIT`] at most).
pub(crate) fn lock_for_defragment<T>(db: &RwLock<T>) -> Result<parking_lot::RwLockWriteGuard<'_, T>, String> {
    db.try_write_for(DEFRAGMENT_WAIT).ok_or_else(|| {
        format!("the data file stayed in use for {}s (a snapshot being sent?); try again", DEFRAGMENT_WAIT.as_secs())
    })
}

/// redb's in-place compaction; whether anything moved.
pub(crate) fn compact(db: &mut Database) -> Result<bool, String> {
    db.compact().map_err(|e| format!("cannot defragment: {e}"))
}

/// Opens the storage behind one data file (given its path). The default is
/// the file itself; tests plug in simulated disks.
pub type StorageFactory = Arc<dyn Fn(&Path) -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync>;

/// Opens (or creates) the redb database at `path`, on `storage` if given.
pub(crate) fn open_database(
    path: &Path,
    cache_bytes: usize,
    storage: Option<&StorageFactory>,
) -> Result<Database, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot open {}: {e}", path.display());
    let backend: Box<dyn StorageBackend> = match storage {
        None => {
            let file = open_data_file(path).map_err(|e| cannot(&e))?;
            Box::new(FileBackend::new(file).map_err(|e| cannot(&e))?)
        }
        Some(factory) => factory(path).map_err(|e| cannot(&e))?,
    };
    let marker = creation_marker(path);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if marker.exists() {
        tracing::warn!(file = %path.display(), "the data file's creation never completed (crash); creating it afresh");
        backend.set_len(0).map_err(|e| cannot(&e))?;
    }
    let creating = backend.len().map_err(|e| cannot(&e))? == 0;
    if creating && !marker.exists() {
        std::fs::File::create(&marker).and_then(|f| f.sync_all()).map_err(|e| cannot(&e))?;
        sync_dir(&dir)?;
    }
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    let db = builder.create_with_backend(DynBackend(backend)).map_err(|e| cannot(&e))?;
    if creating {
        std::fs::remove_file(&marker).map_err(|e| cannot(&e))?;
        sync_dir(&dir)?;
    }
    Ok(db)
}

/// Opens `path` for reading and writing, creating it empty if it is not there.
pub(crate) fn open_data_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// The file whose presence says `path` is being created.
fn creation_marker(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".creating");
    PathBuf::from(name)
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

/// Creates `dir` if it does not exist, readable by its owner only (as
/// etcd's: it holds every key and the users' password hashes). Returns
/// the parent whose entry for it is new (to be fsynced once the files
/// exist), if it was created.
pub(crate) fn create_data_dir(dir: &Path) -> Result<Option<PathBuf>, String> {
    if dir.is_dir() {
        return Ok(None);
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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

#[cfg(all(test, unix))]
mod data_dir_tests {
    use std::os::unix::fs::PermissionsExt;

    /// The data directory holds every key and the users' password hashes:
    /// a new one is its owner's only.
    #[test]
    fn a_new_data_dir_is_readable_by_its_owner_only() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        assert!(super::create_data_dir(&dir).unwrap().is_some());
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{mode:o}");
    }
}
