//! Operator actions chained the way people run them, each step checked from
//! every member: the seams between membership, leadership and data that
//! tests of one feature at a time miss. Embedded members in one process,
//! each on its own data directory, gRPC over loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::members::{Slot, assert_has_all, config, retry, slot, until, voters, writer};
use concord::{Concord, Error};

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
        .map(|w| {
            let (db, stop) = (members[w].db.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}/{i:06}");
                    if db.kv().put(key.clone(), "v").timeout(Duration::from_secs(2)).await.is_ok() {
                        acked.push(key);
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
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
    assert!(acked.len() > 100, "the writers made progress ({} writes)", acked.len());
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
