//! Restoring from a real snapshot after a crash: the writes below are
//! covered by a snapshot and purged from the log before the member is killed
//! (SIGKILL: no clean-shutdown records), so everything the reopened member
//! knows about them comes from the snapshot alone.
//!
//! Each check catches a bug that passed the rest of the suite when injected:
//! the lease id counter, the lease deadlines and the compaction revision
//! each left out of a restore.

use std::time::{Duration, Instant};

use concord::{Config, Error};

mod common;

const CHILD_DIR: &str = "CONCORD_SNAPSHOT_CHILD_DIR";
const SHORT_TTL: u64 = 3;

fn config(dir: &str) -> Config {
    Config::new(dir).snapshot_after_entries(20).logs_kept_after_snapshot(0).auto_compaction_retention(None)
}

/// The child: makes the state, waits until a snapshot covers it and the
/// log before it is purged, reports, then idles until killed.
#[tokio::test]
#[ignore = "run by the snapshot-restore test in a child process"]
async fn snapshot_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let db = config(&dir).open().await.unwrap();
    // Lease ids 1..=3, the two highest revoked: the next store-picked id is
    // 4 (the short lease below), then 5.
    for _ in 0..3 {
        db.lease().grant(600).await.unwrap();
    }
    db.lease().revoke(3).await.unwrap();
    db.lease().revoke(2).await.unwrap();
    // A compacted history.
    let old = db.kv().put("k", "v1").await.unwrap().revision;
    let kept = db.kv().put("k", "v2").await.unwrap().revision;
    db.kv().put("k", "v3").await.unwrap();
    db.kv().compact(kept).await.unwrap();
    // A short lease with a key.
    println!("@granting");
    let short = db.lease().grant(SHORT_TTL as i64).await.unwrap();
    db.kv().put("short", "x").lease(short.id).await.unwrap();
    let covered = db.status().raft_applied_index;
    let mut filler = 0;
    loop {
        let s = db.status();
        if s.snapshot_index >= Some(covered) && s.purged_index >= Some(covered) {
            break;
        }
        db.kv().put(format!("filler/{filler}"), "f").await.unwrap();
        filler += 1;
        assert!(filler < 10_000, "no snapshot covered index {covered}: {s:?}");
    }
    println!("@ready {} {old} {kept}", short.id);
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_member_restored_from_a_snapshot_keeps_lease_ids_deadlines_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_string();
    let child = common::child::ChildTest::spawn("snapshot_child", CHILD_DIR, dir.path());
    child.expect("granting", Duration::from_secs(30));
    let granting_at = Instant::now();
    let ready = child.expect("ready", Duration::from_secs(30));
    child.kill();
    let numbers: Vec<i64> = ready.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
    let (short, old, kept) = (numbers[0], numbers[1], numbers[2]);

    let db = config(&dir_str).open().await.unwrap();
    // The lease id counter came back: ids 2 and 3 are never handed out again.
    assert_eq!(db.lease().grant(600).await.unwrap().id, short + 1, "a lease id was reused after the restore");
    // The compaction point came back: reads below it are refused.
    assert!(matches!(
        db.kv().get("k").revision(old).await,
        Err(Error::Compacted { compact_revision }) if compact_revision == kept
    ));
    assert_eq!(db.kv().get("k").revision(kept).await.unwrap().unwrap().value, "v2");
    // The short lease's deadline came back: it still expires, never early.
    assert!(db.kv().get("short").await.unwrap().is_some(), "reopened too late to judge");
    let bound = granting_at + Duration::from_secs(SHORT_TTL + 5);
    loop {
        if db.kv().get("short").await.unwrap().is_none() {
            assert!(granting_at.elapsed() >= Duration::from_secs(SHORT_TTL), "the restored lease expired early");
            break;
        }
        assert!(Instant::now() < bound, "the restored lease never expired (deadlines not rebuilt)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(db.lease().info(short).await, Err(Error::LeaseNotFound(_))));
    db.shutdown().await.unwrap();
}
