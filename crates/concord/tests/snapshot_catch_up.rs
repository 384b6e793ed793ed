//! A follower that was away while the leader purged its log catches up by
//! snapshot: it installs it, serves the same data and leases (TTLs and
//! attached keys included) as the leader, and restarts cleanly right after.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::{Concord, Config, PeerListen};
use tempfile::TempDir;

/// Puts written while the follower is away: more than 100,000. Concurrent
/// puts share log entries (group commit), so the log is snapshotted every
/// 200 entries to be sure it is purged past the follower.
const WRITES_WHILE_AWAY: usize = 100_352;
const CONCURRENCY: usize = 256;

struct Slot {
    name: String,
    url: String,
    socket: Arc<std::net::TcpListener>,
    dir: TempDir,
}

fn slots(n: usize) -> Vec<Slot> {
    (0..n)
        .map(|i| {
            let socket = Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
            let url = format!("http://{}", socket.local_addr().unwrap());
            Slot { name: format!("m{i}"), url, socket, dir: tempfile::tempdir().unwrap() }
        })
        .collect()
}

fn config(slot: &Slot, all: &[Slot]) -> Config {
    let initial = all.iter().map(|s| (s.name.clone(), s.url.clone()));
    Config::new(slot.dir.path())
        .cluster(slot.name.clone(), slot.url.clone(), PeerListen::Bound(slot.socket.clone()), initial)
        .request_timeout(Duration::from_secs(20))
        .snapshot_after_entries(200)
        .logs_kept_after_snapshot(100)
        .auto_compaction_retention(None)
}

