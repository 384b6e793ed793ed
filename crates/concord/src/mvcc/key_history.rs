//! The versions of one key, oldest first.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{Event, KeyValue, LeaseId, Revision};

/// One stored version: a put (with its value) or a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Version {
    pub mod_revision: Revision,
    /// `None` is a tombstone: the key was deleted at `mod_revision`.
    pub live: Option<LiveVersion>,
}

/// What one stored version counts for in the space quota besides its
/// value: its revisions, version, lease and the memory around them.
pub(crate) const VERSION_OVERHEAD: u64 = 64;
/// What one key counts for besides its bytes (its place in the map).
pub(crate) const KEY_OVERHEAD: u64 = 64;

impl Version {
    /// Bytes this version counts for in the space quota.
    pub fn bytes(&self) -> u64 {
        VERSION_OVERHEAD + self.live.as_ref().map_or(0, |l| l.value.len() as u64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LiveVersion {
    pub value: Bytes,
    pub create_revision: Revision,
    pub version: i64,
    /// 0 = no lease.
    pub lease: LeaseId,
}

/// Invariants: `versions` is non-empty and strictly increasing by
/// `mod_revision`; a tombstone is never followed by another tombstone, and the
/// first version is never a tombstone (compaction drops leading tombstones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyHistory {
    pub versions: Vec<Version>,
}

impl KeyHistory {
    /// The latest version if the key currently exists.
    pub fn latest(&self) -> Option<&LiveVersion> {
        self.versions.last().and_then(|v| v.live.as_ref())
    }

    /// The version visible at `revision`, if the key existed then.
    pub fn at(&self, revision: Revision) -> Option<(&Version, &LiveVersion)> {
        let idx = self.versions.partition_point(|v| v.mod_revision <= revision);
        let v = self.versions.get(idx.checked_sub(1)?)?;
        v.live.as_ref().map(|live| (v, live))
    }

    /// Appends a put at `revision` and returns the new live version.
    pub fn put(&mut self, revision: Revision, value: Bytes, lease: LeaseId) -> &LiveVersion {
        let (create_revision, version) = match self.latest() {
            Some(prev) => (prev.create_revision, prev.version + 1),
            None => (revision, 1),
        };
        let live = LiveVersion { value, create_revision, version, lease };
        self.push(Version { mod_revision: revision, live: Some(live) });
        self.versions.last().and_then(|v| v.live.as_ref()).expect("just pushed a live version")
    }

    /// Appends a tombstone at `revision` if the key currently exists.
    pub fn delete(&mut self, revision: Revision) -> bool {
        if self.latest().is_none() {
            return false;
        }
        self.push(Version { mod_revision: revision, live: None });
        true
    }

    fn push(&mut self, version: Version) {
        match self.versions.last_mut() {
            // Two writes to one key at one revision cannot happen (txn
            // validation forbids it); if it did, the later one wins.
            Some(last) if last.mod_revision == version.mod_revision => *last = version,
            _ => self.versions.push(version),
        }
    }

    /// Drops every version that is not visible at or after `revision`.
    /// Returns whether the history is now empty (the key can be forgotten)
    /// and the [`Version::bytes`] dropped.
    pub fn compact(&mut self, revision: Revision) -> (bool, u64) {
        let visible = self.versions.partition_point(|v| v.mod_revision <= revision);
        let mut freed = 0;
        if visible > 0 {
            let mut keep_from = visible - 1;
            if self.versions[keep_from].live.is_none() {
                keep_from += 1;
            }
            freed = self.versions.drain(..keep_from).map(|v| v.bytes()).sum();
        }
        (self.versions.is_empty(), freed)
    }

    /// The [`Version::bytes`] of every version.
    pub fn bytes(&self) -> u64 {
        self.versions.iter().map(Version::bytes).sum()
    }

    /// The events of this key in `[from, to]`, oldest first.
    pub fn events(&self, key: &Bytes, from: Revision, to: Revision) -> impl Iterator<Item = Event> + '_ {
        let key = key.clone();
        self.versions.iter().filter(move |v| v.mod_revision >= from && v.mod_revision <= to).map(move |v| {
            match &v.live {
                Some(live) => Event::Put { kv: to_kv(&key, v.mod_revision, live, false) },
                None => Event::Delete { key: key.clone(), revision: v.mod_revision },
            }
        })
    }
}

/// Builds the caller-visible [`KeyValue`] for a live version.
pub(crate) fn to_kv(key: &Bytes, mod_revision: Revision, live: &LiveVersion, keys_only: bool) -> KeyValue {
    KeyValue {
        key: key.clone(),
        value: if keys_only { Bytes::new() } else { live.value.clone() },
        create_revision: live.create_revision,
        mod_revision,
        version: live.version,
        lease: (live.lease != 0).then_some(live.lease),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn versions_and_create_revision_restart_after_delete() {
        let mut h = KeyHistory::default();
        assert_eq!(h.put(2, b("a"), 0).version, 1);
        assert_eq!(h.put(3, b("b"), 0).version, 2);
        assert!(h.delete(4));
        assert!(!h.delete(5), "deleting a missing key is a no-op");
        let v = h.put(6, b("c"), 0);
        assert_eq!((v.version, v.create_revision), (1, 6));
        assert_eq!(h.at(3).unwrap().1.value, b("b"));
        assert!(h.at(4).is_none());
        assert!(h.at(5).is_none());
        assert!(h.at(1).is_none());
        assert_eq!(h.at(100).unwrap().1.value, b("c"));
    }

    #[test]
    fn compaction_keeps_the_version_visible_at_the_compact_revision() {
        let mut h = KeyHistory::default();
        h.put(2, b("a"), 0);
        h.put(3, b("b"), 0);
        h.put(5, b("c"), 0);
        assert!(!h.compact(4).0);
        assert_eq!(h.versions.len(), 2);
        assert_eq!(h.at(4).unwrap().1.value, b("b"));
        assert!(h.delete(6));
        assert!(h.compact(6).0, "a key deleted at or before the compaction is forgotten");
    }
}
