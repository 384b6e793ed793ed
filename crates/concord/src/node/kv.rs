//! Key-value operations: `db.kv().put(..)`, `get`, `range`, `delete`,
//! `history`, `compact`.
//!
//! Each operation is a small builder: set options, then `.await` it.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use super::{Concord, Consistency};
use crate::auth::Caller;
use crate::command::{
    Command, DeleteRequest, DeleteResponse, LeaseChoice, PutRequest, PutResponse, RangeRequest, RangeResponse, Reply,
};
use crate::error::{Error, Result};
use crate::types::{Event, KeyRange, KeyValue, LeaseId, Revision};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// Key-value operations on a member.
#[derive(Clone)]
pub struct Kv {
    node: Concord,
}

impl Kv {
    pub(crate) fn new(node: Concord) -> Self {
        Kv { node }
    }

    /// Writes `value` under `key`.
    pub fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Put {
        Put {
            node: self.node.clone(),
            req: PutRequest { key: key.into(), value: Some(value.into()), lease: LeaseChoice::None, prev_kv: false },
            timeout: self.node.default_timeout(),
            caller: None,
        }
    }

    /// A put from a complete request (for front ends translating a wire
    /// request); validated like any other put.
    pub fn put_request(&self, req: PutRequest) -> Put {
        Put { node: self.node.clone(), req, timeout: self.node.default_timeout(), caller: None }
    }

    /// A range read from a complete request.
    pub fn range_request(&self, req: RangeRequest) -> Range {
        Range {
            node: self.node.clone(),
            req,
            consistency: Consistency::default(),
            timeout: self.node.default_timeout(),
            caller: None,
        }
    }

    /// A delete from a complete request.
    pub fn delete_request(&self, req: DeleteRequest) -> Delete {
        Delete { node: self.node.clone(), req, timeout: self.node.default_timeout(), caller: None }
    }

    /// Reads one key.
    pub fn get(&self, key: impl Into<Bytes>) -> Get {
        Get { range: self.range(KeyRange::key(key)) }
    }

    /// Reads the keys of a range, in key order.
    pub fn range(&self, range: KeyRange) -> Range {
        Range {
            node: self.node.clone(),
            req: RangeRequest { range: Some(range), ..Default::default() },
            consistency: Consistency::default(),
            timeout: self.node.default_timeout(),
            caller: None,
        }
    }

    /// Deletes one key.
    pub fn delete(&self, key: impl Into<Bytes>) -> Delete {
        self.delete_range(KeyRange::key(key))
    }

    /// Deletes every key of a range.
    pub fn delete_range(&self, range: KeyRange) -> Delete {
        Delete {
            node: self.node.clone(),
            req: DeleteRequest { range, prev_kv: false },
            timeout: self.node.default_timeout(),
            caller: None,
        }
    }

    /// The versions and deletions of one key, oldest first.
    pub fn history(&self, key: impl Into<Bytes>) -> History {
        History {
            node: self.node.clone(),
            key: key.into(),
            from: 0,
            to: 0,
            limit: 0,
            timeout: self.node.default_timeout(),
        }
    }

    /// Forgets history before `revision`: reads at older revisions then fail
    /// with [`Error::Compacted`]. Returns the store revision.
    pub async fn compact(&self, revision: Revision) -> Result<Revision> {
        self.compact_as(revision, None).await
    }

    /// [`Self::compact`] on behalf of `caller` (a network client), checked
    /// at apply (see `Command::Authorized`).
    pub async fn compact_as(&self, revision: Revision, caller: Option<Caller>) -> Result<Revision> {
        if revision <= 0 {
            return Err(Error::InvalidRequest(format!("cannot compact at revision {revision}")));
        }
        let command = Command::Compact { revision }.as_caller(caller);
        let (rev, _) = self.node.execute(command, self.node.default_timeout()).await?;
        Ok(rev)
    }

    /// The revision this member has applied (local read).
    pub fn revision(&self) -> Revision {
        self.node.revision()
    }

    /// The oldest revision that can still be read.
    pub fn compact_revision(&self) -> Revision {
        self.node.shared().applier.read().machine.kv().compact_revision()
    }
}

/// A put; `.await` it for a [`PutResponse`].
#[must_use = "a put does nothing until awaited"]
pub struct Put {
    node: Concord,
    req: PutRequest,
    timeout: Duration,
    caller: Option<Caller>,
}

impl Put {
    /// Attaches the key to lease `id` (which must exist).
    pub fn lease(mut self, id: LeaseId) -> Self {
        self.req.lease = LeaseChoice::Lease(id);
        self
    }

    /// Gives the key its own anonymous lease of `secs` seconds: the key is
    /// deleted when it runs out. Hidden from `lease().list()` by default.
    pub fn ttl(mut self, secs: i64) -> Self {
        self.req.lease = LeaseChoice::Anonymous { ttl_secs: secs };
        self
    }

    /// Keeps the key's current lease (the key must exist).
    pub fn keep_lease(mut self) -> Self {
        self.req.lease = LeaseChoice::Keep;
        self
    }

    /// Keeps the key's current value (the key must exist); only the lease changes.
    pub fn keep_value(mut self) -> Self {
        self.req.value = None;
        self
    }

