//! Defragmenting this member's data files: etcd's `Maintenance.Defragment`.
//!
//! Concord's files are the Raft log (segment files `log-N.wal`, and its
//! vote and purge point in `concord.redb`) and the last snapshot
//! (`snapshot.redb`); the state itself lives in memory. Space freed in the
//! state (deletes, compaction) reaches the files only once a snapshot
//! replaces the old one and the log before it is purged (whole segments
//! are removed), and redb reuses freed pages but never returns them to the
//! file system. So a defragmentation:
//!
//! 1. takes a snapshot of what is applied now (unless the last one is as new),
//! 2. purges the log up to it — on a leader, not past what every follower
//!    has (a follower still needing purged entries would need a snapshot);
//!    a segment whose entries are all purged is removed,
//! 3. compacts both redb files in place (redb `compact`: each step a
//!    durable commit, so a crash midway leaves a valid file).
//!    `concord.redb` is compacted by the log writer thread, so writes to
//!    this member wait for it, as they do for etcd's defragmentation.
//!
//! It concerns this member only, as etcd's (which `etcdctl defrag
//! --cluster` calls on every member).

use std::path::Path;
use std::time::Duration;

use super::Concord;
use crate::error::{Error, Result};

/// How long each step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The data files' sizes before and after a defragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragmentReport {
    /// Bytes of the data files before.
    pub size_before: u64,
    /// Bytes of the data files after.
    pub size_after: u64,
    /// Bytes of the data files holding data, after.
    pub in_use_after: u64,
}

impl Concord {
    /// Defragments this member's data files (see the module docs); returns
    /// their sizes before and after.
    pub async fn defragment(&self) -> Result<DefragmentReport> {
        let started = std::time::Instant::now();
        let size_before = self.data_files_size();
        let snapshot_index = self.snapshot_now().await?;
        self.purge_to(snapshot_index).await?;
        let log = self.inner.writer.lock().as_ref().ok_or(Error::Shutdown)?.defragment().map_err(Error::Storage)?;
        log.await.map_err(|_| Error::Shutdown)?.map_err(Error::Storage)?;
        self.inner.snapshots.defragment().await.map_err(Error::Storage)?;
        let report =
            DefragmentReport { size_before, size_after: self.data_files_size(), in_use_after: self.data_in_use() };
        tracing::info!(
            size_before = report.size_before,
            size_after = report.size_after,
            in_use_after = report.in_use_after,
            took = ?started.elapsed(),
            "finished defragmenting the data files: {} → {} bytes",
            report.size_before,
            report.size_after,
        );
        Ok(report)
    }

    /// Bytes of this member's data files (the log's segments included).
    pub(super) fn data_files_size(&self) -> u64 {
        let segments = self.inner.log_segment_bytes.load(std::sync::atomic::Ordering::Relaxed);
        DATA_FILES.iter().map(|file| file_size(&self.inner.config.data_dir.join(file))).sum::<u64>() + segments
    }

    /// Bytes of this member's data files that hold data.
    pub(super) fn data_in_use(&self) -> u64 {
        self.inner.log_in_use.load(std::sync::atomic::Ordering::Relaxed) + self.inner.snapshots.in_use()
    }

    /// Takes a snapshot of what is applied now unless the last one covers
    /// it; returns the index the snapshot covers.
    async fn snapshot_now(&self) -> Result<u64> {
        let (applied, snapshot) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            (m.last_applied.map_or(0, |id| id.index), m.snapshot.map_or(0, |id| id.index))
        };
        if snapshot >= applied {
            return Ok(snapshot);
        }
        self.inner.raft.trigger().snapshot().await.map_err(|_| Error::Shutdown)?;
        let metrics = self
            .inner
            .raft
            .wait(Some(STEP_TIMEOUT))
            .metrics(|m| m.snapshot.is_some_and(|id| id.index >= applied), "defragment: snapshot")
            .await
            .map_err(|e| Error::Storage(format!("the snapshot before defragmenting did not complete: {e}")))?;
        Ok(metrics.snapshot.map_or(applied, |id| id.index))
    }

    /// Purges the log up to `index`, on a leader not past what any
    /// follower has.
    async fn purge_to(&self, index: u64) -> Result<()> {
        let upto = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            let followers_have = m
                .replication
                .as_ref()
                .map(|replication| {
                    replication
                        .iter()
                        .filter(|(id, _)| **id != self.inner.member_id)
                        .map(|(_, matched)| matched.map_or(0, |id| id.index))
                        .min()
                        .unwrap_or(index)
                })
                .unwrap_or(index);
            let purged = m.purged.map_or(0, |id| id.index);
            let upto = index.min(followers_have);
            if upto <= purged {
                return Ok(());
            }
            upto
        };
        self.inner.raft.trigger().purge_log(upto).await.map_err(|_| Error::Shutdown)?;
        self.inner
            .raft
            .wait(Some(STEP_TIMEOUT))
            .metrics(|m| m.purged.is_some_and(|id| id.index >= upto), "defragment: purge")
            .await
            .map_err(|e| Error::Storage(format!("the log purge before defragmenting did not complete: {e}")))?;
        Ok(())
    }
}

/// The redb files of a data directory (the log's segments are counted by
/// the log writer).
const DATA_FILES: [&str; 2] = ["concord.redb", "snapshot.redb"];

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
