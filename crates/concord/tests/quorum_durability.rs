//! A write is acknowledged once a majority of the members hold it durably —
//! whichever members those are, and never sooner.
//!
//! The leader sends a batch's entry to the followers while its own disk is
//! still writing it (a patch to openraft, `vendor/README.md`); its own copy
//! counts toward the majority only once its fsync returned. Each member
//! here has a simulated disk whose fsyncs can be held (`Disk::stall_syncs`):
//! a stalled leader disk must not hold up a write the followers made
//! durable, and a write durable on the leader alone must wait.
//!
//! A new committed index waits up to 1 ms for the next entries to carry it
//! (the other patch); with nothing more written, a heartbeat still brings it
//! to the followers at once, not at the next heartbeat tick.

mod common;

use std::time::Duration;

use common::disk_cluster::{Member, leader_index, shutdown, start_with};

/// How long a write that must wait is watched for not finishing.
const MUST_WAIT: Duration = Duration::from_millis(700);
/// How long a write that may proceed is given.
const MAY_PROCEED: Duration = Duration::from_secs(5);

async fn start(n: usize) -> Vec<Member> {
    start_with(n, |c| c).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_commits_on_the_followers_while_the_leaders_disk_is_stalled() {
    let members = start(3).await;
    let leader = leader_index(&members).await;
    members[leader].db.kv().put("before", "1").await.unwrap();

    let stalled = members[leader].disk.stall_syncs();
    let put = members[leader].db.kv().put("k", "v");
    let resp = tokio::time::timeout(MAY_PROCEED, put)
        .await
        .expect("the followers' durable copies commit the write without the leader's")
        .unwrap();
    for (i, m) in members.iter().enumerate() {
        let kv = m.db.kv().get("k").await.unwrap().unwrap_or_else(|| panic!("member {i} does not see the write"));
        assert_eq!(kv.value, "v");
        assert_eq!(kv.mod_revision, resp.revision);
    }
    drop(stalled);
    members[leader].db.kv().put("after", "1").await.unwrap();
    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_durable_on_the_leader_alone_waits_for_a_follower() {
    let members = start(3).await;
    let leader = leader_index(&members).await;
    members[leader].db.kv().put("before", "1").await.unwrap();
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    let first = members[followers[0]].disk.stall_syncs();
    let second = members[followers[1]].disk.stall_syncs();
    let db = members[leader].db.clone();
    let mut put = tokio::spawn(async move { db.kv().put("k", "v").await });
    assert!(tokio::time::timeout(MUST_WAIT, &mut put).await.is_err(), "acknowledged with one durable copy of three");
    drop(first);
    let resp = tokio::time::timeout(MAY_PROCEED, put).await.expect("two durable copies commit").unwrap().unwrap();
    let kv = members[leader].db.kv().get("k").await.unwrap().unwrap();
    assert_eq!(kv.mod_revision, resp.revision);
    drop(second);
    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_member_acknowledges_only_after_its_fsync() {
    let members = start(1).await;
    members[0].db.kv().put("before", "1").await.unwrap();

    let stalled = members[0].disk.stall_syncs();
    let db = members[0].db.clone();
    let mut put = tokio::spawn(async move { db.kv().put("k", "v").await });
    assert!(tokio::time::timeout(MUST_WAIT, &mut put).await.is_err(), "acknowledged before its fsync");
    assert!(members[0].db.kv().get("k").serializable().await.unwrap().is_none(), "applied before it was durable");
    drop(stalled);
    tokio::time::timeout(MAY_PROCEED, put).await.expect("the write completes once synced").unwrap().unwrap();
    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn followers_learn_a_commit_long_before_the_next_heartbeat_tick() {
    // Ticks a second apart: a follower that saw the write sooner was told
    // by the commit's own heartbeat.
    let members =
        start_with(3, |c| c.heartbeat_interval(Duration::from_secs(1)).election_timeout(Duration::from_secs(2))).await;
    let leader = leader_index(&members).await;
    for round in 0..5 {
        // Past any heartbeat tick the last write may have set off.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let key = format!("k{round}");
        members[leader].db.kv().put(key.clone(), "v").await.unwrap();
        let since = std::time::Instant::now();
        for (i, m) in members.iter().enumerate() {
            loop {
                if m.db.kv().get(key.clone()).serializable().await.unwrap().is_some() {
                    break;
                }
                assert!(
                    since.elapsed() < Duration::from_millis(400),
                    "member {i} had not applied a committed write after {:?}",
                    since.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    shutdown(members).await;
}

/// A leader killed before its own disk wrote what it sent (its followers
/// committed it) comes back with a shorter log. It must not resume leading
/// in the same term: new entries under the log ids its followers already
/// hold would be kept by neither side — the logs split for good and
/// acknowledged writes are lost on some members (found from outside with
/// SIGKILL under load). It waits for an election in a new term instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_restarted_with_a_shorter_log_does_not_resume_its_term() {
    // An election timeout long enough that the restart comes first.
    let members = start_with(3, |c| c.election_timeout(Duration::from_secs(3))).await;
    let leader = leader_index(&members).await;
    let db = members[leader].db.clone();
    db.kv().put("before", "1").await.unwrap();
    let stalled = members[leader].disk.stall_syncs();
    let mut acked = Vec::new();
    for i in 0..10 {
        let key = format!("sent/{i}");
        tokio::time::timeout(MAY_PROCEED, db.kv().put(key.clone(), "v")).await.expect("committed").unwrap();
        acked.push(key);
    }
    // Power lost: none of those reached the leader's disk.
    let survived = members[leader].disk.power_loss();
    drop(stalled);
    let config = db.config().clone();
    let _ = db.shutdown().await;
    drop(db);
    let restarted = config.storage(survived.storage()).open().await.unwrap();
    let others: Vec<&concord::Concord> = (0..3).filter(|&i| i != leader).map(|i| &members[i].db).collect();
    // New writes through whoever leads now.
    let mut revision = 0;
    for i in 0..10 {
        let key = format!("after/{i}");
        let since = std::time::Instant::now();
        let put = loop {
            let via = [&restarted, others[0], others[1]][i % 3];
            match via.kv().put(key.clone(), "v").await {
                Ok(put) => break put,
                Err(e) => assert!(since.elapsed() < Duration::from_secs(20), "no write after the restart: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        revision = revision.max(put.revision);
        acked.push(key);
    }
    for db in [&restarted, others[0], others[1]] {
        let since = std::time::Instant::now();
        while db.revision() < revision {
            assert!(since.elapsed() < Duration::from_secs(20), "member {:x} did not catch up", db.member_id());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for key in &acked {
            let got = db.kv().get(key.clone()).serializable().await.unwrap();
            assert!(got.is_some(), "member {:x} lacks acknowledged {key}", db.member_id());
        }
        assert_eq!(db.hash_kv(revision).unwrap(), others[0].hash_kv(revision).unwrap(), "another history");
    }
    restarted.shutdown().await.unwrap();
    for (i, m) in members.into_iter().enumerate() {
        if i != leader {
            m.db.shutdown().await.unwrap();
        }
    }
}
