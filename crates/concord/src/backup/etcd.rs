//! The buckets of an etcd v3.4 backend, filled from Concord's state, so
//! that a backup is also an etcd snapshot: `etcdctl snapshot status`
//! reports its revision and keys, and `etcdctl snapshot restore` makes an
//! etcd data directory from it (a way from Concord to etcd).
//!
//! What each bucket holds, as etcd's `mvcc`, `lease` and `auth` packages
//! write it:
//! - `key`: every stored version since the compaction, keyed by its
//!   revision (8-byte big-endian main, `_`, 8-byte sub; a deletion adds
//!   `t`), valued by an `mvccpb.KeyValue` (a deletion's holds only the key);
//!   versions of one revision are numbered by key order;
//! - `meta`: `consistent_index` (the applied log index) and, after a
//!   compaction, `scheduledCompactRev` / `finishedCompactRev`;
//! - `lease`: each lease's `leasepb.Lease` (id, TTL, remaining TTL in
//!   seconds) under its big-endian id — a key's own TTL (an anonymous lease)
//!   becomes an ordinary lease;
//! - `auth` (`authEnabled`, `authRevision`), `authUsers`, `authRoles`:
//!   users with their bcrypt hashes, roles with their permissions;
//! - `cluster` (`clusterVersion`), and empty `alarm`, `members`,
//!   `members_removed` (a restore names the new cluster's members).
//!
//! Concord reads its own state back from the `concord` bucket, not from
//! these (`super`), so nothing here has to carry Concord-only detail.

use std::io;

use prost::encoding::{WireType, encode_key, encode_varint};

use super::bolt::{BoltFile, BoltWriter};
use crate::auth::{PermissionKind, ROOT};
use crate::state_machine::State;
use crate::types::{RangeEnd, Revision};

/// The cluster version a restored etcd sees.
const CLUSTER_VERSION: &[u8] = b"3.4.0";

/// Writes etcd's buckets for `state`, applied up to log index `raft_index`.
pub(super) fn write_buckets(w: &mut BoltWriter<'_>, state: &State, raft_index: u64) -> io::Result<()> {
    empty_bucket(w, b"alarm")?;
    write_auth(w, state)?;
    w.begin_bucket();
    w.put(b"clusterVersion", CLUSTER_VERSION)?;
    w.end_bucket(b"cluster")?;
    write_keys(w, state)?;
    write_leases(w, state)?;
    empty_bucket(w, b"members")?;
    empty_bucket(w, b"members_removed")?;
    w.begin_bucket();
    w.put(b"consistent_index", &raft_index.to_be_bytes())?;
    let compacted = state.kv.compact_revision();
    if compacted > 0 {
        w.put(b"finishedCompactRev", &revision_key(compacted, 0, false))?;
        w.put(b"scheduledCompactRev", &revision_key(compacted, 0, false))?;
    }
    w.end_bucket(b"meta")
}

fn empty_bucket(w: &mut BoltWriter<'_>, name: &[u8]) -> io::Result<()> {
    w.begin_bucket();
    w.end_bucket(name)
}

