use super::*;

fn open(dir: &Path) -> SnapshotStore {
    SnapshotStore::open(&dir.join("snapshot.redb"), None).unwrap()
}

/// Bytes that differ at every position (a misplaced chunk shows).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(2654435761).wrapping_add(seed as u64) as u8).collect()
}

fn read_all(data: &SnapshotData) -> Vec<u8> {
    let mut out = Vec::new();
    data.reader().unwrap().read_to_end(&mut out).unwrap();
    out
}

async fn build(store: &SnapshotStore, index: Option<u64>, bytes: Vec<u8>) -> Option<SnapshotData> {
    let meta = format!("meta{index:?}").into_bytes();
    store.build(index, meta, move |out| out.write_all(&bytes).map_err(err)).await.unwrap()
}

fn current(store: &SnapshotStore) -> Option<(Vec<u8>, Vec<u8>)> {
    store.current().unwrap().map(|(meta, data)| (meta, read_all(&data)))
}

/// A snapshot built before a newer one was installed finished after it
/// and replaced it.
#[tokio::test]
async fn an_older_snapshot_never_replaces_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(build(&store, Some(10), b"data10".to_vec()).await.is_some());
    assert!(build(&store, Some(5), b"data5".to_vec()).await.is_none());
    assert!(build(&store, None, Vec::new()).await.is_none());
    assert_eq!(current(&store), Some((b"metaSome(10)".to_vec(), b"data10".to_vec())));
    assert!(build(&store, Some(10), b"again".to_vec()).await.is_some());
    assert!(build(&store, Some(11), b"data11".to_vec()).await.is_some());
    assert_eq!(current(&store), Some((b"metaSome(11)".to_vec(), b"data11".to_vec())));
}

/// Data over several chunks comes back byte for byte, after a reopen too,
/// and a replaced snapshot's chunks are dropped with it.
#[tokio::test]
async fn data_of_several_chunks_round_trips_and_replaced_ones_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let big = pattern(3 * CHUNK + 12_345, 7);
    {
        let store = open(dir.path());
        build(&store, Some(1), pattern(10, 1)).await.unwrap();
        let data = build(&store, Some(2), big.clone()).await.unwrap();
        assert_eq!(data.len(), big.len() as u64);
        assert_eq!(data.chunks().unwrap().count(), 4);
        assert_eq!(read_all(&data), big);
    }
    let store = open(dir.path());
    let (_, data) = store.current().unwrap().unwrap();
    assert_eq!(read_all(&data), big);
    let db = store.db().unwrap();
    let txn = db.begin_read().unwrap();
    let tables: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_string()).collect();
    assert_eq!(tables.iter().filter(|t| t.starts_with(CHUNK_TABLE_PREFIX)).count(), 1, "{tables:?}");
}

/// A snapshot being sent keeps reading what it started with while a newer
/// one replaces it.
#[tokio::test]
async fn a_reader_keeps_its_snapshot_while_a_newer_one_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = pattern(2 * CHUNK + 1, 1);
    let data = build(&store, Some(1), first.clone()).await.unwrap();
    let mut reader = data.reader().unwrap();
    let mut head = vec![0; 100];
    reader.read_exact(&mut head).unwrap();
    build(&store, Some(2), pattern(2 * CHUNK, 2)).await.unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert_eq!(head, first);
    // The replaced snapshot is gone for a new reader.
    assert!(data.reader().is_err());
}

/// Received pieces of any size are stored as they come; the snapshot is
/// current only once installed, and not at all when an installed one is
/// newer or the stream broke off.
#[tokio::test]
async fn a_received_snapshot_is_current_only_once_installed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    build(&store, Some(5), b"old".to_vec()).await.unwrap();
    let sent = pattern(CHUNK * 2 + 999, 3);
    let mut sink = store.receive();
    for piece in sent.chunks(300_001) {
        sink.push(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    let received = sink.finish().await.unwrap();
    assert_eq!(read_all(&received), sent);
    assert_eq!(current(&store).unwrap().1, b"old");
    assert!(store.install(&received, Some(9), b"meta9".to_vec()).await.unwrap());
    assert_eq!(current(&store), Some((b"meta9".to_vec(), sent.clone())));

    // Older than the current one: refused and dropped.
    let mut sink = store.receive();
    sink.push(Bytes::from_static(b"stale")).await.unwrap();
    let stale = sink.finish().await.unwrap();
    assert!(!store.install(&stale, Some(8), b"meta8".to_vec()).await.unwrap());
    assert!(stale.reader().is_err());
    assert_eq!(current(&store), Some((b"meta9".to_vec(), sent.clone())));

    // Broken off: nothing was written.
    let mut sink = store.receive();
    sink.push(Bytes::from_static(b"partial")).await.unwrap();
    drop(sink);
    // Received but never installed (a crash before the install): dropped
    // when the store is opened again.
    let mut sink = store.receive();
    sink.push(Bytes::from_static(b"orphan")).await.unwrap();
    let orphan = sink.finish().await.unwrap();
    assert!(orphan.reader().is_ok());
    drop((store, orphan, stale, received));
    let store = open(dir.path());
    assert_eq!(current(&store), Some((b"meta9".to_vec(), sent)));
    let db = store.db().unwrap();
    let txn = db.begin_read().unwrap();
    let tables: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_string()).collect();
    assert_eq!(tables.iter().filter(|t| t.starts_with(CHUNK_TABLE_PREFIX)).count(), 1, "{tables:?}");
}

/// A store written before chunking (the data whole under `data`) opens
/// with the same snapshot, now in chunks.
#[tokio::test]
async fn a_snapshot_stored_whole_is_moved_into_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.redb");
    let data = pattern(CHUNK + 10, 9);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(SNAPSHOT).unwrap();
            table.insert(META, b"legacy-meta".as_slice()).unwrap();
            table.insert(LEGACY_DATA, data.as_slice()).unwrap();
            table.insert(INDEX, 42u64.to_be_bytes().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(current(&store), Some((b"legacy-meta".to_vec(), data.clone())));
    assert!(build(&store, Some(41), b"older".to_vec()).await.is_none());
    drop(store);
    assert_eq!(current(&open(dir.path())), Some((b"legacy-meta".to_vec(), data)));
}

/// Defragmenting waits for a snapshot being read (it holds the file's
/// read lock), then gives back the space of the replaced snapshots; the
/// current one reads the same after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragment_waits_for_readers_and_gives_back_replaced_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let path = dir.path().join("snapshot.redb");
    build(&store, Some(1), pattern(8 * CHUNK, 1)).await.unwrap();
    let small = pattern(CHUNK / 2, 2);
    let data = build(&store, Some(2), small.clone()).await.unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    assert!(before > 8 * CHUNK as u64, "{before}");

    let mut reading = data.chunks().unwrap();
    let defragment = tokio::spawn({
        let store = store.clone();
        async move { store.defragment().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!defragment.is_finished(), "defragmenting must wait for the reader");
    assert_eq!(reading.next().unwrap().unwrap(), small);
    // Other readers are not held up by the waiting defragmentation.
    assert_eq!(current(&store).unwrap().1, small);
    drop(reading);
    defragment.await.unwrap().unwrap();

    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < 2 * CHUNK as u64, "{before} → {after}");
    assert!(store.in_use() <= after);
    assert_eq!(current(&store).unwrap().1, small);
    drop(store);
    assert_eq!(current(&open(dir.path())).unwrap().1, small);
}
