//! An etcd v3 snapshot read as Concord's state: the way from etcd to
//! Concord (`concord snapshot restore etcd.db`).
//!
//! What is read, from the buckets `etcd` describes: every version in `key`
//! in revision order (main, then sub: a transaction's own order), the
//! compaction point from `meta`, leases with their remaining TTL (the full
//! TTL where etcd recorded none — never shorter than etcd would have kept
//! them), users, roles and whether auth is on. Members and alarms belong to
//! the old cluster and are not read. What etcd's data cannot say is left at
//! Concord's defaults: lease limits, generations.
//!
//! Bad data is refused with what is wrong, never half taken: a version out
//! of order, a key attached to a lease the snapshot does not have, a
//! message that does not decode.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use super::BackupHeader;
use super::bolt::BoltFile;
use crate::auth::{AuthStore, Permission, PermissionKind, Role, User, range_order};
use crate::lease::Lessor;
use crate::mvcc::{KvStore, LiveVersion};
use crate::state_machine::State;
use crate::types::{KeyRange, Revision};

/// etcd's `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, Message)]
struct KeyValue {
    #[prost(bytes = "bytes", tag = "1")]
    key: Bytes,
    #[prost(int64, tag = "2")]
    create_revision: i64,
    #[prost(int64, tag = "3")]
    mod_revision: i64,
    #[prost(int64, tag = "4")]
    version: i64,
    #[prost(bytes = "bytes", tag = "5")]
    value: Bytes,
    #[prost(int64, tag = "6")]
    lease: i64,
}

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
struct Lease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// etcd's `authpb.User`.
#[derive(Clone, PartialEq, Message)]
struct EtcdUser {
    #[prost(bytes = "vec", tag = "1")]
    name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    password: Vec<u8>,
    #[prost(string, repeated, tag = "3")]
    roles: Vec<String>,
    #[prost(message, optional, tag = "4")]
    options: Option<UserOptions>,
}

#[derive(Clone, PartialEq, Message)]
struct UserOptions {
    #[prost(bool, tag = "1")]
    no_password: bool,
}

/// etcd's `authpb.Role`.
#[derive(Clone, PartialEq, Message)]
struct EtcdRole {
    #[prost(bytes = "vec", tag = "1")]
    name: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    key_permission: Vec<EtcdPermission>,
}

#[derive(Clone, PartialEq, Message)]
struct EtcdPermission {
    #[prost(int32, tag = "1")]
    perm_type: i32,
    #[prost(bytes = "bytes", tag = "2")]
    key: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    range_end: Bytes,
}

/// A bucket's entries: keys and values, in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every entry of the top-level bucket `name` (none if it is missing).
fn entries(db: &BoltFile, name: &[u8]) -> Result<Entries, String> {
    let Some(root) = db.bucket(name)? else { return Ok(Vec::new()) };
    let mut entries = Vec::new();
    db.for_each_leaf(&root, &mut |_, key, value| {
        entries.push((key.to_vec(), value.to_vec()));
        Ok(())
    })?;
    Ok(entries)
}

/// The first 8 bytes of `bytes`, if it has them.
fn first_8(bytes: &[u8]) -> Option<[u8; 8]> {
    bytes.get(..8)?.try_into().ok()
}

/// An 8-byte big-endian counter (`consistent_index`, `authRevision`); 0
/// if it is anything else, as etcd reads it.
fn counter(bytes: Option<&Vec<u8>>) -> u64 {
    bytes.filter(|b| b.len() == 8).and_then(|b| first_8(b)).map_or(0, u64::from_be_bytes)
}

fn main_revision(bytes: &[u8]) -> Result<Revision, String> {
    first_8(bytes).map(i64::from_be_bytes).ok_or_else(|| "a revision key is shorter than 8 bytes".into())
}

