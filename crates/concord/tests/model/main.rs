//! Property tests: the state machine (MVCC + lessor + transactions) against
//! a plain reference model (`reference.rs`).
//!
//! Random runs of puts (with leases, anonymous leases, unknown and foreign
//! leases, keep-lease, keep-value), deletes, real transactions (compares of
//! every target over keys and ranges, reads at past and future revisions,
//! leased puts, nested and refused transactions), grants with store- and
//! client-chosen ids, revokes, keep-alives with new TTLs, multi-lease
//! expiries and checkpoints (current and stale generations), compactions and
//! batches, with default and with tiny lease limits. After every step the
//! reply, the lease effects, every lease record, the lease id counter, the
//! revision, the compaction point and a read at every readable revision must
//! agree; a refused command must change nothing; and the state must survive
//! the snapshot encoding unchanged (some runs go on from the decoded copy).

mod ops;
mod reference;

use bytes::Bytes;
use concord::command::{Applied, ApplyError, Command, RangeRequest, Reply};
use concord::state_machine::{State, StateMachine};
use concord::{KeyRange, LeaseLimits};
use proptest::prelude::*;

use reference::{Model, to_kv};

/// Refusal texts are not part of the contract checked here, only the kind.
fn normalized(mut applied: Applied) -> Applied {
    fn strip(result: &mut Result<Reply, ApplyError>) {
        match result {
            Err(ApplyError::Invalid(text)) => text.clear(),
            Ok(Reply::Batch(results)) => results.iter_mut().for_each(|a| strip(&mut a.result)),
            _ => {}
        }
    }
    strip(&mut applied.result);
    applied
}

fn limits(tiny: bool) -> LeaseLimits {
    if tiny { LeaseLimits { max_leases: 3, max_keys_per_lease: 2 } } else { LeaseLimits::default() }
}

fn check(sm: &StateMachine, model: &Model) {
    assert_eq!(sm.kv().revision(), model.rev, "revision");
    assert_eq!(sm.state.alarms, model.alarms, "alarms");
    assert_eq!(sm.kv().quota_bytes(), sm.kv().counted_bytes(), "the space the quota counts, kept up to date");
    assert_eq!(sm.kv().compact_revision(), model.compact, "compaction revision");
    assert_eq!(sm.limits(), &model.limits);
    assert_eq!(sm.leases().next_id(), model.next_id, "the lease id counter");
    let leases: Vec<_> = sm.leases().iter().collect();
    assert_eq!(leases.len(), model.leases.len(), "lease count");
    for record in leases {
        let expected = &model.leases[&record.id];
        assert_eq!(
            (record.ttl_secs, record.granted_at, record.remaining_ms, record.generation, record.anonymous),
            (expected.ttl, expected.granted_at, expected.remaining_ms, expected.generation, expected.anonymous),
            "lease {}",
            record.id
        );
        assert_eq!(
            record.keys.iter().cloned().collect::<Vec<Bytes>>(),
            expected.keys.iter().cloned().collect::<Vec<_>>()
        );
    }
    for (revision, keyspace) in &model.at {
        let req = RangeRequest { range: Some(KeyRange::all()), revision: *revision, ..Default::default() };
        let got = sm.kv().range(&req).unwrap().kvs;
        let expected: Vec<_> = keyspace.iter().map(|(k, v)| to_kv(k, v, false)).collect();
        assert_eq!(got, expected, "read at revision {revision}");
    }
    if model.compact > 1 {
        let req = RangeRequest { range: Some(KeyRange::all()), revision: model.compact - 1, ..Default::default() };
        assert!(sm.kv().range(&req).is_err(), "reads below the compaction point must fail");
    }
}

/// Applies `command` to both and checks the reply and the effects.
fn step(sm: &mut StateMachine, model: &mut Model, command: &Command) -> Applied {
    let before = sm.state.clone();
    let mut effects = Vec::new();
    let applied = sm.apply(command, &mut effects);
    let (expected, expected_effects) = model.apply(command);
    assert_eq!(normalized(applied.clone()), normalized(expected), "reply to {command:?}");
    assert_eq!(effects, expected_effects, "lease effects of {command:?}");
    if applied.result.is_err() {
        assert_eq!(sm.state, before, "a refused command changed the state: {command:?}");
    }
    applied
}

fn roundtrip(state: &State) -> State {
    let decoded = State::decode_snapshot(&state.encode_snapshot().unwrap()).unwrap();
    assert_eq!(&decoded, state, "the snapshot encoding lost something");
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_the_model(
        tiny in any::<bool>(),
        ops in proptest::collection::vec(ops::op(), 1..60),
        continue_on_decoded in proptest::collection::vec(any::<bool>(), 1..8),
    ) {
        let mut sm = StateMachine::new(limits(tiny));
        let mut model = Model::new(limits(tiny));
        for (i, op) in ops.iter().enumerate() {
            let command = ops::command(op, &model);
            step(&mut sm, &mut model, &command);
            check(&sm, &model);
            let decoded = roundtrip(&sm.state);
            if continue_on_decoded[i % continue_on_decoded.len()] {
                sm = StateMachine::with_state(decoded);
            }
        }
    }

    /// A snapshot taken at any step plus the log after it gives exactly the
    /// state, and the replies, of replaying the whole log.
    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        tiny in any::<bool>(),
        ops in proptest::collection::vec(ops::op(), 1..50),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut full = StateMachine::new(limits(tiny));
        let mut model = Model::new(limits(tiny));
        let mut commands = Vec::new();
        let mut replies = Vec::new();
        for op in &ops {
            let command = ops::command(op, &model);
            replies.push(step(&mut full, &mut model, &command));
            commands.push(command);
        }
        let cut = cut.index(commands.len() + 1);
        let mut head = StateMachine::new(limits(tiny));
        for command in &commands[..cut] {
            head.apply(command, &mut Vec::new());
        }
        let mut restored = StateMachine::with_state(roundtrip(&head.state));
        for (command, reply) in commands[cut..].iter().zip(&replies[cut..]) {
            prop_assert_eq!(&restored.apply(command, &mut Vec::new()), reply);
        }
        prop_assert_eq!(restored.state, full.state);
    }

    #[test]
    fn apply_is_deterministic(ops in proptest::collection::vec(ops::op(), 1..40)) {
        let mut a = StateMachine::new(LeaseLimits::default());
        let mut b = StateMachine::new(LeaseLimits::default());
        let mut model = Model::new(LeaseLimits::default());
        for op in &ops {
            let command = ops::command(op, &model);
            model.apply(&command);
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            prop_assert_eq!(a.apply(&command, &mut ea), b.apply(&command, &mut eb));
            prop_assert_eq!(ea, eb);
        }
        prop_assert_eq!(a.state, b.state);
    }
}
