//! Crash test: a child process writes and leases on a data directory and is
//! killed with SIGKILL mid-stream; the parent reopens the directory and
//! checks that every acknowledged write is there and that the lease neither
//! came back at full TTL nor expired early, and still expires on time.
//!
//! The child is this same test binary, re-run with `--ignored` on the
//! `crash_child` test and the data directory in an environment variable.

mod common;

use std::time::{Duration, Instant};

use concord::{Concord, Config};

const CHILD_DIR: &str = "CONCORD_CRASH_CHILD_DIR";
const LEASE_TTL: i64 = 4;

fn child_config(dir: &str) -> Config {
    Config::new(dir).lease_checkpoint_interval(Duration::from_millis(200))
}

/// The child: grants a lease, attaches a key, then writes as fast as 16
/// concurrent writers can, printing each acknowledged key. Runs until killed.
#[tokio::test]
#[ignore = "run by the crash test in a child process"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let db = child_config(&dir).open().await.unwrap();
    println!("@granting");
    let lease = db.lease().grant(LEASE_TTL).await.unwrap();
    db.kv().put("leased", "x").lease(lease.id).await.unwrap();
    println!("@lease {}", lease.id);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for w in 0..16 {
        let kv = db.kv();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let key = format!("w{w:02}/{i:08}");
                kv.put(key.clone(), key.clone()).await.unwrap();
                if tx.send(key).is_err() {
                    return;
                }
            }
        });
    }
    while let Some(key) = rx.recv().await {
        println!("@ack {key}");
    }
}

#[tokio::test]
async fn acknowledged_writes_and_leases_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_string();
    let child = common::child::ChildTest::spawn("crash_child", CHILD_DIR, dir.path());

    let mut acked = Vec::new();
    let mut granting_at = None;
    let mut lease_id = None;
    let mut lease_seen_at = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match child.next(left) {
            Ok(line) => line,
            Err(e) => panic!("the child made no progress in time ({e}); {} writes acknowledged", acked.len()),
        };
        let line = line.as_str();
        if line == "granting" {
            granting_at = Some(Instant::now());
        } else if let Some(id) = line.strip_prefix("lease ") {
            lease_id = Some(id.parse::<i64>().unwrap());
            lease_seen_at = Some(Instant::now());
        } else if let Some(key) = line.strip_prefix("ack ") {
            acked.push(key.to_string());
            // Kill mid-stream, a second after the lease so checkpoints happened.
            if lease_seen_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) && acked.len() > 500 {
                break;
            }
        }
    }
    child.kill(); // SIGKILL
    let killed_at = Instant::now();
    let granting_at = granting_at.expect("child started granting");
    let lease_id = lease_id.expect("child granted a lease");
    assert!(acked.len() > 500, "too few writes before the kill: {}", acked.len());

    let db = Concord::open_with(child_config(&dir_str)).await.unwrap();
    let reopened_at = Instant::now();
    // The lease must still be there: its TTL has not passed since the grant.
    assert!(granting_at.elapsed() < Duration::from_secs(LEASE_TTL as u64), "reopen took too long to judge");
    let info = db.lease().info(lease_id).await.expect("the lease survived the crash");
    let since_grant = killed_at - granting_at;
    // Resumed from a recent checkpoint, not reset to the full TTL.
    assert!(
        info.remaining < Duration::from_secs(LEASE_TTL as u64) - since_grant + Duration::from_millis(600),
        "remaining {:?} after {since_grant:?} of a {LEASE_TTL}s lease",
        info.remaining
    );
    assert!(db.kv().get("leased").await.unwrap().is_some());

    for key in &acked {
        let kv = db.kv().get(key.clone()).serializable().await.unwrap();
        assert_eq!(kv.map(|kv| kv.value), Some(key.clone().into()), "acknowledged write {key} lost");
    }
    // Expires on time: within its remaining time (plus the downtime it was
    // credited) and one second, and not before its TTL since the grant.
    let expected_by = reopened_at + info.remaining + Duration::from_secs(1);
    loop {
        let present = db.kv().get("leased").await.unwrap().is_some();
        if !present {
            // The key was present at the previous poll (20 ms ago at most).
            let not_before = granting_at + Duration::from_secs(LEASE_TTL as u64);
            assert!(Instant::now() >= not_before, "the lease expired early after the restart");
            break;
        }
        assert!(Instant::now() < expected_by, "the lease outlived its remaining time after restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = db.lease().grant(5).await.unwrap();
    assert!(next.id > lease_id);
    db.shutdown().await.unwrap();
}
