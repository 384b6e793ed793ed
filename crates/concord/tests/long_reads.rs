//! Long reads run in chunks (a range over many keys, a lease listing, a
//! watch catching up over a long history): each chunk holds the state's lock
//! briefly, and the result is still the one of a single read. (How much the
//! chunking helps writers is measured by `benches/long_reads.rs`.)

mod common;

use std::time::Duration;

use concord::{KeyRange, WatchMessage};

#[tokio::test(flavor = "multi_thread")]
async fn a_long_range_read_sees_one_revision_while_writes_continue() {
    let m = common::open_with(|c| c.auto_compaction_retention(None)).await;
    let kv = m.db.kv();
    let mut loaders = Vec::new();
    for w in 0..16 {
        let kv = kv.clone();
        loaders.push(tokio::spawn(async move {
            for i in (w..10_000).step_by(16) {
                kv.put(format!("k/{i:05}"), "v0").await.unwrap();
            }
        }));
    }
    for l in loaders {
        l.await.unwrap();
    }
    // Writers change the range while it is read, many times over.
    let writer = {
        let kv = kv.clone();
        tokio::spawn(async move {
            for round in 0..400 {
                kv.put(format!("k/{:05}", (round * 37) % 10_000), format!("v{round}")).await.unwrap();
                kv.delete(format!("k/{:05}", (round * 53 + 1) % 10_000)).await.unwrap();
                kv.put(format!("k/{:05}x", round), "new").await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 3 {
        let read = kv.range(KeyRange::prefix("k/")).serializable().await.unwrap();
        // The same revision read again (history is kept): identical.
        let again = kv.range(KeyRange::prefix("k/")).revision(read.revision).await.unwrap();
        assert_eq!(read.kvs, again.kvs, "a chunked read mixed revisions (read at {})", read.revision);
        assert_eq!(read.count, again.count);
        assert!(read.kvs.iter().all(|kv| kv.mod_revision <= read.revision));
        reads += 1;
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn limits_and_counts_span_chunks() {
    let m = common::open().await;
    let kv = m.db.kv();
    let loaders: Vec<_> = (0..16)
        .map(|w| {
            let kv = kv.clone();
            tokio::spawn(async move {
                for i in (w..5_000).step_by(16) {
                    kv.put(format!("c/{i:05}"), "v").await.unwrap();
                }
            })
        })
        .collect();
    for l in loaders {
        l.await.unwrap();
    }
    let limited = kv.range(KeyRange::prefix("c/")).limit(3_000).await.unwrap();
    assert_eq!((limited.kvs.len(), limited.more, limited.count), (3_000, true, 5_000));
    assert_eq!(limited.kvs.last().unwrap().key, "c/02999");
    let all = kv.range(KeyRange::prefix("c/")).keys_only().await.unwrap();
    assert_eq!((all.kvs.len(), all.more, all.count), (5_000, false, 5_000));
    assert!(all.kvs.windows(2).all(|w| w[0].key < w[1].key), "keys in order across chunks");
    assert!(all.kvs.iter().all(|kv| kv.value.is_empty()));
    let counted = kv.range(KeyRange::prefix("c/")).count_only().await.unwrap();
    assert_eq!((counted.kvs.len(), counted.count), (0, 5_000));
}

#[tokio::test]
async fn a_lease_listing_spans_chunks() {
    let m = common::open().await;
    let granters: Vec<_> = (0..16)
        .map(|w| {
            let db = m.db.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (w..2_500).step_by(16) {
                    ids.push(db.lease().grant(600).await.unwrap().id);
                    if i % 3 == 0 {
                        db.kv().put(format!("t/{i}"), "v").ttl(600).await.unwrap();
                    }
                }
                ids
            })
        })
        .collect();
    let mut granted = Vec::new();
    for g in granters {
        granted.extend(g.await.unwrap());
    }
    granted.sort_unstable();
    let listed: Vec<i64> = m.db.lease().list().await.unwrap().iter().map(|l| l.id).collect();
    assert_eq!(listed, granted, "every granted lease, in id order, anonymous ones left out");
    let with_anonymous = m.db.lease().list().include_anonymous().await.unwrap();
    assert_eq!(with_anonymous.len(), 2_500 + 834);
    assert!(with_anonymous.windows(2).all(|w| w[0].id < w[1].id));
}

/// A watcher on one quiet key catching up over a long history of other keys
/// (more changes than one catch-up read scans) gets its events, in order.
#[tokio::test]
async fn catching_up_over_a_long_unrelated_history() {
    let m = common::open_with(|c| c.auto_compaction_retention(None)).await;
    let kv = m.db.kv();
    let first = kv.put("quiet", "1").await.unwrap().revision;
    // 25,600 changes (more than one catch-up read scans), 128 per revision.
    for t in 0..200 {
        let ops: Vec<concord::TxnOp> = (0..128).map(|i| concord::TxnOp::put(format!("noise/{t}/{i}"), "n")).collect();
        m.db.txn().and_then(ops).await.unwrap();
    }
    kv.put("quiet", "2").await.unwrap();
    let mut w = m.db.watch(KeyRange::key("quiet")).from_revision(first).await.unwrap();
    let mut values = Vec::new();
    while values.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("catch-up stalled") {
            Some(WatchMessage::Events { events, .. }) => values.extend(events.iter().map(|e| e.kv.value.clone())),
            Some(WatchMessage::Progress { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(values, ["1", "2"]);
}
