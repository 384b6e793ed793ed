//! Crash points: the power goes at every fsync of a workload in turn —
//! just before it, and just after it completed — on the simulated disk of
//! `common/disk.rs`, which keeps only what was synced. The fsyncs are
//! those of the log writer, the state and the snapshots (snapshots are
//! taken every few entries here). After each crash the member reopens on
//! what survived and must hold every acknowledged write, nothing half
//! applied (a transaction's two keys, a lease and its keys, all or
//! nothing; each writer's keys a gap-free prefix), and take writes again.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::disk::Disk;
use concord::{Config, KeyRange, TxnOp};

const WRITERS: usize = 2;
const OPS_PER_WRITER: usize = 12;

fn config(dir: &std::path::Path, disk: &Arc<Disk>) -> Config {
    Config::new(dir)
        .storage(disk.storage())
        .snapshot_after_entries(8)
        .logs_kept_after_snapshot(4)
        .request_timeout(Duration::from_secs(5))
}

/// What the workload had acknowledged when the power went.
#[derive(Default, Debug, Clone)]
struct Acked {
    /// Per writer, its last acknowledged index.
    last: BTreeMap<usize, usize>,
}

/// Each writer in turn: a put, a transaction writing two keys, and a lease
/// with two keys that is then revoked. Stops at the first error.
async fn workload(db: &concord::Concord, acked: Arc<Mutex<Acked>>) {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (db, acked) = (db.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..OPS_PER_WRITER {
                let step = async {
                    match i % 3 {
                        0 => db.kv().put(format!("w{w}/{i:03}"), "v").await.map(drop),
                        1 => db
                            .txn()
                            .and_then([
                                TxnOp::put(format!("w{w}/{i:03}"), "v"),
                                TxnOp::put(format!("t{w}/{i:03}/b"), "v"),
                            ])
                            .await
                            .map(drop),
                        _ => {
                            let lease = db.lease().grant(60).await?;
                            db.kv().put(format!("l/{}/a", lease.id), "v").lease(lease.id).await?;
                            db.kv().put(format!("l/{}/b", lease.id), "v").lease(lease.id).await?;
                            if i % 2 == 0 {
                                db.lease().revoke(lease.id).await?;
                            }
                            db.kv().put(format!("w{w}/{i:03}"), "v").await.map(drop)
                        }
                    }
                };
                if step.await.is_err() {
                    return;
                }
                acked.lock().unwrap().last.insert(w, i);
            }
        }));
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await.expect("a writer hung after the crash");
    }
}

/// The promises after a crash (see the module doc).
async fn check(db: &concord::Concord, acked: &Acked, point: &str) {
    for w in 0..WRITERS {
        let keys = db.kv().range(KeyRange::prefix(format!("w{w}/"))).keys_only().await.unwrap();
        let indices: Vec<usize> =
            keys.kvs.iter().map(|kv| std::str::from_utf8(&kv.key[3..]).unwrap().parse().unwrap()).collect();
        assert_eq!(indices, (0..indices.len()).collect::<Vec<_>>(), "{point}: writer {w} has a gap");
        if let Some(&last) = acked.last.get(&w) {
            assert!(indices.len() > last, "{point}: writer {w}'s acknowledged op {last} lost");
        }
        // A transaction's second key exists exactly when its first does.
        for i in indices.iter().filter(|i| *i % 3 == 1) {
            let b = db.kv().get(format!("t{w}/{i:03}/b")).await.unwrap();
            assert!(b.is_some(), "{point}: writer {w}'s transaction {i} half applied");
        }
        let stray = db.kv().range(KeyRange::prefix(format!("t{w}/"))).keys_only().await.unwrap();
        assert!(stray.kvs.len() <= indices.iter().filter(|i| *i % 3 == 1).count(), "{point}: a stray txn key");
    }
    // A lease and its keys: both keys with a live lease, neither without.
    let leased = db.kv().range(KeyRange::prefix("l/")).keys_only().await.unwrap();
    let mut per_lease: BTreeMap<i64, usize> = BTreeMap::new();
    for kv in &leased.kvs {
        let id: i64 = std::str::from_utf8(&kv.key[2..]).unwrap().split('/').next().unwrap().parse().unwrap();
        *per_lease.entry(id).or_default() += 1;
        assert!(db.lease().info(id).await.is_ok(), "{point}: key {:?} outlived its lease", kv.key);
    }
    for (id, keys) in per_lease {
        assert!(keys <= 2, "{point}: lease {id} has {keys} keys");
    }
}

async fn crash_and_check(point: u64, after: bool) -> bool {
    let name = format!("power lost {} fsync {point}", if after { "after" } else { "before" });
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::new();
    disk.crash_at_sync(point, after);
    let acked = Arc::new(Mutex::new(Acked::default()));
    match config(dir.path(), &disk).open().await {
        Ok(db) => {
            workload(&db, acked.clone()).await;
            let _ = db.shutdown().await;
        }
        // The crash came while opening: nothing was acknowledged.
        Err(_) => assert!(disk.crashed(), "{name}: open failed without a crash"),
    }
    if !disk.crashed() {
        return false;
    }
    let acked = acked.lock().unwrap().clone();
    let survived = disk.power_loss();
    let db = config(dir.path(), &survived).open().await.unwrap_or_else(|e| panic!("{name}: reopen failed: {e}"));
    check(&db, &acked, &name).await;
    db.kv().put("after", "v").await.unwrap_or_else(|e| panic!("{name}: no writes after the restart: {e}"));
    db.shutdown().await.unwrap();
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_fsync_loses_nothing_acknowledged_and_half_applies_nothing() {
    // How many fsyncs the whole workload makes without a crash.
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::new();
    let db = config(dir.path(), &disk).open().await.unwrap();
    workload(&db, Arc::new(Mutex::new(Acked::default()))).await;
    db.shutdown().await.unwrap();
    let total = disk.syncs();
    assert!(total > 20, "only {total} fsyncs: the workload is too small to mean much");

    let mut points = 0;
    for point in 1..=total {
        for after in [false, true] {
            if crash_and_check(point, after).await {
                points += 1;
            }
        }
    }
    println!("{points} crash points reached of {} over {total} fsyncs", 2 * total);
    // Runs vary a little (batching), so a few late points may not be reached.
    assert!(points as u64 >= total, "only {points} of {} crash points were reached", 2 * total);
}
