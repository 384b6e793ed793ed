use super::*;

fn open_db(dir: &Path) -> Database {
    Database::create(dir.join("meta.redb")).unwrap()
}

fn open(dir: &Path, db: &Database) -> (Wal, Replayed) {
    Wal::open(dir, None, db).unwrap()
}

fn entry(i: u64) -> Vec<u8> {
    format!("entry {i} ").repeat(i as usize % 7 + 1).into_bytes()
}

fn read_all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.index().lock().iter().map(|(i, l)| (*i, l.read().unwrap())).collect()
}

/// Entries, truncations and the committed pointer come back in order after
/// a reopen, and every entry reads back from where the index says it is.
#[test]
fn records_replay_in_order_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    {
        let (mut wal, replayed) = open(dir.path(), &db);
        assert!(replayed.entries.is_empty());
        for i in 1..=10 {
            wal.push_entry(i, &entry(i));
        }
        wal.push_committed(b"c1");
        wal.flush(&db).unwrap();
        // A leader change: 8.. is replaced.
        wal.push_truncate(8);
        wal.push_entry(8, b"new eight");
        wal.push_committed(b"c2");
        wal.flush(&db).unwrap();
        let mut expected: Vec<_> = (1..=7).map(|i| (i, entry(i))).collect();
        expected.push((8, b"new eight".to_vec()));
        assert_eq!(read_all(&wal), expected);
    }
    let (wal, replayed) = open(dir.path(), &db);
    let mut expected: BTreeMap<u64, Vec<u8>> = (1..=7).map(|i| (i, entry(i))).collect();
    expected.insert(8, b"new eight".to_vec());
    assert_eq!(replayed.entries, expected);
    assert_eq!(replayed.committed.as_deref(), Some(&b"c2"[..]));
    assert_eq!(read_all(&wal), expected.into_iter().collect::<Vec<_>>());
}

/// A torn write at the end (a record cut short, or garbage) is cut off at
/// open; what was written before stays, and later writes replay cleanly.
#[test]
fn a_torn_tail_is_cut_off_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let path = segment_path(dir.path(), 1);
    {
        let (mut wal, _) = open(dir.path(), &db);
        for i in 1..=3 {
            wal.push_entry(i, &entry(i));
        }
        wal.flush(&db).unwrap();
        wal.push_entry(4, &entry(4));
        wal.flush(&db).unwrap();
    }
    // The end of the records (the file is extended ahead with zeros).
    let whole = (std::fs::read(&path).unwrap().iter().rposition(|b| *b != 0).unwrap() + 1) as u64;
    // The last record half written, as a crash mid-write leaves it.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(whole - 5).unwrap();
    drop(file);
    {
        let (mut wal, replayed) = open(dir.path(), &db);
        assert_eq!(replayed.entries.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(std::fs::metadata(&path).unwrap().len() < whole - 5, "the torn record is cut off");
        wal.push_entry(4, b"four again");
        wal.flush(&db).unwrap();
    }
    // The file is extended ahead of the writes: zeros, not a torn write.
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() as u64 >= PREALLOCATE, "{} bytes", bytes.len());
    let records = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    // Garbage after the last record (a write that never completed).
    let mut bytes = bytes;
    bytes[records + 100..records + 140].copy_from_slice(&[0xAB; 40]);
    std::fs::write(&path, &bytes).unwrap();
    let (mut wal, replayed) = open(dir.path(), &db);
    assert_eq!(replayed.entries.get(&4).map(Vec::as_slice), Some(&b"four again"[..]));
    assert!(!std::fs::read(&path).unwrap().contains(&0xAB), "the garbage is cut off");
    assert_eq!(wal.bytes(), records as u64);
    wal.push_entry(5, b"five");
    wal.flush(&db).unwrap();
    let (_, replayed) = open(dir.path(), &db);
    assert_eq!(replayed.entries.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
}

/// Full segments are closed and new ones opened; a purge removes the
/// segments whose entries are all purged (moving on from the last one when
/// it is purged too), and the rest replay.
#[test]
fn segments_rotate_and_purged_ones_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let (mut wal, _) = open(dir.path(), &db);
    wal.segment_bytes = 1024;
    for i in 1..=40 {
        wal.push_entry(i, &[i as u8; 100]);
        wal.flush(&db).unwrap();
    }
    let segments = wal.segments.len();
    assert!(segments >= 4, "{segments} segments");
    assert!(segment_path(dir.path(), 1).exists());
    wal.purge(&db, 20).unwrap();
    assert!(!segment_path(dir.path(), 1).exists(), "a purged segment stays");
    assert!(wal.segments.len() < segments);
    let first = wal.segments[0].0.id;
    // Entries above the purge point still read back, across segments.
    assert_eq!(wal.index().lock().keys().copied().collect::<Vec<_>>(), (21..=40).collect::<Vec<_>>());
    assert_eq!(read_all(&wal)[0].1, vec![21u8; 100]);
    let bytes = wal.bytes();
    drop(wal);
    let (wal, replayed) = open(dir.path(), &db);
    assert_eq!(wal.segments[0].0.id, first);
    assert_eq!(wal.bytes(), bytes);
    assert!(replayed.entries.contains_key(&40));
    assert!(!replayed.entries.contains_key(&1), "entries of removed segments are gone");

    // Purging everything moves on to an empty segment and removes the rest.
    let (mut wal, _) = open(dir.path(), &db);
    let last = wal.segments.last().unwrap().0.id;
    wal.purge(&db, 40).unwrap();
    assert_eq!(wal.segments.len(), 1);
    assert_eq!(wal.segments[0].0.id, last + 1);
    assert_eq!(wal.bytes(), 0);
    assert!(!segment_path(dir.path(), last).exists());
    drop(wal);
    let (_, replayed) = open(dir.path(), &db);
    assert!(replayed.entries.is_empty());
}

/// A damaged segment before the last one is not a torn write: opening
/// fails and says where.
#[test]
fn damage_before_the_last_segment_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    {
        let (mut wal, _) = open(dir.path(), &db);
        wal.segment_bytes = 256;
        for i in 1..=10 {
            wal.push_entry(i, &[7; 100]);
            wal.flush(&db).unwrap();
        }
    }
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let error = Wal::open(dir.path(), None, &db).err().expect("a damaged segment must fail the open");
    assert!(error.contains("damaged"), "{error}");
}

/// A segment file outside the recorded range (a purge that recorded the
/// new range and crashed before removing the file) is removed at open.
#[test]
fn a_segment_left_by_an_unfinished_purge_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    {
        let (mut wal, _) = open(dir.path(), &db);
        wal.push_entry(1, b"one");
        wal.flush(&db).unwrap();
        wal.purge(&db, 1).unwrap();
    }
    let stale = segment_path(dir.path(), 1);
    assert!(!stale.exists());
    std::fs::write(&stale, b"left behind").unwrap();
    let (_, replayed) = open(dir.path(), &db);
    assert!(replayed.entries.is_empty());
    assert!(!stale.exists(), "the stale segment is removed");
    assert!(segment_path(dir.path(), 2).exists(), "the live one stays");
}
