//! Durability across a clean restart: keys, revisions, history, leases with
//! their remaining time, the next lease id; with and without snapshots.

mod common;

use std::time::Duration;

use concord::KeyRange;

#[tokio::test]
async fn a_restart_restores_keys_revisions_history_and_leases() {
    let fast_checkpoints = |c: concord::Config| c.lease_checkpoint_interval(Duration::from_millis(200));
    let m = common::open_with(fast_checkpoints).await;
    let kv = m.db.kv();
    kv.put("a", "1").await.unwrap();
    kv.put("a", "2").await.unwrap();
    kv.put("b", "1").await.unwrap();
    kv.delete("b").await.unwrap();
    let granting = std::time::Instant::now();
    let lease = m.db.lease().grant(10).await.unwrap();
    kv.put("leased", "x").lease(lease.id).await.unwrap();
    let revision = m.db.revision();
    // Let the leader checkpoint the lease's remaining time a few times.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let m = m.restart(fast_checkpoints).await;
    let kv = m.db.kv();
    assert_eq!(m.db.revision(), revision);
    assert_eq!(kv.get("a").await.unwrap().unwrap().version, 2);
    assert!(kv.get("b").await.unwrap().is_none());
    assert_eq!(kv.history("b").await.unwrap().len(), 2);
    let since_grant = granting.elapsed();
    let info = m.db.lease().info(lease.id).await.unwrap();
    assert_eq!(info.keys.len(), 1);
    // Not reset to the full TTL, and not shorter than the truth.
    assert!(info.remaining < Duration::from_millis(9_300), "remaining reset on restart: {:?}", info.remaining);
    // Never shorter than the truth: the lease cannot end before 10 s after
    // the grant was asked for (measured before the read: stricter).
    assert!(
        info.remaining + since_grant >= Duration::from_secs(10),
        "remaining {:?} after {since_grant:?}: the restart shortened the lease",
        info.remaining
    );
    let next = m.db.lease().grant(5).await.unwrap();
    assert!(next.id > lease.id, "lease ids are never reused");
}

#[tokio::test]
async fn snapshots_and_log_purge_survive_restarts() {
    let small_snapshots = |c: concord::Config| c.snapshot_after_entries(50);
    let m = common::open_with(small_snapshots).await;
    for i in 0..600 {
        m.db.kv().put(format!("k/{i:04}"), format!("{i}")).await.unwrap();
    }
    let lease = m.db.lease().grant(60).await.unwrap();
    m.db.kv().put("k/leased", "x").lease(lease.id).await.unwrap();
    let revision = m.db.revision();
    let m = m.restart(small_snapshots).await;
    assert_eq!(m.db.revision(), revision);
    let all = m.db.kv().range(KeyRange::prefix("k/")).count_only().await.unwrap();
    assert_eq!(all.count, 601);
    assert_eq!(m.db.kv().get("k/0599").await.unwrap().unwrap().value, "599");
    // Keep writing after the restart, and once more.
    m.db.kv().put("after", "1").await.unwrap();
    let m = m.restart(small_snapshots).await;
    assert_eq!(m.db.kv().get("after").await.unwrap().unwrap().value, "1");
    assert_eq!(m.db.lease().revoke(lease.id).await.unwrap().deleted_keys, 1);
}

