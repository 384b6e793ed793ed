//! Apply, tested directly: lease attachment rules, revoke and expiry,
//! transactions, and "a refused command changes nothing".

use bytes::Bytes;

use super::*;
use crate::command::{
    Compare, CompareOp, CompareTarget, DeleteRequest, LeaseCheckpoint, LeaseChoice, PutRequest, RangeRequest, TxnOp,
    TxnOpResponse, TxnRequest,
};
use crate::types::KeyRange;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(key: &str, value: &str, lease: LeaseChoice) -> Command {
    Command::Put(PutRequest { key: b(key), value: Some(b(value)), lease, prev_kv: true })
}

struct Harness {
    sm: StateMachine,
    effects: Vec<LeaseEffect>,
}

impl Harness {
    fn new() -> Self {
        Harness { sm: StateMachine::new(LeaseLimits::default()), effects: Vec::new() }
    }

    fn apply(&mut self, cmd: Command) -> Applied {
        self.sm.apply(&cmd, &mut self.effects)
    }

    fn ok(&mut self, cmd: Command) -> Reply {
        let applied = self.apply(cmd);
        applied.result.unwrap()
    }

    fn grant(&mut self, ttl: i64) -> i64 {
        match self.ok(Command::LeaseGrant { id: None, ttl_secs: ttl }) {
            Reply::LeaseGranted { id, .. } => id,
            other => panic!("{other:?}"),
        }
    }

    fn generation(&self, id: i64) -> u64 {
        self.sm.leases().get(id).unwrap().generation
    }

    fn value(&self, key: &str) -> Option<KeyValue> {
        self.sm.kv().get(key.as_bytes())
    }

