//! Hand-made histories that must pass and must fail, and generated ones:
//! histories produced by a real register (linearizable by construction)
//! must pass, and the same with one read's answer falsified must fail.

use proptest::prelude::*;

use super::*;

type H = History<&'static str, u32>;

fn put(h: &mut H, client: u64, v: u32, invoked: u64, returned: u64) {
    h.push(client, "k", Call::Put(v), Outcome::Done, invoked, returned);
}

fn get(h: &mut H, client: u64, seen: Option<u32>, invoked: u64, returned: u64) {
    h.push(client, "k", Call::Get, Outcome::Got(seen), invoked, returned);
}

fn cas(h: &mut H, client: u64, expect: Option<u32>, new: u32, swapped: bool, invoked: u64, returned: u64) {
    h.push(client, "k", Call::Cas { expect, new }, Outcome::Swapped(swapped), invoked, returned);
}

#[test]
fn sequential_and_concurrent_histories_that_a_register_explains_pass() {
    let mut h = H::new();
    get(&mut h, 1, None, 0, 1);
    put(&mut h, 1, 1, 2, 3);
    get(&mut h, 2, Some(1), 4, 5);
    // Concurrent puts: a later read may see either, but then sticks to it.
    put(&mut h, 1, 2, 10, 20);
    put(&mut h, 2, 3, 11, 19);
    get(&mut h, 3, Some(2), 21, 22);
    get(&mut h, 3, Some(2), 23, 24);
    // A read overlapping a put may see the old or the new value.
    put(&mut h, 1, 4, 30, 40);
    get(&mut h, 2, Some(2), 31, 32);
    get(&mut h, 3, Some(4), 33, 34);
    cas(&mut h, 1, Some(4), 5, true, 41, 42);
    cas(&mut h, 2, Some(4), 6, false, 43, 44);
    get(&mut h, 3, Some(5), 45, 46);
    assert_eq!(check(&h), Verdict::Linearizable);
}

#[test]
fn a_stale_read_fails() {
    let mut h = H::new();
    put(&mut h, 1, 1, 0, 1);
    put(&mut h, 1, 2, 2, 3);
    get(&mut h, 2, Some(1), 4, 5);
    assert!(!check(&h).is_linearizable());
}

#[test]
fn a_lost_write_fails() {
    let mut h = H::new();
    put(&mut h, 1, 1, 0, 1);
    get(&mut h, 2, None, 2, 3);
    assert!(!check(&h).is_linearizable());
}

#[test]
fn a_read_of_a_value_never_written_fails() {
    let mut h = H::new();
    put(&mut h, 1, 1, 0, 10);
    get(&mut h, 2, Some(7), 1, 2);
    let verdict = check(&h);
    assert!(matches!(verdict, Verdict::NotLinearizable { key: "k", ref operations } if operations.len() == 2));
}

#[test]
fn a_compare_and_set_that_succeeded_twice_fails() {
    let mut h = H::new();
    put(&mut h, 1, 0, 0, 1);
    cas(&mut h, 1, Some(0), 1, true, 2, 10);
    cas(&mut h, 2, Some(0), 2, true, 3, 9);
    assert!(!check(&h).is_linearizable());
}

#[test]
fn a_read_that_flips_between_concurrent_writes_fails() {
    let mut h = H::new();
    put(&mut h, 1, 1, 0, 100);
    put(&mut h, 2, 2, 0, 100);
    get(&mut h, 3, Some(1), 10, 11);
    get(&mut h, 3, Some(2), 12, 13);
    get(&mut h, 3, Some(1), 14, 15);
    assert!(!check(&h).is_linearizable());
}

#[test]
fn unknown_outcomes_may_or_may_not_have_happened() {
    // Took effect: a later read sees it.
    let mut h = H::new();
    h.push(1, "k", Call::Put(1), Outcome::Unknown, 0, 1);
    get(&mut h, 2, Some(1), 50, 51);
    assert!(check(&h).is_linearizable());
    // Never took effect: later reads never see it.
    let mut h = H::new();
    h.push(1, "k", Call::Put(1), Outcome::Unknown, 0, 1);
    get(&mut h, 2, None, 50, 51);
    get(&mut h, 2, None, 52, 53);
    assert!(check(&h).is_linearizable());
    // But not before it was invoked.
    let mut h = H::new();
    get(&mut h, 2, Some(1), 0, 1);
    h.push(1, "k", Call::Put(1), Outcome::Unknown, 5, 6);
    assert!(!check(&h).is_linearizable());
}

