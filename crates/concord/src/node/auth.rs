//! Authentication and authorization on a member (`crate::auth`): managing
//! users and roles through the log, authenticating with a password, the
//! tokens this member issues, and the callers and checks the etcd front
//! end uses.
//!
//! Tokens are etcd's "simple" tokens (`crate::auth::tokens`): issued and
//! known by this member only (a client authenticates with the member it
//! talks to), valid for [`TOKEN_TTL`] after their last use, ended by a
//! change to their user's credentials (password, deletion) and by
//! `auth enable`/`disable`. A change to roles or permissions takes effect
//! at once through the checks, which read the current state.
//!
//! What a request may do is decided where it takes effect: writes at apply
//! and reads after the read index, with the [`Caller`] this module makes
//! from the request's token (`crate::auth::caller`).

use std::time::Instant;

use super::{Concord, Consistency};
use crate::auth::tokens::Issued;
use crate::auth::{Access, AuthCommand, AuthError, AuthStore, Caller, Permission, PermissionKind};
use crate::command::{ApplyError, Command, Reply};
use crate::error::{Error, Result};
use crate::types::KeyRange;

pub use crate::auth::tokens::TOKEN_TTL;

/// bcrypt's cost for stored passwords (etcd's default).
const BCRYPT_COST: u32 = 10;

/// Why a request's credentials were not taken (etcd's texts are the front
/// end's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Auth is enabled and the request carries no token.
    #[error("user name is empty")]
    Missing,
    /// Unknown, expired, or ended by a change to its user.
    #[error("invalid auth token")]
    Invalid,
}

impl Concord {
    /// The auth store as this member has applied it (a copy).
    pub fn auth_store(&self) -> AuthStore {
        self.shared().applier.read().machine.state.auth.clone()
    }

    /// Whether auth is enabled, and the auth store's revision.
    pub fn auth_status(&self) -> (bool, u64) {
        let applier = self.shared().applier.read();
        (applier.machine.state.auth.enabled, applier.machine.state.auth.revision)
    }

    /// Applies an auth change through the log; returns the auth revision
    /// after it.
    pub async fn auth_change(&self, command: AuthCommand) -> Result<u64> {
        self.auth_change_as(command, None).await
    }

    /// [`Self::auth_change`] on behalf of `caller` (a network client): it
    /// must have the root role at apply (see `Command::Authorized`).
    pub async fn auth_change_as(&self, command: AuthCommand, caller: Option<Caller>) -> Result<u64> {
        match self.execute(Command::Auth(command).as_caller(caller), self.default_timeout()).await?.1 {
            Reply::Auth { revision } => Ok(revision),
            other => Err(Error::Storage(format!("unexpected reply to an auth change: {other:?}"))),
        }
    }

    /// Adds a user; `password: None` makes one that cannot authenticate
    /// with a password. The password is hashed here (bcrypt), never logged.
    pub async fn user_add(&self, name: &str, password: Option<&str>) -> Result<u64> {
        self.user_add_as(name, password, None).await
    }

    /// [`Self::user_add`] on behalf of `caller` (checked at apply).
    pub async fn user_add_as(&self, name: &str, password: Option<&str>, caller: Option<Caller>) -> Result<u64> {
        let password_hash = hash_password(password).await?;
        self.auth_change_as(AuthCommand::UserAdd { name: name.into(), password_hash }, caller).await
    }

    /// Changes a user's password (`None`: the user gets none); the auth
    /// store's revision after it.
    pub async fn user_change_password(&self, name: &str, password: Option<&str>) -> Result<u64> {
        self.user_change_password_as(name, password, None).await
    }

    /// [`Self::user_change_password`] on behalf of `caller` (checked at apply).
    pub async fn user_change_password_as(
        &self,
        name: &str,
        password: Option<&str>,
        caller: Option<Caller>,
    ) -> Result<u64> {
        let password_hash = hash_password(password).await?;
        self.auth_change_as(AuthCommand::UserChangePassword { name: name.into(), password_hash }, caller).await
    }

    /// Grants `role` a permission on `range`; the auth store's revision
    /// after it.
    pub async fn role_grant_permission(&self, role: &str, kind: PermissionKind, range: KeyRange) -> Result<u64> {
        self.auth_change(AuthCommand::RoleGrantPermission { role: role.into(), permission: Permission { kind, range } })
            .await
    }

