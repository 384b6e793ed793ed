//! Revisioned KV, transactions and input validation through the embedded API.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::{Compare, Error, Event, KeyRange, TxnOp, TxnOpResponse};

#[tokio::test]
async fn every_mutating_commit_advances_the_revision_by_one() {
    let m = common::open().await;
    let kv = m.db.kv();
    assert_eq!(m.db.revision(), 1);
    assert_eq!(kv.put("a", "1").await.unwrap().revision, 2);
    assert_eq!(kv.put("a", "2").await.unwrap().revision, 3);
    let del = kv.delete("missing").await.unwrap();
    assert_eq!((del.deleted, del.revision), (0, 3), "deleting a missing key does not advance");
    let txn = m.db.txn().and_then([TxnOp::put("b", "1"), TxnOp::put("c", "1"), TxnOp::delete("a")]).await.unwrap();
    assert_eq!(txn.revision, 4, "a transaction's writes share one revision");
    for k in ["b", "c"] {
        assert_eq!(kv.get(k).await.unwrap().unwrap().mod_revision, 4);
    }
    let a = kv.get("a").await.unwrap();
    assert!(a.is_none());
}

#[tokio::test]
async fn key_metadata_follows_etcd() {
    let m = common::open().await;
    let kv = m.db.kv();
    kv.put("k", "1").await.unwrap();
    kv.put("k", "2").await.unwrap();
    let v = kv.get("k").await.unwrap().unwrap();
    assert_eq!((v.create_revision, v.mod_revision, v.version, v.lease), (2, 3, 2, None));
    let put = kv.put("k", "3").prev_kv().await.unwrap();
    assert_eq!(put.prev_kv.unwrap().value, "2");
    let del = kv.delete("k").prev_kv().await.unwrap();
    assert_eq!(del.prev_kvs[0].value, "3");
    kv.put("k", "again").await.unwrap();
    let v = kv.get("k").await.unwrap().unwrap();
    assert_eq!((v.create_revision, v.version), (6, 1), "a re-created key starts a new generation");
}

#[tokio::test]
async fn range_reads_prefixes_limits_and_counts() {
    let m = common::open().await;
    let kv = m.db.kv();
    for k in ["app/a", "app/b", "app/c", "apq", "b"] {
        kv.put(k, format!("v-{k}")).await.unwrap();
    }
    let r = kv.range(KeyRange::prefix("app/")).await.unwrap();
    let keys: Vec<_> = r.kvs.iter().map(|kv| common::s(&kv.key)).collect();
    assert_eq!(keys, ["app/a", "app/b", "app/c"]);
    assert_eq!((r.count, r.more), (3, false));
    let r = kv.range(KeyRange::prefix("app/")).limit(2).await.unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (2, 3, true));
    let r = kv.range(KeyRange::between("app/b", "b")).keys_only().await.unwrap();
    assert_eq!(r.kvs.len(), 3);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    let r = kv.range(KeyRange::all()).count_only().await.unwrap();
    assert_eq!((r.count, r.kvs.len()), (5, 0));
    let r = kv.range(KeyRange::from("apq")).serializable().await.unwrap();
    assert_eq!(r.count, 2);
    let empty = kv.range(KeyRange::between("z", "a")).await.unwrap();
    assert_eq!(empty.count, 0);
}

#[tokio::test]
async fn past_revisions_history_and_compaction() {
    let m = common::open().await;
    let kv = m.db.kv();
    let r1 = kv.put("k", "1").await.unwrap().revision;
    let r2 = kv.put("k", "2").await.unwrap().revision;
    kv.delete("k").await.unwrap();
    let r4 = kv.put("k", "4").await.unwrap().revision;
    assert_eq!(kv.get("k").revision(r1).await.unwrap().unwrap().value, "1");
    assert!(kv.get("k").revision(r2 + 1).await.unwrap().is_none());
    let history = kv.history("k").await.unwrap();
    assert_eq!(history.len(), 4);
    assert!(matches!(history[2], Event::Delete { .. }));
    assert_eq!(kv.history("k").from_revision(r2).limit(2).await.unwrap().len(), 2);

    let future = kv.get("k").revision(r4 + 10).await.unwrap_err();
    assert_eq!(future, Error::FutureRevision { revision: r4 + 10, current: r4 });

    kv.compact(r2).await.unwrap();
    assert_eq!(kv.compact_revision(), r2);
    assert_eq!(kv.get("k").revision(r1).await.unwrap_err(), Error::Compacted { compact_revision: r2 });
    assert_eq!(kv.get("k").revision(r2).await.unwrap().unwrap().value, "2", "the compaction point stays readable");
    assert_eq!(kv.history("k").await.unwrap().len(), 3);
    assert_eq!(kv.compact(r1).await.unwrap_err(), Error::Compacted { compact_revision: r2 });
    assert!(matches!(kv.compact(r4 + 1).await, Err(Error::FutureRevision { .. })));
}