    fn lease_keys(&self, id: i64) -> Vec<Bytes> {
        self.sm.leases().get(id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default()
    }
}

use crate::types::KeyValue;

#[test]
fn revoke_deletes_every_attached_key_at_one_revision_in_key_order() {
    let mut h = Harness::new();
    let id = h.grant(30);
    h.ok(put("key2", "v", LeaseChoice::Lease(id)));
    h.ok(put("key1", "v", LeaseChoice::Lease(id)));
    h.ok(put("other", "v", LeaseChoice::None));
    let before = h.sm.kv().revision();
    let applied = h.apply(Command::LeaseRevoke { id });
    assert_eq!(applied.result, Ok(Reply::LeaseRevoked { deleted_keys: 2 }));
    assert_eq!(applied.revision, before + 1, "one revision for the whole revoke");
    assert!(h.value("key1").is_none() && h.value("key2").is_none());
    assert!(h.value("other").is_some());
    let hist = h.sm.kv().history(b"key1", 0, 0, 0).unwrap();
    assert_eq!(hist.last().unwrap().revision(), before + 1);
    assert!(h.effects.contains(&LeaseEffect::Removed { id }));
    assert_eq!(h.apply(Command::LeaseRevoke { id }).result, Err(ApplyError::LeaseNotFound(id)));
}

#[test]
fn put_with_unknown_lease_fails_and_writes_nothing() {
    let mut h = Harness::new();
    let before = h.sm.state.clone();
    assert_eq!(h.apply(put("k", "v", LeaseChoice::Lease(42))).result, Err(ApplyError::LeaseNotFound(42)));
    assert_eq!(h.sm.state, before);
}

#[test]
fn a_key_belongs_to_at_most_one_lease_and_re_puts_detach_it() {
    let mut h = Harness::new();
    let a = h.grant(30);
    let c = h.grant(30);
    h.ok(put("k", "1", LeaseChoice::Lease(a)));
    h.ok(put("k", "2", LeaseChoice::Lease(c)));
    assert!(h.lease_keys(a).is_empty());
    assert_eq!(h.lease_keys(c), vec![b("k")]);
    h.ok(put("k", "3", LeaseChoice::None));
    assert!(h.lease_keys(c).is_empty());
    // The key, re-put without the lease, survives the revoke.
    assert_eq!(h.ok(Command::LeaseRevoke { id: c }), Reply::LeaseRevoked { deleted_keys: 0 });
    assert_eq!(h.value("k").unwrap().value, b("3"));
}

#[test]
fn delete_detaches_and_keep_lease_keeps_it() {
    let mut h = Harness::new();
    let id = h.grant(30);
    h.ok(put("a", "1", LeaseChoice::Lease(id)));
    h.ok(put("a", "2", LeaseChoice::Keep));
    assert_eq!(h.value("a").unwrap().lease, Some(id));
    h.ok(Command::DeleteRange(DeleteRequest { range: KeyRange::key("a"), prev_kv: false }));
    assert!(h.lease_keys(id).is_empty());
    assert_eq!(h.apply(put("a", "x", LeaseChoice::Keep)).result, Err(ApplyError::KeyNotFound));
}

#[test]
fn anonymous_leases_come_and_go_with_their_key() {
    let mut h = Harness::new();
    let reply = h.ok(put("tmp", "v", LeaseChoice::Anonymous { ttl_secs: 5 }));
    let Reply::Put(resp) = reply else { panic!() };
    let id = resp.lease.unwrap();
    assert!(h.sm.leases().get(id).unwrap().anonymous);
    h.ok(put("tmp", "v2", LeaseChoice::None));
    assert!(h.sm.leases().get(id).is_none(), "an anonymous lease without its key is dropped");
    assert!(h.effects.contains(&LeaseEffect::Removed { id }));
}

/// Issue: a client revokes lease 42 and grants it again while an expiry (or
/// checkpoint) computed for the old lease waits to be proposed.
#[test]
fn stale_expiry_and_checkpoint_do_not_touch_a_regranted_lease() {
    let mut h = Harness::new();
    h.ok(Command::LeaseGrant { id: Some(42), ttl_secs: 1 });
    let old = h.generation(42);
    h.ok(Command::LeaseRevoke { id: 42 });
    h.ok(Command::LeaseGrant { id: Some(42), ttl_secs: 60 });
    h.ok(put("k", "v", LeaseChoice::Lease(42)));
    h.ok(Command::LeaseCheckpoint {
        term: 1,
        checkpoints: vec![LeaseCheckpoint { id: 42, generation: old, remaining_ms: 800 }],
    });
    assert_eq!(h.sm.leases().get(42).unwrap().remaining_ms, 60_000, "old checkpoint shortened the new lease");
    assert_eq!(h.ok(Command::LeaseExpire { leases: vec![(42, old)], term: 1 }), Reply::LeasesExpired { expired: 0 });
    assert!(h.value("k").is_some(), "old expiry deleted the new lease's key");
}

/// Issue: `[DeleteRange(a), Put(b, lease = anonymous lease of a)]` emptied and
/// dropped the anonymous lease before attaching `b`, leaving `b` on a lease
/// that does not exist.
#[test]
fn a_txn_cannot_attach_a_key_to_an_anonymous_lease_it_empties() {
    let mut h = Harness::new();
    let Reply::Put(resp) = h.ok(put("a", "v", LeaseChoice::Anonymous { ttl_secs: 10 })) else { panic!() };
    let anon = resp.lease.unwrap();
    let leased_b =
        TxnOp::Put(PutRequest { key: b("b"), value: Some(b("v")), lease: LeaseChoice::Lease(anon), prev_kv: false });
    for first in
        [TxnOp::DeleteRange(DeleteRequest { range: KeyRange::key("a"), prev_kv: false }), txn_put("a", "no lease")]
    {
        let before = h.sm.state.clone();
        let txn = TxnRequest { compare: vec![], success: vec![first, leased_b.clone()], failure: vec![] };
        assert_eq!(h.apply(Command::Txn(txn)).result, Err(ApplyError::AnonymousLease(anon)));
        assert_eq!(h.sm.state, before, "a refused txn changed the state");
    }
    // On its own too: an anonymous lease belongs to its key alone.
    assert_eq!(h.apply(put("b", "v", LeaseChoice::Lease(anon))).result, Err(ApplyError::AnonymousLease(anon)));
    // Its own key may be re-put on it (etcd's ignore_lease or naming it).
    h.ok(put("a", "v2", LeaseChoice::Lease(anon)));
    assert_eq!(h.lease_keys(anon), vec![b("a")]);
}

#[test]
fn lease_limits_live_in_the_replicated_state() {
    let mut h = Harness::new();
    h.ok(Command::SetLeaseLimits(LeaseLimits { max_leases: 1, max_keys_per_lease: 1 }));
    assert_eq!(h.sm.state.lease_limits, Some(LeaseLimits { max_leases: 1, max_keys_per_lease: 1 }));
    h.grant(10);
    assert_eq!(
        h.apply(Command::LeaseGrant { id: None, ttl_secs: 10 }).result,
        Err(ApplyError::TooManyLeases { max: 1 })
    );
    // A state rebuilt from a snapshot enforces the same, whatever the local settings.
    let restored = StateMachine::with_state(h.sm.state.clone());
    assert_eq!(restored.limits(), &LeaseLimits { max_leases: 1, max_keys_per_lease: 1 });
}

#[test]
fn expiry_skips_leases_renewed_since_the_leader_looked() {
    let mut h = Harness::new();
    let a = h.grant(10);
    let c = h.grant(10);
    h.ok(put("a", "v", LeaseChoice::Lease(a)));
    h.ok(put("c", "v", LeaseChoice::Lease(c)));
    let (ga, gc) = (h.generation(a), h.generation(c));
    h.ok(Command::LeaseKeepAlive { id: c, ttl_secs: None });
    let before = h.sm.kv().revision();
    let reply = h.ok(Command::LeaseExpire { leases: vec![(a, ga), (c, gc), (999, 0)], term: 1 });
    assert_eq!(reply, Reply::LeasesExpired { expired: 1 });
    assert!(h.value("a").is_none());
    assert!(h.value("c").is_some());
    assert_eq!(h.sm.kv().revision(), before + 1);
}

/// One `LeaseExpire` carrying several leases: each lease's keys go at one
/// revision of their own (invariant 5), in the command's lease order.
#[test]
fn batched_expiry_gives_each_lease_its_own_revision() {
    let mut h = Harness::new();
    let a = h.grant(10);
    let c = h.grant(10);
    for (key, lease) in [("a1", a), ("a2", a), ("c1", c), ("c2", c)] {
        h.ok(put(key, "v", LeaseChoice::Lease(lease)));
    }
    let before = h.sm.kv().revision();
    let leases = vec![(a, h.generation(a)), (c, h.generation(c))];
    assert_eq!(h.ok(Command::LeaseExpire { leases, term: 1 }), Reply::LeasesExpired { expired: 2 });
    assert_eq!(h.sm.kv().revision(), before + 2);
    let deleted_at = |key: &str| {
        let history = h.sm.kv().history(key.as_bytes(), 0, 0, 0).unwrap();
        history.last().unwrap().revision()
    };
    assert_eq!(deleted_at("a1"), before + 1);
    assert_eq!(deleted_at("a2"), before + 1);
    assert_eq!(deleted_at("c1"), before + 2);
    assert_eq!(deleted_at("c2"), before + 2);
}

#[test]
fn keep_alive_resets_remaining_and_can_change_the_ttl() {
    let mut h = Harness::new();
    let id = h.grant(10);
    let generation = h.generation(id);
    h.ok(Command::LeaseCheckpoint {
        checkpoints: vec![LeaseCheckpoint { id, generation, remaining_ms: 3_000 }],
        term: 1,
    });
    assert_eq!(h.sm.leases().get(id).unwrap().remaining_ms, 3_000);
    assert_eq!(h.ok(Command::LeaseKeepAlive { id, ttl_secs: Some(20) }), Reply::LeaseKeptAlive { id, ttl_secs: 20 });
    let lease = h.sm.leases().get(id).unwrap();
    assert_eq!(lease.remaining_ms, 20_000);
    assert!(lease.generation > generation);
    assert_eq!(h.apply(Command::LeaseKeepAlive { id: 77, ttl_secs: None }).result, Err(ApplyError::LeaseNotFound(77)));
}

#[test]
fn grant_records_the_current_revision_and_does_not_advance_it() {
    let mut h = Harness::new();
    h.ok(put("x", "1", LeaseChoice::None));
    let rev = h.sm.kv().revision();
    let id = h.grant(10);
    assert_eq!(h.sm.kv().revision(), rev);
    assert_eq!(h.sm.leases().get(id).unwrap().granted_at, rev);
}

fn cmp(key: &str, target: CompareTarget, op: CompareOp) -> Compare {
    Compare { range: KeyRange::key(b(key)), target, op }
}

fn txn_put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put(PutRequest { key: b(key), value: Some(b(value)), lease: LeaseChoice::None, prev_kv: false })
}

