//! The one place where Concord errors become gRPC statuses.
//!
//! etcd clients recognise errors by code *and* message text (etcd's
//! `api/v3rpc/rpctypes`), so the texts below are part of the wire contract
//! and are etcd's, word for word.

use concord::Error;
use concord::limits::MAX_TTL_SECS;
use tonic::{Code, Status};

/// etcd's text for a request without a key.
pub const EMPTY_KEY: &str = "etcdserver: key is not provided";
/// etcd's text for a put with `ignore_value` or `ignore_lease` on a key that does not exist.
pub const KEY_NOT_FOUND: &str = "etcdserver: key not found";
/// etcd's text for a put with `ignore_value` that also gives a value.
pub const VALUE_PROVIDED: &str = "etcdserver: value is provided";
/// etcd's text for a put with `ignore_lease` that also gives a lease.
pub const LEASE_PROVIDED: &str = "etcdserver: lease is provided";
/// etcd's text for a transaction with more operations than `--max-txn-ops`.
pub const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
/// etcd's text for a transaction that writes the same key twice.
pub const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
/// etcd's text for a read or watch at a revision that compaction has removed.
pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// etcd's text for a read at a revision the store has not reached.
pub const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
/// etcd's text for a lease that does not exist (never granted, expired or revoked).
pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
/// etcd's text for a grant with an id that is already in use.
pub const LEASE_EXISTS: &str = "etcdserver: lease already exists";
/// etcd's text for a grant with a TTL above the largest allowed.
pub const LEASE_TTL_TOO_LARGE: &str = "etcdserver: too large lease TTL";
/// etcd's text for a request over `--max-request-bytes`.
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
/// etcd's text for too many writes waiting to be committed (retry later).
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";
/// etcd's text for a request that did not finish in time (no quorum, a slow disk).
pub const TIMEOUT: &str = "etcdserver: request timed out";
/// etcd's text for a request only the leader may serve (MoveLeader) reached another member.
pub const NOT_LEADER: &str = "etcdserver: not leader";
/// etcd's text when the cluster has no leader this member knows of.
pub const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's text when the leader changed while the request waited; it may or may not have been applied.
pub const LEADER_CHANGED: &str = "etcdserver: leader changed";
/// etcd's text when the member is shutting down.
pub const STOPPED: &str = "etcdserver: server stopped";
/// etcd's text for a member id that is not in the cluster.
pub const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
/// etcd's text for a member add or update with peer URLs another member has.
pub const PEER_URL_EXIST: &str = "etcdserver: Peer URLs already exists";
/// etcd's text: Peer URLs that do not parse.
pub const MEMBER_BAD_URLS: &str = "etcdserver: given member URLs are invalid";
/// etcd's text for a membership change that would leave too few started members for a quorum.
pub const MEMBER_NOT_ENOUGH_STARTED: &str = "etcdserver: re-configuration failed due to not enough started members";
/// etcd's text for a promote of a member that is already a voter.
pub const MEMBER_NOT_LEARNER: &str = "etcdserver: can only promote a learner member";
/// etcd's text for a promote of a learner that has not caught up with the leader.
pub const LEARNER_NOT_READY: &str = "etcdserver: can only promote a learner member which is in sync with leader";
/// etcd's text for a learner add beyond the one learner a cluster may have.
pub const TOO_MANY_LEARNERS: &str = "etcdserver: too many learner members in cluster";
/// etcd's text for a leader transfer to a member that is not a voter of this cluster.
pub const BAD_LEADER_TRANSFEREE: &str = "etcdserver: bad leader transferee";
/// etcd's text for a leader transfer that did not finish in time.
pub const LEADER_TRANSFER_TIMEOUT: &str = "etcdserver: request timed out, leader transfer took too long";
/// etcd has no error for this (its raft drops a second change silently and
/// the request times out); ours is retryable, as "no leader" is.
pub const MEMBERSHIP_CHANGE_IN_PROGRESS: &str = "etcdserver: another membership change is in progress; retry shortly";
/// etcd's ErrStopped as a removed member answers it.
pub const REMOVED: &str = "etcdserver: server stopped";
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

