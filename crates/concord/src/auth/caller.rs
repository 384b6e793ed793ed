//! Who a request is from, as the member that received it knew it, and the
//! checks made against the auth store *at the moment a request takes
//! effect*: at apply for writes, after the read index for reads (where
//! etcd checks: `apply_auth.go`, and `linearizableReadNotify` before the
//! range check).
//!
//! A [`Caller`] travels with the write through the log
//! (`Command::Authorized`), so every member decides it against the auth
//! state at that point of the log, and a permission revoke, a password
//! change or `auth enable` ordered before the write refuses it:
//! - auth disabled (at that point): everything is allowed;
//! - no user: refused, "user name is empty" (a request received while its
//!   member had not applied `auth enable` yet);
//! - checked at an older auth revision: refused, "revision of auth store
//!   is old" (the client authenticates again and retries);
//! - a user that no longer exists: "permission denied";
//! - otherwise the user's roles decide, range by range.

use serde::{Deserialize, Serialize};

use super::{Access, AuthError, AuthStore};
use crate::types::KeyRange;

/// Who a request is from: the authenticated user (`None` while auth was
/// disabled) and the auth store's revision when its credentials were
/// checked. Build it with `Concord::caller`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Caller {
    /// The user the request's token (or client certificate) names.
    pub user: Option<String>,
    /// The auth store's revision the credentials were checked at.
    pub auth_revision: u64,
}

impl Caller {
    /// A caller that is `user`, checked at `auth_revision`.
    pub fn new(user: Option<String>, auth_revision: u64) -> Self {
        Caller { user, auth_revision }
    }

    /// A caller whose identity was established earlier: a long-lived
    /// call's user (a keep-alive stream renews, a lock or a campaign
    /// waits, as long as its user exists and may). Its permissions are
    /// checked against the auth state wherever its requests take effect,
    /// at any revision.
    pub fn established(user: Option<String>) -> Self {
        Caller { user, auth_revision: u64::MAX }
    }
}

impl AuthStore {
    /// The user whose permissions decide for `caller` now; `Ok(None)`
    /// while auth is disabled (everything is allowed). See the module
    /// docs for the refusals.
    pub fn principal<'a>(&self, caller: &'a Caller) -> Result<Option<&'a str>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let user = caller.user.as_deref().ok_or(AuthError::UserEmpty)?;
        if caller.auth_revision < self.revision {
            return Err(AuthError::OldRevision);
        }
        if !self.users.contains_key(user) {
            return Err(AuthError::PermissionDenied);
        }
        Ok(Some(user))
    }

    /// Whether `caller` may `access` all of `range` now.
    pub fn authorize(&self, caller: &Caller, range: &KeyRange, access: Access) -> Result<(), AuthError> {
        match self.principal(caller)? {
            None => Ok(()),
            Some(user) if self.permits(user, range, access) => Ok(()),
            Some(_) => Err(AuthError::PermissionDenied),
        }
    }

    /// Whether `caller` may administer now (the root role; anyone while
    /// auth is disabled).
    pub fn authorize_admin(&self, caller: &Caller) -> Result<(), AuthError> {
        match self.principal(caller)? {
            None => Ok(()),
            Some(user) if self.is_root(user) => Ok(()),
            Some(_) => Err(AuthError::PermissionDenied),
        }
    }
}
