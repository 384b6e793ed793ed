//! Disk faults for torture runs, compiled in only with the `failpoints`
//! feature (the test suite turns it on; release builds never have it).
//!
//! A member whose environment names a control file in
//! `CONCORD_FAILPOINTS` reads that file before every fsync of its data
//! files and obeys it:
//! - `fsync-delay-ms=N`: every fsync takes N ms longer (a slow disk);
//! - `fsync-fail`: every fsync fails (a dying disk: the member refuses all
//!   further writes, as it would on real I/O errors);
//! - anything else, or no file: nothing.
//!
//! Without the feature [`storage_from_env`] is always `None`, so callers
//! need no `cfg` of their own.

use crate::replication::files::StorageFactory;

/// The environment variable naming the control file.
pub const CONTROL_FILE_VAR: &str = "CONCORD_FAILPOINTS";

/// Storage obeying the control file named in the environment, if this
/// build has failpoints and the variable is set.
pub fn storage_from_env() -> Option<StorageFactory> {
    #[cfg(feature = "failpoints")]
    {
        let control = std::path::PathBuf::from(std::env::var_os(CONTROL_FILE_VAR)?);
        Some(faulty::storage(control))
    }
    #[cfg(not(feature = "failpoints"))]
    None
}

#[cfg(feature = "failpoints")]
mod faulty {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use redb::StorageBackend;
    use redb::backends::FileBackend;

    use super::StorageFactory;

    pub(super) fn storage(control: PathBuf) -> StorageFactory {
        Arc::new(move |path: &Path| {
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
            let inner = FileBackend::new(file).map_err(std::io::Error::other)?;
            Ok(Box::new(FaultyDisk { inner, control: control.clone() }) as Box<dyn StorageBackend>)
        })
    }

    #[derive(Debug)]
    struct FaultyDisk {
        inner: FileBackend,
        control: PathBuf,
    }

    impl StorageBackend for FaultyDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            let order = std::fs::read_to_string(&self.control).unwrap_or_default();
            let order = order.trim();
            if order == "fsync-fail" {
                return Err(std::io::Error::other("fsync failed (failpoint)"));
            }
            if let Some(ms) = order.strip_prefix("fsync-delay-ms=").and_then(|ms| ms.parse().ok()) {
                std::thread::sleep(Duration::from_millis(ms));
            }
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.inner.write(offset, data)
        }
        fn close(&self) -> std::io::Result<()> {
            self.inner.close()
        }
    }
}
