//! The replicated log's payload: every state change is one [`Command`], and
//! applying it yields one [`Applied`].
//!
//! Commands are validated before they are proposed (see `limits`), but apply
//! checks everything that depends on state (lease existence, key presence,
//! compaction point) itself, so a command that reaches the log and is
//! rejected changes nothing and returns an [`ApplyError`]. Commands carry all
//! the non-deterministic inputs they need (lease ids chosen by a client, TTLs
//! measured by the leader); apply reads nothing else.

use serde::{Deserialize, Serialize};

pub use crate::lease::{LeaseCheckpoint, LeaseEffect};
pub use crate::request::{
    ApplyError, Compare, CompareOp, CompareTarget, DeleteRequest, DeleteResponse, LeaseChoice, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnOp, TxnOpResponse, TxnRequest, TxnResponse,
};
use crate::types::{LeaseId, Revision};

/// One state change, as stored in the Raft log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Put one key.
    Put(PutRequest),
    /// Delete a key or a range of keys.
    DeleteRange(DeleteRequest),
    /// A transaction, applied at one revision.
    Txn(TxnRequest),
    /// Drop history at or below `revision` (the version visible at `revision`
    /// stays readable).
    Compact {
        /// The compaction point.
        revision: Revision,
    },
    /// Grant a lease. `id: None` lets apply pick the next free id.
    LeaseGrant {
        /// The id the client asked for, if any.
        id: Option<LeaseId>,
        /// The TTL in seconds.
        ttl_secs: i64,
    },
    /// Revoke a lease, deleting its keys at one revision.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// Reset a lease's remaining time to its TTL (optionally a new TTL).
    LeaseKeepAlive {
        /// The lease.
        id: LeaseId,
        /// A new TTL in seconds, if it changes.
        ttl_secs: Option<i64>,
    },
    /// Proposed by the leader's expiry task. Each lease is revoked only if it
    /// has not been renewed since the leader saw it expire (same generation).
    /// `term` is the proposer's Raft term: an expiry committed in another
    /// term (a deposed leader's, carried over by its successor) is ignored,
    /// since only the leader of a term measures its leases.
    LeaseExpire {
        /// Each lease with the generation the leader saw expire.
        leases: Vec<(LeaseId, u64)>,
        /// The proposer's Raft term.
        term: u64,
    },
    /// Proposed by the leader's checkpoint task: the remaining time of leases
    /// as the leader measured it, so a restart neither resets nor shortens it.
    /// `term` is the proposer's Raft term: a checkpoint committed in another
    /// term (measured by a deposed leader) is ignored, so it cannot undo the
    /// extension a new leader gave every lease.
    LeaseCheckpoint {
        /// The measurements, one per lease.
        checkpoints: Vec<LeaseCheckpoint>,
        /// The proposer's Raft term.
        term: u64,
    },
    /// Sets the lease limits apply enforces (the replicated ones). Proposed
    /// once when a cluster is created, from the creating member's settings.
    SetLeaseLimits(crate::lease::LeaseLimits),
    /// A member's published name and client URLs (for MemberList).
    PublishMember {
        /// The member.
        id: crate::cluster::MemberId,
        /// Its name and client URLs.
        attributes: crate::cluster::MemberAttributes,
    },
    /// Several commands proposed together (group commit): each is applied in
    /// order exactly as it would be alone. Batches do not nest.
    Batch(Vec<Command>),
    /// A member added as a voter joins as a learner first; this records
    /// (replicated, so any later leader knows) that it is to be promoted
    /// once it has caught up.
    MarkPendingVoter {
        /// The learner to promote.
        id: crate::cluster::MemberId,
    },
    /// Raises (`activate`) or disarms an alarm (`crate::alarm`).
    Alarm {
        /// Raise (true) or disarm (false).
        activate: bool,
        /// Which alarm, on which member.
        alarm: crate::alarm::Alarm,
    },
    /// A change to users, roles or permissions (`crate::auth`).
    Auth(crate::auth::AuthCommand),
    /// Written by versions before [`Command::Authorized`] (kept so their
    /// logs still apply): a write whose permissions were checked against
    /// the auth state at `auth_revision` by the member that received it;
    /// applied as `command` only if auth is disabled or unchanged since,
    /// else refused with `AuthError::OldRevision`. Never proposed now.
    AuthChecked {
        /// The auth store's revision the permissions were checked at.
        auth_revision: u64,
        /// The write itself.
        command: Box<Command>,
    },
    /// A client's write, with who sent it: apply checks `caller`'s
    /// permissions for `command` against the auth state at this point of
    /// the log (`state_machine::authorize`) and applies it only if they
    /// allow it — etcd's apply-time check, so a write cannot race a
    /// permission revoke, `auth enable` or a lease gaining keys. Every
    /// write a network front end proposes is wrapped, also while auth is
    /// disabled. Wraps a single command, never a batch or another wrapper.
    Authorized {
        /// Who sent it, and the auth revision its credentials were checked at.
        caller: crate::auth::Caller,
        /// The write itself.
        command: Box<Command>,
    },
}

