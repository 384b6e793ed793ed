//! Operator actions chained the way people run them, each step checked from
//! every member: the seams between membership, leadership and data that
//! tests of one feature at a time miss. Embedded members in one process,
//! each on its own data directory, gRPC over loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::members::{
    Slot, assert_applied_all, assert_has_all, config, retry, slot, three, until, voters, writer, writer_of,
};
use concord::{Concord, Error, KeyRange, WatchMessage};

/// Opens `slot` as a member joining the cluster of `known`.
async fn join(slot: &Slot, known: &[&Slot]) -> Concord {
    config(slot, known, true).open().await.expect("the member joins")
}

/// Promotes the learner `id` once it has caught up.
async fn promote(db: &Concord, id: u64) {
    until("the learner to catch up and be promoted", Duration::from_secs(20), async || {
        match db.cluster().promote(id).await {
            Ok(done) => Some(done),
            Err(Error::LearnerNotReady { .. } | Error::MembershipChangeInProgress | Error::NotReady(_)) => None,
            Err(e) => panic!("promote: {e}"),
        }
    })
    .await;
}

/// Grow 1→3 (a voter, then a learner promoted), remove the leader, add a
/// fourth member: the fourth catches up from the start of the log, whose
/// first configuration holds only the removed member — it must take the
/// entries of a leader that configuration never knew (it refused them,
/// and never caught up).
#[tokio::test(flavor = "multi_thread")]
async fn a_member_added_after_the_leader_was_removed_catches_up() {
    let slots = [slot("m1"), slot("m2"), slot("m3"), slot("m4")];
    let m1 = config(&slots[0], &[&slots[0]], false).open().await.unwrap();
    for i in 0..50 {
        m1.kv().put(format!("before{i:03}"), "v").await.unwrap();
    }
    let m2_added = retry(async || m1.cluster().add_voter(vec![slots[1].url.clone()]).await).await;
    let m2 = join(&slots[1], &[&slots[0], &slots[1]]).await;
    assert_eq!(m2.member_id(), m2_added.member.id);
    until("m2 to vote", Duration::from_secs(20), async || (voters(&m1) == 2).then_some(())).await;

    // A light write load through m2 from here on.
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(m2.clone(), stop.clone());

    let m3_added = retry(async || m1.cluster().add_learner(vec![slots[2].url.clone()]).await).await;
    let m3 = join(&slots[2], &[&slots[0], &slots[1], &slots[2]]).await;
    promote(&m1, m3_added.member.id).await;

    let leader = until("a leader", Duration::from_secs(20), async || m2.leader()).await;
    assert_eq!(leader, m1.member_id(), "m1 leads until it is removed");
    retry(async || m2.cluster().remove(m1.member_id()).await).await;
    tokio::time::timeout(Duration::from_secs(10), m1.removed()).await.expect("m1 learns it was removed");
    m1.shutdown().await.unwrap();

    let m4_added = retry(async || m2.cluster().add_voter(vec![slots[3].url.clone()]).await).await;
    let acked_before_m4 = {
        // The keys acknowledged so far: the new member must serve them.
        stop.store(true, Ordering::Relaxed);
        let acked = writing.await.unwrap();
        assert!(!acked.is_empty(), "the writer made progress");
        acked
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(m2.clone(), stop.clone());
    let started = Instant::now();
    let m4 = join(&slots[3], &[&slots[1], &slots[2], &slots[3]]).await;
    assert_eq!(m4.member_id(), m4_added.member.id);
    until("m4 to serve every acknowledged key", Duration::from_secs(5), async || {
        let last = acked_before_m4.last().unwrap().clone();
        m4.kv().get(last).serializable().await.ok().flatten()
    })
    .await;
    let caught_up = started.elapsed();
    assert_has_all(&m4, &acked_before_m4).await;
    assert!(caught_up < Duration::from_secs(5), "m4 caught up in {caught_up:?}");
    until("m4 to vote", Duration::from_secs(20), async || (voters(&m2) == 3).then_some(())).await;

    stop.store(true, Ordering::Relaxed);
    let acked = writing.await.unwrap();
    let before: Vec<String> = (0..50).map(|i| format!("before{i:03}")).collect();
    for db in [&m2, &m3, &m4] {
        assert_eq!(db.cluster().members().len(), 3, "member {:x}'s list", db.member_id());
        assert_has_all(db, &before).await;
        assert_has_all(db, &acked_before_m4).await;
        assert_has_all(db, &acked).await;
    }
    for db in [m2, m3, m4] {
        db.shutdown().await.unwrap();
    }
}

/// Five members; writers put unique keys through every member while the
/// leader is moved five times. Each key is written once, so a write applied
/// twice (a copy proposed again after its first entry was removed from the
/// old leader's log, but still held by a member that could commit it)
/// would show as version 2. Every acknowledged key is on every member,
/// every key has version 1, and the members agree on the history.
#[tokio::test(flavor = "multi_thread")]
async fn writes_racing_leader_transfers_apply_once() {
    use common::disk_cluster::{leader_index, shutdown, start_with};
    let members = start_with(5, |c| {
        c.request_timeout(Duration::from_secs(5))
            .heartbeat_interval(Duration::from_millis(50))
            .election_timeout(Duration::from_millis(500))
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..5)
        .map(|w| writer_of(members[w].db.clone(), stop.clone(), &format!("w{w}/"), Duration::from_secs(2)))
        .collect();
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let leader = leader_index(&members).await;
        let to = members[(leader + 1 + round % 4) % 5].db.member_id();
        if let Err(e) = members[leader].db.move_leader(to, Duration::from_secs(5)).await {
            // A transfer may lose to an election under load; the writes
            // racing it are what is checked.
            eprintln!("round {round}: move_leader: {e}");
        }
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    assert!(acked.len() > 40, "the writers made progress ({} writes)", acked.len());
    let leader = leader_index(&members).await;
    let revision = until("a write after the transfers", Duration::from_secs(20), async || {
        members[leader].db.kv().put("last", "v").await.ok().map(|r| r.revision)
    })
    .await;
    for m in &members {
        until("every member to apply everything", Duration::from_secs(20), async || {
            (m.db.kv().revision() >= revision).then_some(())
        })
        .await;
        let all = m.db.kv().range(concord::KeyRange::prefix("w")).serializable().await.unwrap();
        for kv in &all.kvs {
            assert_eq!(kv.version, 1, "{:?} was applied {} times", kv.key, kv.version);
        }
        let present: std::collections::HashSet<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
        for key in &acked {
            assert!(present.contains(key.as_bytes()), "member {:x} lacks acknowledged {key}", m.db.member_id());
        }
        assert_eq!(m.db.hash_kv(revision).unwrap(), members[leader].db.hash_kv(revision).unwrap());
    }
    shutdown(members).await;
}

/// Checks that every one of `members` serves the data (`keys`), the lease
/// `lease` with its key attached, and a watch: one started on each sees a
/// write made through the first member.
async fn check_every_member(members: &[&Concord], keys: &[String], lease: i64, step: &str) {
    for db in members {
        // Retried: a linearizable read may find no quorum for a moment on
        // two loaded cores (etcd's "no leader", which clients retry).
        let what = format!("{step}: member {:x} to serve every key and the lease", db.member_id());
        let info = until(&what, Duration::from_secs(20), async || {
            let got = db.kv().range(KeyRange::prefix("d/")).keys_only().await.ok()?;
            let served: Vec<&[u8]> = got.kvs.iter().map(|kv| kv.key.as_ref()).collect();
            let expected: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            if served != expected {
                return None;
            }
            db.lease().info(lease).await.ok()
        })
        .await;
        assert_eq!(info.keys, vec![bytes::Bytes::from_static(b"leased")], "{step}: the lease's keys");
        assert!(info.remaining > Duration::from_secs(60), "{step}: the lease is running ({:?} left)", info.remaining);
    }
    let mut watches = Vec::new();
    for db in members {
        watches.push(db.watch(KeyRange::key(format!("w/{step}"))).await.unwrap());
    }
    until(&format!("{step}: a write"), Duration::from_secs(20), async || {
        members[0].kv().put(format!("w/{step}"), "seen").await.ok()
    })
    .await;
    for (i, w) in watches.iter_mut().enumerate() {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("a watch event") {
                Some(WatchMessage::Events { events, .. }) => {
                    assert_eq!(events[0].kv.value, "seen", "{step}: member {i}'s watch");
                    break;
                }
                Some(WatchMessage::Progress { .. }) => {}
                other => panic!("{step}: member {i}'s watch ended: {other:?}"),
            }
        }
    }
}

/// A backup taken from a follower of a running cluster is restored into a
/// new one-member cluster, which is grown to three (a voter, then a learner
/// promoted) and has its leader moved while a writer runs: after each step
/// every member serves the data, the lease with its key, and watches.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_backup_grows_into_a_cluster_and_moves_its_leader() {
    let old_slots = [slot("a"), slot("b"), slot("c")];
    let old = three(&old_slots).await;
    let leader = until("a leader", Duration::from_secs(20), async || old[0].leader()).await;
    let lease = old[0].lease().grant(600).await.unwrap().id;
    old[0].kv().put("leased", "v").lease(lease).await.unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("d/{i:03}")).collect();
    let mut last = 0;
    for key in &keys {
        last = old[1].kv().put(key.clone(), "v").await.unwrap().revision;
    }
    let follower = old.iter().find(|m| m.member_id() != leader).unwrap();
    until("the follower to apply everything", Duration::from_secs(20), async || {
        (follower.kv().revision() >= last).then_some(())
    })
    .await;
    let (_, mut pieces) = follower.backup().await.unwrap();
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("backup.db");
    let mut bytes = Vec::new();
    while let Some(piece) = pieces.recv().await {
        bytes.extend_from_slice(&piece.unwrap());
    }
    std::fs::write(&backup, bytes).unwrap();
    for db in old {
        db.shutdown().await.unwrap();
    }

    // Restored into a new cluster of one.
    let slots = [slot("n1"), slot("n2"), slot("n3")];
    let first = config(&slots[0], &[&slots[0]], false);
    concord::backup::restore(&backup, &first).await.unwrap();
    let n1 = first.open().await.unwrap();
    check_every_member(&[&n1], &keys, lease, "restored").await;

    // Grown: a voter, then a learner promoted.
    retry(async || n1.cluster().add_voter(vec![slots[1].url.clone()]).await).await;
    let n2 = join(&slots[1], &[&slots[0], &slots[1]]).await;
    until("n2 to vote", Duration::from_secs(20), async || (voters(&n1) == 2).then_some(())).await;
    check_every_member(&[&n1, &n2], &keys, lease, "grown-to-two").await;
    let n3_added = retry(async || n1.cluster().add_learner(vec![slots[2].url.clone()]).await).await;
    let n3 = join(&slots[2], &[&slots[0], &slots[1], &slots[2]]).await;
    promote(&n1, n3_added.member.id).await;
    check_every_member(&[&n1, &n2, &n3], &keys, lease, "grown-to-three").await;

    // The leader moved twice while a writer runs through a follower.
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(n2.clone(), stop.clone());
    for to in [n3.member_id(), n2.member_id()] {
        let leader = until("a leader", Duration::from_secs(20), async || n1.leader()).await;
        let db = [&n1, &n2, &n3].into_iter().find(|m| m.member_id() == leader).unwrap();
        until("the leader to move", Duration::from_secs(20), async || {
            db.move_leader(to, Duration::from_secs(5)).await.ok()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writing.await.unwrap();
    assert!(!written.is_empty(), "the writer made progress");
    let last = until("a write after the moves", Duration::from_secs(20), async || n2.kv().put("last", "v").await.ok())
        .await
        .revision;
    for db in [&n1, &n2, &n3] {
        assert_applied_all(db, last, "w", &written).await;
    }
    check_every_member(&[&n1, &n2, &n3], &keys, lease, "moved").await;
    for db in [n1, n2, n3] {
        db.shutdown().await.unwrap();
    }
}

/// A leader with a slow disk (its own copy counts toward the quorum only
/// once durable, so five members commit and apply entries before the leader
/// has written them) and a follower that falls behind and then catches up
/// from the leader: the follower must receive a contiguous log. An applied
/// entry that left the leader's memory before its write was done was once
/// read back as a gap and sent as one: the follower stored a log with a
/// hole and stopped (a torture run's "try to get log at index N but got
/// Some(N+1)" one second into a slow-disk-leader fault).
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_catching_up_from_a_leader_with_a_slow_disk_gets_every_entry() {
    use common::disk_cluster::{leader_index, shutdown, start_with};
    let members = start_with(5, |c| c.heartbeat_interval(Duration::from_millis(50))).await;
    let leader = leader_index(&members).await;
    let lagging = (leader + 1) % members.len();
    members[leader].disk.delay_syncs(Duration::from_millis(150));
    let stalled = members[lagging].disk.stall_syncs();
    let db = members[leader].db.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> =
        (0..8).map(|w| writer_of(db.clone(), stop.clone(), &format!("slow{w}-"), Duration::from_secs(5))).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The lagging follower catches up from the leader while it still
    // writes slowly and the writers go on.
    drop(stalled);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    members[leader].disk.delay_syncs(Duration::ZERO);
    assert!(acked.len() > 100, "the writers made progress ({} writes)", acked.len());
    let last = until("a last write", Duration::from_secs(20), async || db.kv().put("last", "1").await.ok()).await;
    for m in &members {
        assert_applied_all(&m.db, last.revision, "slow", &acked).await;
    }
    shutdown(members).await;
}