/// Maps an engine error to etcd's status for it.
pub fn to_status(error: Error) -> Status {
    let (code, message): (Code, String) = match &error {
        Error::EmptyKey => (Code::InvalidArgument, EMPTY_KEY.into()),
        Error::KeyTooLarge { .. } | Error::ValueTooLarge { .. } | Error::RequestTooLarge { .. } => {
            (Code::InvalidArgument, REQUEST_TOO_LARGE.into())
        }
        Error::InvalidTtl { ttl, .. } if *ttl > MAX_TTL_SECS => (Code::OutOfRange, LEASE_TTL_TOO_LARGE.into()),
        Error::InvalidTtl { .. } => (Code::InvalidArgument, format!("etcdserver: {error}")),
        // A lease id that cannot exist is a lease that does not exist.
        Error::InvalidLeaseId(_) | Error::LeaseNotFound(_) => (Code::NotFound, LEASE_NOT_FOUND.into()),
        Error::LeaseExists(_) => (Code::FailedPrecondition, LEASE_EXISTS.into()),
        Error::AnonymousLease(_) => (Code::FailedPrecondition, format!("etcdserver: {error}")),
        Error::TooManyTxnOps { .. } | Error::TxnTooDeep { .. } => (Code::InvalidArgument, TOO_MANY_OPS.into()),
        Error::TooManyRequests { .. } => (Code::ResourceExhausted, TOO_MANY_REQUESTS.into()),
        Error::DuplicateKey => (Code::InvalidArgument, DUPLICATE_KEY.into()),
        Error::KeyNotFound => (Code::InvalidArgument, KEY_NOT_FOUND.into()),
        Error::Compacted { .. } => (Code::OutOfRange, COMPACTED.into()),
        Error::FutureRevision { .. } => (Code::OutOfRange, FUTURE_REV.into()),
        // Limits etcd does not have: a specific text with etcd's prefix.
        Error::TooManyKeysOnLease { .. } | Error::TooManyLeases { .. } => {
            (Code::ResourceExhausted, format!("etcdserver: {error}"))
        }
        Error::InvalidRequest(_) => (Code::InvalidArgument, format!("etcdserver: {error}")),
        Error::Timeout(_) => (Code::Unavailable, TIMEOUT.into()),
        Error::NotLeader { .. } => (Code::FailedPrecondition, NOT_LEADER.into()),
        Error::NotReady(_) => (Code::Unavailable, NO_LEADER.into()),
        Error::LeaderChanged => (Code::Unavailable, LEADER_CHANGED.into()),
        Error::Shutdown => (Code::Unavailable, STOPPED.into()),
        Error::Storage(_) => (Code::Internal, format!("etcdserver: {error}")),
        Error::MemberNotFound(_) => (Code::NotFound, MEMBER_NOT_FOUND.into()),
        Error::PeerUrlExists(_) => (Code::FailedPrecondition, PEER_URL_EXIST.into()),
        Error::BadMemberUrls(_) => (Code::InvalidArgument, MEMBER_BAD_URLS.into()),
        Error::NotEnoughStartedMembers => (Code::FailedPrecondition, MEMBER_NOT_ENOUGH_STARTED.into()),
        Error::MemberNotLearner(_) => (Code::FailedPrecondition, MEMBER_NOT_LEARNER.into()),
        Error::LearnerNotReady { .. } => (Code::FailedPrecondition, LEARNER_NOT_READY.into()),
        Error::TooManyLearners => (Code::FailedPrecondition, TOO_MANY_LEARNERS.into()),
        Error::MembershipChangeInProgress => (Code::Unavailable, MEMBERSHIP_CHANGE_IN_PROGRESS.into()),
        Error::BadLeaderTransferee(_) => (Code::FailedPrecondition, BAD_LEADER_TRANSFEREE.into()),
        Error::LeaderTransferTimeout(_) => (Code::Unavailable, LEADER_TRANSFER_TIMEOUT.into()),
        Error::Removed => (Code::Unavailable, REMOVED.into()),
        Error::NoSpace => (Code::ResourceExhausted, NO_SPACE.into()),
        Error::Auth(e) => {
            use concord::auth::AuthError as A;
            let code = match e {
                A::UserEmpty | A::RoleEmpty | A::InvalidAuthManagement | A::AuthFailed | A::OldRevision => {
                    Code::InvalidArgument
                }
                A::PermissionDenied => Code::PermissionDenied,
                A::UserExists
                | A::UserNotFound
                | A::RoleExists
                | A::RoleNotFound
                | A::RoleNotGranted
                | A::PermissionNotGranted
                | A::RootUserNotExist
                | A::RootRoleNotGranted
                | A::NotEnabled => Code::FailedPrecondition,
            };
            (code, format!("etcdserver: {e}"))
        }
        _ => (Code::Unknown, format!("etcdserver: {error}")),
    };
    Status::new(code, message)
}

