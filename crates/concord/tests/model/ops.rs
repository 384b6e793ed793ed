//! Random operations, and the commands they become against a model state
//! (generations and revisions are only known as the run goes).

use bytes::Bytes;
use concord::KeyRange;
use concord::command::{
    Command, Compare, CompareOp, CompareTarget, DeleteRequest, LeaseCheckpoint, LeaseChoice, PutRequest, RangeRequest,
    TxnOp, TxnRequest,
};
use proptest::collection::vec;
use proptest::prelude::*;

use super::reference::Model;

const KEYS: [&str; 6] = ["a", "b", "p/a", "p/b", "p/c", "q"];
/// Lease ids the operations name: some exist, some do not, some are a
/// key's anonymous lease.
const LEASE_IDS: i64 = 8;

fn key(i: u8) -> Bytes {
    Bytes::from_static(KEYS[i as usize % KEYS.len()].as_bytes())
}

#[derive(Debug, Clone)]
pub enum LeaseSel {
    None,
    Id(u8),
    Anonymous(i64),
    Keep,
}

#[derive(Debug, Clone)]
pub enum RangeSel {
    Key(u8),
    Prefix,
    All,
}

#[derive(Debug, Clone)]
pub enum RevSel {
    Latest,
    Back(u8),
    Future,
}

#[derive(Debug, Clone)]
pub enum TargetSel {
    Value(u8),
    Version(i64),
    Create(i64),
    Mod(i64),
    Lease(i64),
}

#[derive(Debug, Clone)]
pub struct CmpSpec {
    range: RangeSel,
    target: TargetSel,
    op: u8,
}

#[derive(Debug, Clone)]
pub enum TxnOpSpec {
    Get { range: RangeSel, rev: RevSel, limit: u64, keys_only: bool, count_only: bool },
    Put { key: u8, value: Option<u8>, lease: LeaseSel, prev_kv: bool },
    Delete { range: RangeSel, prev_kv: bool },
    Txn(Box<TxnSpec>),
}

#[derive(Debug, Clone)]
pub struct TxnSpec {
    compare: Vec<CmpSpec>,
    success: Vec<TxnOpSpec>,
    failure: Vec<TxnOpSpec>,
}

#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: u8,
        value: Option<u8>,
        lease: LeaseSel,
        prev_kv: bool,
    },
    Delete {
        range: RangeSel,
        prev_kv: bool,
    },
    Grant {
        id: Option<u8>,
        ttl: i64,
    },
    Revoke {
        lease: u8,
    },
    KeepAlive {
        lease: u8,
        ttl: Option<i64>,
    },
    Expire {
        leases: Vec<(u8, bool)>,
    },
    Checkpoint {
        leases: Vec<(u8, bool, u32)>,
    },
    Txn(TxnSpec),
    Compact {
        back: u8,
    },
    /// Raise (or disarm) a NoSpace alarm for member 1 or 2.
    Alarm {
        activate: bool,
        member: u8,
    },
    Batch(Vec<Op>),
}

fn lease_sel() -> impl Strategy<Value = LeaseSel> {
    prop_oneof![
        3 => Just(LeaseSel::None),
        4 => (1..=LEASE_IDS as u8).prop_map(LeaseSel::Id),
        2 => (1i64..30).prop_map(LeaseSel::Anonymous),
        1 => Just(LeaseSel::Keep),
    ]
}

fn range_sel() -> impl Strategy<Value = RangeSel> {
    prop_oneof![4 => any::<u8>().prop_map(RangeSel::Key), 1 => Just(RangeSel::Prefix), 1 => Just(RangeSel::All)]
}

fn cmp_spec() -> impl Strategy<Value = CmpSpec> {
    let target = prop_oneof![
        any::<u8>().prop_map(TargetSel::Value),
        (0i64..4).prop_map(TargetSel::Version),
        (0i64..12).prop_map(TargetSel::Create),
        (0i64..12).prop_map(TargetSel::Mod),
        (0i64..=LEASE_IDS).prop_map(TargetSel::Lease),
    ];
    (range_sel(), target, 0u8..4).prop_map(|(range, target, op)| CmpSpec { range, target, op })
}

