//! Authentication and authorization data, as etcd's auth store: users with
//! (hashed) passwords and roles, roles with permissions on keys and key
//! ranges, the `root` user and role, and whether auth is enabled.
//!
//! This is replicated state (`State.auth`), changed only by
//! [`AuthCommand`]s through the log, so every member decides a permission
//! the same way at the same point of the log. Passwords reach the log
//! already hashed (the proposer hashes them: a salted hash is not
//! deterministic, so apply must not compute it).
//!
//! Invariants:
//! - `revision` goes up by one with every change that was applied (a
//!   refused command changes nothing), so a token or check made at an older
//!   revision can be told stale;
//! - while auth is enabled, the `root` user exists and has the `root` role
//!   (enabling requires it; deleting `root` or taking its role is refused);
//! - a user's roles all exist (deleting a role takes it from every user),
//!   except `root`, which is implicit;
//! - a role's permissions are sorted by range and never repeat a range
//!   (granting one on a range already granted replaces its kind).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{KeyRange, RangeEnd};

mod caller;
pub mod tokens;
pub use caller::Caller;

/// The user and the role that may do everything.
pub const ROOT: &str = "root";

/// Users, roles and their permissions: part of the replicated state,
/// changed only by [`AuthCommand`]s through the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStore {
    /// Whether requests must authenticate.
    pub enabled: bool,
    /// Bumped by every applied change.
    pub revision: u64,
    /// Every user, by name.
    pub users: BTreeMap<String, User>,
    /// Every role, by name.
    pub roles: BTreeMap<String, Role>,
}

/// A user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// `None`: the user cannot authenticate with a password (etcd's
    /// `--no-password`).
    pub password_hash: Option<String>,
    /// The roles granted to the user.
    pub roles: BTreeSet<String>,
}

/// A role: what its users may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its permissions, each on a range of keys.
    pub permissions: Vec<Permission>,
}

/// Reading, writing or both on a range of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// What is allowed.
    pub kind: PermissionKind,
    /// On which keys.
    pub range: KeyRange,
}

/// What a [`Permission`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermissionKind {
    /// Reads.
    Read,
    /// Writes.
    Write,
    /// Both.
    ReadWrite,
}

impl PermissionKind {
    fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (PermissionKind::ReadWrite, _)
                | (PermissionKind::Read, Access::Read)
                | (PermissionKind::Write, Access::Write)
        )
    }
}

/// What a request does to a range of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// It reads them.
    Read,
    /// It writes them.
    Write,
}

/// A change to the auth store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthCommand {
    /// Turn authentication on (needs the root user with the root role).
    Enable,
    /// Turn it off.
    Disable,
    /// Add a user.
    UserAdd {
        /// Its name.
        name: String,
        /// Its password's bcrypt hash; `None`: no password.
        password_hash: Option<String>,
    },
    /// Delete a user.
    UserDelete {
        /// Its name.
        name: String,
    },
    /// Change a user's password.
    UserChangePassword {
        /// Its name.
        name: String,
        /// The new password's bcrypt hash; `None`: no password.
        password_hash: Option<String>,
    },
    /// Grant a role to a user.
    UserGrantRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// Revoke a role from a user.
    UserRevokeRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// Add a role.
    RoleAdd {
        /// Its name.
        name: String,
    },
    /// Delete a role.
    RoleDelete {
        /// Its name.
        name: String,
    },
    /// Grant a permission to a role.
    RoleGrantPermission {
        /// The role.
        role: String,
        /// The permission.
        permission: Permission,
    },
    /// Revoke the permission on exactly this range from a role.
    RoleRevokePermission {
        /// The role.
        role: String,
        /// The permission's range.
        range: KeyRange,
    },
}

