//! Durability beyond SIGKILL, on a simulated disk (`common/disk.rs`): a
//! power loss keeps only what was fsynced, and a disk whose fsync fails
//! poisons the member.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::disk::Disk;
use concord::{Config, Error, KeyRange};

const WRITERS: usize = 8;

fn config(dir: &std::path::Path, disk: &Arc<Disk>) -> Config {
    // Small snapshots, so that a power loss also catches snapshot writes.
    Config::new(dir).storage(disk.storage()).snapshot_after_entries(50).logs_kept_after_snapshot(10)
}

/// Each writer's keys present after the restart: they must be exactly
/// 0..n (no gap) and include every acknowledged one.
async fn check_prefixes(db: &concord::Concord, acked: &BTreeMap<usize, usize>) {
    for w in 0..WRITERS {
        let keys = db.kv().range(KeyRange::prefix(format!("w{w}/"))).keys_only().await.unwrap();
        let indices: Vec<usize> =
            keys.kvs.iter().map(|kv| std::str::from_utf8(&kv.key[3..]).unwrap().parse().unwrap()).collect();
        assert_eq!(indices, (0..indices.len()).collect::<Vec<_>>(), "writer {w}: a gap in its durable writes");
        if let Some(&last) = acked.get(&w) {
            assert!(indices.len() > last, "writer {w}: acknowledged write {last} lost ({} survived)", indices.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_power_loss_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::new();
    let db = config(dir.path(), &disk).open().await.unwrap();
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (kv, acked) = (db.kv(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                if kv.put(format!("w{w}/{i:06}"), "v").await.is_err() {
                    return;
                }
                acked.lock().unwrap().insert(w, i);
            }
        }));
    }
    // Let some snapshots happen, then cut the power mid-stream.
    let start = std::time::Instant::now();
    while db.status().snapshot_index.is_none_or(|i| i < 3) {
        assert!(start.elapsed() < Duration::from_secs(30), "no snapshot was taken");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = disk.power_loss();
    for w in writers {
        tokio::time::timeout(Duration::from_secs(10), w).await.expect("a writer hung after the power loss").unwrap();
    }
    // (A write made durable just before the cut may be acknowledged just
    // after it: what matters is that every acknowledged write survives.)
    let acked = acked.lock().unwrap().clone();
    assert!(db.shutdown().await.is_err(), "shutdown must report the failed disk");

    let db = config(dir.path(), &after).open().await.unwrap();
    check_prefixes(&db, &acked).await;
    db.kv().put("after", "v").await.expect("the restored member takes writes");
    db.shutdown().await.unwrap();
}

/// The poison path: once an fsync fails, that batch and every later write
/// fail, nothing unsynced is acknowledged, and `shutdown()` reports it.
#[tokio::test]
async fn a_failed_fsync_poisons_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::new();
    let db = config(dir.path(), &disk).open().await.unwrap();
    db.kv().put("before", "v").await.unwrap();
    disk.fail_syncs();
    let failed = db.kv().put("during", "v").timeout(Duration::from_secs(5)).await;
    assert!(matches!(failed, Err(Error::Storage(_) | Error::Shutdown)), "{failed:?}");
    for _ in 0..3 {
        let later = db.kv().put("later", "v").timeout(Duration::from_secs(5)).await;
        assert!(matches!(later, Err(Error::Storage(_) | Error::Shutdown)), "a write after the failure: {later:?}");
    }
    assert!(db.shutdown().await.is_err(), "shutdown must report the failed fsync");

    let after = disk.power_loss();
    let db = config(dir.path(), &after).open().await.unwrap();
    assert!(db.kv().get("before").await.unwrap().is_some());
    assert!(db.kv().get("during").await.unwrap().is_none());
    assert!(db.kv().get("later").await.unwrap().is_none());
    db.shutdown().await.unwrap();
}

/// A failed write outside the log (here: the snapshot a defragmentation
/// takes, after the power is cut while nothing else writes) stops Raft, and
/// `shutdown()` says so rather than report a clean stop.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_reports_a_failed_snapshot_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::new();
    let db = config(dir.path(), &disk).open().await.unwrap();
    for i in 0..10 {
        db.kv().put(format!("k{i}"), "v").await.unwrap();
    }
    let _after = disk.power_loss();
    assert!(db.defragment().await.is_err(), "a defragmentation on a dead disk succeeded");
    assert!(db.shutdown().await.is_err(), "shutdown must report the failed disk");
}
