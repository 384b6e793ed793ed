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
