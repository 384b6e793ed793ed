//! The replicated log's payload: every state change is one [`Command`], and
//! applying it yields one [`Applied`].
//!
//! Commands are validated before they are proposed (see `limits`), but apply
//! checks everything that depends on state (lease existence, key presence,
//! compaction point) itself, so a command that reaches the log and is
//! rejected changes nothing and returns an [`ApplyError`]. Commands carry all
//! the non-deterministic inputs they need (lease ids chosen by a client, TTLs
//! measured by the leader); apply reads nothing else.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{KeyRange, KeyValue, LeaseId, Revision};

/// One state change, as stored in the Raft log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRequest),
    Txn(TxnRequest),
    /// Drop history at or below `revision` (the version visible at `revision`
    /// stays readable).
    Compact {
        revision: Revision,
    },
    /// Grant a lease. `id: None` lets apply pick the next free id.
    LeaseGrant {
        id: Option<LeaseId>,
        ttl_secs: i64,
    },
    LeaseRevoke {
        id: LeaseId,
    },
    /// Reset a lease's remaining time to its TTL (optionally a new TTL).
    LeaseKeepAlive {
        id: LeaseId,
        ttl_secs: Option<i64>,
    },
    /// Proposed by the leader's expiry task. Each lease is revoked only if it
    /// has not been renewed since the leader saw it expire (same generation).
    /// `term` is the proposer's Raft term: an expiry committed in another
    /// term (a deposed leader's, carried over by its successor) is ignored,
    /// since only the leader of a term measures its leases.
    LeaseExpire {
        leases: Vec<(LeaseId, u64)>,
        term: u64,
    },
    /// Proposed by the leader's checkpoint task: the remaining time of leases
    /// as the leader measured it, so a restart neither resets nor shortens it.
    /// `term` is the proposer's Raft term: a checkpoint committed in another
    /// term (measured by a deposed leader) is ignored, so it cannot undo the
    /// extension a new leader gave every lease.
    LeaseCheckpoint {
        checkpoints: Vec<LeaseCheckpoint>,
        term: u64,
    },
    /// Sets the lease limits apply enforces (the replicated ones). Proposed
    /// once when a cluster is created, from the creating member's settings.
    SetLeaseLimits(crate::lease::LeaseLimits),
    /// A member's published name and client URLs (for MemberList).
    PublishMember {
        id: crate::cluster::MemberId,
        attributes: crate::cluster::MemberAttributes,
    },
    /// Several commands proposed together (group commit): each is applied in
    /// order exactly as it would be alone. Batches do not nest.
    Batch(Vec<Command>),
    /// A member added as a voter joins as a learner first; this records
    /// (replicated, so any later leader knows) that it is to be promoted
    /// once it has caught up.
    MarkPendingVoter {
        id: crate::cluster::MemberId,
    },
    /// Raises (`activate`) or disarms an alarm (`crate::alarm`).
    Alarm {
        activate: bool,
        alarm: crate::alarm::Alarm,
    },
    /// A change to users, roles or permissions (`crate::auth`).
    Auth(crate::auth::AuthCommand),
    /// A write whose permissions were checked against the auth state at
    /// `auth_revision` (by the member that received it): applied as
    /// `command` only if auth is disabled or unchanged since, else refused
    /// with `AuthError::OldRevision` — etcd's apply-time check, so a write
    /// racing a permission revoke cannot pass. Wraps a single command,
    /// never a batch or another check.
    AuthChecked {
        auth_revision: u64,
        command: Box<Command>,
    },
}

impl Command {
    /// The command wrapped in an [`Command::AuthChecked`] for `auth_revision`,
    /// if given.
    pub fn checked_at(self, auth_revision: Option<u64>) -> Command {
        match auth_revision {
            Some(auth_revision) => Command::AuthChecked { auth_revision, command: Box::new(self) },
            None => self,
        }
    }

    /// Whether applying it can make the store bigger: what a raised
    /// `NoSpace` alarm refuses (etcd's: puts, transactions with a put in any
    /// branch, lease grants). A batch is judged command by command.
    pub fn grows_store(&self) -> bool {
        match self {
            Command::Put(_) | Command::LeaseGrant { .. } => true,
            Command::Txn(txn) => txn_puts(txn),
            Command::AuthChecked { command, .. } => command.grows_store(),
            _ => false,
        }
    }

    /// Approximate bytes of keys and values carried, to bound batch sizes.
    pub fn payload_size(&self) -> usize {
        match self {
            Command::Put(p) => p.key.len() + p.value.as_ref().map_or(0, |v| v.len()),
            Command::Txn(t) => t.success.iter().chain(&t.failure).map(TxnOp::payload_size).sum::<usize>() + 64,
            Command::Batch(commands) => commands.iter().map(Command::payload_size).sum(),
            Command::AuthChecked { command, .. } => command.payload_size(),
            Command::LeaseExpire { leases, .. } => leases.len() * 16,
            Command::LeaseCheckpoint { checkpoints, .. } => checkpoints.len() * 24,
            _ => 64,
        }
    }
}

