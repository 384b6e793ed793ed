//! Do leases keep their promises?
//!
//! Clients record, per lease, what they did and saw, each with invocation
//! and return times on the history's monotonic clock (nanoseconds):
//! grants and keep-alives that succeeded (with the TTL the server
//! answered), revokes, and observations that found the lease — or a key
//! attached to it — alive or gone. A watcher adds the revision at which
//! each attached key was deleted.
//!
//! The promises checked (each violation names the lease and the events):
//! - **Never early.** A lease is never gone before its TTL has run from its
//!   grant or latest successful keep-alive. A keep-alive applied at `p`
//!   moves the deadline to `p + ttl` with `p >= invoked`; an observation
//!   that found the lease gone did so at some `q <= returned`. Whatever the
//!   order of `p` and `q` (a gone lease cannot be kept alive afterwards),
//!   the history is explained only if `q >= p + ttl` is possible, that is
//!   `gone.returned >= keep_alive.invoked + ttl`. Observations after a
//!   revoke was invoked are exempt.
//! - **Never back.** Once an observation returned "gone", no later
//!   observation (invoked after that return) finds the lease alive, and no
//!   later keep-alive succeeds. The same after an acknowledged revoke.
//! - **One revision.** All keys of a lease that were deleted with it (not
//!   by a client) are deleted at one revision, and no read (at one
//!   revision) sees some of them but not all.
//!
//! It also measures, for leases that expired on their own, how late they
//! went: from the latest moment they could have been due (the last
//! successful — or unanswered — keep-alive's return plus its TTL) to the return of the first
//! observation that found them gone (an upper bound of the true lateness;
//! observers poll, so it includes up to one poll interval).

use std::collections::BTreeMap;

/// A lease id as the server gave it.
pub type LeaseId = i64;

/// What one client did with, or saw of, a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEventKind {
    /// A grant succeeded with this TTL (ms).
    Granted { ttl_ms: u64 },
    /// A keep-alive succeeded and the server answered this TTL (ms).
    KeptAlive { ttl_ms: u64 },
    /// A keep-alive whose answer never came (it may have renewed the lease
    /// as late as its give-up time): counts only for lateness.
    RenewalUnknown { ttl_ms: u64 },
    /// A revoke was sent; `acknowledged` if the server confirmed it.
    Revoked { acknowledged: bool },
    /// An observation found the lease (or a key attached to it) present.
    SeenAlive,
    /// An observation found the lease (or a key attached to it) absent,
    /// or a keep-alive was refused because the lease is unknown.
    SeenGone,
    /// A read at one revision found some of the lease's keys but not all
    /// (after every one had been attached).
    SeenPartial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseEvent {
    pub client: u64,
    pub lease: LeaseId,
    pub kind: LeaseEventKind,
    pub invoked: u64,
    pub returned: u64,
}

