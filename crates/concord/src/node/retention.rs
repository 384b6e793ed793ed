//! etcd's periodic auto-compaction (`--auto-compaction-mode=periodic`):
//! keep the history of the last `period`, whatever the write rate.
//!
//! As etcd's compactor does, the current revision is sampled every tenth of
//! the period, and history is compacted up to the newest sample that is at
//! least one period old: so a revision is never compacted before it has
//! been superseded for a whole period, and at most a tenth of a period
//! later than that. Samples live in the leader's memory only: a new leader
//! starts sampling afresh (its first compaction comes one period after it
//! took over, never earlier than etcd's would).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::types::Revision;

pub(super) struct AgeWindow {
    period: Duration,
    /// (when, revision then), oldest first.
    samples: VecDeque<(Instant, Revision)>,
}

impl AgeWindow {
    pub(super) fn new(period: Duration) -> Self {
        AgeWindow { period, samples: VecDeque::new() }
    }

    /// How often to sample: a tenth of the period (at least 10 ms).
    pub(super) fn interval(&self) -> Duration {
        (self.period / 10).max(Duration::from_millis(10))
    }

    /// Records that the store was at `revision` at `now`; answers the
    /// revision history may now be compacted up to, if a sample has come
    /// of age since the last answer.
    pub(super) fn observe(&mut self, now: Instant, revision: Revision) -> Option<Revision> {
        self.samples.push_back((now, revision));
        let mut due = None;
        while let Some(&(at, sampled)) = self.samples.front() {
            if now.duration_since(at) < self.period {
                break;
            }
            due = Some(sampled);
            self.samples.pop_front();
        }
        due
    }

    /// Forgets every sample (this member stopped leading).
    pub(super) fn reset(&mut self) {
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A revision becomes compactable once it has been the latest sample's
    /// past for a whole period, never before.
    #[test]
    fn compacts_what_is_one_period_old() {
        let start = Instant::now();
        let mut w = AgeWindow::new(Duration::from_secs(100));
        assert_eq!(w.interval(), Duration::from_secs(10));
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(w.observe(at(0), 5), None);
        assert_eq!(w.observe(at(10), 50), None);
        assert_eq!(w.observe(at(99), 60), None, "nothing is a period old yet");
        assert_eq!(w.observe(at(100), 61), Some(5));
        assert_eq!(w.observe(at(105), 62), None);
        // Two samples came of age at once: the newer one counts.
        assert_eq!(w.observe(at(200), 70), Some(61));
        w.reset();
        assert_eq!(w.observe(at(250), 80), None, "a new leader samples afresh");
        assert_eq!(w.observe(at(350), 90), Some(80));
    }

    #[test]
    fn short_periods_sample_at_least_every_10_ms() {
        assert_eq!(AgeWindow::new(Duration::from_millis(20)).interval(), Duration::from_millis(10));
    }
}