fn txn_get(key: &str) -> TxnOp {
    TxnOp::Range(RangeRequest { range: Some(KeyRange::key(b(key))), ..Default::default() })
}

#[test]
fn txn_takes_one_branch_at_one_revision_and_reads_its_own_writes() {
    let mut h = Harness::new();
    h.ok(put("a", "1", LeaseChoice::None));
    let rev = h.sm.kv().revision();
    let txn = TxnRequest {
        compare: vec![cmp("a", CompareTarget::Value(b("1")), CompareOp::Equal)],
        success: vec![txn_put("b", "2"), txn_put("c", "3"), txn_get("b")],
        failure: vec![txn_put("failed", "x")],
    };
    let Reply::Txn(resp) = h.ok(Command::Txn(txn.clone())) else { panic!() };
    assert!(resp.succeeded);
    assert_eq!(resp.revision, rev + 1);
    assert_eq!(h.value("b").unwrap().mod_revision, rev + 1);
    assert_eq!(h.value("c").unwrap().mod_revision, rev + 1);
    let TxnOpResponse::Range(read) = &resp.responses[2] else { panic!() };
    assert_eq!(read.kvs[0].value, b("2"), "a read in the txn sees the txn's earlier put");

    // Same txn again: "a" still equals 1 but nothing else differs; now fail it.
    let failing = TxnRequest { compare: vec![cmp("a", CompareTarget::Version(5), CompareOp::Greater)], ..txn };
    let Reply::Txn(resp) = h.ok(Command::Txn(failing)) else { panic!() };
    assert!(!resp.succeeded, "a failed compare is a result, not an error");
    assert!(h.value("failed").is_some());
}