/// Why an auth command or check was refused (etcd's auth errors; the etcd
/// front end gives each etcd's code and text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AuthError {
    /// A user without a name.
    #[error("user name is empty")]
    UserEmpty,
    /// A user added twice.
    #[error("user name already exists")]
    UserExists,
    /// No such user.
    #[error("user name not found")]
    UserNotFound,
    /// A role without a name.
    #[error("role name is empty")]
    RoleEmpty,
    /// A role added twice.
    #[error("role name already exists")]
    RoleExists,
    /// No such role.
    #[error("role name not found")]
    RoleNotFound,
    /// A role revoked from a user who does not have it.
    #[error("role is not granted to the user")]
    RoleNotGranted,
    /// A permission revoked from a role that does not have it.
    #[error("permission is not granted to the role")]
    PermissionNotGranted,
    /// Authentication enabled without a root user.
    #[error("root user does not exist")]
    RootUserNotExist,
    /// Authentication enabled while the root user lacks the root role.
    #[error("root user does not have root role")]
    RootRoleNotGranted,
    /// While authentication is on, a change that would lock root out
    /// (deleting the root user or role, revoking root from root).
    #[error("invalid auth management")]
    InvalidAuthManagement,
    /// What needs authentication on (a token, say) while it is off.
    #[error("authentication is not enabled")]
    NotEnabled,
    /// A wrong user name or password, or an unusable token.
    #[error("authentication failed, invalid user ID or password")]
    AuthFailed,
    /// The user's roles do not allow the request.
    #[error("permission denied")]
    PermissionDenied,
    /// A write checked against an auth state that changed before it was
    /// applied (`Command::AuthChecked`): the client authenticates again.
    #[error("revision of auth store is old")]
    OldRevision,
}

impl AuthStore {
    /// Applies `command`: checked completely first, so a refused command
    /// changes nothing; an applied one bumps `revision`.
    pub fn apply(&mut self, command: &AuthCommand) -> Result<(), AuthError> {
        self.check(command)?;
        if let AuthCommand::UserGrantRole { user, role } = command
            && self.users[user].roles.contains(role)
        {
            // etcd answers a repeated grant as done, changing nothing.
            return Ok(());
        }
        if matches!((command, self.enabled), (AuthCommand::Enable, true) | (AuthCommand::Disable, false)) {
            // Likewise enabling what is enabled, disabling what is not.
            return Ok(());
        }
        match command {
            AuthCommand::Enable => self.enabled = true,
            AuthCommand::Disable => self.enabled = false,
            AuthCommand::UserAdd { name, password_hash } => {
                self.users.insert(name.clone(), User { password_hash: password_hash.clone(), roles: BTreeSet::new() });
            }
            AuthCommand::UserDelete { name } => {
                self.users.remove(name);
            }
            AuthCommand::UserChangePassword { name, password_hash } => {
                self.users.get_mut(name).expect("checked").password_hash = password_hash.clone();
            }
            AuthCommand::UserGrantRole { user, role } => {
                self.users.get_mut(user).expect("checked").roles.insert(role.clone());
            }
            AuthCommand::UserRevokeRole { user, role } => {
                self.users.get_mut(user).expect("checked").roles.remove(role);
            }
            AuthCommand::RoleAdd { name } => {
                self.roles.insert(name.clone(), Role::default());
            }
            AuthCommand::RoleDelete { name } => {
                self.roles.remove(name);
                for user in self.users.values_mut() {
                    user.roles.remove(name);
                }
            }
            AuthCommand::RoleGrantPermission { role, permission } => {
                let permissions = &mut self.roles.get_mut(role).expect("checked").permissions;
                match permissions.binary_search_by(|p| range_order(&p.range, &permission.range)) {
                    Ok(at) => permissions[at].kind = permission.kind,
                    Err(at) => permissions.insert(at, permission.clone()),
                }
            }
            AuthCommand::RoleRevokePermission { role, range } => {
                let permissions = &mut self.roles.get_mut(role).expect("checked").permissions;
                permissions.retain(|p| interval(&p.range) != interval(range));
            }
        }
        self.revision += 1;
        Ok(())
    }

