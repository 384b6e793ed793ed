//! Input limits, checked before a command is proposed, so refused input never
//! reaches the log.

use crate::error::{Error, Result};
use crate::request::{Compare, CompareTarget, LeaseChoice, PutRequest, TxnOp, TxnRequest};
use crate::types::{KeyRange, LeaseId, RangeEnd};

/// Largest peer message decoded (a batch of log entries, a snapshot chunk):
/// also the largest single key, value or string a snapshot decodes, since
/// none can be bigger than a replicated log entry.
pub(crate) const MAX_PEER_MESSAGE: usize = 256 * 1024 * 1024;

/// The smallest TTL a lease may have, in seconds. A deliberate difference
/// from etcd, whose minimum is 1.5 election timeouts (2 s with its
/// defaults): Concord's expiry is exact to milliseconds, so 1 s leases work.
pub const MIN_TTL_SECS: i64 = 1;
/// The largest TTL a lease may have, in seconds (etcd's limit).
pub const MAX_TTL_SECS: i64 = 9_000_000_000;

/// Size limits on requests. They bound the work one request can cause:
/// a transaction is checked and executed under the state machine's write
/// lock, so its total size, operation count and nesting depth are capped
/// before it is proposed (and a deep nesting never reaches the log, whose
/// decoding would recurse on every boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most compares, and most operations in each branch, of one
    /// transaction level (etcd's `--max-txn-ops`). A whole transaction,
    /// nested ones included, holds at most three times this many compares
    /// and operations: no more than one flat transaction can.
    pub max_txn_ops: usize,
    /// Deepest nesting of transactions inside transactions.
    pub max_txn_depth: usize,
    /// Most bytes of keys, values and compare values in one transaction
    /// (etcd's `--max-request-bytes` bounds the whole request the same way).
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 4 * 1024,
            max_value_bytes: 1536 * 1024,
            max_txn_ops: 128,
            max_txn_depth: 16,
            max_request_bytes: 1536 * 1024,
        }
    }
}

/// What a whole transaction adds up to, counted while checking it.
#[derive(Default)]
struct TxnTally {
    ops: usize,
    bytes: usize,
}

impl Limits {
    /// Refuses an empty or oversized key.
    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.max_key_bytes {
            return Err(Error::KeyTooLarge { size: key.len(), max: self.max_key_bytes });
        }
        Ok(())
    }

    /// Refuses a range whose start or end is an oversized key.
    pub fn check_range(&self, range: &KeyRange) -> Result<()> {
        // An empty start is allowed for open-ended ranges ("every key").
        if range.start.is_empty() && matches!(range.end, RangeEnd::Single) {
            return Err(Error::EmptyKey);
        }
        if range.start.len() > self.max_key_bytes {
            return Err(Error::KeyTooLarge { size: range.start.len(), max: self.max_key_bytes });
        }
        if let RangeEnd::Exclusive(end) = &range.end
            && end.len() > self.max_key_bytes
        {
            return Err(Error::KeyTooLarge { size: end.len(), max: self.max_key_bytes });
        }
        Ok(())
    }

    /// Refuses a put whose key or value is out of bounds.
    pub fn check_put(&self, req: &PutRequest) -> Result<()> {
        self.check_key(&req.key)?;
        if let Some(value) = &req.value
            && value.len() > self.max_value_bytes
        {
            return Err(Error::ValueTooLarge { size: value.len(), max: self.max_value_bytes });
        }
        match req.lease {
            LeaseChoice::Lease(id) => check_lease_id(id),
            LeaseChoice::Anonymous { ttl_secs } => check_ttl(ttl_secs),
            LeaseChoice::None | LeaseChoice::Keep => Ok(()),
        }
    }

    /// Refuses a transaction over the operation, depth or size limits, or with an
    /// invalid key or value anywhere in it.
    pub fn check_txn(&self, txn: &TxnRequest) -> Result<()> {
        let mut tally = TxnTally::default();
        self.check_txn_level(txn, 1, &mut tally)?;
        let max_total = self.max_txn_ops.saturating_mul(3);
        if tally.ops > max_total {
            return Err(Error::TooManyTxnOps { ops: tally.ops, max: max_total });
        }
        Ok(())
    }

    /// Checks one level and recurses into nested transactions, stopping at
    /// the first limit passed (so a deep request costs no deep recursion).
    fn check_txn_level(&self, txn: &TxnRequest, depth: usize, tally: &mut TxnTally) -> Result<()> {
        if depth > self.max_txn_depth {
            return Err(Error::TxnTooDeep { max: self.max_txn_depth });
        }
        for list in [txn.compare.len(), txn.success.len(), txn.failure.len()] {
            if list > self.max_txn_ops {
                return Err(Error::TooManyTxnOps { ops: list, max: self.max_txn_ops });
            }
        }
        tally.ops += txn.compare.len() + txn.success.len() + txn.failure.len();
        if tally.ops > self.max_txn_ops.saturating_mul(3) {
            return Err(Error::TooManyTxnOps { ops: tally.ops, max: self.max_txn_ops.saturating_mul(3) });
        }
        for Compare { range, target, .. } in &txn.compare {
            self.check_range(range)?;
            tally.add_range(range);
            if let CompareTarget::Value(value) = target {
                if value.len() > self.max_value_bytes {
                    return Err(Error::ValueTooLarge { size: value.len(), max: self.max_value_bytes });
                }
                tally.bytes += value.len();
            }
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                TxnOp::Range(r) => {
                    if let Some(range) = &r.range {
                        self.check_range(range)?;
                        tally.add_range(range);
                    }
                }
                TxnOp::Put(p) => {
                    self.check_put(p)?;
                    tally.bytes += p.key.len() + p.value.as_ref().map_or(0, |v| v.len());
                }
                TxnOp::DeleteRange(d) => {
                    self.check_range(&d.range)?;
                    tally.add_range(&d.range);
                }
                TxnOp::Txn(inner) => self.check_txn_level(inner, depth + 1, tally)?,
            }
            if tally.bytes > self.max_request_bytes {
                return Err(Error::RequestTooLarge { size: tally.bytes, max: self.max_request_bytes });
            }
        }
        if tally.bytes > self.max_request_bytes {
            return Err(Error::RequestTooLarge { size: tally.bytes, max: self.max_request_bytes });
        }
        Ok(())
    }
}

impl TxnTally {
    fn add_range(&mut self, range: &KeyRange) {
        self.bytes += range.start.len();
        if let RangeEnd::Exclusive(end) = &range.end {
            self.bytes += end.len();
        }
    }
}

/// Refuses a TTL outside what a lease may have.
pub fn check_ttl(ttl: i64) -> Result<()> {
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl) {
        return Err(Error::InvalidTtl { ttl, min: MIN_TTL_SECS, max: MAX_TTL_SECS });
    }
    Ok(())
}

/// Refuses a lease id that is not positive.
pub fn check_lease_id(id: LeaseId) -> Result<()> {
    if id <= 0 {
        return Err(Error::InvalidLeaseId(id));
    }
    Ok(())
}