/// etcd's revision key: main and sub big-endian around `_`, `t` if a deletion.
fn revision_key(main: Revision, sub: u64, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

fn write_keys(w: &mut BoltWriter<'_>, state: &State) -> io::Result<()> {
    w.begin_bucket();
    let mut sub = 0;
    let mut last = None;
    for (revision, key, live) in state.kv.versions_by_revision() {
        sub = if last == Some(revision) { sub + 1 } else { 0 };
        last = Some(revision);
        let mut value = Vec::with_capacity(key.len() + live.map_or(0, |l| l.value.len()) + 32);
        bytes_field(1, key, &mut value);
        if let Some(live) = live {
            int_field(2, live.create_revision, &mut value);
            int_field(3, revision, &mut value);
            int_field(4, live.version, &mut value);
            bytes_field(5, &live.value, &mut value);
            int_field(6, live.lease, &mut value);
        }
        w.put(&revision_key(revision, sub, live.is_none()), &value)?;
    }
    w.end_bucket(b"key")
}

fn write_leases(w: &mut BoltWriter<'_>, state: &State) -> io::Result<()> {
    w.begin_bucket();
    for lease in state.leases.iter() {
        let mut value = Vec::with_capacity(32);
        int_field(1, lease.id, &mut value);
        int_field(2, lease.ttl_secs, &mut value);
        int_field(3, lease.remaining_ms.div_ceil(1000) as i64, &mut value);
        w.put(&lease.id.to_be_bytes(), &value)?;
    }
    w.end_bucket(b"lease")
}

fn write_auth(w: &mut BoltWriter<'_>, state: &State) -> io::Result<()> {
    let auth = &state.auth;
    w.begin_bucket();
    w.put(b"authEnabled", &[u8::from(auth.enabled)])?;
    w.put(b"authRevision", &auth.revision.to_be_bytes())?;
    w.end_bucket(b"auth")?;

    // The root role is implicit in Concord; etcd stores it like any other.
    let root_used = auth.users.values().any(|u| u.roles.contains(ROOT));
    let mut roles: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, role) in &auth.roles {
        let mut value = Vec::new();
        bytes_field(1, name.as_bytes(), &mut value);
        for permission in &role.permissions {
            let mut p = Vec::new();
            let kind = match permission.kind {
                PermissionKind::Read => 0,
                PermissionKind::Write => 1,
                PermissionKind::ReadWrite => 2,
            };
            int_field(1, kind, &mut p);
            bytes_field(2, &permission.range.start, &mut p);
            match &permission.range.end {
                RangeEnd::Single => {}
                RangeEnd::Unbounded => bytes_field(3, &[0], &mut p),
                RangeEnd::Exclusive(end) => bytes_field(3, end, &mut p),
            }
            message_field(2, &p, &mut value);
        }
        roles.push((name, value));
    }
    if root_used && !auth.roles.contains_key(ROOT) {
        let mut value = Vec::new();
        bytes_field(1, ROOT.as_bytes(), &mut value);
        roles.push((ROOT, value));
        roles.sort_by(|a, b| a.0.cmp(b.0));
    }
    w.begin_bucket();
    for (name, value) in &roles {
        w.put(name.as_bytes(), value)?;
    }
    w.end_bucket(b"authRoles")?;

    w.begin_bucket();
    for (name, user) in &auth.users {
        let mut value = Vec::new();
        bytes_field(1, name.as_bytes(), &mut value);
        if let Some(hash) = &user.password_hash {
            bytes_field(2, hash.as_bytes(), &mut value);
        }
        for role in &user.roles {
            bytes_field(3, role.as_bytes(), &mut value);
        }
        if user.password_hash.is_none() {
            let mut options = Vec::new();
            int_field(1, 1, &mut options); // no_password
            message_field(4, &options, &mut value);
        }
        w.put(name.as_bytes(), &value)?;
    }
    w.end_bucket(b"authUsers")
}

/// What `etcdctl snapshot status` reports of a bolt file, computed as it
/// does: a CRC-32C over every bucket's name and entries (buckets in name
/// order), the main revision of the last entry in `key`, and the number of
/// entries in all buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdStatus {
    /// The CRC-32C described above.
    pub hash: u32,
    /// The main revision of the last entry in `key`.
    pub revision: Revision,
    /// Entries in all buckets.
    pub total_keys: u64,
    /// The file's size in bytes.
    pub total_size: u64,
}

pub(super) fn status(db: &BoltFile) -> Result<EtcdStatus, String> {
    let mut hash = 0u32;
    let mut status = EtcdStatus { hash: 0, revision: 0, total_keys: 0, total_size: db.size() };
    for (name, root) in db.buckets()? {
        hash = crc32c::crc32c_append(hash, &name);
        let is_key = name == b"key";
        db.for_each_leaf(&root, &mut |_, key, value| {
            hash = crc32c::crc32c_append(hash, key);
            hash = crc32c::crc32c_append(hash, value);
            if is_key && let Some(main) = key.get(..8).and_then(|main| <[u8; 8]>::try_from(main).ok()) {
                status.revision = i64::from_be_bytes(main);
            }
            status.total_keys += 1;
            Ok(())
        })?;
    }
    status.hash = hash;
    Ok(status)
}

/// A protobuf bytes/string field (proto3: left out when empty).
fn bytes_field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    if !bytes.is_empty() {
        message_field(tag, bytes, out);
    }
}

/// A length-delimited field, written even when empty (a message).
fn message_field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A protobuf int64/enum/bool field (proto3: left out when zero).
fn int_field(tag: u32, value: i64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value as u64, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_sort_by_main_then_sub_and_mark_deletions() {
        let a = revision_key(2, 1, false);
        let b = revision_key(10, 0, true);
        assert_eq!(a.len(), 17);
        assert_eq!(b.len(), 18);
        assert_eq!(b[17], b't');
        assert!(revision_key(2, 0, false) < a && a < b);
    }

    #[test]
    fn fields_are_encoded_as_protobuf_and_zero_values_left_out() {
        let mut out = Vec::new();
        int_field(2, 0, &mut out);
        bytes_field(1, b"", &mut out);
        assert!(out.is_empty());
        int_field(2, 300, &mut out);
        bytes_field(5, b"v", &mut out);
        assert_eq!(out, [0x10, 0xac, 0x02, 0x2a, 0x01, b'v']);
    }
}
