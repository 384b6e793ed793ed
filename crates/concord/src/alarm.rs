//! Alarms (etcd's): a member raises `NoSpace` when a write would take the
//! store past its space quota; while any member's `NoSpace` is raised, apply
//! refuses what would grow the store (puts, transactions that put, lease
//! grants) and takes what shrinks it (deletes, compaction, revokes), until
//! the alarm is disarmed.
//!
//! Alarms are replicated state (raised and disarmed through the log), so
//! every member refuses the same writes at the same point of the log.
//!
//! The quota counts the in-memory state, which is what Concord stores: per
//! key its bytes plus [`crate::mvcc`]'s `KEY_OVERHEAD`, per stored version
//! (history since the last compaction included) its value plus
//! `VERSION_OVERHEAD`, per lease [`LEASE_OVERHEAD`]. The Raft log is not
//! counted: it is bounded by the snapshot policy (64 MiB by default) and
//! purged by snapshots, not by anything a user can do; leave headroom for
//! it. A write's cost is its keys and values plus the same overheads.

use serde::{Deserialize, Serialize};

use crate::cluster::MemberId;

/// etcd's default `--quota-backend-bytes`: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// What one lease counts for in the space quota.
pub const LEASE_OVERHEAD: u64 = 64;

/// What a new key's first version counts for besides its bytes.
pub(crate) const KEY_AND_VERSION_OVERHEAD: u64 = crate::mvcc::KEY_OVERHEAD + crate::mvcc::VERSION_OVERHEAD;

/// Which alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmKind {
    /// The store reached its space quota.
    NoSpace,
    /// The member's data was found corrupt.
    Corrupt,
}

impl AlarmKind {
    /// etcd's name (`etcdctl alarm list` prints it).
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::NoSpace => "NOSPACE",
            AlarmKind::Corrupt => "CORRUPT",
        }
    }
}

/// An alarm raised by (or for) one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Alarm {
    /// The member it concerns.
    pub member: MemberId,
    /// What it is about.
    pub kind: AlarmKind,
}
