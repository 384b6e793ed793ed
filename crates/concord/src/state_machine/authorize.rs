//! The apply-time authorization of a client's write (`Command::Authorized`):
//! what etcd's `authApplierV3` re-checks, decided against the auth store
//! and the lease table at the write's own point of the log, so it cannot
//! race a permission change, `auth enable`, or a key attached to a lease
//! in the meantime.
//!
//! - a put needs write on its key (and read when it returns the previous
//!   value); attaching the key to a lease needs write on every key the
//!   lease already has (etcd's `checkLeasePuts`: whoever could not revoke
//!   the lease must not extend it);
//! - a delete needs write on its whole range (and read for previous
//!   values);
//! - a transaction needs read on every compare's range and everything its
//!   operations need, in both branches, whichever runs;
//! - a lease revoke needs write on every key attached to the lease now;
//! - lease grants and keep-alives, and compaction, need an authenticated
//!   user only (as etcd);
//! - auth management and alarms need the root role;
//! - a command only the members themselves propose (expiry, checkpoints,
//!   membership bookkeeping) is refused from a client.

use super::StateMachine;
use crate::auth::{Access, AuthError, Caller};
use crate::command::{Command, LeaseChoice, PutRequest, TxnOp, TxnRequest};
use crate::types::{KeyRange, LeaseId};

impl StateMachine {
    /// Whether `caller` may have `command` applied now.
    pub(super) fn authorize(&self, caller: &Caller, command: &Command) -> Result<(), AuthError> {
        let auth = &self.state.auth;
        let Some(_) = auth.principal(caller)? else { return Ok(()) };
        let check = |range: &KeyRange, access| auth.authorize(caller, range, access);
        match command {
            Command::Put(put) => self.authorize_put(caller, put),
            Command::DeleteRange(delete) => {
                check(&delete.range, Access::Write)?;
                if delete.prev_kv { check(&delete.range, Access::Read) } else { Ok(()) }
            }
            Command::Txn(txn) => self.authorize_txn(caller, txn),
            Command::LeaseRevoke { id } => self.authorize_lease_keys(caller, *id),
            Command::LeaseGrant { .. } | Command::LeaseKeepAlive { .. } | Command::Compact { .. } => Ok(()),
            Command::Auth(_) | Command::Alarm { .. } => auth.authorize_admin(caller),
            _ => Err(AuthError::PermissionDenied),
        }
    }

    fn authorize_put(&self, caller: &Caller, put: &PutRequest) -> Result<(), AuthError> {
        let key = KeyRange::key(put.key.clone());
        self.state.auth.authorize(caller, &key, Access::Write)?;
        if put.prev_kv {
            self.state.auth.authorize(caller, &key, Access::Read)?;
        }
        match put.lease {
            LeaseChoice::Lease(id) => self.authorize_lease_keys(caller, id),
            LeaseChoice::None | LeaseChoice::Anonymous { .. } | LeaseChoice::Keep => Ok(()),
        }
    }

    fn authorize_txn(&self, caller: &Caller, txn: &TxnRequest) -> Result<(), AuthError> {
        let auth = &self.state.auth;
        for compare in &txn.compare {
            auth.authorize(caller, &compare.range, Access::Read)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                TxnOp::Range(range) => {
                    if let Some(range) = &range.range {
                        auth.authorize(caller, range, Access::Read)?;
                    }
                }
                TxnOp::Put(put) => self.authorize_put(caller, put)?,
                TxnOp::DeleteRange(delete) => {
                    auth.authorize(caller, &delete.range, Access::Write)?;
                    if delete.prev_kv {
                        auth.authorize(caller, &delete.range, Access::Read)?;
                    }
                }
                TxnOp::Txn(inner) => self.authorize_txn(caller, inner)?,
            }
        }
        Ok(())
    }

    /// Write on every key attached to lease `id` now (none if it does not
    /// exist: applying the command answers that).
    fn authorize_lease_keys(&self, caller: &Caller, id: LeaseId) -> Result<(), AuthError> {
        let Some(lease) = self.state.leases.get(id) else { return Ok(()) };
        for key in &lease.keys {
            self.state.auth.authorize(caller, &KeyRange::key(key.clone()), Access::Write)?;
        }
        Ok(())
    }
}