fn put_spec() -> impl Strategy<Value = (u8, Option<u8>, LeaseSel, bool)> {
    (any::<u8>(), prop_oneof![5 => any::<u8>().prop_map(Some), 1 => Just(None)], lease_sel(), any::<bool>())
}

fn txn_op() -> impl Strategy<Value = TxnOpSpec> {
    let rev = prop_oneof![4 => Just(RevSel::Latest), 2 => (0u8..4).prop_map(RevSel::Back), 1 => Just(RevSel::Future)];
    let leaf = prop_oneof![
        (range_sel(), rev, 0u64..3, any::<bool>(), any::<bool>()).prop_map(
            |(range, rev, limit, keys_only, count_only)| {
                TxnOpSpec::Get { range, rev, limit, keys_only, count_only }
            }
        ),
        put_spec().prop_map(|(key, value, lease, prev_kv)| TxnOpSpec::Put { key, value, lease, prev_kv }),
        (range_sel(), any::<bool>()).prop_map(|(range, prev_kv)| TxnOpSpec::Delete { range, prev_kv }),
    ];
    leaf.prop_recursive(2, 24, 4, |inner| {
        prop_oneof![
            3 => inner.clone(),
            1 => (vec(cmp_spec(), 0..3), vec(inner.clone(), 0..4), vec(inner, 0..3))
                .prop_map(|(compare, success, failure)| TxnOpSpec::Txn(Box::new(TxnSpec { compare, success, failure }))),
        ]
    })
}

pub fn txn_spec() -> impl Strategy<Value = TxnSpec> {
    (vec(cmp_spec(), 0..4), vec(txn_op(), 0..5), vec(txn_op(), 0..3)).prop_map(|(compare, success, failure)| TxnSpec {
        compare,
        success,
        failure,
    })
}