#[test]
fn failed_operations_are_ignored_and_keys_are_independent() {
    let mut h = H::new();
    h.push(1, "k", Call::Put(9), Outcome::Failed, 0, 1);
    get(&mut h, 2, None, 2, 3);
    h.push(1, "other", Call::Put(1), Outcome::Done, 0, 1);
    h.push(2, "other", Call::Get, Outcome::Got(Some(1)), 2, 3);
    assert!(check(&h).is_linearizable());
    h.push(2, "other", Call::Get, Outcome::Got(None), 4, 5);
    assert!(matches!(check(&h), Verdict::NotLinearizable { key: "other", .. }));
}

#[test]
fn an_answer_of_the_wrong_kind_fails() {
    let mut h = H::new();
    h.push(1, "k", Call::Get, Outcome::Done, 0, 1);
    assert!(!check(&h).is_linearizable());
}

/// An operation drawn for a generated history: an interval and a point in it
/// where a real register executes it.
#[derive(Debug, Clone)]
struct Drawn {
    call: Call<u32>,
    invoked: u64,
    point: u64,
    returned: u64,
    unknown: bool,
}

/// Operations over a window of `span` time units, each lasting up to `width`
/// (the overlap — and so the search — grows with width / span).
fn drawn(span: u64, width: u64) -> impl Strategy<Value = Drawn> {
    let call = prop_oneof![
        Just(Call::Get),
        (0u32..4).prop_map(Call::Put),
        (proptest::option::of(0u32..4), 0u32..4).prop_map(|(expect, new)| Call::Cas { expect, new }),
    ];
    (call, 0..span, 0..width / 2 + 1, 0..width / 2 + 1, proptest::bool::weighted(0.1)).prop_map(
        |(call, invoked, to_point, to_return, unknown)| Drawn {
            call,
            invoked,
            point: invoked + to_point,
            returned: invoked + to_point + to_return,
            unknown,
        },
    )
}

/// Runs the drawn operations on a real register in the order of their
/// points: the history that results is linearizable by construction.
fn executed(ops: &[Drawn]) -> H {
    let mut order: Vec<&Drawn> = ops.iter().collect();
    order.sort_by_key(|d| d.point);
    let mut value: Option<u32> = None;
    let mut h = H::new();
    for (client, d) in order.into_iter().enumerate() {
        let outcome = match &d.call {
            Call::Get => Outcome::Got(value),
            Call::Put(v) => {
                value = Some(*v);
                Outcome::Done
            }
            Call::Cas { expect, new } => {
                let swapped = *expect == value;
                if swapped {
                    value = Some(*new);
                }
                Outcome::Swapped(swapped)
            }
        };
        let outcome = if d.unknown { Outcome::Unknown } else { outcome };
        h.push(client as u64, "k", d.call.clone(), outcome, d.invoked, d.returned);
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn histories_of_a_real_register_pass(ops in proptest::collection::vec(drawn(200, 100), 0..40)) {
        let h = executed(&ops);
        prop_assert!(check(&h).is_linearizable(), "{h:#?}");
    }

    /// A read answered with a value nobody ever wrote cannot be explained.
    #[test]
    fn a_falsified_read_fails(ops in proptest::collection::vec(drawn(400, 40), 1..40), pick in any::<proptest::sample::Index>()) {
        let mut h = executed(&ops);
        let reads: Vec<usize> = (0..h.operations.len())
            .filter(|&i| matches!(h.operations[i].outcome, Outcome::Got(_)))
            .collect();
        prop_assume!(!reads.is_empty());
        h.operations[reads[pick.index(reads.len())]].outcome = Outcome::Got(Some(99));
        prop_assert!(!check(&h).is_linearizable());
    }
}

/// A long history as a test run records it — five clients, each with one
/// operation at a time — passes, and fails once one read is falsified.
#[test]
fn a_long_history_of_five_clients() {
    let mut seed: u64 = 0x5eed;
    let mut random = move |bound: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    let mut ops = Vec::new();
    for _client in 0..5 {
        let mut t = random(10);
        for _ in 0..200 {
            let call = match random(3) {
                0 => Call::Get,
                1 => Call::Put(random(5) as u32),
                _ => Call::Cas { expect: Some(random(5) as u32), new: random(5) as u32 },
            };
            let invoked = t;
            let point = invoked + random(20);
            let returned = point + random(20);
            ops.push(Drawn { call, invoked, point, returned, unknown: random(250) == 0 });
            t = returned + 1 + random(5);
        }
    }
    let mut h = executed(&ops);
    assert!(check(&h).is_linearizable());
    let read = h.operations.iter().rposition(|op| matches!(op.outcome, Outcome::Got(_))).unwrap();
    h.operations[read].outcome = Outcome::Got(Some(99));
    assert!(!check(&h).is_linearizable());
}
