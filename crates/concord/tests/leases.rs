//! The seed's lease flows on a real member (real data directory, real Raft
//! log), and leases that really expire.

mod common;

use std::time::{Duration, Instant};

use concord::{Error, LeaseLimits};

#[tokio::test]
async fn seed_usage_grant_attach_keep_alive_revoke() {
    let m = common::open().await;
    let (kv, leases) = (m.db.kv(), m.db.lease());
    let lease = leases.grant(30).await.unwrap();
    assert!(lease.id > 0);
    assert_eq!(lease.ttl, 30);
    kv.put("key1", "val1").lease(lease.id).await.unwrap();
    kv.put("key2", "val2").lease(lease.id).await.unwrap();
    assert_eq!(kv.get("key1").await.unwrap().unwrap().lease, Some(lease.id));
    let kept = leases.keep_alive(lease.id).await.unwrap();
    assert_eq!((kept.id, kept.ttl), (lease.id, 30));

    let revoked = leases.revoke(lease.id).await.unwrap();
    assert_eq!(revoked.deleted_keys, 2);
    assert!(kv.get("key1").await.unwrap().is_none());
    assert!(kv.get("key2").await.unwrap().is_none());
    // Both deletions happened at one revision.
    for key in ["key1", "key2"] {
        let history = kv.history(key).await.unwrap();
        assert_eq!(history.last().unwrap().revision(), revoked.revision);
    }
    assert!(matches!(leases.info(lease.id).await, Err(Error::LeaseNotFound(id)) if id == lease.id));
    assert!(matches!(leases.revoke(lease.id).await, Err(Error::LeaseNotFound(_))));
}

#[tokio::test]
async fn keep_alive_on_an_unknown_lease_is_lease_not_found() {
    let m = common::open().await;
    assert_eq!(m.db.lease().keep_alive(12345).await.unwrap_err(), Error::LeaseNotFound(12345));
    assert_eq!(m.db.lease().keep_alive(0).await.unwrap_err(), Error::InvalidLeaseId(0));
}

