//! Transactions: `db.txn().when(compares).and_then(ops).or_else(ops).await`.
//!
//! The compares are ANDed. A failed compare is not an error: the response
//! says `succeeded: false` and carries the results of the `or_else` branch.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;

use super::Concord;
use super::kv::{BoxFuture, unexpected};
use crate::auth::Caller;
use crate::command::{
    Command, Compare, CompareOp, CompareTarget, DeleteRequest, LeaseChoice, PutRequest, RangeRequest, Reply, TxnOp,
    TxnRequest, TxnResponse,
};
use crate::error::Result;
use crate::types::{KeyRange, LeaseId, Revision};

/// A transaction being built; `.await` it for a [`TxnResponse`].
#[must_use = "a transaction does nothing until awaited"]
pub struct Txn {
    node: Concord,
    req: TxnRequest,
    timeout: Duration,
    caller: Option<Caller>,
}

impl Txn {
    pub(crate) fn new(node: Concord) -> Self {
        let timeout = node.default_timeout();
        let req = TxnRequest { compare: Vec::new(), success: Vec::new(), failure: Vec::new() };
        Txn { node, req, timeout, caller: None }
    }

    /// Applies on behalf of `caller` (a network client): its permissions
    /// for this write are checked at apply, against the auth state at that
    /// point of the log (see `Command::Authorized`).
    pub fn as_caller(mut self, caller: Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    /// Conditions that must all hold for `and_then` to run.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.req.compare.extend(compares);
        self
    }

    /// Operations run when every compare holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.req.success.extend(ops);
        self
    }

    /// Operations run otherwise.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.req.failure.extend(ops);
        self
    }

    /// Gives up after `timeout` instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Replaces the whole transaction with `req` (for front ends translating
    /// a wire request).
    pub fn request(mut self, req: TxnRequest) -> Self {
        self.req = req;
        self
    }

    /// The request as built (to nest it with [`TxnOp::txn`]).
    pub fn into_request(self) -> TxnRequest {
        self.req
    }
}

impl IntoFuture for Txn {
    type Output = Result<TxnResponse>;
    type IntoFuture = BoxFuture<TxnResponse>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.node.inner.config.limits.check_txn(&self.req)?;
            match self.node.execute(Command::Txn(self.req).as_caller(self.caller), self.timeout).await? {
                (_, Reply::Txn(resp)) => Ok(resp),
                (_, other) => Err(unexpected(other)),
            }
        })
    }
}

/// A compare on a value: `Compare::value("k").eq("v")`.
pub struct ValueCompare {
    range: KeyRange,
}

/// A compare on a number (version, revisions, lease):
/// `Compare::version("k").gt(0)`.
pub struct NumberCompare {
    range: KeyRange,
    target: fn(i64) -> CompareTarget,
}

impl Compare {
    /// Compares the value of `key` (false if the key is absent).
    pub fn value(key: impl Into<Bytes>) -> ValueCompare {
        ValueCompare { range: KeyRange::key(key) }
    }
    /// Compares the version (puts since creation; 0 = absent) of `key`.
    pub fn version(key: impl Into<Bytes>) -> NumberCompare {
        NumberCompare { range: KeyRange::key(key), target: CompareTarget::Version }
    }
    /// Compares the create revision (0 = absent) of `key`.
    pub fn create_revision(key: impl Into<Bytes>) -> NumberCompare {
        NumberCompare { range: KeyRange::key(key), target: CompareTarget::CreateRevision }
    }
    /// Compares the mod revision (0 = absent) of `key`.
    pub fn mod_revision(key: impl Into<Bytes>) -> NumberCompare {
        NumberCompare { range: KeyRange::key(key), target: CompareTarget::ModRevision }
    }
    /// Compares the lease (0 = none) of `key`.
    pub fn lease(key: impl Into<Bytes>) -> NumberCompare {
        NumberCompare { range: KeyRange::key(key), target: CompareTarget::Lease }
    }
}

impl ValueCompare {
    /// Applies the compare to every key of `range` instead of one key.
    pub fn over(self, range: KeyRange) -> Self {
        ValueCompare { range }
    }
    fn with(self, op: CompareOp, value: impl Into<Bytes>) -> Compare {
        Compare { range: self.range, target: CompareTarget::Value(value.into()), op }
    }
    /// The value equals `value`.
    pub fn eq(self, value: impl Into<Bytes>) -> Compare {
        self.with(CompareOp::Equal, value)
    }
    /// The value differs from `value`.
    pub fn ne(self, value: impl Into<Bytes>) -> Compare {
        self.with(CompareOp::NotEqual, value)
    }
    /// The value sorts after `value` (bytewise).
    pub fn gt(self, value: impl Into<Bytes>) -> Compare {
        self.with(CompareOp::Greater, value)
    }
    /// The value sorts before `value` (bytewise).
    pub fn lt(self, value: impl Into<Bytes>) -> Compare {
        self.with(CompareOp::Less, value)
    }
}

impl NumberCompare {
    /// Applies the compare to every key of `range` instead of one key.
    pub fn over(self, range: KeyRange) -> Self {
        NumberCompare { range, ..self }
    }
    fn with(self, op: CompareOp, value: i64) -> Compare {
        Compare { range: self.range, target: (self.target)(value), op }
    }
    /// Equals `value`.
    pub fn eq(self, value: i64) -> Compare {
        self.with(CompareOp::Equal, value)
    }
    /// Differs from `value`.
    pub fn ne(self, value: i64) -> Compare {
        self.with(CompareOp::NotEqual, value)
    }
    /// Is greater than `value`.
    pub fn gt(self, value: i64) -> Compare {
        self.with(CompareOp::Greater, value)
    }
    /// Is less than `value`.
    pub fn lt(self, value: i64) -> Compare {
        self.with(CompareOp::Less, value)
    }
}

impl TxnOp {
    /// Reads one key.
    pub fn get(key: impl Into<Bytes>) -> TxnOp {
        TxnOp::range(KeyRange::key(key))
    }
    /// Reads a range.
    pub fn range(range: KeyRange) -> TxnOp {
        TxnOp::Range(RangeRequest { range: Some(range), ..Default::default() })
    }
    /// Reads a range at a past revision.
    pub fn range_at(range: KeyRange, revision: Revision) -> TxnOp {
        TxnOp::Range(RangeRequest { range: Some(range), revision, ..Default::default() })
    }
    /// Writes a key without a lease.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> TxnOp {
        TxnOp::Put(PutRequest { key: key.into(), value: Some(value.into()), lease: LeaseChoice::None, prev_kv: false })
    }
    /// Writes a key attached to `lease`.
    pub fn put_with_lease(key: impl Into<Bytes>, value: impl Into<Bytes>, lease: LeaseId) -> TxnOp {
        TxnOp::Put(PutRequest {
            key: key.into(),
            value: Some(value.into()),
            lease: LeaseChoice::Lease(lease),
            prev_kv: false,
        })
    }
    /// Deletes one key.
    pub fn delete(key: impl Into<Bytes>) -> TxnOp {
        TxnOp::delete_range(KeyRange::key(key))
    }
    /// Deletes a range.
    pub fn delete_range(range: KeyRange) -> TxnOp {
        TxnOp::DeleteRange(DeleteRequest { range, prev_kv: false })
    }
    /// A nested transaction.
    pub fn txn(txn: TxnRequest) -> TxnOp {
        TxnOp::Txn(txn)
    }
}