impl TxnOp {
    fn payload_size(&self) -> usize {
        match self {
            TxnOp::Put(p) => p.key.len() + p.value.as_ref().map_or(0, |v| v.len()),
            TxnOp::Txn(t) => t.success.iter().chain(&t.failure).map(TxnOp::payload_size).sum(),
            _ => 64,
        }
    }
}

/// The leader's measurement of one lease's remaining time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCheckpoint {
    pub id: LeaseId,
    /// The generation the measurement is about; a renewed lease ignores it.
    pub generation: u64,
    pub remaining_ms: u64,
}

/// Which lease a put attaches its key to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LeaseChoice {
    /// No lease: the key is detached from any lease it had.
    #[default]
    None,
    /// An existing lease.
    Lease(LeaseId),
    /// A fresh anonymous single-key lease with this TTL (`put(..).ttl(secs)`).
    Anonymous { ttl_secs: i64 },
    /// Keep whatever lease the key has (etcd's `ignore_lease`).
    Keep,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: Bytes,
    /// `None` keeps the current value (etcd's `ignore_value`).
    pub value: Option<Bytes>,
    pub lease: LeaseChoice,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub range: KeyRange,
    pub prev_kv: bool,
}

/// A read, inside a transaction or on its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RangeRequest {
    pub range: Option<KeyRange>,
    /// 0 = the latest revision.
    pub revision: Revision,
    /// 0 = no limit.
    pub limit: u64,
    pub keys_only: bool,
    pub count_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRequest),
    Txn(TxnRequest),
}

/// A condition on the keys of a range (every key in it must satisfy it).
/// An absent key has version, create and mod revision 0, no lease and no value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    pub range: KeyRange,
    pub target: CompareTarget,
    pub op: CompareOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(Bytes),
    Version(i64),
    CreateRevision(Revision),
    ModRevision(Revision),
    /// 0 = no lease.
    Lease(LeaseId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The store's revision after the entry was applied.
    pub revision: Revision,
    pub result: Result<Reply, ApplyError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Put(PutResponse),
    Delete(DeleteResponse),
    Txn(TxnResponse),
    Compacted,
    LeaseGranted {
        id: LeaseId,
        ttl_secs: i64,
    },
    LeaseRevoked {
        deleted_keys: u64,
    },
    LeaseKeptAlive {
        id: LeaseId,
        ttl_secs: i64,
    },
    LeasesExpired {
        expired: u64,
    },
    Checkpointed,
    LimitsSet,
    MemberPublished,
    /// One result per command of a [`Command::Batch`], in order.
    Batch(Vec<Applied>),
    /// A Raft-internal entry (blank or membership): nothing to reply.
    None,
    PendingVoterMarked,
    /// The alarm raised, or the one disarmed (`None`: it was not raised).
    Alarm(Option<crate::alarm::Alarm>),
    /// An auth change applied: the auth store's revision after it.
    Auth {
        revision: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The revision of this write.
    pub revision: Revision,
    pub prev_kv: Option<KeyValue>,
    /// The lease the key is attached to after the put.
    pub lease: Option<LeaseId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The store revision after the delete (unchanged when nothing was deleted).
    pub revision: Revision,
    pub deleted: u64,
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The store revision when the read was served.
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than `limit` allowed.
    pub more: bool,
    /// How many keys matched (ignoring `limit`).
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: Revision,
    pub responses: Vec<TxnOpResponse>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnOpResponse {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteResponse),
    Txn(TxnResponse),
}

/// A deterministic refusal by apply: the command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    #[error("lease {0} already exists")]
    LeaseExists(LeaseId),
    #[error("lease {0} is a key's own TTL lease; no other key can be attached to it")]
    AnonymousLease(LeaseId),
    #[error("key not found")]
    KeyNotFound,
    #[error("lease {lease} already has {max} keys attached")]
    TooManyKeysOnLease { lease: LeaseId, max: u64 },
    #[error("{max} leases are already active")]
    TooManyLeases { max: u64 },
    #[error("required revision has been compacted (compacted at {compact_revision})")]
    Compacted { compact_revision: Revision },
    #[error("required revision {revision} is a future revision (current is {current})")]
    FutureRevision { revision: Revision, current: Revision },
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("database space exceeded")]
    NoSpace,
    #[error(transparent)]
    Auth(crate::auth::AuthError),
}

/// Changes to leases that the non-deterministic side (the deadline tracker)
/// must learn about after apply. Produced by apply, consumed by the replication
/// layer; apply itself never reads a clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEffect {
    /// The lease now has `remaining_ms` left, measured from the moment of
    /// apply (grant, keep-alive or checkpoint).
    Deadline { id: LeaseId, generation: u64, remaining_ms: u64, checkpoint: bool },
    /// The lease is gone (revoked, expired, or an emptied anonymous lease).
    Removed { id: LeaseId },
}

/// Whether a transaction puts in any branch, nested ones included.
fn txn_puts(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| match op {
        TxnOp::Put(_) => true,
        TxnOp::Txn(inner) => txn_puts(inner),
        TxnOp::Range(_) | TxnOp::DeleteRange(_) => false,
    })
}