#[tokio::test]
async fn a_two_second_lease_disappears_between_two_and_three_seconds() {
    let m = common::open().await;
    let kv = m.db.kv();
    let start = Instant::now();
    let lease = m.db.lease().grant(2).await.unwrap();
    kv.put("a", "1").lease(lease.id).await.unwrap();
    kv.put("b", "2").lease(lease.id).await.unwrap();
    let gone_at = loop {
        // Both keys read at one revision (two separate reads could straddle
        // the expiry): both present or both gone, never one.
        let both = kv.range(concord::KeyRange::between("a", "c")).await.unwrap();
        assert!(both.count == 2 || both.count == 0, "both keys go at once, saw {} at {}", both.count, both.revision);
        if both.count == 0 {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(4), "lease did not expire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(gone_at >= Duration::from_secs(2), "expired early: {gone_at:?}");
    assert!(gone_at < Duration::from_secs(3), "expired late: {gone_at:?}");
    assert!(matches!(m.db.lease().info(lease.id).await, Err(Error::LeaseNotFound(_))));
}

#[tokio::test]
async fn keep_alive_keeps_a_lease_alive_past_its_ttl() {
    let m = common::open().await;
    let lease = m.db.lease().grant(1).await.unwrap();
    m.db.kv().put("alive", "1").lease(lease.id).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        m.db.lease().keep_alive(lease.id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(m.db.kv().get("alive").await.unwrap().is_some(), "expired despite keep-alive");
    }
    let info = m.db.lease().info(lease.id).await.unwrap();
    assert!(info.remaining <= Duration::from_secs(1));
}

#[tokio::test]
async fn a_key_re_put_without_the_lease_survives_the_revoke() {
    let m = common::open().await;
    let kv = m.db.kv();
    let lease = m.db.lease().grant(60).await.unwrap();
    kv.put("stay", "1").lease(lease.id).await.unwrap();
    kv.put("go", "1").lease(lease.id).await.unwrap();
    kv.put("stay", "2").await.unwrap();
    let info = m.db.lease().info(lease.id).await.unwrap();
    assert_eq!(info.keys, vec![bytes::Bytes::from_static(b"go")]);
    assert_eq!(m.db.lease().revoke(lease.id).await.unwrap().deleted_keys, 1);
    assert_eq!(kv.get("stay").await.unwrap().unwrap().value, "2");
}

#[tokio::test]
async fn info_and_list_report_the_seed_fields() {
    let m = common::open().await;
    let kv = m.db.kv();
    kv.put("before", "x").await.unwrap();
    let rev_at_grant = m.db.revision();
    let lease = m.db.lease().grant(30).await.unwrap();
    assert_eq!(lease.revision, rev_at_grant);
    kv.put("k2", "v").lease(lease.id).await.unwrap();
    kv.put("k1", "v").lease(lease.id).await.unwrap();
    let info = m.db.lease().info(lease.id).await.unwrap();
    assert_eq!(info.id, lease.id);
    assert_eq!(info.ttl, 30);
    assert_eq!(info.granted_at, rev_at_grant);
    assert!(info.remaining <= Duration::from_secs(30) && info.remaining > Duration::from_secs(28));
    assert_eq!(info.remaining_secs(), 30);
    let keys: Vec<String> = info.keys.iter().map(|k| common::s(k)).collect();
    assert_eq!(keys, ["k1", "k2"]);

    let other = m.db.lease().grant(10).await.unwrap();
    let listed = m.db.lease().list().await.unwrap();
    let ids: Vec<i64> = listed.iter().map(|l| l.id).collect();
    assert_eq!(ids, [lease.id, other.id]);
    let first = &listed[0];
    assert_eq!((first.ttl, first.granted_at, &first.keys, first.anonymous), (30, rev_at_grant, &info.keys, false));
    assert!(first.remaining <= info.remaining);
}

#[tokio::test]
async fn put_with_an_unknown_lease_fails_and_writes_nothing() {
    let m = common::open().await;
    let before = m.db.revision();
    let err = m.db.kv().put("k", "v").lease(999).await.unwrap_err();
    assert_eq!(err, Error::LeaseNotFound(999));
    assert!(m.db.kv().get("k").await.unwrap().is_none());
    assert_eq!(m.db.revision(), before);
}

#[tokio::test]
async fn per_key_ttl_is_an_anonymous_lease_hidden_from_list() {
    let m = common::open().await;
    let start = Instant::now();
    let put = m.db.kv().put("session", "x").ttl(1).await.unwrap();
    let id = put.lease.expect("an anonymous lease");
    assert!(m.db.lease().list().await.unwrap().is_empty());
    let all = m.db.lease().list().include_anonymous().await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].anonymous && all[0].id == id);
    while m.db.kv().get("session").await.unwrap().is_some() {
        assert!(start.elapsed() < Duration::from_secs(3), "per-key TTL did not expire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(m.db.lease().list().include_anonymous().await.unwrap().is_empty());
}

#[tokio::test]
async fn ttl_bounds_are_enforced_and_nothing_is_granted() {
    let m = common::open().await;
    for ttl in [0, -1, 9_000_000_001] {
        assert!(matches!(m.db.lease().grant(ttl).await, Err(Error::InvalidTtl { .. })), "ttl {ttl}");
        assert!(matches!(m.db.kv().put("k", "v").ttl(ttl).await, Err(Error::InvalidTtl { .. })), "ttl {ttl}");
    }
    assert!(m.db.lease().list().include_anonymous().await.unwrap().is_empty());
    let max = m.db.lease().grant(9_000_000_000).await.unwrap();
    let info = m.db.lease().info(max.id).await.unwrap();
    assert_eq!(info.ttl, 9_000_000_000);
    let min = m.db.lease().grant(1).await.unwrap();
    assert_eq!(min.ttl, 1);
    let changed = m.db.lease().keep_alive(max.id).ttl(60).await.unwrap();
    assert_eq!(changed.ttl, 60);
}

#[tokio::test]
async fn lease_limits_give_clear_errors() {
    let m = common::open_with(|c| c.lease_limits(LeaseLimits { max_leases: 2, max_keys_per_lease: 2 })).await;
    let a = m.db.lease().grant(30).await.unwrap();
    m.db.lease().grant(30).await.unwrap();
    assert_eq!(m.db.lease().grant(30).await.unwrap_err(), Error::TooManyLeases { max: 2 });
    m.db.kv().put("1", "v").lease(a.id).await.unwrap();
    m.db.kv().put("2", "v").lease(a.id).await.unwrap();
    assert_eq!(
        m.db.kv().put("3", "v").lease(a.id).await.unwrap_err(),
        Error::TooManyKeysOnLease { lease: a.id, max: 2 }
    );
    assert!(m.db.kv().get("3").await.unwrap().is_none());
}

#[tokio::test]
async fn client_chosen_ids_and_duplicates() {
    let m = common::open().await;
    let lease = m.db.lease().grant(30).id(0x1234).await.unwrap();
    assert_eq!(lease.id, 0x1234);
    assert_eq!(m.db.lease().grant(30).id(0x1234).await.unwrap_err(), Error::LeaseExists(0x1234));
    assert_eq!(m.db.lease().grant(30).id(-4).await.unwrap_err(), Error::InvalidLeaseId(-4));
}

#[tokio::test]
async fn many_leases_expire_in_batches_each_at_one_revision() {
    let m = common::open().await;
    let kv = m.db.kv();
    let mut ids = Vec::new();
    for i in 0..200 {
        let lease = m.db.lease().grant(1).await.unwrap();
        kv.put(format!("e/{i}/a"), "v").lease(lease.id).await.unwrap();
        kv.put(format!("e/{i}/b"), "v").lease(lease.id).await.unwrap();
        ids.push(lease.id);
    }
    let start = Instant::now();
    while kv.range(concord::KeyRange::prefix("e/")).count_only().await.unwrap().count > 0 {
        assert!(start.elapsed() < Duration::from_secs(4), "leases did not all expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..200 {
        let a = kv.history(format!("e/{i}/a")).await.unwrap();
        let b = kv.history(format!("e/{i}/b")).await.unwrap();
        assert_eq!(a.last().unwrap().revision(), b.last().unwrap().revision(), "a lease's keys go at one revision");
    }
    assert!(m.db.lease().list().await.unwrap().is_empty());
}

/// Many holders renewing one lease at once (renewals waiting together
/// fold into one in the batch): every one of them is answered, with the
/// lease's TTL, and the lease stays renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_renewals_of_one_lease_are_each_answered() {
    let m = common::open().await;
    let lease = m.db.lease().grant(30).await.unwrap();
    let other = m.db.lease().grant(60).await.unwrap();
    let renewals = (0..300).map(|i| {
        let db = m.db.clone();
        let id = if i % 10 == 0 { other.id } else { lease.id };
        tokio::spawn(async move { (id, db.lease().keep_alive(id).await) })
    });
    for renewal in renewals.collect::<Vec<_>>() {
        let (id, answer) = renewal.await.unwrap();
        let answer = answer.unwrap();
        assert_eq!(answer.id, id);
        assert_eq!(answer.ttl, if id == lease.id { 30 } else { 60 });
    }
    let info = m.db.lease().info(lease.id).await.unwrap();
    assert!(info.remaining > Duration::from_secs(28), "{info:?}");
}