#[tokio::test]
async fn concurrent_acknowledged_writes_are_all_durable() {
    let m = common::open().await;
    let mut tasks = Vec::new();
    for w in 0..64 {
        let kv = m.db.kv();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                kv.put(format!("w{w:02}/{i:02}"), format!("{w}-{i}")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let revision = m.db.revision();
    assert_eq!(revision, 1 + 64 * 40);
    let m = m.restart(|c| c).await;
    assert_eq!(m.db.revision(), revision);
    let r = m.db.kv().range(KeyRange::all()).count_only().await.unwrap();
    assert_eq!(r.count, 64 * 40);
}

#[tokio::test]
async fn a_large_log_triggers_a_snapshot_by_size() {
    let by_size = |c: concord::Config| c.snapshot_after_entries(1_000_000).snapshot_after_bytes(64 * 1024);
    let m = common::open_with(by_size).await;
    assert_eq!(m.db.status().snapshot_index, None);
    let value = vec![b'v'; 1024];
    for i in 0..200 {
        m.db.kv().put(format!("big/{i:03}"), value.clone()).await.unwrap();
    }
    let start = std::time::Instant::now();
    while m.db.status().snapshot_index.is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "200 KiB of log never triggered a snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = m.restart(by_size).await;
    let r = m.db.kv().range(KeyRange::prefix("big/")).count_only().await.unwrap();
    assert_eq!(r.count, 200);
}

/// The cluster id is recorded at the first open and read back after, so a
/// later change of membership cannot change it (etcd keeps the id of the
/// cluster's first configuration too). Data written before the id was
/// recorded gets it recorded at its next open.
#[tokio::test]
async fn the_cluster_id_is_recorded_once_and_kept() {
    use redb::ReadableDatabase;
    const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("raft_meta");
    let stored = |dir: &std::path::Path| -> Option<u64> {
        let db = redb::Database::open(dir.join("concord.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(META).unwrap();
        let value = table.get("cluster_id").unwrap()?;
        Some(u64::from_le_bytes(value.value().try_into().unwrap()))
    };
    let m = common::open().await;
    // etcd's default single member's cluster id.
    assert_eq!(m.db.cluster_id(), 0xcdf818194e3a8c32);
    m.db.shutdown().await.unwrap();
    assert_eq!(stored(m.dir.path()), Some(0xcdf818194e3a8c32));

    // Data from before the id was recorded: it is recorded at the next open.
    {
        let db = redb::Database::open(m.dir.path().join("concord.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove("cluster_id").unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(stored(m.dir.path()), None);
    let db = common::config(&m.dir).open().await.unwrap();
    assert_eq!(db.cluster_id(), 0xcdf818194e3a8c32);
    db.shutdown().await.unwrap();
    assert_eq!(stored(m.dir.path()), Some(0xcdf818194e3a8c32));

    // What is recorded is what a member reports, whatever its voters.
    {
        let db = redb::Database::open(m.dir.path().join("concord.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("cluster_id", 0x1234_u64.to_le_bytes().as_slice()).unwrap();
        txn.commit().unwrap();
    }
    let db = common::config(&m.dir).open().await.unwrap();
    assert_eq!(db.cluster_id(), 0x1234, "the recorded id wins");
    db.shutdown().await.unwrap();
}

/// A data directory from before the log's segment files kept entries in
/// `concord.redb`'s `raft_log` table: the first open moves them into a
/// segment (and drops the table), and every write is still there.
#[tokio::test]
async fn a_log_kept_in_redb_moves_into_segment_files() {
    use redb::ReadableDatabase;
    const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raft_log");
    const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("raft_meta");
    let m = common::open().await;
    for i in 0..50 {
        m.db.kv().put(format!("k{i:02}"), format!("v{i}")).await.unwrap();
    }
    m.db.shutdown().await.unwrap();
    let dir = m.dir.path().to_path_buf();
    // Rewrite the directory as the older layout had it: the entries from
    // the segment files (records: len u32, crc u32, kind 1, index u64,
    // entry) into `raft_log`, no segments.
    let mut entries = std::collections::BTreeMap::new();
    let segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert_eq!(segments.len(), 1);
    let bytes = std::fs::read(&segments[0]).unwrap();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        match payload[0] {
            1 => {
                entries.insert(u64::from_le_bytes(payload[1..9].try_into().unwrap()), payload[9..].to_vec());
            }
            2 => {
                let from = u64::from_le_bytes(payload[1..9].try_into().unwrap());
                entries.split_off(&from);
            }
            _ => {}
        }
        at += 8 + len;
    }
    assert!(entries.len() > 50, "{} entries", entries.len());
    {
        let db = redb::Database::open(dir.join("concord.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            for (index, entry) in &entries {
                log.insert(*index, entry.as_slice()).unwrap();
            }
            txn.open_table(META).unwrap().remove("wal_segments").unwrap();
        }
        txn.commit().unwrap();
    }
    std::fs::remove_file(&segments[0]).unwrap();

    let db = common::config(&m.dir).open().await.unwrap();
    for i in 0..50 {
        let kv = db.kv().get(format!("k{i:02}")).await.unwrap().expect("a write from the old log");
        assert_eq!(kv.value, format!("v{i}").as_bytes());
    }
    db.kv().put("after", "x").await.unwrap();
    db.shutdown().await.unwrap();
    let db = redb::Database::open(dir.join("concord.redb")).unwrap();
    assert!(db.begin_read().unwrap().open_table(LOG).is_err(), "the old table is dropped once moved");
    drop(db);
    let db = common::config(&m.dir).open().await.unwrap();
    assert!(db.kv().get("after").await.unwrap().is_some());
    assert!(db.kv().get("k49").await.unwrap().is_some());
}
