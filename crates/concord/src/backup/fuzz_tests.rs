//! Fuzzing what reads a backup file — `status` (`concord snapshot status`),
//! `read` (what `concord snapshot restore` reads, with and without the
//! checksum check) and the etcd buckets' readers (`etcd::status`,
//! `etcd_import::read`) — with arbitrary files and with valid ones (a
//! Concord backup, an etcd snapshot) changed at random, their meta
//! checksums and trailing SHA-256 recomputed so that the changes reach the
//! readers. Whatever the file, each answers `Ok` or `Err` (never a panic or
//! an abort) and reads within bounds: no buffer larger than the file, no
//! more than a fixed multiple of the file read in all.
//!
//! A longer run (these and the bolt reader's own):
//! `PROPTEST_CASES=20000 cargo test -p concord --lib backup::`.

use bytes::Bytes;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::bolt::tests::{Mutation, arbitrary_bytes, cases, mutation, put_u32, put_u64, reseal};
use super::bolt::{PAGE_SIZE, probe};
use super::*;
use crate::auth::{Permission, PermissionKind, Role, User};
use crate::types::KeyRange;

/// A state with something in every bucket: keys with history over several
/// leaves (a branch above them), a deletion, a compaction, a lease with a
/// key, a user and a role, auth on.
fn state() -> State {
    let mut state = State::default();
    let lease = state.leases.grant(Some(0x5eed), 60, 1, false).unwrap().generation;
    state.leases.checkpoint(0x5eed, lease, 42_000);
    for revision in 2..300 {
        let key = Bytes::from(format!("k/{:03}", revision % 120));
        let leased = if revision == 299 { 0x5eed } else { 0 };
        state.kv.put(revision, &key, Some(Bytes::from(vec![b'v'; (revision % 40) as usize])), leased);
        state.kv.commit_revision(revision);
    }
    state.leases.attach(0x5eed, &Bytes::from_static(b"k/059"));
    state.kv.delete_key(300, &Bytes::from_static(b"k/001"));
    state.kv.commit_revision(300);
    state.kv.compact(100).unwrap();
    let role = Role { permissions: vec![Permission { kind: PermissionKind::Read, range: KeyRange::prefix("k/") }] };
    state.auth.roles.insert("reader".into(), role);
    let ann = User { password_hash: Some("$2b$10$x".into()), roles: ["reader".to_string()].into() };
    state.auth.users.insert("ann".into(), ann);
    state.auth.enabled = true;
    state
}

/// A Concord backup of [`state`]: etcd's buckets, `concord`, the SHA-256.
fn concord_backup() -> &'static [u8] {
    static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let state = state();
        let header = BackupHeader::of(&state, 7, 9);
        let plan = plan_backup(&state, &header).unwrap();
        let mut bytes = Vec::new();
        write_backup(&state, &header, &plan, &mut bytes).unwrap();
        bytes
    })
}

/// An etcd snapshot of [`state`]: etcd's buckets and the SHA-256.
fn etcd_snapshot() -> &'static [u8] {
    static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| super::tests::etcd_snapshot_bytes(&state()))
}

/// Recomputes the SHA-256 the file ends with.
fn reseal_sha(bytes: &mut [u8]) {
    let Some(body) = bytes.len().checked_sub(32) else { return };
    let digest = Sha256::digest(&bytes[..body]);
    bytes[body..].copy_from_slice(&digest);
}

/// Runs every reader on `bytes` (as a file) and checks the bounds they
/// keep; the errors `status` and `read` gave (`read` without the checksum
/// check, which `status` made the same way: hashing is most of a case's
/// time, and unchecked a file reaches the readers whatever its checksum).
fn read_within_bounds(bytes: &[u8]) -> Result<(Option<String>, Option<String>), TestCaseError> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let path = file.path();
    probe::reset();
    let status = status(path).err().map(|e| e.to_string());
    let read = read_checked(path, false).err().map(|e| e.to_string());
    if let Ok(Some(db)) = BoltFile::open(std::fs::File::open(path).unwrap()) {
        let _ = etcd::status(&db);
        let _ = etcd_import::read(&db);
        let _ = etcd_import::read_kv(&db);
    }
    let (largest, read_bytes) = probe::seen();
    prop_assert!(largest <= bytes.len(), "a buffer of {} bytes for a {}-byte file", largest, bytes.len());
    // Each of the dozen or so walks above reads each page at most once
    // (most of them far less: one bucket each).
    prop_assert!(
        read_bytes <= 16 * bytes.len() as u64 + 64 * 1024,
        "{} bytes read of a {}-byte file",
        read_bytes,
        bytes.len()
    );
    Ok((status, read))
}

