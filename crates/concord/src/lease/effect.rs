//! What apply tells the lease deadline trackers, and the leader's
//! measurements it records: the boundary between the deterministic lease
//! table and the clock-driven side.

use serde::{Deserialize, Serialize};

use crate::types::LeaseId;

/// The leader's measurement of one lease's remaining time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCheckpoint {
    /// The lease.
    pub id: LeaseId,
    /// The generation the measurement is about; a renewed lease ignores it.
    pub generation: u64,
    /// Its remaining time, in milliseconds.
    pub remaining_ms: u64,
}

/// Changes to leases that the non-deterministic side (the deadline tracker)
/// must learn about after apply. Produced by apply, consumed by the replication
/// layer; apply itself never reads a clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEffect {
    /// The lease now has `remaining_ms` left, measured from the moment of
    /// apply (grant, keep-alive or checkpoint).
    Deadline {
        /// The lease.
        id: LeaseId,
        /// Its generation (bumped by every renewal).
        generation: u64,
        /// Its remaining time in milliseconds.
        remaining_ms: u64,
        /// Set by a checkpoint rather than a grant or renewal.
        checkpoint: bool,
    },
    /// The lease is gone (revoked, expired, or an emptied anonymous lease).
    Removed {
        /// The lease.
        id: LeaseId,
    },
}