#[test]
fn compares_on_absent_keys_and_ranges_follow_etcd() {
    let mut h = Harness::new();
    let holds = |h: &Harness, c: Compare| h.sm.compare_holds(&c);
    assert!(holds(&h, cmp("none", CompareTarget::Version(0), CompareOp::Equal)));
    assert!(holds(&h, cmp("none", CompareTarget::CreateRevision(0), CompareOp::Equal)));
    assert!(!holds(&h, cmp("none", CompareTarget::Value(b("")), CompareOp::Equal)));
    let id = h.grant(10);
    h.ok(put("p/1", "a", LeaseChoice::Lease(id)));
    h.ok(put("p/2", "b", LeaseChoice::None));
    assert!(holds(&h, cmp("p/1", CompareTarget::Lease(id), CompareOp::Equal)));
    assert!(holds(&h, cmp("p/2", CompareTarget::Lease(0), CompareOp::Equal)));
    let range = |target, op| Compare { range: KeyRange::prefix("p/"), target, op };
    assert!(holds(&h, range(CompareTarget::Version(1), CompareOp::Equal)));
    assert!(!holds(&h, range(CompareTarget::Value(b("a")), CompareOp::Equal)));
    assert!(holds(&h, range(CompareTarget::Value(b("c")), CompareOp::Less)));
}

#[test]
fn refused_transactions_change_nothing() {
    let mut h = Harness::new();
    h.ok(put("a", "1", LeaseChoice::None));
    let before = h.sm.state.clone();
    let cases = [
        // Unknown lease on the second put: the first put must not land.
        (
            vec![
                txn_put("x", "1"),
                TxnOp::Put(PutRequest {
                    key: b("y"),
                    value: Some(b("2")),
                    lease: LeaseChoice::Lease(9),
                    prev_kv: false,
                }),
            ],
            ApplyError::LeaseNotFound(9),
        ),
        (vec![txn_put("x", "1"), txn_put("x", "2")], ApplyError::DuplicateKey),
        (
            vec![
                txn_put("p/x", "1"),
                TxnOp::DeleteRange(DeleteRequest { range: KeyRange::prefix("p/"), prev_kv: false }),
            ],
            ApplyError::DuplicateKey,
        ),
        (
            vec![
                txn_put("x", "1"),
                TxnOp::Range(RangeRequest { range: Some(KeyRange::all()), revision: 99, ..Default::default() }),
            ],
            ApplyError::FutureRevision { revision: 99, current: 2 },
        ),
    ];
    for (ops, err) in cases {
        let txn = TxnRequest { compare: vec![], success: ops, failure: vec![] };
        assert_eq!(h.apply(Command::Txn(txn)).result, Err(err));
        assert_eq!(h.sm.state, before);
    }
}

