//! Who a request is from, and the few checks the front end makes itself
//! (etcd's auth rules; `docs/security.md` has the table of every RPC).
//!
//! Everything a request may do to keys is decided where it takes effect,
//! by the engine, with the [`Caller`] made here: a write at apply (it
//! travels through the log with its caller, `Command::Authorized`), a read
//! after the read index, against the state it reads. So a member that lags
//! behind a permission revoke, `auth enable` or a password change cannot
//! let a request through. The front end itself checks only:
//! - credentials: while auth is enabled every request needs a token
//!   (`token` metadata, as etcd's clients send it) from this member's
//!   `Authenticate` — etcd's texts for a missing, unknown or outdated one —
//!   or, under `--client-cert-auth`, a client certificate (below);
//! - the root role for what never reaches the key space: membership
//!   changes, and the maintenance calls (Snapshot, Hash, HashKV,
//!   Defragment, and raising or disarming an alarm, beyond etcd 3.4),
//!   refused as etcd 3.4 answers them (`auth: permission denied`, code
//!   Unknown);
//! - early refusals that save work (a lock's or election's name), which
//!   the engine's checks repeat.
//!
//! Client certificates as identity (etcd's `AuthInfoFromCtx`, then
//! `AuthInfoFromTLS`): under `--client-cert-auth`, a request that carries
//! no token is from the user its connection's certificate names — the
//! common name of the certificate the TLS handshake verified (`tls.rs`) —
//! at the auth revision now, with no password checked; its permissions
//! decide as any user's (a root certificate is root). A token, when there
//! is one, wins over the certificate. A certificate without a common name
//! is no user: refused ("permission denied" on keys, "user name is empty"
//! for what needs the root role), as is a name that is no user ("user name
//! not found" for the root role's calls). The JSON gateway's calls count
//! only their token, as etcd's gateway (its own loopback client, whose
//! certificate etcd ignores): they are made in process without the
//! connection's extensions.

mod rules;

pub use rules::{RULES, Rule, SERVED_SERVICES, rule};

use concord::auth::{Access, AuthError, Caller};
use concord::{Concord, KeyRange, TokenError};
use tonic::{Request, Status};

use crate::status::to_status;
use crate::tls::TlsClientInfo;

/// Who `request` is from (no user while auth is disabled): its token's
/// user, else its client certificate's (see the module docs).
pub fn caller<T>(db: &Concord, request: &Request<T>) -> Result<Caller, Status> {
    Credentials::of(request).caller(db)
}

/// The credentials a request came with, kept by a stream (Watch,
/// LeaseKeepAlive) to check again at every step: a token ended while the
/// stream is open (its user's password changed, the user deleted, auth
/// disabled) ends the stream's rights, as etcd checks the token of each
/// watch it creates.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<String>,
    certificate_user: Option<String>,
}

impl Credentials {
    /// The credentials `request` carries.
    pub fn of<T>(request: &Request<T>) -> Self {
        Credentials {
            token: token(request).map(str::to_string),
            certificate_user: certificate_user(request).map(str::to_string),
        }
    }

    /// Who they name now (a token wins over a certificate).
    pub fn caller(&self, db: &Concord) -> Result<Caller, Status> {
        match (&self.token, &self.certificate_user) {
            (None, Some(user)) => Ok(db.certificate_caller(user)),
            (token, _) => db.caller(token.as_deref()).map_err(token_status),
        }
    }
}

/// The request's token; an empty one is none.
fn token<T>(request: &Request<T>) -> Option<&str> {
    let token = request.metadata().get("token").or_else(|| request.metadata().get("authorization"));
    token.and_then(|t| t.to_str().ok()).filter(|t| !t.is_empty())
}

/// Under `--client-cert-auth`, the user the connection's certificate
/// names (empty without a common name).
fn certificate_user<T>(request: &Request<T>) -> Option<&str> {
    request.extensions().get::<TlsClientInfo>()?.certificate_user.as_deref()
}

/// The root role, for etcd's maintenance calls (Snapshot, Hash, HashKV,
/// Defragment, alarms). etcd checks these outside its error mapping: a
/// refusal is `Unknown` with the auth store's own text, as etcdctl shows
/// it ("rpc error: code = Unknown desc = auth: permission denied"). The
/// caller, for what the call then proposes.
pub fn check_maintenance_admin<T>(db: &Concord, request: &Request<T>) -> Result<Caller, Status> {
    let caller = match (token(request), certificate_user(request)) {
        (None, Some(user)) => db.certificate_caller(user),
        (token, _) => db.caller(token).map_err(|e| {
            Status::unknown(match e {
                TokenError::Missing => "auth: user name is empty",
                TokenError::Invalid => "auth: invalid auth token",
            })
        })?,
    };
    match db.admin_permitted(caller.user.as_deref()) {
        Ok(()) => Ok(caller),
        Err(AuthError::UserEmpty) => Err(Status::unknown("auth: user name is empty")),
        Err(AuthError::UserNotFound) => Err(Status::unknown("auth: user name not found")),
        Err(_) => Err(Status::unknown("auth: permission denied")),
    }
}

/// etcd's answers for a missing or unknown token.
pub fn token_status(e: TokenError) -> Status {
    match e {
        TokenError::Missing => Status::invalid_argument("etcdserver: user name is empty"),
        TokenError::Invalid => Status::unauthenticated("etcdserver: invalid auth token"),
    }
}

fn denied() -> Status {
    to_status(concord::Error::Auth(AuthError::PermissionDenied))
}

/// An early refusal: `access` to all of `range` on this member's state
/// (the engine checks again where the request takes effect).
pub fn check(db: &Concord, caller: &Caller, range: &KeyRange, access: Access) -> Result<(), Status> {
    if db.permits(caller.user.as_deref(), range, access) { Ok(()) } else { Err(denied()) }
}

/// The root role (or auth disabled); refused with etcd's reason (no user,
/// no such user, not root).
pub fn check_admin(db: &Concord, caller: &Caller) -> Result<(), Status> {
    db.admin_permitted(caller.user.as_deref()).map_err(|e| to_status(concord::Error::Auth(e)))
}
