//! Plain data types shared by every layer: revisions, key-values, key ranges.
//!
//! These are the values a caller sees. They carry no behaviour beyond small
//! constructors, so that the storage, lease and front-end layers can agree on
//! them without depending on each other.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A cluster revision. Starts at 1 for an empty store and grows by one for
/// every commit that changes at least one key. All writes of one transaction
/// share one revision.
pub type Revision = i64;

/// A lease identifier. Always positive; `0` is never a lease (etcd's "no lease").
pub type LeaseId = i64;

/// One version of a key, as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// Empty when the read asked for keys only.
    pub value: Bytes,
    /// Revision of the put that created this generation of the key.
    pub create_revision: Revision,
    /// Revision of the last put to the key.
    pub mod_revision: Revision,
    /// Number of puts since the key was (re)created; 1 for a fresh key.
    pub version: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// What happened to a key at a revision; the unit of history (and of watch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The key was written; `kv` is the new version.
    Put {
        /// The new version.
        kv: KeyValue,
    },
    /// The key was deleted at `revision`.
    Delete {
        /// The key.
        key: Bytes,
        /// The revision of the delete.
        revision: Revision,
    },
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key this event is about.
    pub fn key(&self) -> &Bytes {
        match self {
            Event::Put { kv } => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A put.
    Put,
    /// A delete.
    Delete,
}

/// A change as a watcher sees it: for a put, the new version; for a delete,
/// the key and the revision of the delete (other fields zero, as etcd); and
/// the version before the change when the watcher asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after the change (for a delete: the key and revision).
    pub kv: KeyValue,
    /// The key-value before the change, if the watcher asked for it.
    pub prev_kv: Option<KeyValue>,
}

impl WatchEvent {
    pub(crate) fn deleted(key: Bytes, revision: Revision, prev_kv: Option<KeyValue>) -> Self {
        let kv =
            KeyValue { key, value: Bytes::new(), create_revision: 0, mod_revision: revision, version: 0, lease: None };
        WatchEvent { kind: EventKind::Delete, kv, prev_kv }
    }

    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A selection of keys: one key, or the half-open interval `[start, end)`,
/// or every key from `start` on.
///
/// This is etcd's `key` / `range_end` pair with its three meanings spelled out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRange {
    /// The first key.
    pub start: Bytes,
    /// Where the range ends.
    pub end: RangeEnd,
}

/// The upper end of a [`KeyRange`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RangeEnd {
    /// Only the key `start` itself.
    Single,
    /// Every key `>= start`.
    Unbounded,
    /// Every key in `[start, end)`.
    Exclusive(Bytes),
}

impl KeyRange {
    /// Exactly one key.
    pub fn key(key: impl Into<Bytes>) -> Self {
        KeyRange { start: key.into(), end: RangeEnd::Single }
    }

    /// Every key that starts with `prefix`. An empty prefix selects every key.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let start: Bytes = prefix.into();
        let end = match prefix_end(&start) {
            Some(end) => RangeEnd::Exclusive(end),
            None => RangeEnd::Unbounded,
        };
        KeyRange { start, end }
    }

    /// Keys in `[start, end)`.
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        KeyRange { start: start.into(), end: RangeEnd::Exclusive(end.into()) }
    }

    /// Every key `>= start`.
    pub fn from(start: impl Into<Bytes>) -> Self {
        KeyRange { start: start.into(), end: RangeEnd::Unbounded }
    }

    /// Every key.
    pub fn all() -> Self {
        KeyRange { start: Bytes::new(), end: RangeEnd::Unbounded }
    }

    /// Builds a range from etcd's wire encoding: empty `range_end` is one key,
    /// `"\0"` means "to the end", anything else is an exclusive end.
    pub fn from_etcd(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        let end: Bytes = range_end.into();
        let end = if end.is_empty() {
            RangeEnd::Single
        } else if end.as_ref() == b"\0" {
            RangeEnd::Unbounded
        } else {
            RangeEnd::Exclusive(end)
        };
        KeyRange { start: key.into(), end }
    }

    /// Whether `key` lies in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => key == self.start.as_ref(),
            RangeEnd::Unbounded => key >= self.start.as_ref(),
            RangeEnd::Exclusive(end) => key >= self.start.as_ref() && key < end.as_ref(),
        }
    }

    /// Whether the range selects at most one key.
    pub fn is_single(&self) -> bool {
        matches!(self.end, RangeEnd::Single)
    }

    /// Whether two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        // Each range is [lo, hi) with hi possibly unbounded; Single is [k, k\0).
        fn hi_above(r: &KeyRange, key: &[u8]) -> bool {
            match &r.end {
                RangeEnd::Single => r.start.as_ref() == key,
                RangeEnd::Unbounded => true,
                RangeEnd::Exclusive(end) => key < end.as_ref(),
            }
        }
        let (a, b) = if self.start <= other.start { (self, other) } else { (other, self) };
        // b starts at or after a; they overlap when b's start is inside a
        // (b's own range is non-empty at its start unless it is empty).
        !b.is_empty() && hi_above(a, &b.start) && a.start.as_ref() <= b.start.as_ref()
    }

    /// Whether the range selects no key at all (`end <= start`).
    pub fn is_empty(&self) -> bool {
        matches!(&self.end, RangeEnd::Exclusive(end) if end <= &self.start)
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None`
/// when no such key exists (the prefix is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(Bytes::from(end));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte_and_drops_ff() {
        assert_eq!(prefix_end(b"a/"), Some(Bytes::from_static(b"a0")));
        assert_eq!(prefix_end(b"a\xff"), Some(Bytes::from_static(b"b")));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn ranges_select_what_they_say() {
        let p = KeyRange::prefix("a/");
        assert!(p.contains(b"a/"));
        assert!(p.contains(b"a/zzz"));
        assert!(!p.contains(b"a0"));
        assert!(!p.contains(b"a"));
        assert!(KeyRange::all().contains(b""));
        assert!(KeyRange::key("k").contains(b"k"));
        assert!(!KeyRange::key("k").contains(b"k0"));
        assert_eq!(KeyRange::from_etcd("a", ""), KeyRange::key("a"));
        assert_eq!(KeyRange::from_etcd("a", "\0"), KeyRange::from("a"));
        assert!(KeyRange::between("b", "a").is_empty());
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        let cases = [
            (KeyRange::key("a"), KeyRange::key("a"), true),
            (KeyRange::key("a"), KeyRange::key("b"), false),
            (KeyRange::prefix("a"), KeyRange::key("ab"), true),
            (KeyRange::between("a", "c"), KeyRange::key("c"), false),
            (KeyRange::between("a", "c"), KeyRange::between("b", "z"), true),
            (KeyRange::from("m"), KeyRange::key("z"), true),
            (KeyRange::from("m"), KeyRange::key("a"), false),
            (KeyRange::between("c", "a"), KeyRange::key("b"), false),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.overlaps(&b), want, "{a:?} vs {b:?}");
            assert_eq!(b.overlaps(&a), want, "{b:?} vs {a:?}");
        }
    }
}
