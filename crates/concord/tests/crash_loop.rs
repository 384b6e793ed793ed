//! Repeated SIGKILLs with snapshots present, some during reopen and log
//! replay: after every kill each writer's durable keys form a gap-free
//! prefix that holds every acknowledged write.
//!
//! The child is this test binary again (`crash_loop_child`): it reopens the
//! data directory, finds where each writer stopped, and writes on from there,
//! printing every acknowledged key, until it is killed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use concord::{Config, KeyRange};

const CHILD_DIR: &str = "CONCORD_CRASH_LOOP_DIR";
const WRITERS: usize = 8;
const ROUNDS: usize = 10;

fn config(dir: &str) -> Config {
    Config::new(dir).snapshot_after_entries(100).logs_kept_after_snapshot(20)
}

/// How many keys writer `w` has (they are `w{w}/0..n`).
async fn durable_count(db: &concord::Concord, w: usize) -> usize {
    let keys = db.kv().range(KeyRange::prefix(format!("w{w}/"))).keys_only().await.unwrap();
    let indices: Vec<usize> =
        keys.kvs.iter().map(|kv| std::str::from_utf8(&kv.key[3..]).unwrap().parse().unwrap()).collect();
    assert_eq!(indices, (0..indices.len()).collect::<Vec<_>>(), "writer {w}: a gap in its durable writes");
    indices.len()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by the crash-loop test in a child process"]
async fn crash_loop_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let db = config(&dir).open().await.unwrap();
    println!("@opened");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize)>();
    for w in 0..WRITERS {
        let start = durable_count(&db, w).await;
        let (kv, tx) = (db.kv(), tx.clone());
        tokio::spawn(async move {
            for i in start.. {
                kv.put(format!("w{w}/{i:06}"), "v").await.unwrap();
                if tx.send((w, i)).is_err() {
                    return;
                }
            }
        });
    }
    while let Some((w, i)) = rx.recv().await {
        println!("@ack {w} {i}");
    }
}

#[tokio::test]
async fn repeated_kills_with_snapshots_keep_a_gap_free_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_string();
    let mut acked: BTreeMap<usize, usize> = BTreeMap::new();
    let mut kills_before_open = 0;
    for round in 0..ROUNDS {
        let child = common::child::ChildTest::spawn("crash_loop_child", CHILD_DIR, dir.path());
        let spawned = Instant::now();
        // Every other round is killed while it starts (loading the snapshot
        // or replaying the log); the others after a growing stretch of writes.
        let during_open = round % 2 == 1;
        let kill_at = if during_open {
            // Spread around the ~10 ms a reopen takes here.
            spawned + Duration::from_millis(3 * (round as u64 / 2 + 1))
        } else {
            Instant::now() + Duration::from_secs(30)
        };
        let mut acks_this_round = 0;
        let target = 300 + 200 * round;
        loop {
            let left = kill_at.saturating_duration_since(Instant::now());
            match child.next(left) {
                Ok(line) if line == "opened" => {
                    eprintln!("round {round}: opened after {:?}", spawned.elapsed());
                    if during_open {
                        break;
                    }
                }
                Ok(line) => {
                    let mut parts = line.split_whitespace().skip(1).map(|n| n.parse::<usize>().unwrap());
                    let (w, i) = (parts.next().unwrap(), parts.next().unwrap());
                    let last = acked.entry(w).or_insert(i);
                    *last = (*last).max(i);
                    acks_this_round += 1;
                    if acks_this_round >= target {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if during_open => {
                    kills_before_open += 1;
                    break;
                }
                Err(e) => panic!("round {round}: the child made no progress ({e})"),
            }
        }
        child.kill(); // SIGKILL
    }
    assert!(acked.len() == WRITERS, "every writer wrote something: {acked:?}");

    let db = config(&dir_str).open().await.unwrap();
    assert!(db.status().snapshot_index.is_some(), "the test must run with snapshots present");
    for w in 0..WRITERS {
        let count = durable_count(&db, w).await;
        assert!(count > acked[&w], "writer {w}: acknowledged write {} lost ({count} survived)", acked[&w]);
    }
    println!("{ROUNDS} kills, {kills_before_open} of them before the member finished opening");
    db.shutdown().await.unwrap();
}
