//! Lease operations, the seed's API: `grant`, `keep_alive`, `revoke`, `info`,
//! `list`.
//!
//! Grant, keep-alive and revoke are commands through Raft (so a keep-alive
//! is durable: a restart never forgets it). `info` and `list` report the
//! remaining time as this member's deadline tracker measures it.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::kv::{BoxFuture, unexpected};
use super::{Concord, Consistency};
use crate::auth::{Access, Caller};
use crate::command::{ApplyError, Command, Reply};
use crate::error::Result;
use crate::lease::LeaseRecord;
use crate::limits::{check_lease_id, check_ttl};
use crate::replication::state_store::Shared;
use crate::types::{LeaseId, Revision};

/// Lease operations on a member.
#[derive(Clone)]
pub struct Leases {
    node: Concord,
}

/// The result of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The lease's id.
    pub id: LeaseId,
    /// The granted TTL in seconds.
    pub ttl: i64,
    /// The store revision at grant (a grant does not change it).
    pub revision: Revision,
}

/// The result of a keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseKeepAlive {
    /// The lease's id.
    pub id: LeaseId,
    /// The TTL the lease was reset to, in seconds.
    pub ttl: i64,
}

/// The result of a revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRevoke {
    /// How many keys were deleted with the lease.
    pub deleted_keys: u64,
    /// The store revision after the revoke (the revision of the deletes, if any).
    pub revision: Revision,
}

/// A lease as `info` and `list` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease's id.
    pub id: LeaseId,
    /// Granted TTL in seconds.
    pub ttl: i64,
    /// Time left before the lease expires.
    pub remaining: Duration,
    /// The store revision when the lease was granted.
    pub granted_at: Revision,
    /// Attached keys, sorted.
    pub keys: Vec<Bytes>,
    /// Created by `put(..).ttl(..)` rather than `grant`.
    pub anonymous: bool,
}

impl LeaseInfo {
    /// Remaining time in whole seconds, rounded up (a lease with 0.2 s left
    /// reports 1 until it is gone).
    pub fn remaining_secs(&self) -> i64 {
        self.remaining.as_millis().div_ceil(1000) as i64
    }

    fn from_record(record: &LeaseRecord, shared: &Shared, now: Instant) -> Self {
        let remaining =
            shared.deadlines.lock().remaining(record.id, now).unwrap_or(Duration::from_millis(record.remaining_ms));
        LeaseInfo {
            id: record.id,
            ttl: record.ttl_secs,
            remaining,
            granted_at: record.granted_at,
            keys: record.keys.iter().cloned().collect(),
            anonymous: record.anonymous,
        }
    }
}

impl Leases {
    pub(crate) fn new(node: Concord) -> Self {
        Leases { node }
    }

    /// Grants a lease of `ttl_secs` seconds (1 to 9,000,000,000).
    pub fn grant(&self, ttl_secs: i64) -> Grant {
        Grant { node: self.node.clone(), ttl: ttl_secs, id: None, timeout: self.node.default_timeout(), caller: None }
    }

    /// Resets the lease's remaining time to its TTL. Fails with
    /// [`Error::LeaseNotFound`](crate::Error::LeaseNotFound) if it is gone.
    pub fn keep_alive(&self, id: LeaseId) -> KeepAlive {
        KeepAlive { node: self.node.clone(), id, ttl: None, timeout: self.node.default_timeout(), caller: None }
    }

    /// Revokes the lease, deleting all its keys in one commit.
    pub fn revoke(&self, id: LeaseId) -> Revoke {
        Revoke { node: self.node.clone(), id, timeout: self.node.default_timeout(), caller: None }
    }

    /// The lease's TTL, remaining time, grant revision and keys.
    pub fn info(&self, id: LeaseId) -> Info {
        Info { node: self.node.clone(), id, timeout: self.node.default_timeout(), caller: None }
    }

    /// Every active lease granted with `grant`, in id order.
    pub fn list(&self) -> List {
        List { node: self.node.clone(), include_anonymous: false, timeout: self.node.default_timeout() }
    }
}

/// A grant; `.await` it for a [`LeaseGrant`].
#[must_use = "a grant does nothing until awaited"]
pub struct Grant {
    node: Concord,
    ttl: i64,
    id: Option<LeaseId>,
    timeout: Duration,
    caller: Option<Caller>,
}

impl Grant {
    /// Applies on behalf of `caller` (a network client): its permissions
    /// for this write are checked at apply, against the auth state at that
    /// point of the log (see `Command::Authorized`).
    pub fn as_caller(mut self, caller: Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    /// Uses this id instead of letting the store pick one; fails with
    /// [`Error::LeaseExists`](crate::Error::LeaseExists) if it is taken.
    pub fn id(mut self, id: LeaseId) -> Self {
        self.id = Some(id);
        self
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for Grant {
    type Output = Result<LeaseGrant>;
    type IntoFuture = BoxFuture<LeaseGrant>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            check_ttl(self.ttl)?;
            if let Some(id) = self.id {
                check_lease_id(id)?;
            }
            let command = Command::LeaseGrant { id: self.id, ttl_secs: self.ttl }.as_caller(self.caller);
            match self.node.execute(command, self.timeout).await? {
                (revision, Reply::LeaseGranted { id, ttl_secs }) => Ok(LeaseGrant { id, ttl: ttl_secs, revision }),
                (_, other) => Err(unexpected(other)),
            }
        })
    }
}