    /// Everything that can make `command` fail, as etcd checks it.
    fn check(&self, command: &AuthCommand) -> Result<(), AuthError> {
        let user = |name: &str| self.users.get(name).ok_or(AuthError::UserNotFound);
        let role_exists = |name: &str| name == ROOT || self.roles.contains_key(name);
        match command {
            AuthCommand::Enable => {
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.contains(ROOT) {
                    return Err(AuthError::RootRoleNotGranted);
                }
            }
            AuthCommand::Disable => {}
            AuthCommand::UserAdd { name, .. } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserExists);
                }
            }
            AuthCommand::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthManagement);
                }
                user(name)?;
            }
            AuthCommand::UserChangePassword { name, .. } => {
                user(name)?;
            }
            AuthCommand::UserGrantRole { user: name, role } => {
                user(name)?;
                if !role_exists(role) {
                    return Err(AuthError::RoleNotFound);
                }
            }
            AuthCommand::UserRevokeRole { user: name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthManagement);
                }
                if !user(name)?.roles.contains(role) {
                    return Err(AuthError::RoleNotGranted);
                }
            }
            AuthCommand::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleExists);
                }
            }
            AuthCommand::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthManagement);
                }
                if !self.roles.contains_key(name) {
                    return Err(AuthError::RoleNotFound);
                }
            }
            AuthCommand::RoleGrantPermission { role, .. } => {
                if !self.roles.contains_key(role) {
                    return Err(AuthError::RoleNotFound);
                }
            }
            AuthCommand::RoleRevokePermission { role, range } => {
                let role = self.roles.get(role).ok_or(AuthError::RoleNotFound)?;
                if !role.permissions.iter().any(|p| interval(&p.range) == interval(range)) {
                    return Err(AuthError::PermissionNotGranted);
                }
            }
        }
        Ok(())
    }

    /// Whether `user` may `access` every key of `range`: always while auth
    /// is disabled; for the root role everything; otherwise the union of
    /// its roles' permissions of that kind must cover the whole range.
    pub fn permits(&self, user: &str, range: &KeyRange, access: Access) -> bool {
        if !self.enabled || self.is_root(user) {
            return true;
        }
        let Some(user) = self.users.get(user) else { return false };
        let mut granted: Vec<(Bytes, Option<Bytes>)> = user
            .roles
            .iter()
            .filter_map(|name| self.roles.get(name))
            .flat_map(|role| role.permissions.iter())
            .filter(|p| p.kind.allows(access))
            .map(|p| interval(&p.range))
            .collect();
        granted.sort();
        covers(&granted, &interval(range))
    }

    /// Whether `user` has the root role (may administer the cluster).
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }
}

/// `[start, end)`, `None` for no end.
fn interval(range: &KeyRange) -> (Bytes, Option<Bytes>) {
    let end = match &range.end {
        RangeEnd::Single => {
            let mut next = range.start.to_vec();
            next.push(0);
            Some(Bytes::from(next))
        }
        RangeEnd::Unbounded => None,
        RangeEnd::Exclusive(end) => Some(end.clone()),
    };
    (range.start.clone(), end)
}

/// Whether the sorted intervals `granted` cover `wanted` entirely.
fn covers(granted: &[(Bytes, Option<Bytes>)], wanted: &(Bytes, Option<Bytes>)) -> bool {
    let (start, end) = wanted;
    if end.as_ref().is_some_and(|end| end <= start) {
        return true;
    }
    // How far from `start` the granted intervals reach without a gap.
    let mut reached = start.clone();
    for (from, to) in granted {
        if *from > reached {
            break;
        }
        match to {
            None => return true,
            Some(to) if *to > reached => reached = to.clone(),
            Some(_) => {}
        }
        if end.as_ref().is_some_and(|end| reached >= *end) {
            return true;
        }
    }
    false
}

/// Permissions are kept sorted by range (start, then end).
pub(crate) fn range_order(a: &KeyRange, b: &KeyRange) -> std::cmp::Ordering {
    interval(a).cmp(&interval(b))
}

#[cfg(test)]
mod tests;
