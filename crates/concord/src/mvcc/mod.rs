//! The revisioned keyspace: every key's versions since the last compaction,
//! kept in memory in key order.
//!
//! Invariants:
//! - `revision` is the revision of the last commit that changed a key; it
//!   starts at 1 for an empty store and never goes down.
//! - every version of every key has `mod_revision <= revision`;
//! - a read at `r` with `compact_revision <= r <= revision` sees exactly the
//!   keys whose version visible at `r` is live;
//! - `changes` lists `(revision, key)` for every version written after the
//!   compaction point, and at it, in revision order, so compaction visits
//!   only the keys it can shrink and a watch can start exactly at the
//!   compaction revision (as etcd serves it).
//!
//! The store does not choose revisions: the state machine opens a write at
//! `revision + 1`, applies every change of one command at that revision, and
//! calls `KvStore::commit_revision` if anything changed.

mod key_history;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub(crate) use key_history::{KEY_OVERHEAD, KeyHistory, LiveVersion, VERSION_OVERHEAD, to_kv};

use crate::request::{ApplyError, RangeRequest, RangeResponse};
use crate::types::{Event, EventKind, KeyRange, KeyValue, LeaseId, RangeEnd, Revision, WatchEvent};

/// The revisioned keyspace: every key's versions since the compaction point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    keys: BTreeMap<Bytes, KeyHistory>,
    revision: Revision,
    compact_revision: Revision,
    changes: VecDeque<(Revision, Bytes)>,
    live_keys: u64,
    /// While `Some`, every write also records its watch event here (for the
    /// watch hub). Derived data: not part of the state, never serialized.
    #[serde(skip)]
    captured: Option<Vec<WatchEvent>>,
    /// What the stored keys and versions count for in the space quota:
    /// `KEY_OVERHEAD` + key length per key, `Version::bytes` per version.
    /// Kept up to date by every change; derived (recounted when a snapshot
    /// is loaded), never serialized.
    #[serde(skip)]
    bytes: u64,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore {
            keys: BTreeMap::new(),
            revision: 1,
            compact_revision: 0,
            changes: VecDeque::new(),
            live_keys: 0,
            captured: None,
            bytes: 0,
        }
    }
}

impl KvStore {
    /// The revision of the last change.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Reads below this revision fail with `Compacted`.
    pub fn compact_revision(&self) -> Revision {
        self.compact_revision
    }

    /// Number of keys that currently exist.
    pub fn live_keys(&self) -> u64 {
        self.live_keys
    }

    /// What the store counts for in the space quota (see `bytes`).
    pub fn quota_bytes(&self) -> u64 {
        self.bytes
    }

    /// Counts `bytes` from the stored keys (after loading a snapshot).
    pub(crate) fn recount_bytes(&mut self) {
        self.bytes = self.counted_bytes();
    }

    /// [`Self::quota_bytes`] counted from scratch, key by key (a check of
    /// the running count).
    pub fn counted_bytes(&self) -> u64 {
        self.keys.iter().map(|(key, history)| KEY_OVERHEAD + key.len() as u64 + history.bytes()).sum()
    }

    /// Marks `revision` (the write revision) as the store's revision.
    pub(crate) fn commit_revision(&mut self, revision: Revision) {
        debug_assert!(revision > self.revision);
        self.revision = revision;
    }

    /// Resolves a requested read revision (0 = latest) or explains why it
    /// cannot be read.
    pub fn read_revision(&self, requested: Revision) -> Result<Revision, ApplyError> {
        if requested <= 0 {
            return Ok(self.revision);
        }
        if requested > self.revision {
            return Err(ApplyError::FutureRevision { revision: requested, current: self.revision });
        }
        if requested < self.compact_revision {
            return Err(ApplyError::Compacted { compact_revision: self.compact_revision });
        }
        Ok(requested)
    }

