//! The one error type of the embedded API.
//!
//! Every variant is something a caller can act on: input that was refused
//! before anything was written, a refusal by the state machine (which also
//! wrote nothing), or a failure to reach a decision in time. Front ends map
//! these to their own wire errors in one place.

use std::time::Duration;

use crate::request::ApplyError;
use crate::types::{LeaseId, Revision};

/// A result of the embedded API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call of the embedded API did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Error {
    // ---- refused input: nothing was written ----
    /// An empty key.
    #[error("key must not be empty")]
    EmptyKey,
    /// A key over the size limit.
    #[error("key is {size} bytes; the limit is {max}")]
    KeyTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A value over the size limit.
    #[error("value is {size} bytes; the limit is {max}")]
    ValueTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A lease TTL outside the allowed range.
    #[error("TTL {ttl}s is out of range: it must be between {min}s and {max}s")]
    InvalidTtl {
        /// The TTL asked for, in seconds.
        ttl: i64,
        /// The least allowed.
        min: i64,
        /// The limit.
        max: i64,
    },
    /// A lease id that is not positive.
    #[error("lease id {0} is invalid: lease ids are positive")]
    InvalidLeaseId(LeaseId),
    /// A transaction with more operations than allowed.
    #[error("transaction has {ops} operations; the limit is {max}")]
    TooManyTxnOps {
        /// How many operations it has.
        ops: usize,
        /// The limit.
        max: usize,
    },
    /// Transactions nested deeper than allowed.
    #[error("transactions are nested more than {max} deep")]
    TxnTooDeep {
        /// The limit.
        max: usize,
    },
    /// A request over the size limit.
    #[error("request is {size} bytes; the limit is {max}")]
    RequestTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A request that is malformed in another way (the text says how).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    // ---- refused by the state machine: nothing was written ----
    /// The lease does not exist (never granted, expired or revoked).
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// A grant asked for an id that is in use.
    #[error("lease {0} already exists")]
    LeaseExists(LeaseId),
    /// Only the key that created an anonymous (`put(..).ttl(..)`) lease can
    /// be attached to it.
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
    /// A read or watch below the compaction point.
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
    #[error("a transaction writes the same key twice")]
    DuplicateKey,

    // ---- membership changes refused: nothing was changed ----
    /// No member has this id.
    #[error("member {0:x} not found")]
    MemberNotFound(u64),
    /// Another member has this peer URL.
    #[error("peer URL {0} is already a member's")]
    PeerUrlExists(String),
    /// Member URLs that do not parse.
    #[error("member URLs are invalid: {0}")]
    BadMemberUrls(String),
    /// etcd's strict reconfiguration check: the change would leave fewer
    /// started voters than a quorum.
    #[error("the change would leave too few started members for a quorum")]
    NotEnoughStartedMembers,
    /// A promote of a member that is already a voter.
    #[error("member {0:x} is not a learner")]
    MemberNotLearner(u64),
    /// A learner is promoted only once it holds 90% of the leader's log.
    #[error("learner {id:x} has {matched} of the leader's {leader} log entries; it must catch up first")]
    LearnerNotReady {
        /// The learner.
        id: u64,
        /// Log entries it holds.
        matched: u64,
        /// Log entries the leader holds.
        leader: u64,
    },
    /// One learner at a time (etcd's default).
    #[error("a learner is already waiting to be promoted")]
    TooManyLearners,
    /// Membership changes go one at a time; retry once the previous one is
    /// committed.
    #[error("another membership change is in progress; retry shortly")]
    MembershipChangeInProgress,
    /// A leader transfer's target is not a voting member of the cluster.
    #[error("member {0:x} cannot take leadership: it is not a voting member")]
    BadLeaderTransferee(u64),
    /// The target of a leader transfer did not take leadership in time;
    /// the old leader may still lead, or another member may.
    #[error("leadership did not move to member {0:x} in time")]
    LeaderTransferTimeout(u64),
    /// This member was removed from its cluster: it serves nothing more.
    #[error("this member has been removed from the cluster")]
    Removed,
    /// The store reached its space quota and a `NoSpace` alarm is raised
    /// (`crate::alarm`): only deletes, compaction and revokes are taken
    /// until it is disarmed.
    #[error("database space exceeded")]
    NoSpace,
    /// An auth change or check was refused (`crate::auth`).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),

    // ---- refused for load: nothing was written ----
    /// Too many writes are waiting to be proposed; try again shortly
    /// (etcd: "too many requests").
    #[error("too many requests are waiting to be committed ({pending}); try again later")]
    TooManyRequests {
        /// How many are waiting.
        pending: usize,
    },

    // ---- no decision ----
    /// The request did not complete in time. A write whose deadline passed
    /// before it was proposed was dropped and changed nothing; one that was
    /// already proposed has an unknown outcome: it may still be applied
    /// (etcd's "request timed out" means the same).
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// This member is not the leader and cannot serve the request.
    #[error("this member is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if this member knows one.
        leader: Option<u64>,
    },
    /// The leader changed while the request was in its hands: it may or may
    /// not have been applied (etcd's "leader changed"; clients retry reads).
    #[error("the leader changed while the request was in flight")]
    LeaderChanged,
    /// The cluster cannot serve requests yet (no leader elected).
    #[error("not ready: {0}")]
    NotReady(String),
    /// The data directory could not be opened, read or written. A member
    /// whose writes fail stops serving.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The member has been shut down.
    #[error("concord has been shut down")]
    Shutdown,
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::LeaseNotFound(id) => Error::LeaseNotFound(id),
            ApplyError::LeaseExists(id) => Error::LeaseExists(id),
            ApplyError::AnonymousLease(id) => Error::AnonymousLease(id),
            ApplyError::KeyNotFound => Error::KeyNotFound,
            ApplyError::TooManyKeysOnLease { lease, max } => Error::TooManyKeysOnLease { lease, max },
            ApplyError::TooManyLeases { max } => Error::TooManyLeases { max },
            ApplyError::Compacted { compact_revision } => Error::Compacted { compact_revision },
            ApplyError::FutureRevision { revision, current } => Error::FutureRevision { revision, current },
            ApplyError::DuplicateKey => Error::DuplicateKey,
            ApplyError::Invalid(msg) => Error::InvalidRequest(msg),
            ApplyError::NoSpace => Error::NoSpace,
            ApplyError::Auth(e) => Error::Auth(e),
        }
    }
}
