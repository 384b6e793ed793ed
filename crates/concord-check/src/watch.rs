//! Do watchers see every revision of their range exactly once, in order,
//! and the same thing the readers and writers saw?
//!
//! Input: what each watcher received (its key range, the revision it
//! started from, every event, and the revision up to which it is known to
//! be complete: its last event's or last progress notification's), the
//! writes clients had acknowledged with the revision the server answered,
//! every value clients ever tried to write (acknowledged or not), and the
//! reads clients got with each key's `mod_revision`.
//!
//! The promises checked:
//! - **In order, once.** A watcher's events have non-decreasing revisions,
//!   none below its start, and no (revision, key) twice.
//! - **Nothing missed.** Every acknowledged write inside a watcher's range
//!   and covered span (start ..= complete) is among its events, with its
//!   value; every value a read returned, likewise at its `mod_revision`.
//! - **Nothing invented.** Every put event carries a value some client
//!   tried to write to that key.
//! - **One history.** Two watchers agree on every (revision, key) both
//!   cover: the same event or, for both, none.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// One event as a watcher received it (`value: None` for a delete).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    pub revision: u64,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// What one watcher received.
#[derive(Debug, Clone, Default)]
pub struct Watcher {
    pub id: u64,
    /// `[start, end)`; an empty `end` means every key from `start` on.
    pub range: (Vec<u8>, Vec<u8>),
    pub start_revision: u64,
    pub events: Vec<WatchEvent>,
    /// Every revision up to this one has been delivered.
    pub complete_to: u64,
}

impl Watcher {
    fn covers(&self, revision: u64, key: &[u8]) -> bool {
        let (start, end) = &self.range;
        revision >= self.start_revision
            && revision <= self.complete_to
            && key >= start.as_slice()
            && (end.is_empty() || key < end.as_slice())
    }
}

/// Everything recorded about watches and the writes and reads beside them.
#[derive(Debug, Clone, Default)]
pub struct WatchHistory {
    pub watchers: Vec<Watcher>,
    /// Acknowledged writes: (revision, key, value; `None` for a delete).
    pub writes: Vec<WatchEvent>,
    /// Every value any client tried to put, per key.
    pub attempted: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// Reads: (mod_revision, key, value).
    pub reads: Vec<WatchEvent>,
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchViolation {
    OutOfOrder { watcher: u64, event: WatchEvent, after: u64 },
    BeforeStart { watcher: u64, event: WatchEvent },
    Duplicate { watcher: u64, event: WatchEvent },
    Missed { watcher: u64, expected: WatchEvent, got: Option<WatchEvent> },
    Invented { watcher: u64, event: WatchEvent },
    Disagree { watchers: (u64, u64), revision: u64, key: Vec<u8> },
}

impl WatchHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that some client tried to put `value` on `key`.
    pub fn attempt(&mut self, key: &[u8], value: &[u8]) {
        self.attempted.entry(key.to_vec()).or_default().insert(value.to_vec());
    }

    /// Checks everything; an empty answer means every promise held.
    pub fn check(&self) -> Vec<WatchViolation> {
        let mut violations = Vec::new();
        let mut seen: Vec<BTreeMap<(u64, Vec<u8>), &WatchEvent>> = Vec::new();
        for w in &self.watchers {
            let mut by_point = BTreeMap::new();
            let mut last = 0;
            for e in &w.events {
                if e.revision < last {
                    violations.push(WatchViolation::OutOfOrder { watcher: w.id, event: e.clone(), after: last });
                }
                last = last.max(e.revision);
                if e.revision < w.start_revision {
                    violations.push(WatchViolation::BeforeStart { watcher: w.id, event: e.clone() });
                }
                if by_point.insert((e.revision, e.key.clone()), e).is_some() {
                    violations.push(WatchViolation::Duplicate { watcher: w.id, event: e.clone() });
                }
                if let Some(value) = &e.value
                    && !self.attempted.get(&e.key).is_some_and(|values| values.contains(value))
                {
                    violations.push(WatchViolation::Invented { watcher: w.id, event: e.clone() });
                }
            }
            for expected in self.writes.iter().chain(&self.reads) {
                if !w.covers(expected.revision, &expected.key) {
                    continue;
                }
                let got = by_point.get(&(expected.revision, expected.key.clone()));
                if got.map(|e| &e.value) != Some(&expected.value) {
                    violations.push(WatchViolation::Missed {
                        watcher: w.id,
                        expected: expected.clone(),
                        got: got.map(|e| (*e).clone()),
                    });
                }
            }
            seen.push(by_point);
        }
        for (i, a) in self.watchers.iter().enumerate() {
            for (j, b) in self.watchers.iter().enumerate().skip(i + 1) {
                let points: BTreeSet<&(u64, Vec<u8>)> = seen[i].keys().chain(seen[j].keys()).collect();
                for point @ (revision, key) in points {
                    if a.covers(*revision, key)
                        && b.covers(*revision, key)
                        && seen[i].get(point).map(|e| &e.value) != seen[j].get(point).map(|e| &e.value)
                    {
                        violations.push(WatchViolation::Disagree {
                            watchers: (a.id, b.id),
                            revision: *revision,
                            key: key.clone(),
                        });
                    }
                }
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests;
