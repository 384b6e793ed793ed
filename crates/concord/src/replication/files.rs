//! The data directory as a place on disk.
//!
//! A file's data being fsynced does not make the file itself durable: its
//! directory entry lives in the directory, which needs an fsync of its own.
//! Without it, a crash right after the first start can lose the files
//! (and with them writes already acknowledged). So the data directory is
//! fsynced once its files exist, and the parent of a directory we created is
//! fsynced too.

use std::path::{Path, PathBuf};

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
