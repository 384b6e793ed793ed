//! What a client sees through a follower: its own writes (a write handed to
//! the leader is answered once the follower has applied it), and fresh
//! linearizable reads. Embedded members in one process, gRPC on loopback.

mod common;

use std::time::Duration;

use common::disk_cluster::{leader_index, shutdown, start_with};
use common::members::{slot, three, until};
use concord::{Compare, KeyRange, TxnOp};

/// How long a read held by the lagging member is watched for not
/// finishing before its disk is released.
const HELD: Duration = Duration::from_millis(300);

/// A client writes through a follower and reads back through it with a
/// serializable read (etcd clients' cheap read): it always sees its write —
/// put, transaction, delete, and a key attached to a lease granted there.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_reads_its_own_writes_through_a_follower() {
    let slots = [slot("a"), slot("b"), slot("c")];
    let members = three(&slots).await;
    let leader = until("a leader", Duration::from_secs(20), async || members[0].leader()).await;
    let follower = members.iter().find(|m| m.member_id() != leader).unwrap();
    let mut missed = 0;
    for i in 0..500u32 {
        let key = format!("ryw{}", i % 10);
        let value = format!("{i}");
        match i % 4 {
            0 | 1 => {
                follower.kv().put(key.clone(), value.clone()).await.unwrap();
            }
            2 => {
                let txn = follower.txn().when([Compare::version(key.clone()).gt(-1)]);
                let done = txn.and_then([TxnOp::put(key.clone(), value.clone())]).await.unwrap();
                assert!(done.succeeded);
            }
            _ => {
                let lease = follower.lease().grant(60).await.unwrap();
                follower.kv().put(key.clone(), value.clone()).lease(lease.id).await.unwrap();
            }
        }
        let got = follower.kv().get(key.clone()).serializable().await.unwrap();
        if got.map(|kv| kv.value) != Some(value.clone().into()) {
            missed += 1;
        }
        if i % 50 == 49 {
            follower.kv().delete(key.clone()).await.unwrap();
            if follower.kv().get(key).serializable().await.unwrap().is_some() {
                missed += 1;
            }
        }
    }
    assert_eq!(missed, 0, "serializable reads through the writing follower missed its write");
    for db in members {
        db.shutdown().await.unwrap();
    }
}

/// A linearizable read on a follower that is behind waits until it has
/// applied the leader's read index: a write the leader acknowledged is
/// never missing from it. The follower's disk is held, so it can neither
/// append nor apply (the leader commits with the other follower) while its
/// read-index calls still reach the leader; on loopback a follower nearly
/// always applies first, so without the hold a read that skipped the wait
/// would pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_linearizable_read_on_a_follower_held_behind_waits_for_the_write() {
    let members = start_with(3, |c| c).await;
    let leader = leader_index(&members).await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    for round in 0..4 {
        let stalled = members[follower].disk.stall_syncs();
        let value = format!("v{round}");
        members[leader].db.kv().put("k", value.clone()).await.unwrap();
        let db = members[follower].db.clone();
        let mut read = tokio::spawn(async move {
            let value = if round % 2 == 0 {
                db.kv().get("k").await?.map(|kv| kv.value)
            } else {
                db.kv().range(KeyRange::prefix("k")).await?.kvs.pop().map(|kv| kv.value)
            };
            Ok::<_, concord::Error>(value)
        });
        if let Ok(early) = tokio::time::timeout(HELD, &mut read).await {
            panic!("round {round}: answered while its member could not have applied the write: {early:?}");
        }
        drop(stalled);
        let got = read.await.unwrap().unwrap();
        assert_eq!(got, Some(value.into()), "round {round}");
    }
    shutdown(members).await;
}
