//! Transactions, in three steps as etcd does them:
//!
//! 1. choose the path: evaluate the compares of the transaction and of every
//!    nested transaction on the state *before* the transaction;
//! 2. check the chosen path: every read revision, every put (leases, limits,
//!    key presence), and that no put touches a key another put or a delete of
//!    the path touches (one key, one version per revision);
//! 3. execute the path at one revision; reads see earlier writes of the path.
//!
//! Only step 3 changes state, and it cannot fail, so a refused transaction
//! changes nothing.

use std::cmp::Ordering;

use crate::command::{
    ApplyError, Compare, CompareOp, CompareTarget, LeaseEffect, PutRequest, TxnOp, TxnOpResponse, TxnRequest,
    TxnResponse,
};
use crate::types::{KeyRange, KeyValue, Revision};

use super::StateMachine;
use super::write::PendingAttachments;

/// The branch taken by a transaction and, in op order, by its nested ones.
struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

impl StateMachine {
    pub(super) fn apply_txn(
        &mut self,
        txn: &TxnRequest,
        effects: &mut Vec<LeaseEffect>,
    ) -> Result<TxnResponse, ApplyError> {
        let path = self.choose_path(txn);
        let mut writes = Writes::default();
        self.check_path(txn, &path, &mut writes)?;
        let revision = self.state.kv.revision() + 1;
        let mut changed = false;
        let mut resp = self.exec_path(txn, &path, revision, &mut changed, effects);
        if changed {
            self.state.kv.commit_revision(revision);
        }
        set_revision(&mut resp, self.state.kv.revision());
        Ok(resp)
    }

    fn choose_path(&self, txn: &TxnRequest) -> Path {
        let succeeded = txn.compare.iter().all(|c| self.compare_holds(c));
        let branch = if succeeded { &txn.success } else { &txn.failure };
        let nested = branch
            .iter()
            .filter_map(|op| match op {
                TxnOp::Txn(inner) => Some(self.choose_path(inner)),
                _ => None,
            })
            .collect();
        Path { succeeded, nested }
    }

    /// Whether every key of the compare's range satisfies it. An absent single
    /// key compares as version/revisions 0 and no lease; it has no value, so
    /// a value compare on it is false (as in etcd).
    pub(super) fn compare_holds(&self, cmp: &Compare) -> bool {
        let kvs: Vec<KeyValue> = if cmp.range.is_single() {
            self.state.kv.get(&cmp.range.start).into_iter().collect()
        } else {
            self.state.kv.live_in(&cmp.range).collect()
        };
        if kvs.is_empty() {
            return match &cmp.target {
                CompareTarget::Value(_) => false,
                target => compare_one(None, target, cmp.op),
            };
        }
        kvs.iter().all(|kv| compare_one(Some(kv), &cmp.target, cmp.op))
    }

    fn check_path(&self, txn: &TxnRequest, path: &Path, writes: &mut Writes) -> Result<(), ApplyError> {
        let branch = if path.succeeded { &txn.success } else { &txn.failure };
        let mut nested = path.nested.iter();
        for op in branch {
            match op {
                TxnOp::Range(req) => {
                    self.state.kv.read_revision(req.revision)?;
                }
                TxnOp::Put(req) => {
                    self.check_put(req, &mut writes.attachments)?;
                    writes.add_put(req)?;
                }
                TxnOp::DeleteRange(req) => writes.add_delete(&req.range)?,
                TxnOp::Txn(inner) => {
                    let inner_path = nested.next().expect("one path per nested txn");
                    self.check_path(inner, inner_path, writes)?;
                }
            }
        }
        Ok(())
    }

    fn exec_path(
        &mut self,
        txn: &TxnRequest,
        path: &Path,
        revision: Revision,
        changed: &mut bool,
        effects: &mut Vec<LeaseEffect>,
    ) -> TxnResponse {
        let branch = if path.succeeded { &txn.success } else { &txn.failure };
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            let resp = match op {
                TxnOp::Range(req) => {
                    // Reads at "latest" see this transaction's earlier writes.
                    let latest = if *changed { revision } else { self.state.kv.revision() };
                    let resp = self.state.kv.range_at(req, latest).expect("read revision checked");
                    TxnOpResponse::Range(resp)
                }
                TxnOp::Put(req) => {
                    *changed = true;
                    TxnOpResponse::Put(self.exec_put(revision, req, effects))
                }
                TxnOp::DeleteRange(req) => {
                    let resp = self.exec_delete(revision, req, effects);
                    *changed |= resp.deleted > 0;
                    TxnOpResponse::DeleteRange(resp)
                }
                TxnOp::Txn(inner) => {
                    let inner_path = nested.next().expect("one path per nested txn");
                    TxnOpResponse::Txn(self.exec_path(inner, inner_path, revision, changed, effects))
                }
            };
            responses.push(resp);
        }
        TxnResponse { succeeded: path.succeeded, revision, responses }
    }
}

/// The keys a transaction path writes, to refuse two writes to one key.
#[derive(Default)]
struct Writes {
    puts: Vec<KeyRange>,
    deletes: Vec<KeyRange>,
    attachments: PendingAttachments,
}

impl Writes {
    fn add_put(&mut self, req: &PutRequest) -> Result<(), ApplyError> {
        let key = KeyRange::key(req.key.clone());
        if self.puts.iter().chain(&self.deletes).any(|r| r.overlaps(&key)) {
            return Err(ApplyError::DuplicateKey);
        }
        self.puts.push(key);
        Ok(())
    }

    fn add_delete(&mut self, range: &KeyRange) -> Result<(), ApplyError> {
        if self.puts.iter().any(|p| p.overlaps(range)) {
            return Err(ApplyError::DuplicateKey);
        }
        self.deletes.push(range.clone());
        Ok(())
    }
}

fn compare_one(kv: Option<&KeyValue>, target: &CompareTarget, op: CompareOp) -> bool {
    let ordering = match target {
        CompareTarget::Value(v) => match kv {
            Some(kv) => kv.value.as_ref().cmp(v.as_ref()),
            None => return false,
        },
        CompareTarget::Version(v) => kv.map_or(0, |kv| kv.version).cmp(v),
        CompareTarget::CreateRevision(r) => kv.map_or(0, |kv| kv.create_revision).cmp(r),
        CompareTarget::ModRevision(r) => kv.map_or(0, |kv| kv.mod_revision).cmp(r),
        CompareTarget::Lease(l) => kv.and_then(|kv| kv.lease).unwrap_or(0).cmp(l),
    };
    match op {
        CompareOp::Equal => ordering == Ordering::Equal,
        CompareOp::NotEqual => ordering != Ordering::Equal,
        CompareOp::Greater => ordering == Ordering::Greater,
        CompareOp::Less => ordering == Ordering::Less,
    }
}

/// Every response of a transaction reports the store revision after it.
fn set_revision(resp: &mut TxnResponse, revision: Revision) {
    resp.revision = revision;
    for r in &mut resp.responses {
        match r {
            TxnOpResponse::Range(r) => r.revision = revision,
            TxnOpResponse::Put(_) => {}
            TxnOpResponse::DeleteRange(r) => r.revision = revision,
            TxnOpResponse::Txn(t) => set_revision(t, revision),
        }
    }
}