/// `InvalidArgument` with `message`, for a malformed request (etcd answers those so).
pub fn invalid_argument(message: &str) -> Status {
    Status::invalid_argument(message)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use concord::auth::AuthError;

    /// Every engine error against etcd's own (code, text), written out
    /// literally from etcd's `api/v3rpc/rpctypes/error.go` — not from the
    /// constants above, which this checks.
    #[test]
    fn every_error_maps_to_etcds_literal_code_and_text() {
        let etcd = [
            (Error::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (Error::KeyTooLarge { size: 5000, max: 4096 }, Code::InvalidArgument, "etcdserver: request is too large"),
            (
                Error::ValueTooLarge { size: 2 << 20, max: 1 << 20 },
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                Error::RequestTooLarge { size: 2 << 20, max: 1 << 20 },
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                Error::InvalidTtl { ttl: 9_000_000_001, min: 1, max: MAX_TTL_SECS },
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (Error::InvalidLeaseId(-1), Code::NotFound, "etcdserver: requested lease not found"),
            (Error::LeaseNotFound(7), Code::NotFound, "etcdserver: requested lease not found"),
            (Error::LeaseExists(1), Code::FailedPrecondition, "etcdserver: lease already exists"),
            (
                Error::TooManyTxnOps { ops: 129, max: 128 },
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (Error::TxnTooDeep { max: 16 }, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (Error::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (Error::KeyNotFound, Code::InvalidArgument, "etcdserver: key not found"),
            (
                Error::Compacted { compact_revision: 3 },
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                Error::FutureRevision { revision: 9, current: 3 },
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (Error::TooManyRequests { pending: 10_000 }, Code::ResourceExhausted, "etcdserver: too many requests"),
            (Error::Timeout(Duration::ZERO), Code::Unavailable, "etcdserver: request timed out"),
            (Error::NotLeader { leader: Some(2) }, Code::FailedPrecondition, "etcdserver: not leader"),
            (Error::NotReady("election".into()), Code::Unavailable, "etcdserver: no leader"),
            (Error::LeaderChanged, Code::Unavailable, "etcdserver: leader changed"),
            (Error::Shutdown, Code::Unavailable, "etcdserver: server stopped"),
            (Error::Removed, Code::Unavailable, "etcdserver: server stopped"),
            (Error::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            (Error::Auth(AuthError::UserEmpty), Code::InvalidArgument, "etcdserver: user name is empty"),
            (Error::Auth(AuthError::UserExists), Code::FailedPrecondition, "etcdserver: user name already exists"),
            (Error::Auth(AuthError::UserNotFound), Code::FailedPrecondition, "etcdserver: user name not found"),
            (Error::Auth(AuthError::RoleEmpty), Code::InvalidArgument, "etcdserver: role name is empty"),
            (Error::Auth(AuthError::RoleExists), Code::FailedPrecondition, "etcdserver: role name already exists"),
            (Error::Auth(AuthError::RoleNotFound), Code::FailedPrecondition, "etcdserver: role name not found"),
            (
                Error::Auth(AuthError::RoleNotGranted),
                Code::FailedPrecondition,
                "etcdserver: role is not granted to the user",
            ),
            (
                Error::Auth(AuthError::PermissionNotGranted),
                Code::FailedPrecondition,
                "etcdserver: permission is not granted to the role",
            ),
            (
                Error::Auth(AuthError::RootUserNotExist),
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            (
                Error::Auth(AuthError::RootRoleNotGranted),
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            (
                Error::Auth(AuthError::InvalidAuthManagement),
                Code::InvalidArgument,
                "etcdserver: invalid auth management",
            ),
            (Error::Auth(AuthError::OldRevision), Code::InvalidArgument, "etcdserver: revision of auth store is old"),
            (Error::MemberNotFound(9), Code::NotFound, "etcdserver: member not found"),
            (
                Error::PeerUrlExists("http://a:1".into()),
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (Error::BadMemberUrls("x".into()), Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
            (
                Error::NotEnoughStartedMembers,
                Code::FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            (Error::MemberNotLearner(9), Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
            (
                Error::LearnerNotReady { id: 9, matched: 1, leader: 100 },
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (Error::TooManyLearners, Code::FailedPrecondition, "etcdserver: too many learner members in cluster"),
            (Error::BadLeaderTransferee(9), Code::FailedPrecondition, "etcdserver: bad leader transferee"),
            (
                Error::LeaderTransferTimeout(9),
                Code::Unavailable,
                "etcdserver: request timed out, leader transfer took too long",
            ),
        ];
        for (error, code, text) in etcd {
            let status = to_status(error.clone());
            assert_eq!((status.code(), status.message()), (code, text), "{error:?}");
        }
        // Errors etcd has no word for: etcd's prefix, a specific text, a fitting code.
        let ours = [
            (Error::InvalidTtl { ttl: 0, min: 1, max: MAX_TTL_SECS }, Code::InvalidArgument),
            (Error::AnonymousLease(5), Code::FailedPrecondition),
            (Error::TooManyKeysOnLease { lease: 5, max: 2 }, Code::ResourceExhausted),
            (Error::TooManyLeases { max: 2 }, Code::ResourceExhausted),
            (Error::InvalidRequest("bad".into()), Code::InvalidArgument),
            (Error::Storage("disk".into()), Code::Internal),
            (Error::MembershipChangeInProgress, Code::Unavailable),
        ];
        for (error, code) in ours {
            let status = to_status(error.clone());
            assert_eq!(status.code(), code, "{error:?}");
            assert_eq!(status.message(), format!("etcdserver: {error}"));
        }
    }
}
