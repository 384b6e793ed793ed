//! Defragmenting (`Concord::defragment`, etcd's `Maintenance.Defragment`):
//! the space of deleted data goes back to the file system, every live key
//! stays (also across a restart), and writes go on meanwhile.

use concord::KeyRange;

mod common;

const VALUE: usize = 64 * 1024;
const BIG_KEYS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragment_after_large_deletes_shrinks_the_files_and_keeps_the_data() {
    let m = common::open_with(|c| c.auto_compaction_retention(None)).await;
    let value = vec![7u8; VALUE];
    for i in 0..BIG_KEYS {
        m.db.kv().put(format!("big/{i:03}"), value.clone()).await.unwrap();
    }
    m.db.kv().put("keep", "me").await.unwrap();

    // With the data live, defragmenting moves it from the log into a
    // snapshot and frees nothing the data needs.
    let full = m.db.defragment().await.unwrap();
    let data = (BIG_KEYS * VALUE) as u64;
    assert!(full.size_after >= data, "the live data must stay on disk: {full:?}");
    // A snapshot's file is about its size (a chunk that overflowed its
    // page once made it twice that).
    assert!(full.size_after < data + data / 4, "{data} bytes of data in {full:?}");
    assert!(full.in_use_after <= full.size_after, "{full:?}");
    let status = m.db.status();
    assert_eq!(status.snapshot_index, Some(status.raft_applied_index), "a snapshot of everything applied");
    assert_eq!(status.purged_index, status.snapshot_index, "the log before it purged");
    assert_eq!(status.db_size, full.size_after);

    // Delete it all and compact the history away: the next
    // defragmentation gives the space back.
    let deleted = m.db.kv().delete_range(KeyRange::prefix("big/")).await.unwrap();
    assert_eq!(deleted.deleted, BIG_KEYS as u64);
    m.db.kv().compact(m.db.kv().revision()).await.unwrap();
    // Writes go on while it runs.
    let writer = {
        let db = m.db.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                db.kv().put(format!("during/{i:03}"), "w").await.unwrap();
            }
        })
    };
    let emptied = m.db.defragment().await.unwrap();
    writer.await.unwrap();
    assert!(
        emptied.size_after < data / 4,
        "defragmenting after deleting {data} bytes left {} bytes of files: {emptied:?}",
        emptied.size_after
    );
    assert!(emptied.size_after < emptied.size_before, "{emptied:?}");
    assert!(emptied.in_use_after <= emptied.size_after, "{emptied:?}");
    assert!(m.db.status().db_size_in_use <= m.db.status().db_size);

    // The data as it was, also from the compacted files after a restart.
    let m = m.restart(|c| c).await;
    assert_eq!(&m.db.kv().get("keep").await.unwrap().unwrap().value[..], b"me");
    assert!(m.db.kv().range(KeyRange::prefix("big/")).await.unwrap().kvs.is_empty());
    assert_eq!(m.db.kv().range(KeyRange::prefix("during/")).await.unwrap().kvs.len(), 200);
    m.db.kv().put("after", "restart").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragmenting_a_fresh_member_is_harmless_and_repeatable() {
    let m = common::open().await;
    let first = m.db.defragment().await.unwrap();
    let second = m.db.defragment().await.unwrap();
    assert!(second.size_after <= first.size_before.max(first.size_after), "{first:?} {second:?}");
    m.db.kv().put("k", "v").await.unwrap();
    assert_eq!(&m.db.kv().get("k").await.unwrap().unwrap().value[..], b"v");
}
