//! The tokens a member issued (etcd's "simple" tokens): random, known by
//! this member only, valid for [`TOKEN_TTL`] after their last use.
//!
//! Invariants:
//! - a token names one user;
//! - a change to that user's credentials applied on this member —
//!   password, deletion (and re-adding under the same name) — and
//!   `auth enable` / `auth disable` drop the token *after* the change is
//!   visible in the state ([`Tokens::invalidate`] runs after apply), and
//!   `authenticate` issues a token only against the state it sees while
//!   holding this table's lock, so no token outlives the change that
//!   should end it, on any call (maintenance included);
//! - a snapshot installed over the state drops every token (the changes it
//!   carries are not seen one by one).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use super::AuthCommand;

/// How long a token stays valid after its last use (etcd's
/// `--auth-token-ttl` default).
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

/// The tokens this member issued.
#[derive(Default)]
pub struct Tokens {
    by_token: Mutex<HashMap<String, Issued>>,
}

/// One issued token.
pub struct Issued {
    /// Its user.
    pub user: String,
    /// When it was last used.
    pub last_used: Instant,
}

impl Tokens {
    /// The table, locked.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Issued>> {
        self.by_token.lock()
    }

    /// Drops the tokens an applied auth change ends.
    pub fn invalidate(&self, change: &AuthCommand) {
        let user = match change {
            AuthCommand::Enable | AuthCommand::Disable => {
                self.invalidate_all();
                return;
            }
            AuthCommand::UserAdd { name, .. }
            | AuthCommand::UserDelete { name }
            | AuthCommand::UserChangePassword { name, .. } => name,
            // Roles and permissions are checked against the current state
            // on every call (maintenance included): a change to them takes
            // effect at once without ending tokens, as in etcd.
            AuthCommand::UserGrantRole { .. }
            | AuthCommand::UserRevokeRole { .. }
            | AuthCommand::RoleAdd { .. }
            | AuthCommand::RoleDelete { .. }
            | AuthCommand::RoleGrantPermission { .. }
            | AuthCommand::RoleRevokePermission { .. } => return,
        };
        self.by_token.lock().retain(|_, issued| issued.user != *user);
    }

    /// Drops every token.
    pub fn invalidate_all(&self) {
        self.by_token.lock().clear();
    }
}
