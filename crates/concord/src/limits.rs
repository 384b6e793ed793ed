//! Input limits, checked before a command is proposed, so refused input never
//! reaches the log.

use crate::command::{Compare, LeaseChoice, PutRequest, TxnOp, TxnRequest};
use crate::error::{Error, Result};
use crate::types::{KeyRange, LeaseId, RangeEnd};

/// The smallest TTL a lease may have, in seconds.
pub const MIN_TTL_SECS: i64 = 1;
/// The largest TTL a lease may have, in seconds (etcd's limit).
pub const MAX_TTL_SECS: i64 = 9_000_000_000;

/// Size limits on requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Most compares, and most operations in each branch, of one transaction.
    pub max_txn_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_key_bytes: 4 * 1024, max_value_bytes: 1536 * 1024, max_txn_ops: 128 }
    }
}

impl Limits {
    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.max_key_bytes {
            return Err(Error::KeyTooLarge { size: key.len(), max: self.max_key_bytes });
        }
        Ok(())
    }

    pub fn check_range(&self, range: &KeyRange) -> Result<()> {
        // An empty start is allowed for open-ended ranges ("every key").
        if range.start.is_empty() && matches!(range.end, RangeEnd::Single) {
            return Err(Error::EmptyKey);
        }
        if range.start.len() > self.max_key_bytes {
            return Err(Error::KeyTooLarge { size: range.start.len(), max: self.max_key_bytes });
        }
        if let RangeEnd::Exclusive(end) = &range.end {
            if end.len() > self.max_key_bytes {
                return Err(Error::KeyTooLarge { size: end.len(), max: self.max_key_bytes });
            }
        }
        Ok(())
    }

    pub fn check_put(&self, req: &PutRequest) -> Result<()> {
        self.check_key(&req.key)?;
        if let Some(value) = &req.value {
            if value.len() > self.max_value_bytes {
                return Err(Error::ValueTooLarge { size: value.len(), max: self.max_value_bytes });
            }
        }
        match req.lease {
            LeaseChoice::Lease(id) => check_lease_id(id),
            LeaseChoice::Anonymous { ttl_secs } => check_ttl(ttl_secs),
            LeaseChoice::None | LeaseChoice::Keep => Ok(()),
        }
    }

    pub fn check_txn(&self, txn: &TxnRequest) -> Result<()> {
        for list in [txn.compare.len(), txn.success.len(), txn.failure.len()] {
            if list > self.max_txn_ops {
                return Err(Error::TooManyTxnOps { ops: list, max: self.max_txn_ops });
            }
        }
        for Compare { range, .. } in &txn.compare {
            self.check_range(range)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                TxnOp::Range(r) => {
                    if let Some(range) = &r.range {
                        self.check_range(range)?;
                    }
                }
                TxnOp::Put(p) => self.check_put(p)?,
                TxnOp::DeleteRange(d) => self.check_range(&d.range)?,
                TxnOp::Txn(inner) => self.check_txn(inner)?,
            }
        }
        Ok(())
    }
}

pub fn check_ttl(ttl: i64) -> Result<()> {
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl) {
        return Err(Error::InvalidTtl { ttl, min: MIN_TTL_SECS, max: MAX_TTL_SECS });
    }
    Ok(())
}

pub fn check_lease_id(id: LeaseId) -> Result<()> {
    if id <= 0 {
        return Err(Error::InvalidLeaseId(id));
    }
    Ok(())
}