/// The keys of a bolt file's `key` bucket, with the compaction point from
/// `meta`: the store they make.
pub(super) fn read_kv(db: &BoltFile) -> Result<KvStore, String> {
    let meta: BTreeMap<Vec<u8>, Vec<u8>> = entries(db, b"meta")?.into_iter().collect();
    let compact_revision = match meta.get(b"finishedCompactRev".as_slice()) {
        Some(bytes) => main_revision(bytes)?,
        None => 0,
    };
    let mut versions = Vec::new();
    for (key, value) in entries(db, b"key")? {
        let revision = main_revision(&key)?;
        let tombstone = key.len() == 18 && key[17] == b't';
        let kv = KeyValue::decode(value.as_slice()).map_err(|e| format!("key bucket, revision {revision}: {e}"))?;
        let live = (!tombstone).then(|| LiveVersion {
            value: kv.value,
            create_revision: kv.create_revision,
            version: kv.version,
            lease: kv.lease,
        });
        versions.push((revision, kv.key, live));
    }
    KvStore::from_versions(versions, compact_revision)
}

/// The state an etcd snapshot holds, and a header describing it.
pub(super) fn read(db: &BoltFile) -> Result<(BackupHeader, State), String> {
    let meta: BTreeMap<Vec<u8>, Vec<u8>> = entries(db, b"meta")?.into_iter().collect();
    let raft_index = counter(meta.get(b"consistent_index".as_slice()));
    let kv = read_kv(db)?;

    let mut leases = Lessor::default();
    for (_, value) in entries(db, b"lease")? {
        let lease = Lease::decode(value.as_slice()).map_err(|e| format!("lease bucket: {e}"))?;
        let record = leases
            .grant(Some(lease.id), lease.ttl.max(1), kv.revision(), false)
            .map_err(|e| format!("lease {:x}: {e}", lease.id))?;
        let generation = record.generation;
        if lease.remaining_ttl > 0 {
            // Any i64 the file holds: saturating, as `lease::ttl_ms`.
            leases.checkpoint(lease.id, generation, (lease.remaining_ttl as u64).saturating_mul(1000));
        }
    }
    for key in kv.live_in(&KeyRange::all()) {
        let Some(lease) = key.lease else { continue };
        if !leases.contains(lease) {
            return Err(format!("key {:?} is attached to lease {lease:x}, which the snapshot does not have", key.key));
        }
        leases.attach(lease, &key.key);
    }

    let state = State { kv, leases, auth: read_auth(db)?, ..State::default() };
    let header = BackupHeader {
        revision: state.kv.revision(),
        compact_revision: state.kv.compact_revision(),
        keys: state.kv.live_keys(),
        leases: state.leases.len() as u64,
        raft_index,
        cluster_id: 0,
        taken_at_ms: 0,
    };
    Ok((header, state))
}

fn read_auth(db: &BoltFile) -> Result<AuthStore, String> {
    let flags: BTreeMap<Vec<u8>, Vec<u8>> = entries(db, b"auth")?.into_iter().collect();
    let mut auth = AuthStore {
        enabled: flags.get(b"authEnabled".as_slice()).is_some_and(|v| v.first() == Some(&1)),
        revision: counter(flags.get(b"authRevision".as_slice())),
        ..AuthStore::default()
    };
    for (_, value) in entries(db, b"authRoles")? {
        let role = EtcdRole::decode(value.as_slice()).map_err(|e| format!("authRoles bucket: {e}"))?;
        let mut permissions: Vec<Permission> = Vec::new();
        for p in role.key_permission {
            let kind = match p.perm_type {
                0 => PermissionKind::Read,
                1 => PermissionKind::Write,
                2 => PermissionKind::ReadWrite,
                other => return Err(format!("role permission type {other} is not etcd's")),
            };
            // Kept as granting does: sorted by range, one per range.
            let permission = Permission { kind, range: KeyRange::from_etcd(p.key, p.range_end) };
            match permissions.binary_search_by(|existing| range_order(&existing.range, &permission.range)) {
                Ok(at) => permissions[at] = permission,
                Err(at) => permissions.insert(at, permission),
            }
        }
        auth.roles.insert(String::from_utf8_lossy(&role.name).into_owned(), Role { permissions });
    }
    for (_, value) in entries(db, b"authUsers")? {
        let user = EtcdUser::decode(value.as_slice()).map_err(|e| format!("authUsers bucket: {e}"))?;
        let no_password = user.options.is_some_and(|o| o.no_password) || user.password.is_empty();
        let password_hash = (!no_password).then(|| String::from_utf8_lossy(&user.password).into_owned());
        auth.users.insert(
            String::from_utf8_lossy(&user.name).into_owned(),
            User { password_hash, roles: user.roles.into_iter().collect() },
        );
    }
    Ok(auth)
}