fn simple_op() -> impl Strategy<Value = Op> {
    let lease = 1..=LEASE_IDS as u8;
    prop_oneof![
        5 => put_spec().prop_map(|(key, value, lease, prev_kv)| Op::Put { key, value, lease, prev_kv }),
        2 => (range_sel(), any::<bool>()).prop_map(|(range, prev_kv)| Op::Delete { range, prev_kv }),
        3 => (proptest::option::of(lease.clone()), 1i64..60).prop_map(|(id, ttl)| Op::Grant { id, ttl }),
        1 => lease.clone().prop_map(|lease| Op::Revoke { lease }),
        2 => (lease.clone(), proptest::option::of(1i64..90)).prop_map(|(lease, ttl)| Op::KeepAlive { lease, ttl }),
        2 => vec((lease.clone(), any::<bool>()), 1..4).prop_map(|leases| Op::Expire { leases }),
        2 => vec((lease, any::<bool>(), 0u32..120_000), 1..4).prop_map(|leases| Op::Checkpoint { leases }),
        3 => txn_spec().prop_map(Op::Txn),
        1 => (0u8..4).prop_map(|back| Op::Compact { back }),
        1 => (any::<bool>(), 1u8..3).prop_map(|(activate, member)| Op::Alarm { activate, member }),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![9 => simple_op(), 1 => vec(simple_op(), 1..5).prop_map(Op::Batch)]
}

fn range(sel: &RangeSel) -> KeyRange {
    match sel {
        RangeSel::Key(k) => KeyRange::key(key(*k)),
        RangeSel::Prefix => KeyRange::prefix("p/"),
        RangeSel::All => KeyRange::all(),
    }
}

fn lease_choice(sel: &LeaseSel) -> LeaseChoice {
    match sel {
        LeaseSel::None => LeaseChoice::None,
        LeaseSel::Id(id) => LeaseChoice::Lease(*id as i64),
        LeaseSel::Anonymous(ttl) => LeaseChoice::Anonymous { ttl_secs: *ttl },
        LeaseSel::Keep => LeaseChoice::Keep,
    }
}

fn put(key_index: u8, value: Option<u8>, lease: &LeaseSel, prev_kv: bool) -> PutRequest {
    PutRequest { key: key(key_index), value: value.map(|v| Bytes::from(vec![v])), lease: lease_choice(lease), prev_kv }
}

/// The generation a leader would name: the lease's current one, or an older one.
fn generation(model: &Model, id: i64, stale: bool) -> u64 {
    let current = model.leases.get(&id).map_or(0, |l| l.generation);
    if stale { current.saturating_sub(1) } else { current }
}

fn txn(spec: &TxnSpec, model: &Model) -> TxnRequest {
    let compare = spec
        .compare
        .iter()
        .map(|c| Compare {
            range: range(&c.range),
            target: match c.target {
                TargetSel::Value(v) => CompareTarget::Value(Bytes::from(vec![v])),
                TargetSel::Version(v) => CompareTarget::Version(v),
                TargetSel::Create(r) => CompareTarget::CreateRevision(r),
                TargetSel::Mod(r) => CompareTarget::ModRevision(r),
                TargetSel::Lease(l) => CompareTarget::Lease(l),
            },
            op: [CompareOp::Equal, CompareOp::NotEqual, CompareOp::Greater, CompareOp::Less][c.op as usize % 4],
        })
        .collect();
    let ops = |list: &[TxnOpSpec]| list.iter().map(|op| txn_op_of(op, model)).collect();
    TxnRequest { compare, success: ops(&spec.success), failure: ops(&spec.failure) }
}

fn txn_op_of(spec: &TxnOpSpec, model: &Model) -> TxnOp {
    match spec {
        TxnOpSpec::Get { range: r, rev, limit, keys_only, count_only } => TxnOp::Range(RangeRequest {
            range: Some(range(r)),
            revision: match rev {
                RevSel::Latest => 0,
                RevSel::Back(n) => (model.rev - *n as i64).max(1),
                RevSel::Future => model.rev + 1,
            },
            limit: *limit,
            keys_only: *keys_only,
            count_only: *count_only,
        }),
        TxnOpSpec::Put { key, value, lease, prev_kv } => TxnOp::Put(put(*key, *value, lease, *prev_kv)),
        TxnOpSpec::Delete { range: r, prev_kv } => {
            TxnOp::DeleteRange(DeleteRequest { range: range(r), prev_kv: *prev_kv })
        }
        TxnOpSpec::Txn(inner) => TxnOp::Txn(txn(inner, model)),
    }
}

/// The command `op` stands for, given the model's state now.
pub fn command(op: &Op, model: &Model) -> Command {
    match op {
        Op::Put { key, value, lease, prev_kv } => Command::Put(put(*key, *value, lease, *prev_kv)),
        Op::Delete { range: r, prev_kv } => Command::DeleteRange(DeleteRequest { range: range(r), prev_kv: *prev_kv }),
        Op::Grant { id, ttl } => Command::LeaseGrant { id: id.map(i64::from), ttl_secs: *ttl },
        Op::Revoke { lease } => Command::LeaseRevoke { id: *lease as i64 },
        Op::KeepAlive { lease, ttl } => Command::LeaseKeepAlive { id: *lease as i64, ttl_secs: *ttl },
        Op::Expire { leases } => Command::LeaseExpire {
            leases: leases.iter().map(|(id, stale)| (*id as i64, generation(model, *id as i64, *stale))).collect(),
            term: 1,
        },
        Op::Checkpoint { leases } => Command::LeaseCheckpoint {
            checkpoints: leases
                .iter()
                .map(|(id, stale, remaining)| LeaseCheckpoint {
                    id: *id as i64,
                    generation: generation(model, *id as i64, *stale),
                    remaining_ms: *remaining as u64,
                })
                .collect(),
            term: 1,
        },
        Op::Txn(spec) => Command::Txn(txn(spec, model)),
        Op::Compact { back } => Command::Compact { revision: model.rev - *back as i64 },
        Op::Alarm { activate, member } => Command::Alarm {
            activate: *activate,
            alarm: concord::Alarm { member: *member as u64, kind: concord::AlarmKind::NoSpace },
        },
        Op::Batch(ops) => Command::Batch(ops.iter().map(|op| command(op, model)).collect()),
    }
}
