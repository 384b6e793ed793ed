//! Hand-made watch histories that must pass and must fail.

use super::*;

fn put(revision: u64, key: &str, value: &str) -> WatchEvent {
    WatchEvent { revision, key: key.into(), value: Some(value.into()) }
}

fn del(revision: u64, key: &str) -> WatchEvent {
    WatchEvent { revision, key: key.into(), value: None }
}

fn watcher(id: u64, range: (&str, &str), start: u64, events: Vec<WatchEvent>, complete_to: u64) -> Watcher {
    Watcher { id, range: (range.0.into(), range.1.into()), start_revision: start, events, complete_to }
}

/// Writes at revisions 2..=6 on a, b, c; a lease expiry deletes a and b at 7.
fn base() -> WatchHistory {
    let mut h = WatchHistory::new();
    h.writes = vec![put(2, "a", "1"), put(3, "b", "1"), put(4, "a", "2"), put(5, "c", "1"), put(6, "b", "2")];
    for w in h.writes.clone() {
        h.attempt(&w.key, w.value.as_ref().unwrap());
    }
    h.attempt(b"c", b"never-acknowledged");
    h.reads = vec![put(4, "a", "2")];
    h
}

fn all_events() -> Vec<WatchEvent> {
    vec![
        put(2, "a", "1"),
        put(3, "b", "1"),
        put(4, "a", "2"),
        put(5, "c", "1"),
        put(6, "b", "2"),
        del(7, "a"),
        del(7, "b"),
        put(8, "c", "never-acknowledged"),
    ]
}

#[test]
fn watchers_that_saw_everything_in_their_range_pass() {
    let mut h = base();
    h.watchers.push(watcher(1, ("", ""), 1, all_events(), 8));
    // A prefix watcher from revision 4 that has not yet seen 7 and 8.
    let b_only: Vec<WatchEvent> = all_events().into_iter().filter(|e| e.key == b"b" && e.revision >= 4).collect();
    h.watchers.push(watcher(2, ("b", "c"), 4, b_only[..1].to_vec(), 6));
    assert_eq!(h.check(), vec![]);
}

#[test]
fn a_missed_or_altered_write_fails() {
    let mut h = base();
    let mut events = all_events();
    events.remove(2);
    h.watchers.push(watcher(1, ("", ""), 1, events, 8));
    assert!(
        matches!(h.check().as_slice(), [WatchViolation::Missed { expected, got: None, .. }, ..] if expected.revision == 4)
    );

    let mut h = base();
    let mut events = all_events();
    events[3].value = Some(b"9".to_vec());
    h.watchers.push(watcher(1, ("", ""), 1, events, 8));
    let violations = h.check();
    assert!(violations.iter().any(|v| matches!(v, WatchViolation::Invented { .. })), "{violations:?}");
    assert!(violations.iter().any(|v| matches!(v, WatchViolation::Missed { .. })), "{violations:?}");
}

#[test]
fn out_of_order_duplicated_or_early_events_fail() {
    let mut h = base();
    let mut events = all_events();
    events.swap(1, 2);
    h.watchers.push(watcher(1, ("", ""), 1, events, 8));
    assert!(h.check().iter().any(|v| matches!(v, WatchViolation::OutOfOrder { .. })));

    let mut h = base();
    let mut events = all_events();
    events.insert(3, events[2].clone());
    h.watchers.push(watcher(1, ("", ""), 1, events, 8));
    assert!(h.check().iter().any(|v| matches!(v, WatchViolation::Duplicate { .. })));

    let mut h = base();
    h.watchers.push(watcher(1, ("", ""), 5, all_events(), 8));
    assert!(h.check().iter().any(|v| matches!(v, WatchViolation::BeforeStart { .. })));
}

#[test]
fn watchers_that_disagree_on_an_unacknowledged_event_fail() {
    let mut h = base();
    h.watchers.push(watcher(1, ("", ""), 1, all_events(), 8));
    let mut events = all_events();
    events.pop();
    h.watchers.push(watcher(2, ("", ""), 1, events, 8));
    assert_eq!(h.check(), vec![WatchViolation::Disagree { watchers: (1, 2), revision: 8, key: b"c".to_vec() }]);
}

#[test]
fn a_read_value_the_watcher_never_delivered_fails() {
    let mut h = base();
    h.reads.push(put(5, "c", "1"));
    h.reads.push(put(7, "z", "unknown"));
    h.attempt(b"z", b"unknown");
    h.watchers.push(watcher(1, ("", ""), 1, all_events(), 8));
    assert!(matches!(h.check().as_slice(), [WatchViolation::Missed { expected, .. }] if expected.key == b"z"));
}