impl Command {
    /// The command wrapped in a [`Command::Authorized`] for `caller`, if
    /// given (`None`: the embedding application's own write, unchecked).
    pub fn as_caller(self, caller: Option<crate::auth::Caller>) -> Command {
        match caller {
            Some(caller) => Command::Authorized { caller, command: Box::new(self) },
            None => self,
        }
    }

    /// The command itself, without an authorization wrapper.
    pub fn unwrapped(&self) -> &Command {
        match self {
            Command::AuthChecked { command, .. } | Command::Authorized { command, .. } => command,
            command => command,
        }
    }

    /// Whether applying it can make the store bigger: what a raised
    /// `NoSpace` alarm refuses (etcd's: puts, transactions with a put in any
    /// branch, lease grants). A batch is judged command by command.
    pub fn grows_store(&self) -> bool {
        match self {
            Command::Put(_) | Command::LeaseGrant { .. } => true,
            Command::Txn(txn) => txn_puts(txn),
            Command::AuthChecked { command, .. } | Command::Authorized { command, .. } => command.grows_store(),
            _ => false,
        }
    }

    /// Approximate bytes of keys and values carried, to bound batch sizes.
    pub fn payload_size(&self) -> usize {
        match self {
            Command::Put(p) => p.key.len() + p.value.as_ref().map_or(0, |v| v.len()),
            Command::Txn(t) => t.success.iter().chain(&t.failure).map(TxnOp::payload_size).sum::<usize>() + 64,
            Command::Batch(commands) => commands.iter().map(Command::payload_size).sum(),
            Command::AuthChecked { command, .. } | Command::Authorized { command, .. } => command.payload_size(),
            Command::LeaseExpire { leases, .. } => leases.len() * 16,
            Command::LeaseCheckpoint { checkpoints, .. } => checkpoints.len() * 24,
            _ => 64,
        }
    }
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The store's revision after the entry was applied.
    pub revision: Revision,
    /// What the command answered, or why it changed nothing.
    pub result: Result<Reply, ApplyError>,
}

/// An applied command and the log index of the entry it was written in
/// (the same on every member): a member that handed the write to the
/// leader answers its client once it has applied that far itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Written {
    /// What applying it gave.
    pub applied: Applied,
    /// Its entry's log index.
    pub index: u64,
}

/// What an applied command answers, one variant per kind of command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// A put's.
    Put(PutResponse),
    /// A delete's.
    Delete(DeleteResponse),
    /// A transaction's.
    Txn(TxnResponse),
    /// A compaction done.
    Compacted,
    /// A lease granted.
    LeaseGranted {
        /// Its id.
        id: LeaseId,
        /// Its TTL in seconds.
        ttl_secs: i64,
    },
    /// A lease revoked.
    LeaseRevoked {
        /// How many keys went with it.
        deleted_keys: u64,
    },
    /// A lease renewed.
    LeaseKeptAlive {
        /// Its id.
        id: LeaseId,
        /// The TTL it was reset to, in seconds.
        ttl_secs: i64,
    },
    /// Leases expired.
    LeasesExpired {
        /// How many (those renewed meanwhile are not).
        expired: u64,
    },
    /// Lease checkpoints recorded.
    Checkpointed,
    /// Lease limits set.
    LimitsSet,
    /// A member's attributes recorded.
    MemberPublished,
    /// One result per command of a [`Command::Batch`], in order.
    Batch(Vec<Applied>),
    /// A Raft-internal entry (blank or membership): nothing to reply.
    None,
    /// A learner marked for promotion.
    PendingVoterMarked,
    /// The alarm raised, or the one disarmed (`None`: it was not raised).
    Alarm(Option<crate::alarm::Alarm>),
    /// An auth change applied: the auth store's revision after it.
    Auth {
        /// The auth store's revision.
        revision: u64,
    },
}

/// Whether a transaction puts in any branch, nested ones included.
fn txn_puts(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| match op {
        TxnOp::Put(_) => true,
        TxnOp::Txn(inner) => txn_puts(inner),
        TxnOp::Range(_) | TxnOp::DeleteRange(_) => false,
    })
}
