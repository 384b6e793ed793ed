//! Leases: the replicated lease table ([`Lessor`]) and the leader-side
//! deadline tracker ([`deadlines::LeaseDeadlines`]).
//!
//! The split is the point. The lessor is part of the state machine: it is
//! changed only by applied commands and reads no clock, so every member holds
//! the same table. Time lives in the deadline tracker, which each member keeps
//! beside the state machine from what apply reports; only the leader acts on
//! it, and only by proposing commands.
//!
//! Invariants of the lessor:
//! - a key is attached to at most one lease, and `keys` of a lease is exactly
//!   the set of live keys whose latest version names that lease;
//! - lease ids are positive; ids picked by the store come from `next_id`,
//!   which only grows, so they are never reused;
//! - generations come from one store-wide counter (`next_generation`) that
//!   every grant and keep-alive advances, so a generation never repeats for
//!   an id: a command proposed about an older lease or an older renewal
//!   (expiry, checkpoint) cannot touch a renewed lease, nor a lease revoked
//!   and granted again under the same client-chosen id;
//! - an anonymous lease (a key's own TTL) holds exactly one key: other keys
//!   cannot be attached to it, so it is dropped exactly when its key goes.

pub mod deadlines;
mod effect;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use effect::{LeaseCheckpoint, LeaseEffect};

use crate::request::ApplyError;
use crate::types::{LeaseId, Revision};

/// One active lease, as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The lease id.
    pub id: LeaseId,
    /// The granted TTL in seconds (changed only by a keep-alive with a new TTL).
    pub ttl_secs: i64,
    /// The store revision when the lease was granted.
    pub granted_at: Revision,
    /// Remaining time as last recorded in the log (grant, keep-alive or
    /// checkpoint). A restart resumes from this; it is never longer than the
    /// truth at the time it was recorded.
    pub remaining_ms: u64,
    /// Set anew (from a counter that only grows) by every grant and renewal:
    /// an expiry or a checkpoint measured for an older generation is ignored.
    pub generation: u64,
    /// Created by `put(..).ttl(..)`: hidden from listings unless asked, and
    /// dropped when its only key goes.
    pub anonymous: bool,
    /// The keys attached to it.
    pub keys: BTreeSet<Bytes>,
}

/// The replicated lease table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lessor {
    leases: BTreeMap<LeaseId, LeaseRecord>,
    next_id: LeaseId,
    /// The generation the next grant or keep-alive gets; only grows.
    next_generation: u64,
}

impl Default for Lessor {
    fn default() -> Self {
        Lessor { leases: BTreeMap::new(), next_id: 1, next_generation: 1 }
    }
}

/// Lease limits enforced at apply. They are part of the replicated state
/// (`State::lease_limits`) and change only through a command, so every
/// member enforces the same ones whatever its local configuration says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseLimits {
    /// Most leases active at once.
    pub max_leases: u64,
    /// Most keys attached to one lease.
    pub max_keys_per_lease: u64,
}

impl Default for LeaseLimits {
    fn default() -> Self {
        LeaseLimits { max_leases: 1_000_000, max_keys_per_lease: 100_000 }
    }
}

impl Lessor {
    /// The lease, if active.
    pub fn get(&self, id: LeaseId) -> Option<&LeaseRecord> {
        self.leases.get(&id)
    }

    /// Whether the lease is active.
    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// Every lease in id order.
    pub fn iter(&self) -> impl Iterator<Item = &LeaseRecord> {
        self.leases.values()
    }

