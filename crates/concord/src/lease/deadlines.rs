//! When each lease runs out, measured on this member's monotonic clock.
//!
//! Every member feeds this tracker from what apply reports
//! ([`LeaseEffect`]), stamping each report with the moment it was applied, so
//! a deadline is never earlier than the truth: the leader applies a grant or
//! keep-alive after the client asked for it, and a member that restarts
//! resumes each lease from its last recorded remaining time. Only the leader
//! acts on the tracker (by proposing expiry and checkpoint commands).
//!
//! Two orders are kept: by deadline (for expiry) and by the time each
//! lease's remaining time was last recorded in the log (for checkpoints), so
//! both the next expiry and the stalest record are found without scanning,
//! and checkpoints serve the oldest records first: no lease starves however
//! many there are.
//!
//! Time is always passed in (`now`), which keeps this logic testable without
//! sleeping.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::{LeaseCheckpoint, LeaseEffect};
use crate::types::LeaseId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    deadline: Instant,
    generation: u64,
    /// When the log last recorded this lease's remaining time.
    recorded_at: Instant,
}

/// Deadlines of every active lease, ordered for the expiry task and for
/// the checkpoint task.
#[derive(Debug, Default)]
pub struct LeaseDeadlines {
    leases: HashMap<LeaseId, Tracked>,
    /// `(deadline, id)` of every lease.
    queue: BTreeSet<(Instant, LeaseId)>,
    /// `(recorded_at, id)` of every lease.
    records: BTreeSet<(Instant, LeaseId)>,
}

impl LeaseDeadlines {
    /// Takes in what apply reported at `now`. Returns true when the earliest
    /// deadline moved earlier (the expiry task should re-arm its timer).
    pub fn observe(&mut self, effect: &LeaseEffect, now: Instant) -> bool {
        match *effect {
            LeaseEffect::Deadline { id, generation, remaining_ms, checkpoint } => {
                let deadline = now + Duration::from_millis(remaining_ms);
                // A checkpoint of the generation we track is never later than
                // our deadline where we measured it ourselves (the leader), and
                // is the better bound where we did not (replaying the log after
                // a restart): the earlier of the two is right in both cases.
                let deadline = match self.leases.get(&id) {
                    Some(t) if checkpoint && t.generation == generation => t.deadline.min(deadline),
                    _ => deadline,
                };
                self.set(id, Tracked { deadline, generation, recorded_at: now })
            }
            LeaseEffect::Removed { id } => {
                self.remove(id);
                false
            }
        }
    }

    fn set(&mut self, id: LeaseId, tracked: Tracked) -> bool {
        if let Some(old) = self.leases.insert(id, tracked) {
            self.queue.remove(&(old.deadline, id));
            self.records.remove(&(old.recorded_at, id));
        }
        let earliest = self.queue.first().is_none_or(|(d, _)| tracked.deadline < *d);
        self.queue.insert((tracked.deadline, id));
        self.records.insert((tracked.recorded_at, id));
        earliest
    }

    /// Stops tracking the lease.
    pub fn remove(&mut self, id: LeaseId) {
        if let Some(old) = self.leases.remove(&id) {
            self.queue.remove(&(old.deadline, id));
            self.records.remove(&(old.recorded_at, id));
        }
    }

    /// Stops tracking every lease.
    pub fn clear(&mut self) {
        self.leases.clear();
        self.queue.clear();
        self.records.clear();
    }

    /// How many leases are tracked.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease is tracked.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Time left on lease `id` at `now` (zero once past its deadline).
    pub fn remaining(&self, id: LeaseId, now: Instant) -> Option<Duration> {
        self.leases.get(&id).map(|t| t.deadline.saturating_duration_since(now))
    }

    /// Whether lease `id` has reached its deadline at `now` (it is expired,
    /// even if its expiry is not committed yet: a renewal must be refused).
    /// `false` for a lease this member does not track.
    pub fn is_past_deadline(&self, id: LeaseId, now: Instant) -> bool {
        self.leases.get(&id).is_some_and(|t| t.deadline <= now)
    }