#[test]
fn nested_txn_compares_see_the_state_before_the_txn() {
    let mut h = Harness::new();
    let inner = TxnRequest {
        compare: vec![cmp("k", CompareTarget::Version(0), CompareOp::Equal)],
        success: vec![txn_put("inner-saw-absent", "1")],
        failure: vec![txn_put("inner-saw-present", "1")],
    };
    let outer = TxnRequest { compare: vec![], success: vec![txn_put("k", "v"), TxnOp::Txn(inner)], failure: vec![] };
    h.ok(Command::Txn(outer));
    assert!(h.value("inner-saw-absent").is_some());
    assert!(h.value("inner-saw-present").is_none());
}

#[test]
fn keys_per_lease_limit_counts_a_whole_txn() {
    let mut h =
        Harness { sm: StateMachine::new(LeaseLimits { max_leases: 10, max_keys_per_lease: 2 }), effects: vec![] };
    let id = h.grant(10);
    let with_lease = |k: &str| {
        TxnOp::Put(PutRequest { key: b(k), value: Some(b("v")), lease: LeaseChoice::Lease(id), prev_kv: false })
    };
    let txn = TxnRequest {
        compare: vec![],
        success: vec![with_lease("a"), with_lease("b"), with_lease("c")],
        failure: vec![],
    };
    assert_eq!(h.apply(Command::Txn(txn)).result, Err(ApplyError::TooManyKeysOnLease { lease: id, max: 2 }));
    assert!(h.lease_keys(id).is_empty());
}

#[test]
fn a_batch_applies_each_command_as_if_alone() {
    let mut alone = Harness::new();
    let mut batched = Harness::new();
    let commands = vec![
        put("a", "1", LeaseChoice::None),
        put("b", "1", LeaseChoice::Lease(5)),
        Command::LeaseGrant { id: None, ttl_secs: 10 },
        put("c", "1", LeaseChoice::Lease(1)),
        Command::DeleteRange(DeleteRequest { range: KeyRange::key("a"), prev_kv: true }),
    ];
    let expected: Vec<Applied> = commands.iter().map(|c| alone.apply(c.clone())).collect();
    let applied = batched.apply(Command::Batch(commands));
    assert_eq!(applied.result, Ok(Reply::Batch(expected)));
    assert_eq!(batched.sm.state, alone.sm.state);
    assert_eq!(batched.effects, alone.effects);
    let nested = batched.apply(Command::Batch(vec![Command::Batch(vec![])]));
    let Ok(Reply::Batch(results)) = nested.result else { panic!() };
    assert!(matches!(results[0].result, Err(ApplyError::Invalid(_))));
}

/// Snapshots in older formats still load: from before `pending_voters`
/// (the state's first four fields; no member pending), from before
/// `alarms` (pending voters kept, no alarm) and from before `auth` (no
/// users or roles); the space count is recounted
/// on load. (postcard writes a struct as its fields in order, so tuples of
/// the old fields are the old bytes.)
#[test]
fn snapshots_in_older_formats_still_load() {
    let mut sm = StateMachine::default();
    sm.apply(&put("k", "value", LeaseChoice::None), &mut Vec::new());
    sm.apply(&Command::MarkPendingVoter { id: 7 }, &mut Vec::new());
    let state = &sm.state;
    let before_pending_voters =
        postcard::to_stdvec(&(&state.kv, &state.leases, state.lease_limits, &state.member_attributes)).unwrap();
    let loaded = State::decode_snapshot(&before_pending_voters).unwrap();
    assert_eq!(loaded.kv, state.kv);
    assert!(loaded.pending_voters.is_empty() && loaded.alarms.is_empty());

    let before_alarms = postcard::to_stdvec(&(
        &state.kv,
        &state.leases,
        state.lease_limits,
        &state.member_attributes,
        &state.pending_voters,
    ))
    .unwrap();
    let loaded = State::decode_snapshot(&before_alarms).unwrap();
    assert_eq!(loaded, *state);

    let before_auth = postcard::to_stdvec(&(
        &state.kv,
        &state.leases,
        state.lease_limits,
        &state.member_attributes,
        &state.pending_voters,
        &state.alarms,
    ))
    .unwrap();
    assert_eq!(State::decode_snapshot(&before_auth).unwrap(), *state);
    assert!(loaded.kv.quota_bytes() > 0 && loaded.kv.quota_bytes() == state.kv.quota_bytes());

    let current = State::decode_snapshot(&state.encode_snapshot().unwrap()).unwrap();
    assert_eq!(current, *state);
    assert!(current.pending_voters.contains(&7));
    assert!(State::decode_snapshot(b"\xff\xff").is_err());
}