    /// Leases with ids above `after`, in id order (a long listing reads
    /// them a chunk at a time).
    pub fn iter_after(&self, after: LeaseId) -> impl Iterator<Item = &LeaseRecord> {
        self.leases.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)).map(|(_, l)| l)
    }

    /// How many leases are active.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease is active.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    fn take_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    /// The id the next store-picked grant will get.
    pub fn next_id(&self) -> LeaseId {
        self.next_id
    }

    /// Whether `more` leases can be added.
    pub(crate) fn check_capacity(&self, more: u64, limits: &LeaseLimits) -> Result<(), ApplyError> {
        if self.leases.len() as u64 + more > limits.max_leases {
            return Err(ApplyError::TooManyLeases { max: limits.max_leases });
        }
        Ok(())
    }

    /// Creates a lease. `id: None` picks the next unused id. Capacity is the
    /// caller's to check first ([`Self::check_capacity`]).
    pub(crate) fn grant(
        &mut self,
        id: Option<LeaseId>,
        ttl_secs: i64,
        granted_at: Revision,
        anonymous: bool,
    ) -> Result<&LeaseRecord, ApplyError> {
        let id = match id {
            Some(id) if id <= 0 => {
                return Err(ApplyError::Invalid(format!("lease id {id} is not positive")));
            }
            Some(id) if self.leases.contains_key(&id) => return Err(ApplyError::LeaseExists(id)),
            Some(id) => id,
            None => {
                while self.leases.contains_key(&self.next_id) {
                    self.next_id += 1;
                }
                let id = self.next_id;
                self.next_id += 1;
                id
            }
        };
        let record = LeaseRecord {
            id,
            ttl_secs,
            granted_at,
            remaining_ms: ttl_ms(ttl_secs),
            generation: self.take_generation(),
            anonymous,
            keys: BTreeSet::new(),
        };
        Ok(self.leases.entry(id).or_insert(record))
    }

    /// Resets a lease to its (possibly new) TTL and bumps its generation.
    pub(crate) fn renew(&mut self, id: LeaseId, ttl_secs: Option<i64>) -> Result<&LeaseRecord, ApplyError> {
        if !self.leases.contains_key(&id) {
            return Err(ApplyError::LeaseNotFound(id));
        }
        let generation = self.take_generation();
        let lease = self.leases.get_mut(&id).expect("checked above");
        if let Some(ttl) = ttl_secs {
            lease.ttl_secs = ttl;
        }
        lease.generation = generation;
        lease.remaining_ms = ttl_ms(lease.ttl_secs);
        Ok(lease)
    }

    /// Records a leader's measurement; ignored if the lease was renewed since.
    pub(crate) fn checkpoint(&mut self, id: LeaseId, generation: u64, remaining_ms: u64) -> bool {
        match self.leases.get_mut(&id) {
            Some(lease) if lease.generation == generation => {
                lease.remaining_ms = remaining_ms.min(ttl_ms(lease.ttl_secs));
                true
            }
            _ => false,
        }
    }

    /// Whether `key` may be attached to `id` without breaking a limit.
    pub(crate) fn check_attach(&self, id: LeaseId, key: &[u8], limits: &LeaseLimits) -> Result<(), ApplyError> {
        let lease = self.leases.get(&id).ok_or(ApplyError::LeaseNotFound(id))?;
        if lease.anonymous && !lease.keys.contains(key) {
            return Err(ApplyError::AnonymousLease(id));
        }
        if !lease.keys.contains(key) && lease.keys.len() as u64 >= limits.max_keys_per_lease {
            return Err(ApplyError::TooManyKeysOnLease { lease: id, max: limits.max_keys_per_lease });
        }
        Ok(())
    }

    pub(crate) fn attach(&mut self, id: LeaseId, key: &Bytes) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.clone());
        }
    }

    /// Detaches `key` from `id`. Returns true when that emptied an anonymous
    /// lease, which the caller then removes.
    pub(crate) fn detach(&mut self, id: LeaseId, key: &[u8]) -> bool {
        match self.leases.get_mut(&id) {
            Some(lease) => {
                lease.keys.remove(key);
                lease.anonymous && lease.keys.is_empty()
            }
            None => false,
        }
    }

    /// Removes a lease and returns it (with its keys, in sorted order).
    pub(crate) fn remove(&mut self, id: LeaseId) -> Option<LeaseRecord> {
        self.leases.remove(&id)
    }
}

/// A TTL in milliseconds, saturating.
pub(crate) fn ttl_ms(ttl_secs: i64) -> u64 {
    (ttl_secs.max(0) as u64).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_picked_ids_are_never_reused_and_skip_client_ids() {
        let mut l = Lessor::default();
        let a = l.grant(None, 10, 1, false).unwrap().id;
        l.grant(Some(2), 10, 1, false).unwrap();
        let c = l.grant(None, 10, 1, false).unwrap().id;
        assert_eq!((a, c), (1, 3));
        l.remove(a);
        assert_eq!(l.grant(None, 10, 1, false).unwrap().id, 4);
        assert_eq!(l.grant(Some(2), 10, 1, false).unwrap_err(), ApplyError::LeaseExists(2));
        assert!(matches!(l.grant(Some(-5), 10, 1, false), Err(ApplyError::Invalid(_))));
    }

    #[test]
    fn checkpoint_of_an_older_generation_is_ignored() {
        let mut l = Lessor::default();
        let id = l.grant(None, 60, 1, false).unwrap().id;
        let first = l.get(id).unwrap().generation;
        assert!(l.checkpoint(id, first, 30_000));
        assert_eq!(l.get(id).unwrap().remaining_ms, 30_000);
        l.renew(id, None).unwrap();
        assert!(!l.checkpoint(id, first, 1_000), "a stale measurement must not shorten a renewed lease");
        assert_eq!(l.get(id).unwrap().remaining_ms, 60_000);
    }

    #[test]
    fn generations_never_repeat_for_a_regranted_id() {
        let mut l = Lessor::default();
        let old = l.grant(Some(42), 1, 1, false).unwrap().generation;
        l.remove(42);
        let new = l.grant(Some(42), 60, 2, false).unwrap().generation;
        assert_ne!(old, new);
        assert!(!l.checkpoint(42, old, 800), "a checkpoint of the revoked lease must not touch the new one");
        assert_eq!(l.get(42).unwrap().remaining_ms, 60_000);
        // Renewals draw from the same counter: no two (id, generation) pairs repeat.
        let renewed = l.renew(42, None).unwrap().generation;
        assert!(renewed > new);
    }

    #[test]
    fn other_keys_cannot_join_an_anonymous_lease() {
        let limits = LeaseLimits::default();
        let mut l = Lessor::default();
        let id = l.grant(None, 10, 1, true).unwrap().id;
        l.attach(id, &Bytes::from_static(b"a"));
        assert!(l.check_attach(id, b"a", &limits).is_ok());
        assert_eq!(l.check_attach(id, b"b", &limits).unwrap_err(), ApplyError::AnonymousLease(id));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = LeaseLimits { max_leases: 1, max_keys_per_lease: 1 };
        let mut l = Lessor::default();
        l.check_capacity(1, &limits).unwrap();
        let id = l.grant(None, 60, 1, false).unwrap().id;
        assert_eq!(l.check_capacity(1, &limits).unwrap_err(), ApplyError::TooManyLeases { max: 1 });
        l.attach(id, &Bytes::from_static(b"a"));
        assert!(l.check_attach(id, b"a", &limits).is_ok(), "re-attaching the same key is fine");
        assert_eq!(
            l.check_attach(id, b"b", &limits).unwrap_err(),
            ApplyError::TooManyKeysOnLease { lease: id, max: 1 }
        );
    }
}
