//! Property test: the state machine (MVCC + lessor) against a simple model.
//!
//! The model keeps a full copy of the keyspace at every revision and a plain
//! map of lease -> keys. Random sequences of puts (with and without leases,
//! including unknown ones), deletes, transactions, grants, revokes, expiries
//! and compactions are applied to both; after every step the revision, the
//! lease table, and reads at every readable revision must agree.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use concord::command::{
    Applied, Command, Compare, CompareOp, CompareTarget, DeleteRequest, LeaseChoice, PutRequest, RangeRequest, Reply,
    TxnOp, TxnRequest,
};
use concord::state_machine::StateMachine;
use concord::{KeyRange, LeaseLimits};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
struct ModelKv {
    value: Vec<u8>,
    create: i64,
    modr: i64,
    version: i64,
    lease: i64,
}

#[derive(Debug, Clone)]
struct Model {
    rev: i64,
    compact: i64,
    current: BTreeMap<Vec<u8>, ModelKv>,
    at: BTreeMap<i64, BTreeMap<Vec<u8>, ModelKv>>,
    leases: BTreeMap<i64, BTreeSet<Vec<u8>>>,
    generations: BTreeMap<i64, u64>,
    /// Grants and keep-alives draw generations from one counter.
    next_generation: u64,
    next_lease: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            rev: 1,
            compact: 0,
            current: BTreeMap::new(),
            at: BTreeMap::from([(1, BTreeMap::new())]),
            leases: BTreeMap::new(),
            generations: BTreeMap::new(),
            next_generation: 1,
            next_lease: 1,
        }
    }

    fn commit(&mut self) {
        self.rev += 1;
        self.at.insert(self.rev, self.current.clone());
    }

    fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.current.get(key).map(|kv| kv.lease).filter(|l| *l != 0) {
            if let Some(keys) = self.leases.get_mut(&old) {
                keys.remove(key);
            }
        }
    }

    /// A put at revision `self.rev + 1` without committing.
    fn stage_put(&mut self, key: &[u8], value: &[u8], lease: i64) {
        let rev = self.rev + 1;
        self.detach(key);
        let (create, version) = match self.current.get(key) {
            Some(prev) => (prev.create, prev.version + 1),
            None => (rev, 1),
        };
        self.current.insert(key.to_vec(), ModelKv { value: value.to_vec(), create, modr: rev, version, lease });
        if lease != 0 {
            self.leases.get_mut(&lease).unwrap().insert(key.to_vec());
        }
    }

    fn stage_delete(&mut self, range: &KeyRange) -> usize {
        let doomed: Vec<Vec<u8>> = self.current.keys().filter(|k| range.contains(k)).cloned().collect();
        for k in &doomed {
            self.detach(k);
            self.current.remove(k);
        }
        doomed.len()
    }

    fn revoke(&mut self, id: i64) {
        let keys = self.leases.remove(&id).unwrap();
        self.generations.remove(&id);
        for k in &keys {
            self.current.remove(k);
        }
        if !keys.is_empty() {
            self.commit();
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, value: u8, lease: Option<u8> },
    DeleteKey { key: u8 },
    DeletePrefix { prefix: u8 },
    Grant,
    Revoke { lease: u8 },
    KeepAlive { lease: u8 },
    Expire { lease: u8, stale: bool },
    Txn { key: u8, version: u8, put_key: u8, del_key: u8 },
    Compact { back: u8 },
}

const KEYS: [&str; 6] = ["a", "b", "p/a", "p/b", "p/c", "q"];

fn key(i: u8) -> Bytes {
    Bytes::from_static(KEYS[i as usize % KEYS.len()].as_bytes())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>(), proptest::option::of(0u8..6)).prop_map(|(key, value, lease)| Op::Put { key, value, lease }),
        1 => any::<u8>().prop_map(|key| Op::DeleteKey { key }),
        1 => (0u8..2).prop_map(|prefix| Op::DeletePrefix { prefix }),
        2 => Just(Op::Grant),
        1 => (0u8..6).prop_map(|lease| Op::Revoke { lease }),
        1 => (0u8..6).prop_map(|lease| Op::KeepAlive { lease }),
        1 => ((0u8..6), any::<bool>()).prop_map(|(lease, stale)| Op::Expire { lease, stale }),
        2 => (any::<u8>(), 0u8..3, any::<u8>(), any::<u8>()).prop_map(|(key, version, put_key, del_key)| Op::Txn { key, version, put_key, del_key }),
        1 => (0u8..4).prop_map(|back| Op::Compact { back }),
    ]
}

