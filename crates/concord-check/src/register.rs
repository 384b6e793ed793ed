//! Is every key a linearizable register?
//!
//! The history is split per key (linearizability is compositional, so the
//! whole history is linearizable iff each key's part is) and each part is
//! searched with Wing & Gong's algorithm: walk the invocations in time
//! order, tentatively linearize an operation that the model accepts at
//! this point, backtrack when an operation's return is reached before it
//! was linearized. Lowe's memoisation prunes the search: a (set of
//! linearized operations, register value) pair already explored is never
//! explored again.
//!
//! Semantics checked, per key (absent at the start of the history):
//! - a get returns the value of the last write linearized before it;
//! - a put always writes;
//! - a compare-and-set writes iff the value equals `expect`, and says so;
//! - an operation with an unknown outcome may take effect at any point
//!   after its invocation, or never (it is given an infinite return time,
//!   and may be linearized after everything else, where it is invisible);
//! - a failed operation never took effect and is ignored, as is a read
//!   whose answer is unknown.
//!
//! Cost: the search is exponential in the number of operations open at
//! once on a key. A write with an unknown outcome stays open to the end of
//! the history (it may take effect at any later point), so each one on a key
//! can double the work after it: torture runs keep them rare per key (many
//! keys, few clients per key).
//!
//! Events at the same instant are ordered invocations first, so operations
//! that touch at one nanosecond count as concurrent (the permissive
//! reading: a violation reported is a real one).

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

use crate::history::{Call, History, Operation, Outcome};

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<K, V> {
    Linearizable,
    /// No order of this key's operations explains what the clients saw.
    NotLinearizable {
        key: K,
        operations: Vec<Operation<K, V>>,
    },
}

impl<K, V> Verdict<K, V> {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Checks every key of `history` (each absent at the start).
pub fn check<K, V>(history: &History<K, V>) -> Verdict<K, V>
where
    K: Ord + Clone,
    V: Clone + Eq + Hash,
{
    let mut per_key: BTreeMap<&K, Vec<&Operation<K, V>>> = BTreeMap::new();
    for op in &history.operations {
        // A failed operation took no effect; a read with an unknown answer
        // constrains nothing.
        let inert = op.outcome == Outcome::Failed || (op.call == Call::Get && op.outcome == Outcome::Unknown);
        if !inert {
            per_key.entry(&op.key).or_default().push(op);
        }
    }
    for (key, ops) in per_key {
        if !linearizable(&ops) {
            return Verdict::NotLinearizable { key: key.clone(), operations: ops.into_iter().cloned().collect() };
        }
    }
    Verdict::Linearizable
}

/// Applies `op` to the register `state`: the state after it, or `None` if
/// the register could not have answered what the client saw.
fn step<K, V: Clone + Eq>(state: &Option<V>, op: &Operation<K, V>) -> Option<Option<V>> {
    match (&op.call, &op.outcome) {
        (Call::Get, Outcome::Got(seen)) => (seen == state).then(|| state.clone()),
        (Call::Get, Outcome::Unknown) => Some(state.clone()),
        (Call::Put(v), Outcome::Done | Outcome::Unknown) => Some(Some(v.clone())),
        (Call::Cas { expect, new }, Outcome::Swapped(true)) => (expect == state).then(|| Some(new.clone())),
        (Call::Cas { expect, .. }, Outcome::Swapped(false)) => (expect != state).then(|| state.clone()),
        (Call::Cas { expect, new }, Outcome::Unknown) => {
            Some(if expect == state { Some(new.clone()) } else { state.clone() })
        }
        // An answer of the wrong kind: no register gives it.
        _ => None,
    }
}

/// One invocation or return in the time-ordered event list.
struct Event {
    op: usize,
    is_call: bool,
    /// The other event of the same operation.
    partner: usize,
}

/// Wing & Gong search with memoisation over one key's operations.
fn linearizable<K, V: Clone + Eq + Hash>(ops: &[&Operation<K, V>]) -> bool {
    // Events: invocations at `invoked`, returns at `returned` (never, for
    // unknown outcomes); at equal times invocations first.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        let returned = if op.outcome == Outcome::Unknown { u64::MAX } else { op.returned.max(op.invoked) };
        order.push((op.invoked, true, i));
        order.push((returned, false, i));
    }
    order.sort_by_key(|&(time, is_call, op)| (time, !is_call, op));
    let mut position = vec![[0usize; 2]; ops.len()];
    for (at, &(_, is_call, op)) in order.iter().enumerate() {
        position[op][usize::from(!is_call)] = at;
    }
    let events: Vec<Event> = order
        .iter()
        .map(|&(_, is_call, op)| Event { op, is_call, partner: position[op][usize::from(is_call)] })
        .collect();

    // A doubly linked list over the events; index `n` is the head sentinel.
    let n = events.len();
    let mut next: Vec<usize> = (1..=n).chain([0]).collect();
    let mut prev: Vec<usize> = std::iter::once(n).chain(0..n).collect();
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = next[e];
        prev[next[e]] = prev[e];
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = e;
        prev[next[e]] = e;
    };

    let words = ops.len().div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut state: Option<V> = None;
    let mut seen: HashSet<(Vec<u64>, Option<V>)> = HashSet::new();
    // (call event, state before it) of every tentatively linearized operation.
    let mut stack: Vec<(usize, Option<V>)> = Vec::new();
    let mut entry = next[n];
    while next[n] != n {
        if entry == n {
            // Unreachable while operations remain: each one left has its
            // return after its call, and a return stops the walk first.
            return false;
        }
        let event = &events[entry];
        if event.is_call {
            let op = event.op;
            if let Some(after) = step(&state, ops[op]) {
                let mut with = linearized.clone();
                with[op / 64] |= 1 << (op % 64);
                if seen.insert((with.clone(), after.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, after)));
                    linearized = with;
                    // Lift the operation out of the list: its call, then its return.
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, event.partner);
                    entry = next[n];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // An operation returned before any order placed it: undo the
            // last placement and try the next candidate after it.
            let Some((call, before)) = stack.pop() else { return false };
            let op = events[call].op;
            state = before;
            linearized[op / 64] &= !(1 << (op % 64));
            relink(&mut next, &mut prev, events[call].partner);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    true
}

#[cfg(test)]
mod tests;