    /// The current version of `key`.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        let (k, h) = self.keys.get_key_value(key)?;
        let v = h.versions.last()?;
        v.live.as_ref().map(|live| to_kv(k, v.mod_revision, live, false))
    }

    /// The current lease of `key`, 0 if none or absent.
    pub(crate) fn lease_of(&self, key: &[u8]) -> LeaseId {
        self.keys.get(key).and_then(|h| h.latest()).map_or(0, |l| l.lease)
    }

    /// Keys (with their history) inside `range`, in key order.
    fn histories<'a>(&'a self, range: &KeyRange) -> Box<dyn Iterator<Item = (&'a Bytes, &'a KeyHistory)> + 'a> {
        if range.is_empty() {
            return Box::new(std::iter::empty());
        }
        let start = Bound::Included(range.start.as_ref());
        match &range.end {
            RangeEnd::Single => Box::new(self.keys.get_key_value(range.start.as_ref()).into_iter()),
            RangeEnd::Unbounded => Box::new(self.keys.range::<[u8], _>((start, Bound::Unbounded))),
            RangeEnd::Exclusive(end) => Box::new(self.keys.range::<[u8], _>((start, Bound::Excluded(end.as_ref())))),
        }
    }

    /// The keys that exist at the latest revision inside `range`.
    pub(crate) fn live_in<'a>(&'a self, range: &KeyRange) -> impl Iterator<Item = KeyValue> + 'a {
        self.histories(range).filter_map(|(k, h)| {
            let v = h.versions.last()?;
            v.live.as_ref().map(|live| to_kv(k, v.mod_revision, live, false))
        })
    }

    /// A range read at the latest revision or the one asked for.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, ApplyError> {
        self.range_at(req, self.revision)
    }

    /// A range read where "latest" means `latest` (a transaction reading its
    /// own writes passes its write revision).
    pub(crate) fn range_at(&self, req: &RangeRequest, latest: Revision) -> Result<RangeResponse, ApplyError> {
        let at = if req.revision <= 0 { latest } else { self.read_revision(req.revision)? };
        let mut resp = RangeResponse { revision: latest, ..Default::default() };
        self.range_chunk(req, at, None, usize::MAX, &mut resp);
        Ok(resp)
    }

    /// One chunk of a long read at revision `at` (already resolved): visits
    /// at most `budget` keys of `req.range` after `resume_after`, adding
    /// what it finds to `resp`. Returns the key to resume after, or `None`
    /// once the range is done. The caller holds the state's lock for one
    /// chunk at a time, so a read of millions of keys never holds it long;
    /// every chunk sees revision `at` (later writes add versions above it,
    /// and compaction below it keeps what `at` sees — the caller checks
    /// that compaction has not passed `at` before each chunk).
    pub fn range_chunk(
        &self,
        req: &RangeRequest,
        at: Revision,
        resume_after: Option<&Bytes>,
        budget: usize,
        resp: &mut RangeResponse,
    ) -> Option<Bytes> {
        let range = req.range.as_ref()?;
        let range = match resume_after {
            Some(last) => {
                let mut next = last.to_vec();
                next.push(0);
                KeyRange { start: Bytes::from(next), end: range.end.clone() }
            }
            None => range.clone(),
        };
        let limit = if req.limit == 0 { u64::MAX } else { req.limit };
        let mut last_visited: Option<&Bytes> = None;
        for (visited, (key, history)) in self.histories(&range).enumerate() {
            if visited == budget {
                // More keys follow: resume after the last one visited.
                return last_visited.cloned();
            }
            last_visited = Some(key);
            let Some((version, live)) = history.at(at) else { continue };
            resp.count += 1;
            if req.count_only {
                continue;
            }
            if (resp.kvs.len() as u64) < limit {
                resp.kvs.push(to_kv(key, version.mod_revision, live, req.keys_only));
            } else {
                resp.more = true;
            }
        }
        None
    }

    /// Writes `key` at `revision`; returns the previous version if any.
    /// `value: None` keeps the current value.
    pub(crate) fn put(
        &mut self,
        revision: Revision,
        key: &Bytes,
        value: Option<Bytes>,
        lease: LeaseId,
    ) -> Option<KeyValue> {
        let prev = self.get(key);
        // Stored bytes get their own allocation: a request's `Bytes` may be a
        // slice of a much larger network buffer that it would keep alive for
        // as long as the version is retained.
        let value = match value {
            Some(v) => Bytes::copy_from_slice(&v),
            None => prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
        };
        if prev.is_none() {
            self.live_keys += 1;
        }
        let key = match self.keys.get_key_value(key.as_ref()) {
            Some((stored, _)) => stored.clone(),
            None => {
                self.bytes += KEY_OVERHEAD + key.len() as u64;
                Bytes::copy_from_slice(key)
            }
        };
        let history = self.keys.entry(key.clone()).or_default();
        let replaced = history.versions.last().filter(|v| v.mod_revision == revision).map_or(0, |v| v.bytes());
        self.bytes = self.bytes + VERSION_OVERHEAD + value.len() as u64 - replaced;
        let live = history.put(revision, value, lease);
        if let Some(captured) = &mut self.captured {
            let kv = to_kv(&key, revision, live, false);
            captured.push(WatchEvent { kind: EventKind::Put, kv, prev_kv: prev.clone() });
        }
        self.changes.push_back((revision, key));
        prev
    }

    /// Deletes every live key in `range` at `revision`, in key order; returns
    /// what was deleted.
    pub(crate) fn delete_range(&mut self, revision: Revision, range: &KeyRange) -> Vec<KeyValue> {
        let doomed: Vec<KeyValue> = self.live_in(range).collect();
        for kv in &doomed {
            self.delete_key(revision, &kv.key);
        }
        doomed
    }

    /// Deletes one key at `revision` if it exists.
    pub(crate) fn delete_key(&mut self, revision: Revision, key: &Bytes) -> bool {
        let prev = if self.captured.is_some() { self.get(key) } else { None };
        let Some(stored) = self.keys.get_key_value(key.as_ref()).map(|(k, _)| k.clone()) else { return false };
        let history = self.keys.get_mut(key.as_ref()).expect("found above");
        let replaced = history.versions.last().filter(|v| v.mod_revision == revision).map_or(0, |v| v.bytes());
        let deleted = history.delete(revision);
        if deleted {
            self.bytes = self.bytes + VERSION_OVERHEAD - replaced;
            self.live_keys -= 1;
            self.changes.push_back((revision, stored));
            if let Some(captured) = &mut self.captured {
                captured.push(WatchEvent::deleted(key.clone(), revision, prev));
            }
        }
        deleted
    }

    /// Starts (or stops) recording watch events of every write.
    pub(crate) fn set_capture(&mut self, on: bool) {
        match (on, self.captured.is_some()) {
            (true, false) => self.captured = Some(Vec::new()),
            (false, true) => self.captured = None,
            _ => {}
        }
    }

    /// The watch events recorded since the last call, in apply order.
    pub(crate) fn take_captured(&mut self) -> Option<Vec<WatchEvent>> {
        self.captured.as_mut().map(std::mem::take)
    }

    /// Watch events of keys in `range` from revision `from` on, oldest
    /// first, in apply order within a revision, and the revision up to which
    /// they are complete. Stops after the revision in which `limit` events
    /// were reached, or in which `scan_budget` changes were looked at (a
    /// revision is never split), so one call's work is bounded however
    /// little of the history `range` matches.
    /// Fails if `from` is below the compaction point (etcd serves a watch
    /// that starts exactly at it).
    pub fn events_since(
        &self,
        from: Revision,
        range: &KeyRange,
        limit: usize,
        scan_budget: usize,
    ) -> Result<(Vec<WatchEvent>, Revision), ApplyError> {
        if from < self.compact_revision {
            return Err(ApplyError::Compacted { compact_revision: self.compact_revision });
        }
        let start = self.changes.partition_point(|(rev, _)| *rev < from);
        let mut events = Vec::new();
        let mut previous: Option<Revision> = None;
        for (scanned, (rev, key)) in self.changes.range(start..).enumerate() {
            if previous.is_some_and(|p| p != *rev) && (events.len() >= limit || scanned >= scan_budget) {
                return Ok((events, previous.expect("checked above")));
            }
            previous = Some(*rev);
            if !range.contains(key) {
                continue;
            }
            let Some(history) = self.keys.get(key.as_ref()) else { continue };
            let idx = history.versions.partition_point(|v| v.mod_revision < *rev);
            let Some(version) = history.versions.get(idx).filter(|v| v.mod_revision == *rev) else { continue };
            let prev = idx
                .checked_sub(1)
                .and_then(|i| history.versions.get(i))
                .and_then(|v| v.live.as_ref().map(|live| to_kv(key, v.mod_revision, live, false)));
            events.push(match &version.live {
                Some(live) => WatchEvent { kind: EventKind::Put, kv: to_kv(key, *rev, live, false), prev_kv: prev },
                None => WatchEvent::deleted(key.clone(), *rev, prev),
            });
        }
        Ok((events, self.revision))
    }

    /// Forgets history below `revision`. Reads at `revision` and later are
    /// unaffected.
    pub(crate) fn compact(&mut self, revision: Revision) -> Result<(), ApplyError> {
        if revision > self.revision {
            return Err(ApplyError::FutureRevision { revision, current: self.revision });
        }
        if revision <= self.compact_revision {
            return Err(ApplyError::Compacted { compact_revision: self.compact_revision });
        }
        // Changes at `revision` itself stay listed: their versions are the
        // ones visible at `revision`, which compaction keeps.
        while let Some((rev, _)) = self.changes.front() {
            if *rev >= revision {
                break;
            }
            let (_, key) = self.changes.pop_front().expect("front exists");
            if let Some(h) = self.keys.get_mut(key.as_ref()) {
                let (emptied, freed) = h.compact(revision);
                self.bytes -= freed;
                if emptied {
                    self.keys.remove(key.as_ref());
                    self.bytes -= KEY_OVERHEAD + key.len() as u64;
                }
            }
        }
        self.compact_revision = revision;
        Ok(())
    }

    /// A checksum of every stored version (keys, revisions, values, leases,
    /// deletions) up to `revision` (0 = latest), for comparing members:
    /// members that applied the same log have the same hash. Returns the
    /// hash and the compaction revision it starts from (etcd's HashKV).
    pub fn hash(&self, revision: Revision) -> Result<(u32, Revision), ApplyError> {
        let upto = self.read_revision(revision)?;
        let mut hasher = crc32fast::Hasher::new();
        for (key, history) in &self.keys {
            for version in history.versions.iter().take_while(|v| v.mod_revision <= upto) {
                hasher.update(&(key.len() as u64).to_be_bytes());
                hasher.update(key);
                hasher.update(&version.mod_revision.to_be_bytes());
                match &version.live {
                    Some(live) => {
                        hasher.update(&[1]);
                        hasher.update(&live.create_revision.to_be_bytes());
                        hasher.update(&live.version.to_be_bytes());
                        hasher.update(&live.lease.to_be_bytes());
                        hasher.update(&(live.value.len() as u64).to_be_bytes());
                        hasher.update(&live.value);
                    }
                    None => hasher.update(&[0]),
                }
            }
        }
        Ok((hasher.finalize(), self.compact_revision))
    }

    /// A store rebuilt from its stored versions — an etcd snapshot's `key`
    /// bucket, in revision order — with history from `compact_revision` on.
    /// Refuses versions that break the store's invariants (out of order, a
    /// history that starts with or repeats a deletion) instead of storing them.
    pub(crate) fn from_versions(
        versions: impl IntoIterator<Item = (Revision, Bytes, Option<key_history::LiveVersion>)>,
        compact_revision: Revision,
    ) -> Result<KvStore, String> {
        let mut store = KvStore { compact_revision, ..KvStore::default() };
        let mut last = 0;
        for (revision, key, live) in versions {
            if revision <= 0 || revision < last {
                return Err(format!("revision {revision} is out of order (after {last})"));
            }
            last = revision;
            let history = store.keys.entry(key.clone()).or_default();
            match (history.versions.last(), &live) {
                (Some(prev), _) if prev.mod_revision >= revision => {
                    return Err(format!("key {key:?} has two versions at revision {revision}"));
                }
                (Some(prev), None) if prev.live.is_none() => {
                    return Err(format!("key {key:?} is deleted twice in a row (revision {revision})"));
                }
                (None, None) => return Err(format!("the history of key {key:?} starts with a deletion")),
                _ => {}
            }
            match (history.latest().is_some(), live.is_some()) {
                (false, true) => store.live_keys += 1,
                (true, false) => store.live_keys -= 1,
                _ => {}
            }
            history.versions.push(key_history::Version { mod_revision: revision, live });
            if revision >= compact_revision {
                store.changes.push_back((revision, key));
            }
        }
        store.revision = last.max(compact_revision).max(1);
        store.recount_bytes();
        Ok(store)
    }

    /// Every stored version (since the compaction) as `(mod_revision, key,
    /// the put or None for a deletion)`, in the order they were written:
    /// the versions kept from before the compaction point by revision and
    /// key, then `changes` — a transaction's writes in its own order. This
    /// is the order of etcd's `key` bucket (sub-revisions), and
    /// [`Self::from_versions`] of it gives this store back exactly.
    pub(crate) fn versions_by_revision(&self) -> Vec<(Revision, &Bytes, Option<&key_history::LiveVersion>)> {
        let mut versions: Vec<_> = self
            .keys
            .iter()
            .flat_map(|(key, history)| {
                history
                    .versions
                    .iter()
                    .filter(|v| v.mod_revision < self.compact_revision)
                    .map(move |v| (v.mod_revision, key, v.live.as_ref()))
            })
            .collect();
        versions.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut listed: Option<(Revision, &Bytes)> = None;
        for (revision, key) in &self.changes {
            // A version rewritten within its own revision is listed again.
            if listed == Some((*revision, key)) {
                continue;
            }
            listed = Some((*revision, key));
            let Some(history) = self.keys.get(key) else { continue };
            let at = history.versions.partition_point(|v| v.mod_revision < *revision);
            if let Some(version) = history.versions.get(at).filter(|v| v.mod_revision == *revision) {
                versions.push((*revision, key, version.live.as_ref()));
            }
        }
        versions
    }

    /// The history of `key` in `[from, to]` (0 = unbounded), oldest first, at
    /// most `limit` events (0 = no limit).
    pub fn history(&self, key: &[u8], from: Revision, to: Revision, limit: usize) -> Result<Vec<Event>, ApplyError> {
        let from = if from <= 0 { self.compact_revision.max(1) } else { from };
        if from < self.compact_revision {
            return Err(ApplyError::Compacted { compact_revision: self.compact_revision });
        }
        let to = if to <= 0 { self.revision } else { to };
        let limit = if limit == 0 { usize::MAX } else { limit };
        let Some((k, h)) = self.keys.get_key_value(key) else {
            return Ok(Vec::new());
        };
        Ok(h.events(k, from, to).take(limit).collect())
    }

    /// Number of stored versions across all keys (for memory accounting).
    pub fn stored_versions(&self) -> usize {
        self.changes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn read(store: &KvStore, range: KeyRange, revision: Revision) -> Vec<(String, String)> {
        let req = RangeRequest { range: Some(range), revision, ..Default::default() };
        let resp = store.range(&req).unwrap();
        resp.kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key.to_vec()).unwrap(), String::from_utf8(kv.value.to_vec()).unwrap()))
            .collect()
    }

    #[test]
    fn stored_bytes_do_not_pin_the_request_buffer() {
        let network_buffer = Bytes::from(vec![7u8; 1 << 20]);
        let inside = |b: &Bytes| {
            let start = network_buffer.as_ptr() as usize;
            (start..start + network_buffer.len()).contains(&(b.as_ptr() as usize))
        };
        let (key, value) = (network_buffer.slice(0..16), network_buffer.slice(16..48));
        let mut s = KvStore::default();
        s.put(2, &key, Some(value), 0);
        s.commit_revision(2);
        let (stored_key, history) = s.keys.iter().next().unwrap();
        assert!(!inside(stored_key));
        assert!(!inside(&history.latest().unwrap().value));
        assert!(!inside(&s.changes[0].1));
    }

    #[test]
    fn hash_covers_history_up_to_a_revision() {
        let build = |value: &str| {
            let mut s = KvStore::default();
            s.put(2, &b("a"), Some(b("1")), 0);
            s.commit_revision(2);
            s.put(3, &b("a"), Some(b(value)), 0);
            s.commit_revision(3);
            s
        };
        let (same, other) = (build("2"), build("x"));
        assert_eq!(same.hash(0).unwrap(), build("2").hash(0).unwrap());
        assert_ne!(same.hash(0).unwrap().0, other.hash(0).unwrap().0);
        assert_eq!(same.hash(2).unwrap(), other.hash(2).unwrap(), "revision 3 is not hashed at 2");
        assert!(same.hash(4).is_err());
    }

    #[test]
    fn reads_at_past_revisions_see_the_past() {
        let mut s = KvStore::default();
        s.put(2, &b("a"), Some(b("1")), 0);
        s.commit_revision(2);
        s.put(3, &b("b"), Some(b("2")), 0);
        s.commit_revision(3);
        s.delete_key(4, &b("a"));
        s.commit_revision(4);
        assert_eq!(read(&s, KeyRange::all(), 2), vec![("a".into(), "1".into())]);
        assert_eq!(read(&s, KeyRange::all(), 3).len(), 2);
        assert_eq!(read(&s, KeyRange::all(), 0), vec![("b".into(), "2".into())]);
        assert_eq!(s.live_keys(), 1);
        let future = RangeRequest { range: Some(KeyRange::all()), revision: 9, ..Default::default() };
        assert!(matches!(s.range(&future), Err(ApplyError::FutureRevision { .. })));
    }

    #[test]
    fn limit_reports_more_and_full_count() {
        let mut s = KvStore::default();
        for (i, k) in ["p/a", "p/b", "p/c", "q"].iter().enumerate() {
            s.put(2 + i as i64, &b(k), Some(b("v")), 0);
            s.commit_revision(2 + i as i64);
        }
        let req = RangeRequest { range: Some(KeyRange::prefix("p/")), limit: 2, ..Default::default() };
        let r = s.range(&req).unwrap();
        assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 3));
        let req = RangeRequest { range: Some(KeyRange::prefix("p/")), count_only: true, ..Default::default() };
        let r = s.range(&req).unwrap();
        assert_eq!((r.kvs.len(), r.count), (0, 3));
    }

    #[test]
    fn compaction_refuses_old_reads_and_keeps_visible_versions() {
        let mut s = KvStore::default();
        s.put(2, &b("a"), Some(b("1")), 0);
        s.commit_revision(2);
        s.put(3, &b("a"), Some(b("2")), 0);
        s.commit_revision(3);
        s.put(4, &b("gone"), Some(b("x")), 0);
        s.commit_revision(4);
        s.delete_key(5, &b("gone"));
        s.commit_revision(5);
        s.compact(5).unwrap();
        let req = RangeRequest { range: Some(KeyRange::all()), revision: 3, ..Default::default() };
        assert_eq!(s.range(&req), Err(ApplyError::Compacted { compact_revision: 5 }));
        assert_eq!(read(&s, KeyRange::all(), 5), vec![("a".into(), "2".into())]);
        assert_eq!(s.keys.len(), 1, "the deleted key's history is gone");
        assert_eq!(s.compact(4), Err(ApplyError::Compacted { compact_revision: 5 }));
        assert!(s.compact(6).is_err());
    }
}