/// Everything recorded about leases in one run.
#[derive(Debug, Clone, Default)]
pub struct LeaseHistory {
    pub events: Vec<LeaseEvent>,
    /// (lease, key) → revision at which a watcher saw the key deleted
    /// without a client deleting it.
    pub deletions: BTreeMap<(LeaseId, Vec<u8>), u64>,
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseViolation {
    /// Found gone before its TTL could have run out.
    Early { lease: LeaseId, kept_alive: LeaseEvent, seen_gone: LeaseEvent },
    /// Found alive (or kept alive) after it was certainly gone.
    Back { lease: LeaseId, gone: LeaseEvent, alive: LeaseEvent },
    /// A read at one revision saw only some of its keys.
    PartialKeys { lease: LeaseId, seen: LeaseEvent },
    /// Its keys were deleted at more than one revision.
    SplitDeletion { lease: LeaseId, revisions: Vec<(Vec<u8>, u64)> },
}

/// What the check found: violations, and how late the leases that expired
/// on their own were seen gone (ms, one entry per lease).
#[derive(Debug, Clone, Default)]
pub struct LeaseReport {
    pub violations: Vec<LeaseViolation>,
    pub lateness_ms: Vec<u64>,
}

impl LeaseHistory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, client: u64, lease: LeaseId, kind: LeaseEventKind, invoked: u64, returned: u64) {
        self.events.push(LeaseEvent { client, lease, kind, invoked, returned });
    }

    /// A watcher saw `key`, attached to `lease`, deleted at `revision`.
    pub fn deleted(&mut self, lease: LeaseId, key: Vec<u8>, revision: u64) {
        self.deletions.insert((lease, key), revision);
    }

    /// Checks every lease.
    pub fn check(&self) -> LeaseReport {
        let mut per_lease: BTreeMap<LeaseId, Vec<&LeaseEvent>> = BTreeMap::new();
        for e in &self.events {
            per_lease.entry(e.lease).or_default().push(e);
        }
        let mut report = LeaseReport::default();
        for (&lease, events) in &per_lease {
            check_lease(lease, events, &mut report);
        }
        let mut revisions: BTreeMap<LeaseId, Vec<(Vec<u8>, u64)>> = BTreeMap::new();
        for ((lease, key), revision) in &self.deletions {
            revisions.entry(*lease).or_default().push((key.clone(), *revision));
        }
        for (lease, revisions) in revisions {
            if revisions.windows(2).any(|w| w[0].1 != w[1].1) {
                report.violations.push(LeaseViolation::SplitDeletion { lease, revisions });
            }
        }
        report
    }
}

const MS: u64 = 1_000_000;

fn check_lease(lease: LeaseId, events: &[&LeaseEvent], report: &mut LeaseReport) {
    use LeaseEventKind::*;
    let renewals = || {
        events.iter().filter_map(|e| match e.kind {
            Granted { ttl_ms } | KeptAlive { ttl_ms } => Some((*e, ttl_ms)),
            _ => None,
        })
    };
    if let Some(partial) = events.iter().find(|e| e.kind == SeenPartial) {
        report.violations.push(LeaseViolation::PartialKeys { lease, seen: **partial });
        return;
    }
    let first_revoke = events.iter().filter(|e| matches!(e.kind, Revoked { .. })).map(|e| e.invoked).min();
    let gone: Vec<&LeaseEvent> = events.iter().copied().filter(|e| e.kind == SeenGone).collect();
    let alive = || events.iter().copied().filter(|e| matches!(e.kind, SeenAlive | KeptAlive { .. }));

    // Never early.
    for g in &gone {
        if first_revoke.is_some_and(|r| r <= g.returned) {
            continue;
        }
        // Renewals invoked after this observation returned are the "never
        // back" check's business.
        let early =
            renewals().find(|(k, ttl)| k.invoked <= g.returned && g.returned < k.invoked.saturating_add(ttl * MS));
        if let Some((k, _)) = early {
            report.violations.push(LeaseViolation::Early { lease, kept_alive: *k, seen_gone: **g });
            return;
        }
    }

    // Never back: after the earliest certain end (a gone observation's or
    // an acknowledged revoke's return), nothing invoked later finds it alive.
    let ended = events
        .iter()
        .copied()
        .filter(|e| matches!(e.kind, SeenGone | Revoked { acknowledged: true }))
        .min_by_key(|e| e.returned);
    if let Some(end) = ended
        && let Some(a) = alive().filter(|a| a.invoked > end.returned).min_by_key(|a| a.invoked)
    {
        report.violations.push(LeaseViolation::Back { lease, gone: *end, alive: *a });
        return;
    }

    // Lateness of a lease that expired on its own.
    if first_revoke.is_none() {
        let unknown = events.iter().filter_map(|e| match e.kind {
            RenewalUnknown { ttl_ms } => Some(e.returned.saturating_add(ttl_ms * MS)),
            _ => None,
        });
        let due = renewals().map(|(k, ttl)| k.returned.saturating_add(ttl * MS)).chain(unknown).max();
        let seen = gone.iter().map(|g| g.returned).min();
        if let (Some(due), Some(seen)) = (due, seen) {
            report.lateness_ms.push(seen.saturating_sub(due) / MS);
        }
    }
}

#[cfg(test)]
mod tests;