    /// The earliest deadline of any lease.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.first().map(|(d, _)| *d)
    }

    /// Up to `max` leases whose deadline is at or before `now`, earliest
    /// first, with the generation they expired in.
    pub fn expired(&self, now: Instant, max: usize) -> Vec<(LeaseId, u64)> {
        self.queue
            .iter()
            .take_while(|(d, _)| *d <= now)
            .take(max)
            .map(|(_, id)| (*id, self.leases[id].generation))
            .collect()
    }

    /// Up to `max` running leases whose remaining time was last recorded
    /// `age` or longer ago, oldest record first: the measurements the leader
    /// should write to the log. Leases past their deadline are left to the
    /// expiry task.
    pub fn due_checkpoints(&self, now: Instant, age: Duration, max: usize) -> Vec<LeaseCheckpoint> {
        self.records
            .iter()
            .take_while(|(recorded_at, _)| now.saturating_duration_since(*recorded_at) >= age)
            .map(|(_, id)| (*id, self.leases[id]))
            .filter(|(_, t)| t.deadline > now)
            .take(max)
            .map(|(id, t)| checkpoint_of(id, &t, now))
            .collect()
    }

    /// A measurement of every running lease (for a clean shutdown).
    pub fn all_checkpoints(&self, now: Instant) -> Vec<LeaseCheckpoint> {
        let mut all: Vec<LeaseCheckpoint> =
            (self.leases.iter()).filter(|(_, t)| t.deadline > now).map(|(id, t)| checkpoint_of(*id, t, now)).collect();
        all.sort_unstable_by_key(|c| c.id);
        all
    }

    /// On becoming leader: no lease may run out sooner than `grace` from now,
    /// so leases that a previous leader was renewing get time to be renewed
    /// here. Deadlines only ever move later.
    pub fn extend_all(&mut self, now: Instant, grace: Duration) {
        let floor = now + grace;
        let late: Vec<(LeaseId, Tracked)> =
            self.leases.iter().filter(|(_, t)| t.deadline < floor).map(|(id, t)| (*id, *t)).collect();
        for (id, t) in late {
            self.set(id, Tracked { deadline: floor, ..t });
        }
    }
}

