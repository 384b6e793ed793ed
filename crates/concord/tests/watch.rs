//! Watch through the embedded API: order, exactly-once across the replay ->
//! live hand-off, ranges and filters, lease expiry, compaction, slow
//! consumers and many watchers.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use concord::{EventKind, KeyRange, WatchEvent, WatchMessage, Watcher};

/// Receives until `n` events arrived (or panics after `within`).
async fn collect(w: &mut Watcher, n: usize, within: Duration) -> Vec<WatchEvent> {
    let deadline = Instant::now() + within;
    let mut events = Vec::new();
    while events.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, w.next()).await {
            Ok(Some(WatchMessage::Events { events: batch, .. })) => events.extend(batch.iter().cloned()),
            Ok(Some(WatchMessage::Progress { .. })) => {}
            Ok(other) => panic!("watch ended: {other:?} after {} events", events.len()),
            Err(_) => panic!("only {} of {n} events arrived", events.len()),
        }
    }
    events
}

/// The next message, or a panic after 5 s: a test never waits forever.
async fn next(w: &mut Watcher) -> Option<WatchMessage> {
    tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("no watch message within 5 s")
}

/// Asserts nothing more arrives for a little while.
async fn quiet(w: &mut Watcher) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), w.next()).await {
        panic!("unexpected message: {m:?}");
    }
}

fn key(e: &WatchEvent) -> String {
    common::s(&e.kv.key)
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_then_live_is_ordered_and_exactly_once_under_concurrent_writes() {
    let m = common::open().await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let kv = m.db.kv();
            tokio::spawn(async move {
                for i in 0..250 {
                    kv.put(format!("c/{w}/{i:03}"), format!("{i}")).await.unwrap();
                }
            })
        })
        .collect();
    // Start watching from the beginning while the writers are busy.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut w = m.db.watch(KeyRange::prefix("c/")).from_revision(1).await.unwrap();
    for t in writers {
        t.await.unwrap();
    }
    let events = collect(&mut w, 1000, Duration::from_secs(20)).await;
    quiet(&mut w).await;
    let revisions: Vec<i64> = events.iter().map(WatchEvent::revision).collect();
    assert!(revisions.windows(2).all(|p| p[0] < p[1]), "one put per revision, strictly increasing");
    assert_eq!(revisions, (2..=1001).collect::<Vec<_>>(), "no gap, no duplicate");
    let keys: BTreeSet<String> = events.iter().map(key).collect();
    assert_eq!(keys.len(), 1000);
}

#[tokio::test]
async fn ranges_filters_and_prev_kv() {
    let m = common::open().await;
    let kv = m.db.kv();
    let mut prefix = m.db.watch(KeyRange::prefix("p/")).prev_kv().await.unwrap();
    let mut range = m.db.watch(KeyRange::between("b", "d")).await.unwrap();
    let mut single = m.db.watch(KeyRange::key("p/x")).no_put().await.unwrap();
    let mut puts_only = m.db.watch(KeyRange::all()).no_delete().await.unwrap();
    kv.put("p/x", "1").await.unwrap();
    kv.put("p/x", "2").await.unwrap();
    kv.put("c", "in range").await.unwrap();
    kv.put("d", "out of range").await.unwrap();
    kv.delete("p/x").await.unwrap();

    let e = collect(&mut prefix, 3, Duration::from_secs(5)).await;
    assert_eq!(e.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Put, EventKind::Put, EventKind::Delete]);
    assert_eq!(e[0].prev_kv, None);
    assert_eq!(e[1].prev_kv.as_ref().unwrap().value, "1");
    assert_eq!(e[2].prev_kv.as_ref().unwrap().value, "2");
    assert_eq!((e[2].kv.mod_revision, e[2].kv.version), (6, 0), "a delete event carries its revision");
    let e = collect(&mut range, 1, Duration::from_secs(5)).await;
    assert_eq!(key(&e[0]), "c");
    assert_eq!(e[0].prev_kv, None, "prev_kv only when asked");
    let e = collect(&mut single, 1, Duration::from_secs(5)).await;
    assert_eq!((key(&e[0]), e[0].kind), ("p/x".into(), EventKind::Delete));
    let e = collect(&mut puts_only, 4, Duration::from_secs(5)).await;
    assert!(e.iter().all(|e| e.kind == EventKind::Put));
    // The delete of p/x must not be the next event: the next is this put.
    kv.put("last", "x").await.unwrap();
    let e = collect(&mut puts_only, 1, Duration::from_secs(5)).await;
    assert_eq!((key(&e[0]), e[0].kind), ("last".into(), EventKind::Put), "no_delete let a delete through");
    // The same filters when replaying history.
    let mut replayed = m.db.watch(KeyRange::all()).from_revision(1).no_delete().await.unwrap();
    let e = collect(&mut replayed, 5, Duration::from_secs(5)).await;
    let keys: Vec<String> = e.iter().map(key).collect();
    assert_eq!(keys, ["p/x", "p/x", "c", "d", "last"]);
    assert!(e.iter().all(|e| e.kind == EventKind::Put));
    let mut replayed = m.db.watch(KeyRange::all()).from_revision(1).no_put().await.unwrap();
    let e = collect(&mut replayed, 1, Duration::from_secs(5)).await;
    assert_eq!((key(&e[0]), e[0].kind), ("p/x".into(), EventKind::Delete));
    quiet(&mut replayed).await;
    quiet(&mut puts_only).await;
    quiet(&mut range).await;
    quiet(&mut single).await;
}