/// While a NOSPACE alarm is raised, what would grow the store is refused
/// and changes nothing; what shrinks it is taken; disarming lifts it.
#[test]
fn a_raised_nospace_alarm_refuses_only_what_grows_the_store() {
    let alarm = crate::Alarm { member: 9, kind: crate::AlarmKind::NoSpace };
    let mut sm = StateMachine::default();
    sm.apply(&put("k", "v", LeaseChoice::None), &mut Vec::new());
    let raised = sm.apply(&Command::Alarm { activate: true, alarm }, &mut Vec::new());
    assert_eq!(raised.result, Ok(Reply::Alarm(Some(alarm))));
    let before = sm.state.clone();
    for refused in [
        put("x", "y", LeaseChoice::None),
        Command::LeaseGrant { id: None, ttl_secs: 10 },
        Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![TxnOp::Put(PutRequest {
                key: b("x"),
                value: Some(b("y")),
                lease: LeaseChoice::None,
                prev_kv: false,
            })],
            failure: vec![],
        }),
    ] {
        assert_eq!(sm.apply(&refused, &mut Vec::new()).result, Err(ApplyError::NoSpace), "{refused:?}");
        assert_eq!(sm.state, before);
    }
    let delete = Command::DeleteRange(DeleteRequest { range: KeyRange::key("k"), prev_kv: false });
    assert!(sm.apply(&delete, &mut Vec::new()).result.is_ok());
    let revision = sm.kv().revision();
    assert!(sm.apply(&Command::Compact { revision }, &mut Vec::new()).result.is_ok());
    assert_eq!(
        sm.apply(&Command::Alarm { activate: false, alarm }, &mut Vec::new()).result,
        Ok(Reply::Alarm(Some(alarm)))
    );
    assert_eq!(sm.apply(&Command::Alarm { activate: false, alarm }, &mut Vec::new()).result, Ok(Reply::Alarm(None)));
    assert!(sm.apply(&put("x", "y", LeaseChoice::None), &mut Vec::new()).result.is_ok());
    assert_eq!(sm.kv().quota_bytes(), sm.kv().counted_bytes());
}

/// Logs written before `Command::Authorized` still apply: an
/// `AuthChecked` write applies only if auth is disabled or unchanged since.
#[test]
fn a_legacy_auth_checked_write_is_refused_once_auth_changed() {
    use crate::auth::{AuthCommand, AuthError};
    let mut h = Harness::new();
    let auth = |h: &mut Harness, command| h.ok(Command::Auth(command));
    auth(&mut h, AuthCommand::UserAdd { name: "root".into(), password_hash: None });
    auth(&mut h, AuthCommand::UserGrantRole { user: "root".into(), role: "root".into() });
    auth(&mut h, AuthCommand::Enable);
    let checked_at = h.sm.state.auth.revision;
    let legacy = |command: Command, auth_revision| Command::AuthChecked { auth_revision, command: Box::new(command) };
    h.ok(legacy(put("a", "1", LeaseChoice::None), checked_at));
    assert!(h.value("a").is_some());
    auth(&mut h, AuthCommand::RoleAdd { name: "r".into() });
    let state = h.sm.state.clone();
    let applied = h.apply(legacy(put("b", "1", LeaseChoice::None), checked_at));
    assert_eq!(applied.result, Err(ApplyError::Auth(AuthError::OldRevision)));
    assert_eq!(h.sm.state, state, "a refused write changed the state");
    let wrapped = legacy(Command::Batch(vec![]), 0);
    assert!(matches!(h.apply(wrapped).result, Err(ApplyError::Invalid(_))));
}

mod authorize;