fn checkpoint_of(id: LeaseId, t: &Tracked, now: Instant) -> LeaseCheckpoint {
    LeaseCheckpoint {
        id,
        generation: t.generation,
        remaining_ms: t.deadline.saturating_duration_since(now).as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline(id: LeaseId, generation: u64, remaining_ms: u64) -> LeaseEffect {
        LeaseEffect::Deadline { id, generation, remaining_ms, checkpoint: false }
    }

    #[test]
    fn expires_in_deadline_order_and_not_before() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        assert!(d.observe(&deadline(1, 0, 2_000), t0));
        assert!(d.observe(&deadline(2, 0, 1_000), t0), "an earlier deadline re-arms the timer");
        assert!(!d.observe(&deadline(3, 0, 5_000), t0));
        assert!(d.expired(t0 + Duration::from_millis(999), 10).is_empty());
        assert_eq!(d.expired(t0 + Duration::from_millis(2_000), 10), vec![(2, 0), (1, 0)]);
        assert_eq!(d.expired(t0 + Duration::from_secs(9), 1), vec![(2, 0)]);
        assert_eq!(d.next_deadline(), Some(t0 + Duration::from_millis(1_000)));
    }

    #[test]
    fn renewal_moves_the_deadline_and_bumps_the_generation() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.observe(&deadline(1, 0, 1_000), t0);
        d.observe(&deadline(1, 1, 1_000), t0 + Duration::from_millis(900));
        assert!(d.expired(t0 + Duration::from_millis(1_500), 10).is_empty());
        assert_eq!(d.expired(t0 + Duration::from_millis(1_900), 10), vec![(1, 1)]);
        assert_eq!(d.remaining(1, t0 + Duration::from_millis(1_400)), Some(Duration::from_millis(500)));
        d.observe(&LeaseEffect::Removed { id: 1 }, t0);
        assert!(d.is_empty());
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn checkpoints_are_due_after_the_interval_and_only_move_the_record_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = LeaseDeadlines::default();
        d.observe(&deadline(7, 0, 10_000), t0);
        assert!(d.due_checkpoints(t0 + s / 2, s, 10).is_empty());
        let due = d.due_checkpoints(t0 + 3 * s, s, 10);
        assert_eq!(due, vec![LeaseCheckpoint { id: 7, generation: 0, remaining_ms: 7_000 }]);
        // The checkpoint is applied a little later: the deadline must not move.
        let applied = LeaseEffect::Deadline { id: 7, generation: 0, remaining_ms: 7_000, checkpoint: true };
        d.observe(&applied, t0 + 3 * s + Duration::from_millis(5));
        assert_eq!(d.remaining(7, t0 + 4 * s), Some(Duration::from_secs(6)));
        assert!(d.due_checkpoints(t0 + 3 * s + Duration::from_millis(500), s, 10).is_empty());
    }

    /// Issue: the checkpoint round sorted every lease by id and kept the
    /// first 16,000, so above that low ids were served again before high ids
    /// ever were.
    #[test]
    fn checkpoint_starvation_oldest_record_first() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = LeaseDeadlines::default();
        for id in 1..=100 {
            d.observe(&deadline(id, 0, 60_000), t0);
        }
        let mut served = BTreeSet::new();
        let mut now = t0;
        for round in 0..10 {
            now += s;
            let due = d.due_checkpoints(now, s, 10);
            assert_eq!(due.len(), 10, "round {round}");
            for c in due {
                assert!(served.insert(c.id), "lease {} served twice before every lease was served once", c.id);
                let applied =
                    LeaseEffect::Deadline { id: c.id, generation: 0, remaining_ms: c.remaining_ms, checkpoint: true };
                d.observe(&applied, now);
            }
        }
        assert_eq!(served.len(), 100);
    }

    /// A keep-alive that arrives once the deadline is reached must be refused
    /// (exactly at the deadline too), and not a moment before.
    #[test]
    fn renewal_is_refused_from_the_deadline_on() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.observe(&deadline(9, 1, 1_000), t0);
        assert!(!d.is_past_deadline(9, t0 + Duration::from_millis(999)));
        assert!(d.is_past_deadline(9, t0 + Duration::from_millis(1_000)));
        assert!(d.is_past_deadline(9, t0 + Duration::from_secs(5)));
        assert!(!d.is_past_deadline(10, t0 + Duration::from_secs(5)), "an unknown lease is left to apply");
    }

    #[test]
    fn all_checkpoints_cover_every_running_lease() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.observe(&deadline(2, 5, 5_000), t0);
        d.observe(&deadline(1, 4, 100), t0);
        let all = d.all_checkpoints(t0 + Duration::from_millis(2_500));
        assert_eq!(all, vec![LeaseCheckpoint { id: 2, generation: 5, remaining_ms: 2_500 }]);
    }

    #[test]
    fn a_replayed_checkpoint_sets_the_deadline_after_restart() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        // Replay after a restart: the grant (full TTL), then its checkpoint.
        d.observe(&deadline(3, 2, 10_000), t0);
        let replayed = LeaseEffect::Deadline { id: 3, generation: 2, remaining_ms: 4_000, checkpoint: true };
        d.observe(&replayed, t0);
        assert_eq!(d.remaining(3, t0), Some(Duration::from_secs(4)));
    }

    #[test]
    fn promotion_extends_but_never_shortens() {
        let t0 = Instant::now();
        let mut d = LeaseDeadlines::default();
        d.observe(&deadline(1, 0, 100), t0);
        d.observe(&deadline(2, 0, 60_000), t0);
        d.extend_all(t0, Duration::from_secs(2));
        assert_eq!(d.remaining(1, t0), Some(Duration::from_secs(2)));
        assert_eq!(d.remaining(2, t0), Some(Duration::from_secs(60)));
        assert_eq!(d.next_deadline(), Some(t0 + Duration::from_secs(2)));
    }
}
