//! Authentication and authorization on a member (`crate::auth`): managing
//! users and roles through the log, authenticating with a password, the
//! tokens this member issues, and the checks the etcd front end makes.
//!
//! Tokens are etcd's "simple" tokens: random, issued and known by this
//! member only (a client authenticates with the member it talks to), valid
//! for [`TOKEN_TTL`] after their last use, and tied to the auth store's
//! revision when issued: after any change to users, roles or permissions a
//! token is refused as "old revision" and the client authenticates again
//! (etcd's clients do so by themselves), so a password change or a revoked
//! permission takes effect at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Concord;
use crate::auth::{Access, AuthCommand, AuthError, AuthStore, Permission, PermissionKind};
use crate::command::{Command, Reply};
use crate::error::{Error, Result};
use crate::types::KeyRange;

/// How long a token stays valid after its last use (etcd's
/// `--auth-token-ttl` default).
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

/// bcrypt's cost for stored passwords (etcd's default).
const BCRYPT_COST: u32 = 10;

/// Why a request's credentials were not taken (etcd's texts are the front
/// end's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Auth is enabled and the request carries no token.
    #[error("user name is empty")]
    Missing,
    /// Unknown or expired.
    #[error("invalid auth token")]
    Invalid,
    /// Issued before the last change to users, roles or permissions.
    #[error("revision of auth store is old")]
    OldRevision,
}

/// The tokens this member issued.
#[derive(Default)]
pub(crate) struct Tokens {
    by_token: parking_lot::Mutex<HashMap<String, Issued>>,
}

struct Issued {
    user: String,
    revision: u64,
    last_used: Instant,
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
        match self.execute(Command::Auth(command), self.default_timeout()).await?.1 {
            Reply::Auth { revision } => Ok(revision),
            other => Err(Error::Storage(format!("unexpected reply to an auth change: {other:?}"))),
        }
    }

    /// Adds a user; `password: None` makes one that cannot authenticate
    /// with a password. The password is hashed here (bcrypt), never logged.
    pub async fn user_add(&self, name: &str, password: Option<&str>) -> Result<u64> {
        let password_hash = hash_password(password).await?;
        self.auth_change(AuthCommand::UserAdd { name: name.into(), password_hash }).await
    }

    /// Changes a user's password (`None`: the user gets none); the auth
    /// store's revision after it.
    pub async fn user_change_password(&self, name: &str, password: Option<&str>) -> Result<u64> {
        let password_hash = hash_password(password).await?;
        self.auth_change(AuthCommand::UserChangePassword { name: name.into(), password_hash }).await
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
        let matches = match hash {
            Some(hash) => tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .map_err(|e| Error::Storage(e.to_string()))?,
            None => false,
        };
        if !matches {
            return Err(Error::Auth(AuthError::AuthFailed));
        }
        let token = new_token();
        let mut tokens = self.inner.tokens.by_token.lock();
        tokens.retain(|_, t| t.last_used.elapsed() < TOKEN_TTL);
        tokens.insert(token.clone(), Issued { user: name.into(), revision: store.revision, last_used: Instant::now() });
        Ok(token)
    }

    /// Who a request is from: `None` while auth is disabled (nothing is
    /// checked), else the user its token was issued to.
    pub fn caller(&self, token: Option<&str>) -> std::result::Result<Option<String>, TokenError> {
        self.token_user(token, true)
    }

    /// [`Self::caller`] for calls that need the root role (maintenance):
    /// as etcd, a token issued before the last auth change still names its
    /// user there (the role check is against the current auth state).
    pub fn maintenance_caller(&self, token: Option<&str>) -> std::result::Result<Option<String>, TokenError> {
        self.token_user(token, false)
    }

    fn token_user(
        &self,
        token: Option<&str>,
        current_revision_only: bool,
    ) -> std::result::Result<Option<String>, TokenError> {
        // The common case, auth disabled, without the state's lock.
        if !self.shared().auth_enabled.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(None);
        }
        let (enabled, revision) = self.auth_status();
        if !enabled {
            return Ok(None);
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let mut tokens = self.inner.tokens.by_token.lock();
        let issued = tokens.get_mut(token).ok_or(TokenError::Invalid)?;
        if issued.last_used.elapsed() >= TOKEN_TTL {
            tokens.remove(token);
            return Err(TokenError::Invalid);
        }
        if current_revision_only && issued.revision < revision {
            return Err(TokenError::OldRevision);
        }
        issued.last_used = Instant::now();
        Ok(Some(issued.user.clone()))
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
}

async fn hash_password(password: Option<&str>) -> Result<Option<String>> {
    let Some(password) = password.map(str::to_string) else { return Ok(None) };
    tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
        .map(Some)
        .map_err(|e| Error::InvalidRequest(format!("cannot hash the password: {e}")))
}

/// etcd's simple-token shape: 16 random letters, a dot, a number.
fn new_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let letters: String = (0..16).map(|_| rng.sample(rand::distr::Alphanumeric) as char).collect();
    format!("{letters}.{}", rng.random::<u32>())
}