#[tokio::test]
async fn lease_expiry_is_n_deletes_at_one_revision() {
    let m = common::open().await;
    let lease = m.db.lease().grant(1).await.unwrap();
    for k in ["l/c", "l/a", "l/b"] {
        m.db.kv().put(k, "v").lease(lease.id).await.unwrap();
    }
    let mut w = m.db.watch(KeyRange::prefix("l/")).await.unwrap();
    let e = collect(&mut w, 3, Duration::from_secs(4)).await;
    assert!(e.iter().all(|e| e.kind == EventKind::Delete));
    assert_eq!(e.iter().map(key).collect::<Vec<_>>(), ["l/a", "l/b", "l/c"], "sorted key order");
    let revision = e[0].revision();
    assert!(e.iter().all(|e| e.revision() == revision), "one revision");
}

#[tokio::test]
async fn a_compacted_start_revision_cancels_the_watch() {
    let m = common::open().await;
    for i in 0..5 {
        m.db.kv().put("k", format!("{i}")).await.unwrap();
    }
    m.db.kv().compact(4).await.unwrap();
    let mut w = m.db.watch(KeyRange::key("k")).from_revision(3).await.unwrap();
    assert_eq!(next(&mut w).await, Some(WatchMessage::Canceled { compact_revision: 4 }));
    assert_eq!(next(&mut w).await, None);
    // Just above the compaction point still works.
    let mut w = m.db.watch(KeyRange::key("k")).from_revision(5).await.unwrap();
    let e = collect(&mut w, 2, Duration::from_secs(5)).await;
    assert_eq!(e.iter().map(|e| e.revision()).collect::<Vec<_>>(), [5, 6]);
}

/// etcd cancels only when start < compact revision; starting exactly at it
/// was canceled here.
#[tokio::test]
async fn a_watch_starting_exactly_at_the_compaction_revision_is_served() {
    let m = common::open().await;
    for i in 0..5 {
        m.db.kv().put("k", format!("{i}")).await.unwrap();
    }
    m.db.kv().compact(4).await.unwrap();
    let mut w = m.db.watch(KeyRange::key("k")).from_revision(4).await.unwrap();
    let e = collect(&mut w, 3, Duration::from_secs(5)).await;
    assert_eq!(e.iter().map(|e| e.revision()).collect::<Vec<_>>(), [4, 5, 6]);
    // And after a later compaction the entries at the old point go.
    m.db.kv().compact(6).await.unwrap();
    let mut w = m.db.watch(KeyRange::key("k")).from_revision(5).await.unwrap();
    assert_eq!(next(&mut w).await, Some(WatchMessage::Canceled { compact_revision: 6 }));
}

/// A progress notification for a watch that starts in the future reported
/// the start revision, which the store has not reached.
#[tokio::test]
async fn progress_of_a_future_watch_reports_the_current_revision() {
    let m = common::open().await;
    m.db.kv().put("x", "1").await.unwrap();
    let current = m.db.revision();
    let mut w = m.db.watch(KeyRange::key("k")).from_revision(current + 10).await.unwrap();
    w.request_progress();
    assert_eq!(next(&mut w).await, Some(WatchMessage::Progress { revision: current }));
}

