//! etcd's Lock and Election services against a real `concord serve`,
//! through the Rust `etcd-client` crate: waiters queue in order, a release
//! or a revoked lease hands the lock on, a waiter that gives up leaves the
//! queue; leaders campaign, proclaim, resign and are observed in order,
//! with etcd's errors.

mod common;

use std::time::Duration;

use common::Server;
use etcd_client::{Client, Error, LockOptions, ProclaimOptions, ResignOptions};
use tonic::Code;

async fn client(s: &Server) -> Client {
    Client::connect([s.endpoint.as_str()], None).await.unwrap()
}

/// Awaits `f`, failing the test after 10 s.
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f).await.expect("nothing arrived within 10 s")
}

/// Whether `f` is still pending after a while (a waiter that must wait).
async fn still_waiting<F: std::future::Future + Unpin>(f: &mut F) -> bool {
    tokio::time::timeout(Duration::from_millis(300), f).await.is_err()
}

#[track_caller]
fn status_of(e: Error) -> (Code, String) {
    match e {
        Error::GRpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_queue_in_order_and_are_handed_on() {
    let s = Server::start();
    let mut c = client(&s).await;
    let lease = |c: &mut Client| {
        let mut c = c.clone();
        async move { c.lease_grant(60, None).await.unwrap().id() }
    };
    let (l1, l2, l3, l4) = (lease(&mut c).await, lease(&mut c).await, lease(&mut c).await, lease(&mut c).await);

    let first = bounded(c.lock("job", Some(LockOptions::new().with_lease(l1)))).await.unwrap();
    assert_eq!(first.key(), format!("job/{l1:x}").as_bytes());

    // The second waits for the first's unlock.
    let mut c2 = c.clone();
    let mut second = Box::pin(async move { c2.lock("job", Some(LockOptions::new().with_lease(l2))).await });
    assert!(still_waiting(&mut second).await, "a second locker got a held lock");
    c.unlock(first.key()).await.unwrap();
    let second = bounded(second).await.unwrap();
    assert_eq!(second.key(), format!("job/{l2:x}").as_bytes());

    // The third waits; revoking the holder's lease hands the lock on.
    let mut c3 = c.clone();
    let mut third = Box::pin(async move { c3.lock("job", Some(LockOptions::new().with_lease(l3))).await });
    assert!(still_waiting(&mut third).await);
    c.lease_revoke(l2).await.unwrap();
    let third = bounded(third).await.unwrap();
    assert_eq!(third.key(), format!("job/{l3:x}").as_bytes());

    // A waiter that gives up takes its key out of the queue.
    let mut c4 = c.clone();
    let gave_up =
        tokio::time::timeout(Duration::from_millis(300), c4.lock("job", Some(LockOptions::new().with_lease(l4)))).await;
    assert!(gave_up.is_err(), "the lock was not free");
    let withdrawn = format!("job/{l4:x}");
    let mut gone = false;
    for _ in 0..100 {
        if c.get(withdrawn.as_str(), None).await.unwrap().kvs().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the cancelled waiter's key stayed in the queue");

    // Without a lease, a lock gets one of its own (60 s).
    c.unlock(third.key()).await.unwrap();
    let own = bounded(c.lock("other", None)).await.unwrap();
    let lease_hex = std::str::from_utf8(own.key()).unwrap().strip_prefix("other/").unwrap().to_string();
    let lease = i64::from_str_radix(&lease_hex, 16).unwrap();
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 60);

    // An unknown lease is etcd's error.
    let (code, message) = status_of(c.lock("job", Some(LockOptions::new().with_lease(424242))).await.unwrap_err());
    assert_eq!((code, message.as_str()), (Code::NotFound, "etcdserver: requested lease not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn leaders_campaign_proclaim_resign_and_are_observed() {
    let s = Server::start();
    let mut c = client(&s).await;
    let l1 = c.lease_grant(60, None).await.unwrap().id();
    let l2 = c.lease_grant(60, None).await.unwrap().id();

    let (code, message) = status_of(c.leader("db").await.unwrap_err());
    assert_eq!((code, message.as_str()), (Code::Unknown, "election: no leader"));

    let won = bounded(c.campaign("db", "node-1", l1)).await.unwrap();
    let leader1 = won.leader().unwrap().clone();
    assert_eq!((leader1.name(), leader1.key(), leader1.lease()), (&b"db"[..], format!("db/{l1:x}").as_bytes(), l1));
    let mut observed = c.observe("db").await.unwrap();
    let first = bounded(observed.message()).await.unwrap().unwrap();
    assert_eq!(first.kv().unwrap().value(), b"node-1");

    // A second candidate waits while the first leads.
    let mut c2 = c.clone();
    let mut second = Box::pin(async move { c2.campaign("db", "node-2", l2).await });
    assert!(still_waiting(&mut second).await, "two leaders at once");

    c.proclaim("node-1 again", Some(ProclaimOptions::new().with_leader(leader1.clone()))).await.unwrap();
    let proclaimed = bounded(observed.message()).await.unwrap().unwrap();
    assert_eq!(proclaimed.kv().unwrap().value(), b"node-1 again");
    assert_eq!(c.leader("db").await.unwrap().kv().unwrap().value(), b"node-1 again");

    // Resigning hands over; the observer sees the next leader.
    c.resign(Some(ResignOptions::new().with_leader(leader1.clone()))).await.unwrap();
    let won2 = bounded(second).await.unwrap();
    assert_eq!(won2.leader().unwrap().key(), format!("db/{l2:x}").as_bytes());
    let next = bounded(observed.message()).await.unwrap().unwrap();
    assert_eq!(next.kv().unwrap().value(), b"node-2");

    // The old leader's key no longer proves anything.
    let stale = c.proclaim("usurp", Some(ProclaimOptions::new().with_leader(leader1.clone()))).await.unwrap_err();
    assert_eq!(status_of(stale), (Code::Unknown, "election: not leader".to_string()));
    assert_eq!(c.leader("db").await.unwrap().kv().unwrap().value(), b"node-2");
    // Resigning a lost leadership changes nothing.
    c.resign(Some(ResignOptions::new().with_leader(leader1))).await.unwrap();
    assert_eq!(c.leader("db").await.unwrap().kv().unwrap().value(), b"node-2");

    // Campaigning again with the leading session keeps its place, takes the value.
    let again = bounded(c.campaign("db", "node-2 v2", l2)).await.unwrap();
    assert_eq!(again.leader().unwrap().rev(), won2.leader().unwrap().rev());
    assert_eq!(c.leader("db").await.unwrap().kv().unwrap().value(), b"node-2 v2");
    let updated = bounded(observed.message()).await.unwrap().unwrap();
    assert_eq!(updated.kv().unwrap().value(), b"node-2 v2");

    // The leader's lease going away ends its leadership.
    c.lease_revoke(l2).await.unwrap();
    assert_eq!(status_of(c.leader("db").await.unwrap_err()).1, "election: no leader");
}
