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

/// The receiving side of a snapshot: a follower that was away while the
/// leader purged its log catches up by snapshot, and the power goes at
/// each of its fsyncs in turn (the snapshot's chunks, its install, the log
/// around it), just before or just after. It must reopen on what survived
/// and catch up to the same history as the leader. Every point starts the
/// three members again from copies of their disks as they were before the
/// follower came back (a leader may not see a follower's log go back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_fsync_while_catching_up_by_snapshot_leaves_a_member_that_catches_up() {
    let tune = |c: Config| {
        c.snapshot_after_entries(8)
            .logs_kept_after_snapshot(4)
            .request_timeout(Duration::from_secs(5))
            .heartbeat_interval(Duration::from_millis(30))
            .election_timeout(Duration::from_millis(200))
    };
    let members = common::disk_cluster::start_with(3, tune).await;
    let leader = common::disk_cluster::leader_index(&members).await;
    let away = (leader + 1) % 3;
    let db = members[leader].db.clone();
    db.kv().put("before", "v").await.unwrap();
    members[away].db.shutdown().await.unwrap();
    // The follower is away: the log moves on and is purged.
    let lease = db.lease().grant(600).await.unwrap().id;
    db.kv().put("leased", "v").lease(lease).await.unwrap();
    for i in 0..64 {
        db.kv().put(format!("away/{i:03}"), format!("{i}")).await.unwrap();
    }
    // The purge follows a snapshot built in a task of its own: a moment
    // later on a loaded machine.
    let since = std::time::Instant::now();
    while db.status().purged_index.is_none() {
        assert!(since.elapsed() < Duration::from_secs(30), "the leader's log was never purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (revision, hash) = (db.revision(), db.hash_kv(db.revision()).unwrap());
    let configs: Vec<Config> = members.iter().map(|m| m.db.config().clone()).collect();
    for (i, m) in members.iter().enumerate() {
        if i != away {
            m.db.shutdown().await.unwrap();
        }
    }
    let bases: Vec<Arc<Disk>> = members.iter().map(|m| m.disk.copy_synced()).collect();
    drop(db);

    // Starts the other two on copies of their disks, then the follower on
    // `disk`; whether it caught up within `give_up` (or before a crash).
    let catch_up = async |disk: &Arc<Disk>, give_up: Duration| -> (bool, Vec<concord::Concord>) {
        let mut others = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            if i != away {
                let c = config.clone().storage(bases[i].copy_synced().storage());
                others.push(tokio::spawn(async move { c.open().await.unwrap() }));
            }
        }
        let mut running = Vec::new();
        for task in others {
            running.push(task.await.unwrap());
        }
        let Ok(member) = configs[away].clone().storage(disk.storage()).open().await else { return (false, running) };
        let since = std::time::Instant::now();
        while member.revision() < revision && !disk.crashed() && since.elapsed() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let caught_up = member.revision() >= revision;
        let _ = member.shutdown().await;
        (caught_up, running)
    };
    // The follower first: a leader alone stops without handing over.
    let stop = async |mut running: Vec<concord::Concord>| {
        running.sort_by_key(|db| db.status().is_leader);
        for db in running {
            db.shutdown().await.unwrap();
        }
    };
    // How many fsyncs catching up takes without a crash.
    let clean = bases[away].copy_synced();
    let (caught_up, running) = catch_up(&clean, Duration::from_secs(30)).await;
    stop(running).await;
    assert!(caught_up, "the follower did not catch up");
    let total = clean.syncs();
    assert!(total > 3, "only {total} fsyncs while catching up");

    let mut points = 0;
    for point in 1..=total {
        for after in [false, true] {
            let name = format!("power lost {} fsync {point} of {total}", if after { "after" } else { "before" });
            let disk = bases[away].copy_synced();
            disk.crash_at_sync(point, after);
            let (_, running) = catch_up(&disk, Duration::from_secs(10)).await;
            if !disk.crashed() {
                stop(running).await;
                continue;
            }
            points += 1;
            let survived = disk.power_loss();
            let member = configs[away].clone().storage(survived.storage()).open().await;
            let member = member.unwrap_or_else(|e| panic!("{name}: reopen failed: {e}"));
            let since = std::time::Instant::now();
            while member.revision() < revision {
                assert!(since.elapsed() < Duration::from_secs(30), "{name}: did not catch up again");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(member.hash_kv(revision).unwrap(), hash, "{name}: another history");
            let leased = member.kv().get("leased").serializable().await.unwrap().map(|kv| kv.lease);
            assert_eq!(leased, Some(Some(lease)), "{name}: the key's lease");
            member.shutdown().await.unwrap_or_else(|e| panic!("{name}: shutdown: {e}"));
            stop(running).await;
        }
    }
    println!("{points} crash points reached of {} over {total} fsyncs while catching up", 2 * total);
    assert!(points as u64 >= total, "only {points} of {} crash points were reached", 2 * total);
}