/// A keep-alive; `.await` it for a [`LeaseKeepAlive`].
#[must_use = "a keep-alive does nothing until awaited"]
pub struct KeepAlive {
    node: Concord,
    id: LeaseId,
    ttl: Option<i64>,
    timeout: Duration,
    caller: Option<Caller>,
}

impl KeepAlive {
    /// Applies on behalf of `caller` (a network client): its permissions
    /// for this write are checked at apply, against the auth state at that
    /// point of the log (see `Command::Authorized`).
    pub fn as_caller(mut self, caller: Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    /// Also changes the lease's TTL to `secs` from now on.
    pub fn ttl(mut self, secs: i64) -> Self {
        self.ttl = Some(secs);
        self
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for KeepAlive {
    type Output = Result<LeaseKeepAlive>;
    type IntoFuture = BoxFuture<LeaseKeepAlive>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            check_lease_id(self.id)?;
            if let Some(ttl) = self.ttl {
                check_ttl(ttl)?;
            }
            let command = Command::LeaseKeepAlive { id: self.id, ttl_secs: self.ttl }.as_caller(self.caller);
            match self.node.execute(command, self.timeout).await? {
                (_, Reply::LeaseKeptAlive { id, ttl_secs }) => Ok(LeaseKeepAlive { id, ttl: ttl_secs }),
                (_, other) => Err(unexpected(other)),
            }
        })
    }
}

/// A revoke; `.await` it for a [`LeaseRevoke`].
#[must_use = "a revoke does nothing until awaited"]
pub struct Revoke {
    node: Concord,
    id: LeaseId,
    timeout: Duration,
    caller: Option<Caller>,
}

impl Revoke {
    /// Applies on behalf of `caller` (a network client): its permissions
    /// for this write are checked at apply, against the auth state at that
    /// point of the log (see `Command::Authorized`).
    pub fn as_caller(mut self, caller: Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for Revoke {
    type Output = Result<LeaseRevoke>;
    type IntoFuture = BoxFuture<LeaseRevoke>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            check_lease_id(self.id)?;
            match self.node.execute(Command::LeaseRevoke { id: self.id }.as_caller(self.caller), self.timeout).await? {
                (revision, Reply::LeaseRevoked { deleted_keys }) => Ok(LeaseRevoke { deleted_keys, revision }),
                (_, other) => Err(unexpected(other)),
            }
        })
    }
}

/// A lease lookup; `.await` it for a [`LeaseInfo`].
#[must_use = "a lookup does nothing until awaited"]
pub struct Info {
    node: Concord,
    id: LeaseId,
    timeout: Duration,
    caller: Option<Caller>,
}

impl Info {
    /// Reads on behalf of `caller` (a network client), for an answer that
    /// lists the lease's keys: the caller must be allowed to read every
    /// attached key (etcd's fix of CVE-2023-32082), checked after the read
    /// index against the state the answer comes from.
    pub fn as_caller(mut self, caller: Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for Info {
    type Output = Result<LeaseInfo>;
    type IntoFuture = BoxFuture<LeaseInfo>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let id = self.id;
            check_lease_id(id)?;
            let shared = self.node.shared().clone();
            let caller = self.caller;
            self.node
                .read(Consistency::Linearizable, self.timeout, move |sm| {
                    let record = sm.leases().get(id).ok_or(ApplyError::LeaseNotFound(id))?;
                    if let Some(caller) = &caller {
                        for key in &record.keys {
                            sm.state
                                .auth
                                .authorize(caller, &crate::KeyRange::key(key.clone()), Access::Read)
                                .map_err(ApplyError::Auth)?;
                        }
                    }
                    Ok(LeaseInfo::from_record(record, &shared, Instant::now()))
                })
                .await
        })
    }
}

/// Leases read per chunk of a listing.
const LIST_CHUNK: usize = 1024;

/// A listing; `.await` it for every active lease.
#[must_use = "a listing does nothing until awaited"]
pub struct List {
    node: Concord,
    include_anonymous: bool,
    timeout: Duration,
}

impl List {
    /// Also lists the anonymous leases made by `put(..).ttl(..)`.
    pub fn include_anonymous(mut self) -> Self {
        self.include_anonymous = true;
        self
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for List {
    type Output = Result<Vec<LeaseInfo>>;
    type IntoFuture = BoxFuture<Vec<LeaseInfo>>;

    /// Reads the lease table a chunk at a time (like a long range read), so
    /// listing a million leases never holds the state's lock for long.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let shared = self.node.shared().clone();
            let include_anonymous = self.include_anonymous;
            let mut listed = Vec::new();
            let mut after = 0;
            let mut consistency = Consistency::Linearizable;
            loop {
                let chunk: Vec<LeaseInfo> = self
                    .node
                    .read(consistency, self.timeout, |sm| {
                        let now = Instant::now();
                        Ok(sm
                            .leases()
                            .iter_after(after)
                            .take(LIST_CHUNK)
                            .map(|l| LeaseInfo::from_record(l, &shared, now))
                            .collect())
                    })
                    .await?;
                let Some(last) = chunk.last() else { return Ok(listed) };
                after = last.id;
                let full = chunk.len() == LIST_CHUNK;
                listed.extend(chunk.into_iter().filter(|l| include_anonymous || !l.anonymous));
                if !full {
                    return Ok(listed);
                }
                // Later chunks need no new leadership check: they read on
                // from the state this member has applied since.
                consistency = Consistency::Serializable;
                tokio::task::yield_now().await;
            }
        })
    }
}