/// The abort of issue 22 (item 8) through the commands: an etcd snapshot
/// with a valid trailing SHA-256 and valid meta checksums whose meta pages
/// claim 2^33 pages (32 TiB) and whose root bucket's page claims 2^32 - 1
/// overflow pages; `concord snapshot status` / `restore` asked for 16 TiB.
#[test]
fn a_snapshot_claiming_16_tib_is_refused_by_status_and_restore() {
    let mut bytes = etcd_snapshot().to_vec();
    let root = u64::from_le_bytes(bytes[4096 + 32..4096 + 40].try_into().unwrap());
    for meta in [16 + 40, 4096 + 16 + 40] {
        put_u64(&mut bytes, meta, 1 << 33);
    }
    put_u32(&mut bytes, (root * PAGE_SIZE) as usize + 12, u32::MAX);
    reseal(&mut bytes);
    reseal_sha(&mut bytes);
    let (status, read) = read_within_bounds(&bytes).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let restore = super::read(file.path()).err().map(|e| e.to_string());
    let claim = format!(
        "bolt meta page 1 claims 8589934592 pages of 4096 bytes, past the end of the {}-byte file",
        bytes.len()
    );
    for refused in [status, read, restore] {
        let refused = refused.expect("refused");
        assert!(refused.contains(&claim), "{refused}");
    }
}

#[test]
fn the_valid_files_read_within_bounds() {
    for bytes in [concord_backup(), etcd_snapshot()] {
        let (status, read) = read_within_bounds(bytes).unwrap();
        assert_eq!((status, read), (None, None));
    }
}

/// Arbitrary bytes as a file, most given the shape of a snapshot (a size
/// of 512n + 32, ending with their SHA-256), some starting as a backup
/// from before the bolt container does.
fn arbitrary_file() -> impl Strategy<Value = Vec<u8>> {
    let start = prop::sample::select(vec![&b""[..], MAGIC, MAGIC_KEYS_APART]);
    (start, arbitrary_bytes(6000), prop::bool::weighted(0.8)).prop_map(|(start, rest, sealed)| {
        let mut bytes = [start, &rest].concat();
        if sealed {
            bytes.resize(bytes.len().div_ceil(512) * 512 + 32, 0);
            reseal_sha(&mut bytes);
        }
        bytes
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_files_never_panic_status_or_restore(bytes in arbitrary_file()) {
        read_within_bounds(&bytes)?;
    }

    /// A Concord backup or an etcd snapshot with some fields changed (in
    /// its database, not the SHA-256 after it), the meta checksums and the
    /// SHA-256 mostly recomputed so that the changes reach the readers.
    #[test]
    fn mutated_backups_never_panic_status_or_restore(
        concord in any::<bool>(),
        mutations in prop::collection::vec(mutation(concord_backup().len().min(etcd_snapshot().len()) - 32), 1..4),
        reseal_meta in prop::bool::weighted(0.9),
        reseal_file in prop::bool::weighted(0.9),
    ) {
        let mut bytes = if concord { concord_backup() } else { etcd_snapshot() }.to_vec();
        for m in &mutations {
            m.apply(&mut bytes);
        }
        if reseal_meta {
            reseal(&mut bytes);
        }
        if reseal_file {
            reseal_sha(&mut bytes);
        }
        read_within_bounds(&bytes)?;
    }
}

/// etcd's remaining TTL is any int64 the file holds: in milliseconds it
/// saturates (it overflowed, a panic in a debug build).
#[test]
fn a_lease_remaining_ttl_past_u64_milliseconds_saturates() {
    // leasepb.Lease { id: 1, ttl: 10, remaining_ttl: i64::MAX }
    let lease = [&[0x08, 1, 0x10, 10, 0x18][..], &[0xff; 8], &[0x7f]].concat();
    let write = |plan: BoltSummary, out: &mut dyn Write| {
        let mut db = BoltWriter::new(out, plan).unwrap();
        db.begin_bucket();
        db.put(&1i64.to_be_bytes(), &lease).unwrap();
        db.end_bucket(b"lease").unwrap();
        db.finish().unwrap()
    };
    let plan = write(BoltSummary::default(), &mut std::io::sink());
    let mut bytes = Vec::new();
    write(plan, &mut bytes);
    let db = super::bolt::tests::open_bytes(&bytes).unwrap().unwrap();
    let (_, state) = etcd_import::read(&db).unwrap();
    let lease = state.leases.get(1).unwrap();
    assert_eq!((lease.ttl_secs, lease.remaining_ms), (10, 10_000));
}

/// A mutation is what it says: a field written, cut at the end.
#[test]
fn a_mutation_writes_its_field() {
    let mut bytes = vec![0u8; 6];
    Mutation::Write { at: 4, width: 4, value: 0x0302_0100 + 0xff }.apply(&mut bytes);
    assert_eq!(bytes, [0, 0, 0, 0, 0xff, 1]);
    Mutation::Flip { at: 0, bit: 9 }.apply(&mut bytes);
    assert_eq!(bytes[0], 2);
}
