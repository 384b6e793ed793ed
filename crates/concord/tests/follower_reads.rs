//! What a client sees through a follower: its own writes (a write handed to
//! the leader is answered once the follower has applied it), and fresh
//! linearizable reads. Embedded members in one process, gRPC on loopback.

mod common;

use std::time::Duration;

use common::members::{slot, three, until};
use concord::{Compare, TxnOp};

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