/// Runs one op on both; returns what the state machine replied.
fn step(sm: &mut StateMachine, model: &mut Model, op: &Op) -> Applied {
    let mut effects = Vec::new();
    match op {
        Op::Put { key: k, value, lease } => {
            // Lease ids 1..=5 may or may not exist; that is the point.
            let lease = lease.map(|l| l as i64).filter(|l| *l > 0);
            let cmd = Command::Put(PutRequest {
                key: key(*k),
                value: Some(Bytes::from(vec![*value])),
                lease: lease.map_or(LeaseChoice::None, LeaseChoice::Lease),
                prev_kv: false,
            });
            let applied = sm.apply(&cmd, &mut effects);
            match lease {
                Some(id) if !model.leases.contains_key(&id) => assert!(applied.result.is_err()),
                _ => {
                    model.stage_put(&key(*k), &[*value], lease.unwrap_or(0));
                    model.commit();
                }
            }
            applied
        }
        Op::DeleteKey { key: k } => delete(sm, model, KeyRange::key(key(*k))),
        Op::DeletePrefix { prefix } => delete(sm, model, KeyRange::prefix(if *prefix == 0 { "p/" } else { "" })),
        Op::Grant => {
            let applied = sm.apply(&Command::LeaseGrant { id: None, ttl_secs: 10 }, &mut effects);
            let Ok(Reply::LeaseGranted { id, .. }) = applied.result else { panic!("{applied:?}") };
            assert_eq!(id, model.next_lease);
            model.next_lease += 1;
            model.leases.insert(id, BTreeSet::new());
            model.generations.insert(id, model.next_generation);
            model.next_generation += 1;
            applied
        }
        Op::Revoke { lease } => {
            let id = *lease as i64;
            let applied = sm.apply(&Command::LeaseRevoke { id }, &mut effects);
            if model.leases.contains_key(&id) {
                let n = model.leases[&id].len() as u64;
                assert_eq!(applied.result, Ok(Reply::LeaseRevoked { deleted_keys: n }));
                model.revoke(id);
            } else {
                assert!(applied.result.is_err());
            }
            applied
        }
        Op::KeepAlive { lease } => {
            let id = *lease as i64;
            let applied = sm.apply(&Command::LeaseKeepAlive { id, ttl_secs: None }, &mut effects);
            match model.generations.get_mut(&id) {
                Some(g) => {
                    *g = model.next_generation;
                    model.next_generation += 1;
                }
                None => assert!(applied.result.is_err()),
            }
            applied
        }
        Op::Expire { lease, stale } => {
            let id = *lease as i64;
            let generation = model.generations.get(&id).copied().unwrap_or(0);
            let seen = if *stale { generation.wrapping_sub(1) } else { generation };
            let applied = sm.apply(&Command::LeaseExpire { leases: vec![(id, seen)] }, &mut effects);
            if model.leases.contains_key(&id) && !*stale {
                model.revoke(id);
            }
            applied
        }
        Op::Txn { key: k, version, put_key, del_key } => {
            let cmd = Command::Txn(TxnRequest {
                compare: vec![Compare {
                    range: KeyRange::key(key(*k)),
                    target: CompareTarget::Version(*version as i64),
                    op: CompareOp::Equal,
                }],
                success: vec![TxnOp::Put(PutRequest {
                    key: key(*put_key),
                    value: Some(Bytes::from_static(b"t")),
                    lease: LeaseChoice::None,
                    prev_kv: false,
                })],
                failure: vec![TxnOp::DeleteRange(DeleteRequest {
                    range: KeyRange::key(key(*del_key)),
                    prev_kv: false,
                })],
            });
            let applied = sm.apply(&cmd, &mut effects);
            let actual_version = model.current.get(key(*k).as_ref()).map_or(0, |kv| kv.version);
            if actual_version == *version as i64 {
                model.stage_put(&key(*put_key), b"t", 0);
                model.commit();
            } else if model.stage_delete(&KeyRange::key(key(*del_key))) > 0 {
                model.commit();
            }
            applied
        }
        Op::Compact { back } => {
            let target = model.rev - *back as i64;
            let applied = sm.apply(&Command::Compact { revision: target }, &mut effects);
            if target > model.compact && target <= model.rev {
                assert!(applied.result.is_ok(), "{applied:?}");
                model.compact = target;
                model.at.retain(|r, _| *r >= target);
            } else {
                assert!(applied.result.is_err(), "compact {target} with model {} should fail", model.compact);
            }
            applied
        }
    }
}

fn delete(sm: &mut StateMachine, model: &mut Model, range: KeyRange) -> Applied {
    let mut effects = Vec::new();
    let applied = sm.apply(&Command::DeleteRange(DeleteRequest { range: range.clone(), prev_kv: false }), &mut effects);
    if model.stage_delete(&range) > 0 {
        model.commit();
    }
    applied
}

fn check(sm: &StateMachine, model: &Model) {
    assert_eq!(sm.kv().revision(), model.rev);
    let leases: BTreeMap<i64, BTreeSet<Vec<u8>>> =
        sm.leases().iter().map(|l| (l.id, l.keys.iter().map(|k| k.to_vec()).collect())).collect();
    assert_eq!(leases, model.leases);
    for (rev, expected) in &model.at {
        let req = RangeRequest { range: Some(KeyRange::all()), revision: *rev, ..Default::default() };
        let got = sm.kv().range(&req).unwrap();
        let got: BTreeMap<Vec<u8>, ModelKv> = got
            .kvs
            .into_iter()
            .map(|kv| {
                let m = ModelKv {
                    value: kv.value.to_vec(),
                    create: kv.create_revision,
                    modr: kv.mod_revision,
                    version: kv.version,
                    lease: kv.lease.unwrap_or(0),
                };
                (kv.key.to_vec(), m)
            })
            .collect();
        assert_eq!(&got, expected, "read at revision {rev}");
    }
    if model.compact > 1 {
        let req = RangeRequest { range: Some(KeyRange::all()), revision: model.compact - 1, ..Default::default() };
        assert!(sm.kv().range(&req).is_err(), "reads below the compaction point must fail");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut sm = StateMachine::new(LeaseLimits::default());
        let mut model = Model::new();
        for op in &ops {
            let before = sm.state.clone();
            let applied = step(&mut sm, &mut model, op);
            if applied.result.is_err() {
                prop_assert_eq!(&sm.state, &before, "a refused command changed the state: {:?}", op);
            }
            check(&sm, &model);
        }
    }

    #[test]
    fn apply_is_deterministic(ops in proptest::collection::vec(op(), 1..40)) {
        let mut a = StateMachine::new(LeaseLimits::default());
        let mut b = StateMachine::new(LeaseLimits::default());
        let (mut ma, mut mb) = (Model::new(), Model::new());
        for op in &ops {
            let ra = step(&mut a, &mut ma, op);
            let rb = step(&mut b, &mut mb, op);
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(a.state, b.state);
    }
}