#[tokio::test]
async fn automatic_compaction_keeps_the_last_n_revisions() {
    let m = common::open_with(|c| c.auto_compaction_retention(Some(10))).await;
    let kv = m.db.kv();
    for i in 0..40 {
        kv.put("k", format!("{i}")).await.unwrap();
    }
    let start = Instant::now();
    while kv.compact_revision() < m.db.revision() - 10 {
        assert!(start.elapsed() < Duration::from_secs(5), "automatic compaction did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kv.compact_revision(), m.db.revision() - 10);
    assert_eq!(kv.history("k").await.unwrap().len(), 11);
}

/// etcd's periodic mode: history is kept for one period after it was
/// superseded, never compacted earlier, and compacted within a tenth of a
/// period (plus scheduling) after.
#[tokio::test]
async fn periodic_compaction_keeps_the_last_period_of_history() {
    let period = Duration::from_millis(600);
    let m = common::open_with(|c| c.auto_compaction_retention(None).auto_compaction_period(Some(period))).await;
    let kv = m.db.kv();
    // Taken before the write: no sample can show its revision earlier.
    let written = Instant::now();
    let first = kv.put("k", "0").await.unwrap().revision;
    kv.put("k", "1").await.unwrap();
    // Never before a period has passed (checked only while one has not).
    while written.elapsed() < period / 2 {
        let compacted = kv.compact_revision();
        if written.elapsed() < period {
            assert!(compacted < first, "compacted to {compacted} after {:?}", written.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Then the revision sampled a period ago is compacted.
    while kv.compact_revision() < first {
        assert!(written.elapsed() < period * 10, "periodic compaction did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(written.elapsed() >= period, "compacted early: after {:?}", written.elapsed());
    assert_eq!(kv.get("k").await.unwrap().unwrap().value, "1");
}

#[tokio::test]
async fn transactions_compare_and_branch() {
    let m = common::open().await;
    let kv = m.db.kv();
    let created = kv.put("lock", "me").await.unwrap().revision;
    let cas =
        m.db.txn()
            .when([Compare::mod_revision("lock").eq(created), Compare::value("lock").eq("me")])
            .and_then([TxnOp::put("lock", "you"), TxnOp::get("lock")])
            .or_else([TxnOp::get("lock")])
            .await
            .unwrap();
    assert!(cas.succeeded);
    let TxnOpResponse::Range(read) = &cas.responses[1] else { panic!() };
    assert_eq!(read.kvs[0].value, "you");

    let stale =
        m.db.txn()
            .when([Compare::mod_revision("lock").eq(created)])
            .and_then([TxnOp::put("lock", "stale")])
            .or_else([TxnOp::get("lock")])
            .await
            .unwrap();
    assert!(!stale.succeeded, "a failed compare is not an error");
    assert_eq!(kv.get("lock").await.unwrap().unwrap().value, "you");

    let lease = m.db.lease().grant(30).await.unwrap();
    m.db.txn()
        .when([Compare::version("new").eq(0)])
        .and_then([TxnOp::put_with_lease("new", "v", lease.id)])
        .await
        .unwrap();
    let leased = m.db.txn().when([Compare::lease("new").eq(lease.id)]).await.unwrap();
    assert!(leased.succeeded, "a txn put attaches the lease");
    assert_eq!(m.db.lease().revoke(lease.id).await.unwrap().deleted_keys, 1);

    let before = m.db.revision();
    let dup = m.db.txn().and_then([TxnOp::put("x", "1"), TxnOp::put("x", "2")]).await.unwrap_err();
    assert_eq!(dup, Error::DuplicateKey);
    let unknown = m.db.txn().and_then([TxnOp::put("x", "1"), TxnOp::put_with_lease("y", "1", 777)]).await;
    assert_eq!(unknown.unwrap_err(), Error::LeaseNotFound(777));
    assert_eq!(m.db.revision(), before, "refused transactions write nothing");
    assert!(kv.get("x").await.unwrap().is_none());

    let nested = m.db.txn().when([Compare::version("missing").eq(0)]).into_request();
    let outer = m.db.txn().and_then([TxnOp::txn(nested), TxnOp::put("after-nested", "1")]).await.unwrap();
    let TxnOpResponse::Txn(inner) = &outer.responses[0] else { panic!() };
    assert!(inner.succeeded);
}

#[tokio::test]
async fn bad_input_gets_a_specific_error_and_writes_nothing() {
    let m = common::open().await;
    let kv = m.db.kv();
    let before = m.db.revision();
    assert_eq!(kv.put("", "v").await.unwrap_err(), Error::EmptyKey);
    let long_key = vec![b'k'; 4097];
    assert_eq!(kv.put(long_key.clone(), "v").await.unwrap_err(), Error::KeyTooLarge { size: 4097, max: 4096 });
    kv.put(vec![b'k'; 4096], "v").await.expect("a 4 KiB key is fine");
    let before_value = m.db.revision();
    let big = Bytes::from(vec![0u8; 1536 * 1024 + 1]);
    assert_eq!(kv.put("big", big).await.unwrap_err(), Error::ValueTooLarge { size: 1536 * 1024 + 1, max: 1536 * 1024 });
    kv.put("big", Bytes::from(vec![0u8; 1536 * 1024])).await.expect("1.5 MiB is fine");
    assert_eq!(m.db.revision(), before_value + 1);

    let ops: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("t{i}"), "v")).collect();
    assert_eq!(m.db.txn().and_then(ops).await.unwrap_err(), Error::TooManyTxnOps { ops: 129, max: 128 });
    let ops: Vec<TxnOp> = (0..2).map(|_| TxnOp::put(long_key.clone(), "v")).collect();
    assert!(matches!(m.db.txn().and_then(ops).await, Err(Error::KeyTooLarge { .. })));
    assert_eq!(kv.get("").await.unwrap_err(), Error::EmptyKey);
    assert_eq!(kv.put("k", "v").keep_value().await.unwrap_err(), Error::KeyNotFound);
    assert_eq!(kv.compact(0).await.unwrap_err(), Error::InvalidRequest("cannot compact at revision 0".into()));
    assert_eq!(m.db.revision(), before + 2, "only the two valid puts were written");
}

#[tokio::test]
async fn calls_honour_their_timeout() {
    let m = common::open().await;
    // A zero timeout cannot be met: the call reports Timeout instead of hanging.
    let err = m.db.kv().put("k", "v").timeout(Duration::ZERO).await.unwrap_err();
    assert_eq!(err, Error::Timeout(Duration::ZERO));
    let err = m.db.lease().grant(10).timeout(Duration::ZERO).await.unwrap_err();
    assert_eq!(err, Error::Timeout(Duration::ZERO));
    // The contract: a deadline that passed before proposing writes nothing.
    // A later write is applied after anything the timed-out calls proposed.
    m.db.kv().put("after", "v").await.unwrap();
    assert!(m.db.kv().get("k").await.unwrap().is_none(), "a call that timed out before proposing wrote its key");
    assert!(m.db.lease().list().include_anonymous().await.unwrap().is_empty(), "a timed-out grant granted");
}

#[tokio::test]
async fn calls_after_shutdown_fail_cleanly() {
    let m = common::open().await;
    let other = m.db.clone();
    m.db.shutdown().await.unwrap();
    assert_eq!(other.kv().put("k", "v").await.unwrap_err(), Error::Shutdown);
    assert_eq!(other.kv().get("k").await.unwrap_err(), Error::Shutdown);
}

/// A write on behalf of a caller (`as_caller`, what the etcd front end
/// passes) checked at an auth revision is refused once auth changed before
/// it applies, and changes nothing; checked at the current revision it
/// applies. Reads and lease listings are checked against the state read.
#[tokio::test]
async fn a_callers_requests_are_checked_where_they_take_effect() {
    use concord::auth::{AuthCommand, AuthError, Caller, PermissionKind};
    let m = common::open().await;
    m.db.user_add("root", Some("pw")).await.unwrap();
    m.db.auth_change(AuthCommand::UserGrantRole { user: "root".into(), role: "root".into() }).await.unwrap();
    m.db.user_add("alice", Some("pw")).await.unwrap();
    m.db.auth_change(AuthCommand::RoleAdd { name: "e".into() }).await.unwrap();
    m.db.role_grant_permission("e", PermissionKind::ReadWrite, KeyRange::prefix("e/")).await.unwrap();
    m.db.auth_change(AuthCommand::UserGrantRole { user: "alice".into(), role: "e".into() }).await.unwrap();
    let checked_at = m.db.auth_change(AuthCommand::Enable).await.unwrap();
    let root = Caller::new(Some("root".into()), checked_at);
    m.db.kv().put("a", "1").as_caller(root.clone()).await.unwrap();
    m.db.auth_change(AuthCommand::RoleAdd { name: "r".into() }).await.unwrap();
    let old = Error::Auth(AuthError::OldRevision);
    assert_eq!(m.db.kv().put("b", "1").as_caller(root.clone()).await.unwrap_err(), old);
    assert_eq!(m.db.kv().delete("a").as_caller(root.clone()).await.unwrap_err(), old);
    let txn = m.db.txn().and_then([TxnOp::put("b", "1")]).as_caller(root.clone());
    assert_eq!(txn.await.unwrap_err(), old);
    let lease = m.db.lease().grant(60).await.unwrap();
    m.db.kv().put("secret/k", "v").lease(lease.id).await.unwrap();
    assert_eq!(m.db.lease().revoke(lease.id).as_caller(root.clone()).await.unwrap_err(), old);
    assert!(m.db.kv().get("b").await.unwrap().is_none());
    assert!(m.db.kv().get("a").await.unwrap().is_some());
    assert!(m.db.lease().info(lease.id).await.is_ok());
    let now = m.db.auth_status().1;
    m.db.kv().put("b", "1").as_caller(Caller::new(Some("root".into()), now)).await.unwrap();

    let alice = Caller::new(Some("alice".into()), now);
    let denied = Error::Auth(AuthError::PermissionDenied);
    assert_eq!(m.db.kv().range(KeyRange::prefix("secret/")).as_caller(alice.clone()).await.unwrap_err(), denied);
    assert_eq!(m.db.kv().range(KeyRange::from("e/")).as_caller(alice.clone()).await.unwrap_err(), denied);
    assert!(m.db.kv().range(KeyRange::prefix("e/")).as_caller(alice.clone()).await.is_ok());
    assert_eq!(m.db.lease().info(lease.id).as_caller(alice.clone()).await.unwrap_err(), denied);
    assert_eq!(m.db.lease().revoke(lease.id).as_caller(alice.clone()).await.unwrap_err(), denied);
    assert_eq!(m.db.authorize_read(&alice, &[KeyRange::key("secret/k")]).await.unwrap_err(), denied);
    assert!(m.db.lease().info(lease.id).await.is_ok());
}

/// HashKV is a real check that stores did not diverge: two fresh stores
/// that replay the same writes agree at every revision; one write that
/// differs changes the hash from its revision on, and not before.
#[tokio::test]
async fn hash_kv_agrees_after_the_same_writes_and_shows_a_divergence() {
    async fn replay(db: &concord::Concord, last_value: &'static str) {
        let lease = db.lease().grant(600).await.unwrap();
        for i in 0..50 {
            db.kv().put(format!("k/{:02}", i % 17), format!("v{i}")).await.unwrap();
        }
        db.kv().put("leased", "x").lease(lease.id).await.unwrap();
        db.kv().delete_range(KeyRange::prefix("k/1")).await.unwrap();
        db.txn().when([Compare::version("k/00").gt(0)]).and_then([TxnOp::put("t", "yes")]).await.unwrap();
        db.kv().compact(20).await.unwrap();
        db.kv().put("last", last_value).await.unwrap();
    }
    let (a, b, c) = (common::open().await, common::open().await, common::open().await);
    replay(&a.db, "same").await;
    replay(&b.db, "same").await;
    replay(&c.db, "different").await;
    let last = a.db.kv().revision();
    assert_eq!(last, c.db.kv().revision());
    for revision in 20..=last {
        let (hash_a, compacted, hashed) = a.db.hash_kv(revision).unwrap();
        assert_eq!((compacted, hashed), (20, revision));
        assert_eq!(b.db.hash_kv(revision).unwrap().0, hash_a, "same writes, different hash at {revision}");
        let hash_c = c.db.hash_kv(revision).unwrap().0;
        if revision < last {
            assert_eq!(hash_c, hash_a, "the stores agree before the differing write ({revision})");
        } else {
            assert_ne!(hash_c, hash_a, "a differing write went unnoticed");
        }
    }
    assert!(a.db.hash_kv(19).is_err(), "below the compaction revision");
}