    /// Returns the previous version in the response.
    pub fn prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }

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

impl IntoFuture for Put {
    type Output = Result<PutResponse>;
    type IntoFuture = BoxFuture<PutResponse>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.node.inner.config.limits.check_put(&self.req)?;
            match self.node.execute(Command::Put(self.req).as_caller(self.caller), self.timeout).await? {
                (_, Reply::Put(resp)) => Ok(resp),
                (_, other) => Err(unexpected(other)),
            }
        })
    }
}

/// A range read; `.await` it for a [`RangeResponse`].
#[must_use = "a read does nothing until awaited"]
pub struct Range {
    node: Concord,
    req: RangeRequest,
    consistency: Consistency,
    timeout: Duration,
    caller: Option<Caller>,
}

impl Range {
    /// Reads on behalf of `caller` (a network client): its read permission
    /// on the range is checked after the read index is applied, against
    /// the same state the read sees (a permission revoked before the read
    /// began is never missed by a lagging member).
    pub fn as_caller(mut self, caller: Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    /// Reads at a past revision instead of the latest.
    pub fn revision(mut self, revision: Revision) -> Self {
        self.req.revision = revision;
        self
    }

    /// Returns at most `limit` keys (`more` tells whether there were more).
    pub fn limit(mut self, limit: u64) -> Self {
        self.req.limit = limit;
        self
    }

    /// Returns keys without values.
    pub fn keys_only(mut self) -> Self {
        self.req.keys_only = true;
        self
    }

    /// Returns only the count.
    pub fn count_only(mut self) -> Self {
        self.req.count_only = true;
        self
    }

    /// Reads with this consistency (linearizable by default).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Shorthand for `consistency(Consistency::Serializable)`.
    pub fn serializable(self) -> Self {
        self.consistency(Consistency::Serializable)
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for Range {
    type Output = Result<RangeResponse>;
    type IntoFuture = BoxFuture<RangeResponse>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if let Some(range) = &self.req.range {
                self.node.inner.config.limits.check_range(range)?;
            }
            self.node.read_range(self.req, self.consistency, self.timeout, self.caller.as_ref()).await
        })
    }
}

/// A single-key read; `.await` it for `Option<KeyValue>`.
#[must_use = "a read does nothing until awaited"]
pub struct Get {
    range: Range,
}

impl Get {
    /// Reads the key as it was at `revision`.
    pub fn revision(self, revision: Revision) -> Self {
        Get { range: self.range.revision(revision) }
    }

    /// Reads with this consistency (linearizable by default).
    pub fn consistency(self, consistency: Consistency) -> Self {
        Get { range: self.range.consistency(consistency) }
    }

    /// Reads this member's state without asking the leader (may be stale).
    pub fn serializable(self) -> Self {
        self.consistency(Consistency::Serializable)
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(self, timeout: Duration) -> Self {
        Get { range: self.range.timeout(timeout) }
    }
}

impl IntoFuture for Get {
    type Output = Result<Option<KeyValue>>;
    type IntoFuture = BoxFuture<Option<KeyValue>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { Ok(self.range.await?.kvs.into_iter().next()) })
    }
}

/// A delete; `.await` it for a [`DeleteResponse`].
#[must_use = "a delete does nothing until awaited"]
pub struct Delete {
    node: Concord,
    req: DeleteRequest,
    timeout: Duration,
    caller: Option<Caller>,
}

impl Delete {
    /// Returns the deleted versions in the response.
    pub fn prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }

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

impl IntoFuture for Delete {
    type Output = Result<DeleteResponse>;
    type IntoFuture = BoxFuture<DeleteResponse>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.node.inner.config.limits.check_range(&self.req.range)?;
            match self.node.execute(Command::DeleteRange(self.req).as_caller(self.caller), self.timeout).await? {
                (_, Reply::Delete(resp)) => Ok(resp),
                (_, other) => Err(unexpected(other)),
            }
        })
    }
}

/// A history read; `.await` it for the key's events, oldest first.
#[must_use = "a read does nothing until awaited"]
pub struct History {
    node: Concord,
    key: Bytes,
    from: Revision,
    to: Revision,
    limit: usize,
    timeout: Duration,
}

impl History {
    /// Only events at or after `revision`.
    pub fn from_revision(mut self, revision: Revision) -> Self {
        self.from = revision;
        self
    }

    /// Only events at or before `revision`.
    pub fn to_revision(mut self, revision: Revision) -> Self {
        self.to = revision;
        self
    }

    /// At most `limit` events.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl IntoFuture for History {
    type Output = Result<Vec<Event>>;
    type IntoFuture = BoxFuture<Vec<Event>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.node.inner.config.limits.check_key(&self.key)?;
            let (key, from, to, limit) = (self.key, self.from, self.to, self.limit);
            self.node
                .read(Consistency::Linearizable, self.timeout, move |sm| sm.kv().history(&key, from, to, limit))
                .await
        })
    }
}

/// A reply of the wrong kind: a bug, reported rather than panicking.
pub(crate) fn unexpected(reply: Reply) -> Error {
    Error::Storage(format!("internal error: unexpected reply {reply:?}"))
}
