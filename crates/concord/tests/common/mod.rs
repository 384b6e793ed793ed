//! Shared helpers for integration tests: a member on a fresh data directory.
#![allow(dead_code)]

pub mod child;
pub mod disk;
pub mod disk_cluster;
pub mod members;

use std::time::Duration;

use concord::{Concord, Config};
use tempfile::TempDir;

/// A member and the directory it lives in (removed when dropped).
pub struct TestMember {
    pub db: Concord,
    pub dir: TempDir,
}

pub fn config(dir: &TempDir) -> Config {
    Config::new(dir.path()).request_timeout(Duration::from_secs(10))
}

pub async fn open() -> TestMember {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = config(&dir).open().await.expect("open");
    TestMember { db, dir }
}

pub async fn open_with(f: impl FnOnce(Config) -> Config) -> TestMember {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = f(config(&dir)).open().await.expect("open");
    TestMember { db, dir }
}

impl TestMember {
    /// Shuts the member down cleanly and opens it again on the same data.
    pub async fn restart(self, f: impl FnOnce(Config) -> Config) -> TestMember {
        self.db.shutdown().await.expect("shutdown");
        drop(self.db);
        let db = f(config(&self.dir)).open().await.expect("reopen");
        TestMember { db, dir: self.dir }
    }
}

pub fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
