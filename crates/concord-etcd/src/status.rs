//! The one place where Concord errors become gRPC statuses.
//!
//! etcd clients recognise errors by code *and* message text (etcd's
//! `api/v3rpc/rpctypes`), so the texts below are part of the wire contract
//! and are etcd's, word for word.

use concord::Error;
use concord::limits::MAX_TTL_SECS;
use tonic::{Code, Status};

pub const EMPTY_KEY: &str = "etcdserver: key is not provided";
pub const KEY_NOT_FOUND: &str = "etcdserver: key not found";
pub const VALUE_PROVIDED: &str = "etcdserver: value is provided";
pub const LEASE_PROVIDED: &str = "etcdserver: lease is provided";
pub const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
pub const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
pub const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
pub const LEASE_EXISTS: &str = "etcdserver: lease already exists";
pub const LEASE_TTL_TOO_LARGE: &str = "etcdserver: too large lease TTL";
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";
pub const TIMEOUT: &str = "etcdserver: request timed out";
pub const NOT_LEADER: &str = "etcdserver: not leader";
pub const NO_LEADER: &str = "etcdserver: no leader";
pub const STOPPED: &str = "etcdserver: server stopped";

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
        Error::NotLeader { .. } => (Code::Unavailable, NOT_LEADER.into()),
        Error::NotReady(_) => (Code::Unavailable, NO_LEADER.into()),
        Error::Shutdown => (Code::Unavailable, STOPPED.into()),
        Error::Storage(_) => (Code::Internal, format!("etcdserver: {error}")),
        _ => (Code::Unknown, format!("etcdserver: {error}")),
    };
    Status::new(code, message)
}

pub fn invalid_argument(message: &str) -> Status {
    Status::invalid_argument(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_codes_are_etcds() {
        let cases = [
            (Error::LeaseNotFound(7), Code::NotFound, LEASE_NOT_FOUND),
            (Error::Compacted { compact_revision: 3 }, Code::OutOfRange, COMPACTED),
            (
                Error::InvalidTtl { ttl: 9_000_000_001, min: 1, max: MAX_TTL_SECS },
                Code::OutOfRange,
                LEASE_TTL_TOO_LARGE,
            ),
            (Error::ValueTooLarge { size: 2 << 20, max: 1 << 20 }, Code::InvalidArgument, REQUEST_TOO_LARGE),
            (Error::EmptyKey, Code::InvalidArgument, EMPTY_KEY),
            (Error::LeaseExists(1), Code::FailedPrecondition, LEASE_EXISTS),
            (Error::Timeout(std::time::Duration::ZERO), Code::Unavailable, TIMEOUT),
        ];
        for (error, code, text) in cases {
            let status = to_status(error);
            assert_eq!((status.code(), status.message()), (code, text));
        }
    }
}