    /// Checks `name`'s password and issues a token for this member.
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<String> {
        let store = self.auth_store();
        if !store.enabled {
            return Err(Error::Auth(AuthError::NotEnabled));
        }
        let hash = store.users.get(name).and_then(|u| u.password_hash.clone());
        let password = password.to_string();
        // A name that is no user (or has no password) costs the same
        // bcrypt work as a wrong password: the answer's timing does not
        // tell which names exist.
        let known = hash.clone();
        let matches = tokio::task::spawn_blocking(move || match known {
            Some(hash) => bcrypt::verify(password, &hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, unknown_user_hash());
                false
            }
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
        if !matches {
            return Err(Error::Auth(AuthError::AuthFailed));
        }
        // Issued against the state seen under the table's lock: a change
        // to the user applied since the password was read either shows
        // here, or drops the token once it is applied (`Tokens`).
        let mut tokens = self.shared().tokens.lock();
        let unchanged = {
            let applier = self.shared().applier.read();
            let auth = &applier.machine.state.auth;
            auth.enabled && auth.users.get(name).and_then(|u| u.password_hash.as_ref()) == hash.as_ref()
        };
        if !unchanged {
            return Err(Error::Auth(AuthError::AuthFailed));
        }
        let token = new_token();
        tokens.retain(|_, t| t.last_used.elapsed() < TOKEN_TTL);
        tokens.insert(token.clone(), Issued { user: name.into(), last_used: Instant::now() });
        Ok(token)
    }

    /// Who a request carrying `token` is from, as a [`Caller`] for the
    /// checks made where the request takes effect: no user while auth is
    /// disabled, else the user the token was issued to, with the auth
    /// revision now (as etcd's simple tokens: a change to roles or
    /// permissions takes effect through the checks, not by ending tokens;
    /// a change to the user's credentials ends them, `auth::tokens`).
    pub fn caller(&self, token: Option<&str>) -> std::result::Result<Caller, TokenError> {
        let shared = self.shared();
        // The common case, auth disabled, without the state's lock.
        if !shared.auth_enabled.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(Caller::new(None, shared.auth_revision.load(std::sync::atomic::Ordering::Acquire)));
        }
        let (enabled, revision) = self.auth_status();
        if !enabled {
            return Ok(Caller::new(None, revision));
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let mut tokens = shared.tokens.lock();
        let issued = tokens.get_mut(token).ok_or(TokenError::Invalid)?;
        if issued.last_used.elapsed() >= TOKEN_TTL {
            tokens.remove(token);
            return Err(TokenError::Invalid);
        }
        issued.last_used = Instant::now();
        Ok(Caller::new(Some(issued.user.clone()), revision))
    }

    /// Who a request without a token is from when a client certificate
    /// names its user (the certificate's common name, under etcd's
    /// `--client-cert-auth`; etcd's `AuthInfoFromTLS`): that user, with no
    /// password checked (the TLS handshake verified the certificate), at
    /// the auth revision now, as a fresh token's; no user while auth is
    /// disabled. Its permissions are checked as a token user's, where its
    /// requests take effect; a name that is no user (an empty one, say) is
    /// refused there as "permission denied", as etcd refuses it.
    pub fn certificate_caller(&self, user: &str) -> Caller {
        let shared = self.shared();
        let revision = shared.auth_revision.load(std::sync::atomic::Ordering::Acquire);
        if !shared.auth_enabled.load(std::sync::atomic::Ordering::Acquire) {
            return Caller::new(None, revision);
        }
        let (enabled, revision) = self.auth_status();
        Caller::new(enabled.then(|| user.to_string()), revision)
    }

    /// Checks, after the read index (so against a state at least as new
    /// as any auth change acknowledged before the call), that `caller` may
    /// read all of each range: for what reads through other paths than a
    /// range read (a watch being created, say).
    pub async fn authorize_read(&self, caller: &Caller, ranges: &[KeyRange]) -> Result<()> {
        self.read(Consistency::Linearizable, self.default_timeout(), |sm| {
            for range in ranges {
                sm.state.auth.authorize(caller, range, Access::Read).map_err(ApplyError::Auth)?;
            }
            Ok(())
        })
        .await
    }

    /// [`Self::authorize_read`] for a watch being created, which is served
    /// from this member's applied state like a serializable read and must
    /// not depend on a leader (etcd creates watches on a partitioned
    /// member): if the cluster gives a read index within about an election
    /// timeout, the check waits until this member applied it (a member
    /// lagging behind a permission revoke checks against the revoke; one
    /// that cannot catch up refuses); if no leader answers in that time,
    /// the check is made against this member's state, as a serializable
    /// read's would be.
    pub async fn authorize_watch(&self, caller: &Caller, ranges: &[KeyRange]) -> Result<()> {
        let bound = self.inner.config.election_timeout.max(std::time::Duration::from_millis(200));
        let timeout = self.default_timeout();
        match self.leader() {
            Some(leader) if leader == self.inner.member_id => {
                let _ = self.inner.read_index.confirm_as_leader(bound).await;
            }
            Some(_) => {
                if let Ok(index) = self.inner.read_index.read_index(bound).await {
                    self.inner
                        .raft
                        .wait(Some(timeout))
                        .applied_index_at_least(Some(index), "a watch's permission check")
                        .await
                        .map_err(|_| Error::Timeout(timeout))?;
                }
            }
            None => {}
        }
        self.read(Consistency::Serializable, timeout, |sm| {
            for range in ranges {
                sm.state.auth.authorize(caller, range, Access::Read).map_err(ApplyError::Auth)?;
            }
            Ok(())
        })
        .await
    }

    /// Whether `caller` (from [`Self::caller`]) may `access` all of `range`.
    pub fn permits(&self, caller: Option<&str>, range: &KeyRange, access: Access) -> bool {
        match caller {
            None => !self.shared().auth_enabled.load(std::sync::atomic::Ordering::Acquire) || !self.auth_status().0,
            Some(user) => self.shared().applier.read().machine.state.auth.permits(user, range, access),
        }
    }

    /// Whether `caller` may administer the cluster (the root role), or auth
    /// is disabled.
    pub fn is_admin(&self, caller: Option<&str>) -> bool {
        let applier = self.shared().applier.read();
        let auth = &applier.machine.state.auth;
        !auth.enabled || caller.is_some_and(|user| auth.is_root(user))
    }

    /// [`Self::is_admin`] with etcd's reason for a refusal (its
    /// `IsAdminPermitted`): no or an empty user name
    /// ([`AuthError::UserEmpty`]), a name that is no user
    /// ([`AuthError::UserNotFound`]; only a client certificate names one),
    /// or a user without the root role ([`AuthError::PermissionDenied`]).
    pub fn admin_permitted(&self, caller: Option<&str>) -> std::result::Result<(), AuthError> {
        let applier = self.shared().applier.read();
        let auth = &applier.machine.state.auth;
        match caller {
            _ if !auth.enabled => Ok(()),
            None | Some("") => Err(AuthError::UserEmpty),
            Some(user) if !auth.users.contains_key(user) => Err(AuthError::UserNotFound),
            Some(user) if auth.is_root(user) => Ok(()),
            Some(_) => Err(AuthError::PermissionDenied),
        }
    }
}

async fn hash_password(password: Option<&str>) -> Result<Option<String>> {
    let Some(password) = password.map(str::to_string) else { return Ok(None) };
    tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
        .map(Some)
        .map_err(|e| Error::InvalidRequest(format!("cannot hash the password: {e}")))
}

/// A hash no password is checked against for real: what a name that is no
/// user is verified against, for the same cost as a user's.
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash(new_token(), BCRYPT_COST).unwrap_or_default())
}

/// etcd's simple-token shape: 16 random letters, a dot, a number.
fn new_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let letters: String = (0..16).map(|_| rng.sample(rand::distr::Alphanumeric) as char).collect();
    format!("{letters}.{}", rng.random::<u32>())
}

#[cfg(test)]
mod tests {
    /// A name that is no user is checked against a real bcrypt hash (so
    /// it costs as much as a wrong password), which no password matches.
    #[test]
    fn an_unknown_user_costs_a_real_bcrypt_check() {
        let hash = super::unknown_user_hash();
        assert!(hash.starts_with("$2"), "{hash}");
        assert_eq!(bcrypt::verify("", hash).ok(), Some(false));
        assert_eq!(bcrypt::verify("root", hash).ok(), Some(false));
    }
}
