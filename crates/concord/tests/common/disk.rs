//! A simulated disk for durability tests: every data file lives in memory,
//! split into what was synced (`durable`) and what was only written. A
//! "power loss" keeps only the synced bytes; a "failing disk" refuses fsync;
//! a "stalled disk" holds every fsync until it is resumed.
//! Unlike SIGKILL, which leaves the page cache intact, this shows a missing
//! or misplaced fsync.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use concord::{StorageBackend, StorageFactory};

#[derive(Debug, Default, Clone)]
struct FileImage {
    /// What survives a power loss.
    durable: Vec<u8>,
    /// What readers see now (durable + unsynced writes).
    current: Vec<u8>,
}

/// The disk: files by path.
#[derive(Debug, Default)]
pub struct Disk {
    files: Mutex<HashMap<PathBuf, FileImage>>,
    /// After a power loss the old disk accepts nothing more.
    dead: AtomicBool,
    /// When set, every fsync fails (and syncs nothing).
    failing: AtomicBool,
    /// fsyncs so far, over every file.
    syncs: AtomicU64,
    /// The crash point, if any: (fsync number, whether that fsync
    /// completes first).
    crash_at: Mutex<Option<(u64, bool)>>,
    /// While true, every fsync waits (on `resumed`).
    stalled: Mutex<bool>,
    /// Every fsync takes this many milliseconds longer (a slow disk).
    delay_ms: AtomicU64,
    resumed: Condvar,
}

impl Disk {
    pub fn new() -> Arc<Disk> {
        Arc::new(Disk::default())
    }

    /// A factory for `Config::storage` that opens files on this disk.
    pub fn storage(self: &Arc<Self>) -> StorageFactory {
        let disk = self.clone();
        Arc::new(move |path: &Path| {
            disk.files.lock().unwrap().entry(path.to_path_buf()).or_default();
            Ok(Box::new(File { disk: disk.clone(), path: path.to_path_buf() }) as Box<dyn StorageBackend>)
        })
    }

    /// Cuts the power: this disk fails from now on, and the returned one
    /// holds only what had been synced.
    pub fn power_loss(&self) -> Arc<Disk> {
        self.dead.store(true, Ordering::SeqCst);
        self.copy_synced()
    }

    /// A copy of what was synced, as a disk of its own (this one goes on).
    pub fn copy_synced(&self) -> Arc<Disk> {
        let files = self.files.lock().unwrap();
        let copied = files
            .iter()
            .map(|(path, image)| {
                (path.clone(), FileImage { durable: image.durable.clone(), current: image.durable.clone() })
            })
            .collect();
        Arc::new(Disk { files: Mutex::new(copied), ..Disk::default() })
    }

    /// The power goes at the `n`-th fsync (counted from 1 over every file):
    /// just before it (`after` false) or just after it completed (`after`
    /// true). Either way that fsync reports failure, so nothing more is
    /// acknowledged; [`Disk::power_loss`] then gives what survived.
    pub fn crash_at_sync(&self, n: u64, after: bool) {
        *self.crash_at.lock().unwrap() = Some((n, after));
    }

    /// fsyncs so far, over every file.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Whether the crash point was reached.
    pub fn crashed(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// From now on every fsync fails.
    pub fn fail_syncs(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    /// From now on every fsync waits until [`Disk::resume_syncs`] (a disk
    /// that stopped answering). Returns a guard that resumes when dropped,
    /// so a failing test does not leave the member's writer hanging.
    pub fn stall_syncs(self: &Arc<Self>) -> Stalled {
        *self.stalled.lock().unwrap() = true;
        Stalled(self.clone())
    }

    /// From now on every fsync takes `delay` longer (0: back to normal).
    pub fn delay_syncs(&self, delay: std::time::Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Lets waiting and later fsyncs complete.
    pub fn resume_syncs(&self) {
        *self.stalled.lock().unwrap() = false;
        self.resumed.notify_all();
    }

    fn wait_while_stalled(&self) {
        let mut stalled = self.stalled.lock().unwrap();
        while *stalled {
            stalled = self.resumed.wait(stalled).unwrap();
        }
    }

    fn check_alive(&self) -> std::io::Result<()> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the power is off"));
        }
        Ok(())
    }
}

/// Resumes a stalled disk's fsyncs when dropped.
pub struct Stalled(Arc<Disk>);

impl Drop for Stalled {
    fn drop(&mut self) {
        self.0.resume_syncs();
    }
}

#[derive(Debug)]
struct File {
    disk: Arc<Disk>,
    path: PathBuf,
}

impl File {
    fn with<T>(&self, f: impl FnOnce(&mut FileImage) -> std::io::Result<T>) -> std::io::Result<T> {
        self.disk.check_alive()?;
        let mut files = self.disk.files.lock().unwrap();
        f(files.get_mut(&self.path).expect("opened through the factory"))
    }
}

impl StorageBackend for File {
    fn len(&self) -> std::io::Result<u64> {
        self.with(|f| Ok(f.current.len() as u64))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.with(|f| {
            let start = offset as usize;
            let bytes = f.current.get(start..start + out.len()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end of the file")
            })?;
            out.copy_from_slice(bytes);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.with(|f| {
            f.current.resize(len as usize, 0);
            Ok(())
        })
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.disk.wait_while_stalled();
        let delay = self.disk.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        if self.disk.failing.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("simulated fsync failure"));
        }
        self.disk.check_alive()?;
        let n = self.disk.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let crash = *self.disk.crash_at.lock().unwrap();
        if let Some((at, after)) = crash.filter(|(at, _)| *at == n) {
            if after {
                self.with(|f| {
                    f.durable.clone_from(&f.current);
                    Ok(())
                })?;
            }
            self.disk.dead.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other(format!("the power went at fsync {at}")));
        }
        self.with(|f| {
            f.durable.clone_from(&f.current);
            Ok(())
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.with(|f| {
            let end = offset as usize + data.len();
            if f.current.len() < end {
                f.current.resize(end, 0);
            }
            f.current[offset as usize..end].copy_from_slice(data);
            Ok(())
        })
    }
}