/// Retries a write the cluster asks to retry (an election under load, as
/// on 2 shared cores right after the members start). The writes here are
/// idempotent (each key is written once, with one value).
async fn retrying<T>(mut write: impl AsyncFnMut() -> concord::Result<T>) -> T {
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        match write().await {
            Ok(done) => return done,
            Err(e) if retryable(&e) && Instant::now() < give_up => {
                eprintln!("retrying after: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
}

fn retryable(e: &concord::Error) -> bool {
    matches!(e, concord::Error::NotReady(_) | concord::Error::LeaderChanged | concord::Error::NotLeader { .. })
}

async fn put_many(db: &Concord, prefix: &str, count: usize) {
    let per_task = count / CONCURRENCY;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let db = db.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let give_up = Instant::now() + Duration::from_secs(60);
                for i in 0..per_task {
                    let key = format!("{prefix}{t:03}-{i:05}");
                    loop {
                        match db.kv().put(key.clone(), format!("value-{i}")).await {
                            Ok(_) => break,
                            Err(e) if retryable(&e) && Instant::now() < give_up => {
                                tokio::time::sleep(Duration::from_millis(50)).await
                            }
                            Err(e) => panic!("put {key} failed: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Opens a member in every slot (each config tuned by `tune`); the members
/// and the index of the leader.
async fn open_all(slots: &[Slot], tune: fn(Config) -> Config) -> (Vec<Concord>, usize) {
    let opening: Vec<_> = slots
        .iter()
        .map(|s| {
            let c = tune(config(s, slots));
            tokio::spawn(async move { c.open().await.unwrap() })
        })
        .collect();
    let mut members = Vec::new();
    for task in opening {
        members.push(task.await.unwrap());
    }
    let leader_id = members[0].wait_for_leader(Duration::from_secs(20)).await.unwrap();
    let leader = members.iter().position(|m| m.member_id() == leader_id).unwrap();
    (members, leader)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_behind_the_purged_log_catches_up_by_snapshot() {
    let slots = slots(3);
    let (members, leader) = open_all(&slots, |c| c).await;
    let away = (leader + 1) % 3;
    let db = members[leader].clone();
    // Leases with keys before and while the follower is away.
    let early = retrying(async || db.lease().grant(600).await).await.id;
    retrying(async || db.kv().put("early-key", "x").lease(early).await).await;
    put_many(&db, "before-", 1024).await;

    let follower = members[away].clone();
    let last_seen = follower.status().raft_index;
    follower.shutdown().await.unwrap();
    drop(follower);

    let started = Instant::now();
    put_many(&db, "away-", WRITES_WHILE_AWAY).await;
    let late = db.lease().grant(900).await.unwrap().id;
    db.kv().put("late-key", "y").lease(late).await.unwrap();
    db.kv().delete("before-000-00000").await.unwrap();
    let written = started.elapsed();
    let status = db.status();
    assert!(
        status.purged_index.is_some_and(|purged| purged > last_seen),
        "the leader's log must be purged past the follower ({last_seen}): {:?}",
        status.purged_index
    );

    let back = config(&slots[away], &slots).open().await.unwrap();
    let revision = db.revision();
    let caught_up = Instant::now();
    while back.revision() < revision {
        assert!(caught_up.elapsed() < Duration::from_secs(60), "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back_status = back.status();
    assert!(
        back_status.snapshot_index.is_some_and(|s| s > last_seen),
        "the follower caught up by snapshot: {back_status:?}"
    );
    eprintln!("{WRITES_WHILE_AWAY} puts in {written:?}; the follower caught up in {:?}", caught_up.elapsed());
    assert_same(&db, &back, revision, &[early, late]).await;

    // A restart right after installing the snapshot works.
    back.shutdown().await.unwrap();
    drop(back);
    let back = config(&slots[away], &slots).open().await.unwrap();
    while back.revision() < revision {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_same(&db, &back, revision, &[early, late]).await;
    back.shutdown().await.unwrap();
    for (i, m) in members.iter().enumerate() {
        if i != away {
            m.shutdown().await.unwrap();
        }
    }
}

async fn assert_same(leader: &Concord, follower: &Concord, revision: i64, leases: &[i64]) {
    assert_eq!(follower.hash_kv(revision).unwrap(), leader.hash_kv(revision).unwrap(), "same history");
    assert_eq!(
        follower.kv().get("late-key").await.unwrap().map(|kv| kv.lease),
        Some(Some(leases[1])),
        "the key's lease came with the snapshot"
    );
    for id in leases {
        let on_leader = leader.lease().info(*id).await.unwrap();
        let on_follower = follower.lease().info(*id).await.unwrap();
        assert_eq!(on_follower.ttl, on_leader.ttl, "lease {id}'s TTL");
        assert_eq!(on_follower.keys, on_leader.keys, "lease {id}'s keys");
        // Its remaining time as recorded: never less than the leader's
        // (a lease never expires early), never more than its TTL.
        assert!(
            on_follower.remaining + Duration::from_secs(1) >= on_leader.remaining,
            "lease {id}: {on_follower:?} vs {on_leader:?}"
        );
        assert!(on_follower.remaining <= Duration::from_secs(on_leader.ttl as u64));
    }
}

/// A member stopped at any moment of catching up by snapshot — while the
/// snapshot streams in, as it installs, right after — reopens on what it
/// has and catches up. Rounds stop it sooner or later after it opened; the
/// leader keeps writing meanwhile, so snapshots keep coming.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_stopped_while_catching_up_by_snapshot_reopens() {
    let slots = slots(3);
    let (members, leader) = open_all(&slots, small_log).await;
    let away = (leader + 1) % 3;
    let db = members[leader].clone();
    let follower = members[away].clone();
    follower.shutdown().await.unwrap();
    drop(follower);
    for round in 0..12u64 {
        put_many(&db, &format!("r{round}-"), 2048).await;
        let back = small_log(config(&slots[away], &slots)).open().await.unwrap();
        // Stopped after 0–50 ms (mid-stream), or once caught up.
        if round % 3 == 2 {
            let revision = db.revision();
            let since = Instant::now();
            while back.revision() < revision {
                assert!(since.elapsed() < Duration::from_secs(60), "round {round}: the follower did not catch up");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(round * 13 % 120)).await;
        }
        eprintln!("round {round}: stopping at {:?}", back.status().snapshot_index);
        back.shutdown().await.unwrap();
        drop(back);
    }
    let back = small_log(config(&slots[away], &slots)).open().await.unwrap();
    let revision = db.revision();
    let since = Instant::now();
    while back.revision() < revision {
        assert!(since.elapsed() < Duration::from_secs(60), "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(back.hash_kv(revision).unwrap(), db.hash_kv(revision).unwrap(), "same history");
    back.shutdown().await.unwrap();
    for (i, m) in members.iter().enumerate() {
        if i != away {
            m.shutdown().await.unwrap();
        }
    }
}

/// Snapshots every few entries, and little log kept past them: a member
/// away for a few thousand writes catches up by snapshot.
fn small_log(config: Config) -> Config {
    config.snapshot_after_entries(16).logs_kept_after_snapshot(8)
}
