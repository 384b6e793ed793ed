//! What a client asks of the store and what apply answers: the requests
//! (put, delete, range, transaction and its comparisons), their responses,
//! and [`ApplyError`], apply's deterministic refusals.
//!
//! The bottom layer of the engine, above `types` and `auth`'s errors only:
//! `mvcc` and `lease` carry these out, and `command` wraps them into what
//! the log stores. Nothing here depends on a module above it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{KeyRange, KeyValue, LeaseId, Revision};

/// Which lease a put attaches its key to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LeaseChoice {
    /// No lease: the key is detached from any lease it had.
    #[default]
    None,
    /// An existing lease.
    Lease(LeaseId),
    /// A fresh anonymous single-key lease with this TTL (`put(..).ttl(secs)`).
    Anonymous {
        /// The TTL in seconds.
        ttl_secs: i64,
    },
    /// Keep whatever lease the key has (etcd's `ignore_lease`).
    Keep,
}

/// A put, inside a transaction or on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The key.
    pub key: Bytes,
    /// `None` keeps the current value (etcd's `ignore_value`).
    pub value: Option<Bytes>,
    /// Which lease the key is attached to.
    pub lease: LeaseChoice,
    /// Return the key-value as it was before.
    pub prev_kv: bool,
}

/// A delete of a key or a range, inside a transaction or on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// The keys.
    pub range: KeyRange,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// A read, inside a transaction or on its own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RangeRequest {
    /// The keys (`None`: none at all, an empty result).
    pub range: Option<KeyRange>,
    /// 0 = the latest revision.
    pub revision: Revision,
    /// 0 = no limit.
    pub limit: u64,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only how many keys match.
    pub count_only: bool,
}

/// A transaction: if every comparison holds, the success operations run,
/// else the failure ones — all at one revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnRequest {
    /// The conditions, all of which must hold.
    pub compare: Vec<Compare>,
    /// What runs when they hold.
    pub success: Vec<TxnOp>,
    /// What runs when one does not.
    pub failure: Vec<TxnOp>,
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A read.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// A condition on the keys of a range (every key in it must satisfy it).
/// An absent key has version, create and mod revision 0, no lease and no value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    /// The keys compared.
    pub range: KeyRange,
    /// What of each key is compared, and with what.
    pub target: CompareTarget,
    /// How.
    pub op: CompareOp,
}

/// What a [`Compare`] looks at, with the value it is compared to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value.
    Value(Bytes),
    /// The version (puts since the key was created; 0 = absent).
    Version(i64),
    /// The revision that created the key.
    CreateRevision(Revision),
    /// The revision that last changed the key.
    ModRevision(Revision),
    /// 0 = no lease.
    Lease(LeaseId),
}

/// A comparison: the key's side first (`version > 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

impl TxnOp {
    pub(crate) fn payload_size(&self) -> usize {
        match self {
            TxnOp::Put(p) => p.key.len() + p.value.as_ref().map_or(0, |v| v.len()),
            TxnOp::Txn(t) => t.success.iter().chain(&t.failure).map(TxnOp::payload_size).sum(),
            _ => 64,
        }
    }
}

/// What a put answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The revision of this write.
    pub revision: Revision,
    /// The key-value before the put, if asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
    /// The lease the key is attached to after the put.
    pub lease: Option<LeaseId>,
}

/// What a delete answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The store revision after the delete (unchanged when nothing was deleted).
    pub revision: Revision,
    /// How many keys were deleted.
    pub deleted: u64,
    /// The deleted key-values, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a read answers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The store revision when the read was served.
    pub revision: Revision,
    /// The key-values, in key order (up to `limit`).
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than `limit` allowed.
    pub more: bool,
    /// How many keys matched (ignoring `limit`).
    pub count: u64,
}

/// What a transaction answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether every comparison held (the success branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: Revision,
    /// One response per operation of the branch that ran, in order.
    pub responses: Vec<TxnOpResponse>,
}

/// What one operation of a transaction answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnOpResponse {
    /// A read's.
    Range(RangeResponse),
    /// A put's.
    Put(PutResponse),
    /// A delete's.
    DeleteRange(DeleteResponse),
    /// A nested transaction's.
    Txn(TxnResponse),
}

/// A deterministic refusal by apply: the command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    /// The lease does not exist.
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// A grant asked for an id in use.
    #[error("lease {0} already exists")]
    LeaseExists(LeaseId),
    /// A key's own TTL lease takes no other key.
    #[error("lease {0} is a key's own TTL lease; no other key can be attached to it")]
    AnonymousLease(LeaseId),
    /// A put keeping the value or lease of a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    /// The lease has as many keys as the limit allows.
    #[error("lease {lease} already has {max} keys attached")]
    TooManyKeysOnLease {
        /// The lease.
        lease: LeaseId,
        /// The limit.
        max: u64,
    },
    /// As many leases are active as the limit allows.
    #[error("{max} leases are already active")]
    TooManyLeases {
        /// The limit.
        max: u64,
    },
    /// A read below the compaction point.
    #[error("required revision has been compacted (compacted at {compact_revision})")]
    Compacted {
        /// The compaction point.
        compact_revision: Revision,
    },
    /// A read above the current revision.
    #[error("required revision {revision} is a future revision (current is {current})")]
    FutureRevision {
        /// The revision asked for.
        revision: Revision,
        /// The current revision.
        current: Revision,
    },
    /// A transaction branch writes one key twice.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A request apply cannot carry out as given.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The space quota is exceeded (the NOSPACE alarm is raised).
    #[error("database space exceeded")]
    NoSpace,
    /// Refused by authorization.
    #[error(transparent)]
    Auth(crate::auth::AuthError),
}
