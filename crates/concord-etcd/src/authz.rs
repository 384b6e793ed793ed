//! Who a request is from, and whether it may do what it asks (etcd's auth
//! checks). While auth is disabled nothing is checked. Enabled, every
//! request must carry a token (`token` metadata, as etcd's clients send
//! it) from this member's `Authenticate`, and:
//! - a read needs read permission on its whole range, a write write
//!   permission (and read too when it returns previous values);
//! - a transaction needs read on every compare and read op's range, write
//!   on every put and delete, in every branch (as etcd checks it);
//! - a watch needs read on its range; a lease revoke write on every key
//!   attached to the lease;
//! - snapshots, hashes, defragmentation, auth management, membership
//!   changes (member add, remove, update, promote) and raising or
//!   disarming an alarm (beyond etcd 3.4) need the root role (refused with etcd's texts: `etcdserver: permission denied` for
//!   auth management, `auth: permission denied` with code Unknown for the
//!   maintenance calls, as etcd 3.4 answers them).

use concord::auth::{Access, AuthError};
use concord::command::{TxnOp, TxnRequest};
use concord::{Concord, KeyRange, TokenError};
use tonic::{Request, Status};

use crate::status::to_status;

/// The user a request comes from; `None` while auth is disabled.
pub fn caller<T>(db: &Concord, request: &Request<T>) -> Result<Option<String>, Status> {
    db.caller(token(request)).map_err(token_status)
}

/// [`caller`], and for a caller under auth the auth revision its checks
/// are made at (or after): the write is proposed with it and refused at
/// apply if auth changed since ("revision of auth store is old", as
/// etcd's apply-time check), so a write racing a permission revoke cannot
/// pass. Read before the permission checks, which read a state at least
/// as new.
pub fn caller_for_write<T>(db: &Concord, request: &Request<T>) -> Result<(Option<String>, Option<u64>), Status> {
    let caller = caller(db, request)?;
    let checked_at = caller.as_ref().map(|_| db.auth_status().1);
    Ok((caller, checked_at))
}

fn token<T>(request: &Request<T>) -> Option<&str> {
    let token = request.metadata().get("token").or_else(|| request.metadata().get("authorization"));
    token.and_then(|t| t.to_str().ok())
}

/// The root role, for etcd's maintenance calls (Snapshot, Hash, HashKV,
/// Defragment). etcd checks these outside its error mapping: a refusal is
/// `Unknown` with the auth store's own text, as etcdctl shows it
/// ("rpc error: code = Unknown desc = auth: permission denied").
pub fn check_maintenance_admin<T>(db: &Concord, request: &Request<T>) -> Result<(), Status> {
    let caller = db.maintenance_caller(token(request)).map_err(|e| {
        Status::unknown(match e {
            TokenError::Missing => "auth: user name is empty",
            TokenError::Invalid | TokenError::OldRevision => "auth: invalid auth token",
        })
    })?;
    if db.is_admin(caller.as_deref()) { Ok(()) } else { Err(Status::unknown("auth: permission denied")) }
}

/// etcd's answers for a missing, unknown or outdated token.
pub fn token_status(e: TokenError) -> Status {
    match e {
        TokenError::Missing => Status::invalid_argument("etcdserver: user name is empty"),
        TokenError::Invalid => Status::unauthenticated("etcdserver: invalid auth token"),
        TokenError::OldRevision => Status::invalid_argument("etcdserver: revision of auth store is old"),
    }
}

fn denied() -> Status {
    to_status(concord::Error::Auth(AuthError::PermissionDenied))
}

/// `access` to all of `range`.
pub fn check(db: &Concord, caller: &Option<String>, range: &KeyRange, access: Access) -> Result<(), Status> {
    if db.permits(caller.as_deref(), range, access) { Ok(()) } else { Err(denied()) }
}

/// Every range a transaction reads or writes, in every branch.
pub fn check_txn(db: &Concord, caller: &Option<String>, txn: &TxnRequest) -> Result<(), Status> {
    if caller.is_none() {
        return Ok(());
    }
    for compare in &txn.compare {
        check(db, caller, &compare.range, Access::Read)?;
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            TxnOp::Range(range) => {
                if let Some(range) = &range.range {
                    check(db, caller, range, Access::Read)?;
                }
            }
            TxnOp::Put(put) => {
                let key = KeyRange::key(put.key.clone());
                check(db, caller, &key, Access::Write)?;
                if put.prev_kv {
                    check(db, caller, &key, Access::Read)?;
                }
            }
            TxnOp::DeleteRange(delete) => {
                check(db, caller, &delete.range, Access::Write)?;
                if delete.prev_kv {
                    check(db, caller, &delete.range, Access::Read)?;
                }
            }
            TxnOp::Txn(inner) => check_txn(db, caller, inner)?,
        }
    }
    Ok(())
}

/// The root role (or auth disabled).
pub fn check_admin(db: &Concord, caller: &Option<String>) -> Result<(), Status> {
    if db.is_admin(caller.as_deref()) { Ok(()) } else { Err(denied()) }
}