/// `Concord::shutdown()` left `Watcher::next()` waiting forever.
#[tokio::test]
async fn shutdown_ends_every_watch_stream() {
    let m = common::open().await;
    let mut live = m.db.watch(KeyRange::key("k")).await.unwrap();
    m.db.kv().put("k", "v").await.unwrap();
    assert!(matches!(next(&mut live).await, Some(WatchMessage::Events { .. })));
    // A watcher whose consumer is not reading (catching up or stalled) ends too.
    let stalled = m.db.watch(KeyRange::key("k")).from_revision(1).await.unwrap();
    m.db.shutdown().await.unwrap();
    assert_eq!(next(&mut live).await, None);
    let mut stalled = stalled;
    let mut ended = false;
    for _ in 0..4 {
        if next(&mut stalled).await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "a stalled watcher's stream did not end");
    assert_eq!(m.db.watch(KeyRange::key("k")).await.err(), Some(concord::Error::Shutdown));
}

/// A flood of progress requests costs one notification, not a queue.
#[tokio::test]
async fn progress_requests_are_merged() {
    let m = common::open().await;
    let mut w = m.db.watch(KeyRange::key("p")).await.unwrap();
    for _ in 0..100_000 {
        w.request_progress();
    }
    assert!(matches!(next(&mut w).await, Some(WatchMessage::Progress { .. })));
    quiet(&mut w).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_watcher_does_not_block_commits_and_later_gets_everything() {
    let m = common::open_with(|c| c.watch_buffer(2)).await;
    let mut stalled = m.db.watch(KeyRange::prefix("s/")).await.unwrap();
    let start = Instant::now();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let kv = m.db.kv();
            tokio::spawn(async move {
                for i in 0..125 {
                    kv.put(format!("s/{w:02}/{i:03}"), "v").await.unwrap();
                }
            })
        })
        .collect();
    for t in writers {
        t.await.unwrap();
    }
    // 2000 commits went through while nobody read the watcher.
    assert!(start.elapsed() < Duration::from_secs(20));
    let events = collect(&mut stalled, 2000, Duration::from_secs(20)).await;
    let revisions: Vec<i64> = events.iter().map(WatchEvent::revision).collect();
    assert_eq!(revisions, (2..=2001).collect::<Vec<_>>());
    quiet(&mut stalled).await;
    // And it is live again afterwards.
    m.db.kv().put("s/after", "v").await.unwrap();
    let e = collect(&mut stalled, 1, Duration::from_secs(5)).await;
    assert_eq!(key(&e[0]), "s/after");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_watchers_on_one_prefix_all_get_every_event() {
    let m = common::open().await;
    let mut watchers = Vec::new();
    for _ in 0..100 {
        watchers.push(m.db.watch(KeyRange::prefix("h/")).await.unwrap());
    }
    for i in 0..50 {
        m.db.kv().put(format!("h/{i:02}"), "v").await.unwrap();
    }
    m.db.kv().delete_range(KeyRange::prefix("h/")).await.unwrap();
    for w in &mut watchers {
        let e = collect(w, 100, Duration::from_secs(10)).await;
        assert_eq!(e.iter().filter(|e| e.kind == EventKind::Put).count(), 50);
        assert!(e[50..].iter().all(|e| e.kind == EventKind::Delete && e.revision() == 52));
    }
}

#[tokio::test]
async fn progress_and_cancel_on_drop() {
    let m = common::open().await;
    let mut w = m.db.watch(KeyRange::key("p")).await.unwrap();
    m.db.kv().put("other", "1").await.unwrap();
    w.request_progress();
    let got = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap();
    assert_eq!(got, Some(WatchMessage::Progress { revision: 2 }));
    assert_eq!(m.db.watchers(), 1);
    drop(w);
    let start = Instant::now();
    while m.db.watchers() > 0 {
        // The next commit tells the hub the receiver is gone.
        m.db.kv().put("other", "again").await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(5), "a dropped watcher is never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn periodic_progress_notifications() {
    let m = common::open_with(|c| c.watch_progress_interval(Duration::from_millis(100))).await;
    m.db.kv().put("elsewhere", "1").await.unwrap();
    let mut w = m.db.watch(KeyRange::key("quiet")).progress_notify().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap();
    assert_eq!(got, Some(WatchMessage::Progress { revision: 2 }), "progress must report the revision reached");
    // And again, periodically, without being asked.
    let again = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap();
    assert_eq!(again, Some(WatchMessage::Progress { revision: 2 }));
}
