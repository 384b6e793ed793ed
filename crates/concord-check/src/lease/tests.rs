//! Hand-made lease histories that must pass and must fail.

use super::*;
use LeaseEventKind::*;

const S: u64 = 1_000 * MS;

fn history(events: &[(LeaseEventKind, u64, u64)]) -> LeaseHistory {
    let mut h = LeaseHistory::new();
    for &(kind, invoked, returned) in events {
        h.push(1, 7, kind, invoked, returned);
    }
    h
}

#[test]
fn a_lease_gone_after_its_ttl_passes_and_its_lateness_is_measured() {
    let h = history(&[
        (Granted { ttl_ms: 2_000 }, 0, 10 * MS),
        (SeenAlive, S, S + MS),
        (KeptAlive { ttl_ms: 2_000 }, S, S + 5 * MS),
        (SeenAlive, 2 * S, 2 * S + MS),
        (SeenGone, 3 * S + 100 * MS, 3 * S + 105 * MS),
        (SeenGone, 4 * S, 4 * S + MS),
    ]);
    let report = h.check();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    // Due at the keep-alive's return + 2 s = 3.005 s, seen gone by 3.105 s.
    assert_eq!(report.lateness_ms, vec![100]);
}

#[test]
fn a_lease_gone_before_its_ttl_from_the_last_keep_alive_fails() {
    let h = history(&[
        (Granted { ttl_ms: 2_000 }, 0, 10 * MS),
        (KeptAlive { ttl_ms: 2_000 }, S, S + 5 * MS),
        // Gone at 2.5 s: fine from the grant (due by 2.01 s), early from
        // the keep-alive (due no sooner than 3 s).
        (SeenGone, 2 * S + 500 * MS, 2 * S + 501 * MS),
    ]);
    let report = h.check();
    assert!(
        matches!(report.violations.as_slice(), [LeaseViolation::Early { lease: 7, kept_alive, .. }] if kept_alive.invoked == S),
        "{:?}",
        report.violations
    );
}

#[test]
fn a_gone_observation_concurrent_with_the_deadline_passes() {
    // The grant may have been applied as late as its return, the
    // observation as late as its return: 2 s between them is possible.
    let h = history(&[(Granted { ttl_ms: 2_000 }, 0, S), (SeenGone, 2 * S - MS, 2 * S)]);
    assert!(h.check().violations.is_empty());
    // ...but not if the observation returned before the grant's invocation
    // plus the TTL.
    let h = history(&[(Granted { ttl_ms: 2_000 }, 0, S), (SeenGone, S, 2 * S - 1)]);
    assert_eq!(h.check().violations.len(), 1);
}

#[test]
fn a_revoked_lease_may_be_gone_at_once() {
    let h = history(&[
        (Granted { ttl_ms: 60_000 }, 0, MS),
        (Revoked { acknowledged: false }, 2 * MS, 3 * MS),
        (SeenGone, 2 * MS, 4 * MS),
    ]);
    let report = h.check();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(report.lateness_ms.is_empty(), "a revoked lease has no lateness");
}

#[test]
fn a_lease_seen_alive_or_kept_alive_after_it_was_gone_fails() {
    let h = history(&[(Granted { ttl_ms: 1_000 }, 0, MS), (SeenGone, 2 * S, 2 * S + MS), (SeenAlive, 3 * S, 3 * S)]);
    assert!(matches!(h.check().violations.as_slice(), [LeaseViolation::Back { .. }]));

    let h = history(&[
        (Granted { ttl_ms: 1_000 }, 0, MS),
        (Revoked { acknowledged: true }, S, S + MS),
        (KeptAlive { ttl_ms: 1_000 }, S + 2 * MS, S + 3 * MS),
    ]);
    assert!(matches!(h.check().violations.as_slice(), [LeaseViolation::Back { .. }]));

    // Concurrent with the revoke, an alive answer is fine.
    let h = history(&[
        (Granted { ttl_ms: 1_000 }, 0, MS),
        (Revoked { acknowledged: true }, S, S + 10 * MS),
        (SeenAlive, S + 2 * MS, S + 3 * MS),
    ]);
    assert!(h.check().violations.is_empty());
}

#[test]
fn keys_deleted_with_their_lease_at_two_revisions_fail() {
    let mut h = history(&[(Granted { ttl_ms: 1_000 }, 0, MS)]);
    h.deleted(7, b"a".to_vec(), 40);
    h.deleted(7, b"b".to_vec(), 40);
    h.deleted(8, b"c".to_vec(), 41);
    assert!(h.check().violations.is_empty());
    h.deleted(7, b"c".to_vec(), 42);
    assert!(matches!(h.check().violations.as_slice(), [LeaseViolation::SplitDeletion { lease: 7, .. }]));
}

#[test]
fn a_read_that_saw_some_of_a_leases_keys_fails() {
    let h = history(&[(Granted { ttl_ms: 1_000 }, 0, MS), (SeenAlive, S, S), (SeenPartial, 2 * S, 2 * S)]);
    assert!(matches!(h.check().violations.as_slice(), [LeaseViolation::PartialKeys { lease: 7, .. }]));
}

#[test]
fn leases_are_checked_apart() {
    let mut h = LeaseHistory::new();
    h.push(1, 1, Granted { ttl_ms: 1_000 }, 0, MS);
    h.push(1, 2, Granted { ttl_ms: 10_000 }, 0, MS);
    h.push(2, 1, SeenGone, 2 * S, 2 * S);
    assert!(h.check().violations.is_empty());
    h.push(2, 2, SeenGone, 2 * S, 2 * S);
    assert!(matches!(h.check().violations.as_slice(), [LeaseViolation::Early { lease: 2, .. }]));
}

#[test]
fn an_unanswered_keep_alive_counts_for_lateness_only() {
    let h = history(&[
        (Granted { ttl_ms: 1_000 }, 0, MS),
        (RenewalUnknown { ttl_ms: 1_000 }, S, 2 * S),
        // Early only if that keep-alive had been acknowledged.
        (SeenGone, S + 500 * MS, S + 501 * MS),
        (SeenGone, 3 * S + 10 * MS, 3 * S + 20 * MS),
    ]);
    let report = h.check();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.lateness_ms, vec![0], "seen gone before it was due at the latest");
}
