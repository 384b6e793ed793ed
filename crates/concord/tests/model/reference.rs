//! The reference model: the state machine's rules written as plainly as
//! possible — a full copy of the keyspace at every revision, a map of
//! leases — so that the real one (versions per key, change log, sorted
//! sets, pending-attachment counters) can be checked against it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use concord::command::{
    Applied, ApplyError, Command, Compare, CompareOp, CompareTarget, DeleteRequest, DeleteResponse, LeaseChoice,
    LeaseEffect, PutRequest, PutResponse, RangeRequest, RangeResponse, Reply, TxnOp, TxnOpResponse, TxnRequest,
    TxnResponse,
};
use concord::{Alarm, AlarmKind, KeyRange, KeyValue, LeaseLimits};

#[derive(Debug, Clone, PartialEq)]
pub struct ModelKv {
    pub value: Bytes,
    pub create: i64,
    pub modr: i64,
    pub version: i64,
    pub lease: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelLease {
    pub ttl: i64,
    pub granted_at: i64,
    pub remaining_ms: u64,
    pub generation: u64,
    pub anonymous: bool,
    pub keys: BTreeSet<Bytes>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub rev: i64,
    pub compact: i64,
    pub current: BTreeMap<Bytes, ModelKv>,
    /// The whole keyspace at every readable revision.
    pub at: BTreeMap<i64, BTreeMap<Bytes, ModelKv>>,
    pub leases: BTreeMap<i64, ModelLease>,
    pub next_id: i64,
    pub next_generation: u64,
    pub limits: LeaseLimits,
    /// Raised alarms: while a NoSpace one is raised, puts, transactions
    /// with a put in any branch and grants are refused.
    pub alarms: BTreeSet<Alarm>,
}

fn ttl_ms(ttl: i64) -> u64 {
    (ttl.max(0) as u64).saturating_mul(1000)
}

pub fn to_kv(key: &Bytes, kv: &ModelKv, keys_only: bool) -> KeyValue {
    KeyValue {
        key: key.clone(),
        value: if keys_only { Bytes::new() } else { kv.value.clone() },
        create_revision: kv.create,
        mod_revision: kv.modr,
        version: kv.version,
        lease: (kv.lease != 0).then_some(kv.lease),
    }
}

/// Per transaction (or single put): what earlier puts will attach.
#[derive(Default)]
struct Pending {
    per_lease: BTreeMap<i64, u64>,
    new_leases: u64,
}

impl Model {
    pub fn new(limits: LeaseLimits) -> Self {
        Model {
            rev: 1,
            compact: 0,
            current: BTreeMap::new(),
            at: BTreeMap::from([(1, BTreeMap::new())]),
            leases: BTreeMap::new(),
            next_id: 1,
            next_generation: 1,
            limits,
            alarms: BTreeSet::new(),
        }
    }

    /// Applies a command; a refused command leaves the model as it was.
    pub fn apply(&mut self, command: &Command) -> (Applied, Vec<LeaseEffect>) {
        let mut effects = Vec::new();
        let result = match command {
            Command::Batch(commands) => {
                let results = commands
                    .iter()
                    .map(|c| {
                        let result = self.apply_atomic(c, &mut effects);
                        Applied { revision: self.rev, result }
                    })
                    .collect();
                Ok(Reply::Batch(results))
            }
            command => self.apply_atomic(command, &mut effects),
        };
        (Applied { revision: self.rev, result }, effects)
    }

    fn apply_atomic(&mut self, command: &Command, effects: &mut Vec<LeaseEffect>) -> Result<Reply, ApplyError> {
        let mut next = self.clone();
        let mut staged = Vec::new();
        let result = next.apply_one(command, &mut staged);
        if result.is_ok() {
            *self = next;
            effects.extend(staged);
        }
        result
    }

    fn commit(&mut self, revision: i64) {
        self.rev = revision;
        self.at.insert(revision, self.current.clone());
    }

    fn take_generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation - 1
    }

    fn pick_id(&mut self) -> i64 {
        while self.leases.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        self.next_id += 1;
        self.next_id - 1
    }

    fn apply_one(&mut self, command: &Command, effects: &mut Vec<LeaseEffect>) -> Result<Reply, ApplyError> {
        let grows = match command {
            Command::Put(_) | Command::LeaseGrant { .. } => true,
            Command::Txn(txn) => txn_puts(txn),
            _ => false,
        };
        if grows && self.alarms.iter().any(|a| a.kind == AlarmKind::NoSpace) {
            return Err(ApplyError::NoSpace);
        }
        match command {
            Command::Alarm { activate: true, alarm } => {
                self.alarms.insert(*alarm);
                Ok(Reply::Alarm(Some(*alarm)))
            }
            Command::Alarm { activate: false, alarm } => Ok(Reply::Alarm(self.alarms.remove(alarm).then_some(*alarm))),
            // Auth has its own tests (src/auth/tests.rs); the generator
            // makes no auth commands.
            Command::Auth(_) | Command::AuthChecked { .. } | Command::Authorized { .. } => {
                Err(ApplyError::Invalid("auth commands are not modelled".into()))
            }
            Command::Put(req) => {
                self.check_put(req, &mut Pending::default())?;
                let revision = self.rev + 1;
                let resp = self.exec_put(revision, req, effects);
                self.commit(revision);
                Ok(Reply::Put(resp))
            }
            Command::DeleteRange(req) => {
                let revision = self.rev + 1;
                let mut resp = self.exec_delete(revision, req, effects);
                if resp.deleted > 0 {
                    self.commit(revision);
                }
                resp.revision = self.rev;
                Ok(Reply::Delete(resp))
            }
            Command::Txn(txn) => self.txn(txn, effects).map(Reply::Txn),
            Command::Compact { revision } => {
                if *revision > self.rev {
                    return Err(ApplyError::FutureRevision { revision: *revision, current: self.rev });
                }
                if *revision <= self.compact {
                    return Err(ApplyError::Compacted { compact_revision: self.compact });
                }
                self.compact = *revision;
                self.at.retain(|r, _| *r >= *revision);
                Ok(Reply::Compacted)
            }
            Command::LeaseGrant { id, ttl_secs } => {
                if *ttl_secs <= 0 {
                    return Err(ApplyError::Invalid(String::new()));
                }
                if self.leases.len() as u64 + 1 > self.limits.max_leases {
                    return Err(ApplyError::TooManyLeases { max: self.limits.max_leases });
                }
                let id = match id {
                    Some(id) if *id <= 0 => return Err(ApplyError::Invalid(String::new())),
                    Some(id) if self.leases.contains_key(id) => return Err(ApplyError::LeaseExists(*id)),
                    Some(id) => *id,
                    None => self.pick_id(),
                };
                self.grant(id, *ttl_secs, false, effects);
                Ok(Reply::LeaseGranted { id, ttl_secs: *ttl_secs })
            }
            Command::LeaseRevoke { id } => {
                if !self.leases.contains_key(id) {
                    return Err(ApplyError::LeaseNotFound(*id));
                }
                Ok(Reply::LeaseRevoked { deleted_keys: self.revoke(*id, effects) })
            }
            Command::LeaseKeepAlive { id, ttl_secs } => {
                if ttl_secs.is_some_and(|t| t <= 0) {
                    return Err(ApplyError::Invalid(String::new()));
                }
                if !self.leases.contains_key(id) {
                    return Err(ApplyError::LeaseNotFound(*id));
                }
                let generation = self.take_generation();
                let lease = self.leases.get_mut(id).unwrap();
                lease.ttl = ttl_secs.unwrap_or(lease.ttl);
                lease.generation = generation;
                lease.remaining_ms = ttl_ms(lease.ttl);
                let remaining_ms = lease.remaining_ms;
                effects.push(LeaseEffect::Deadline { id: *id, generation, remaining_ms, checkpoint: false });
                Ok(Reply::LeaseKeptAlive { id: *id, ttl_secs: lease.ttl })
            }
            Command::LeaseExpire { leases, .. } => {
                let mut expired = 0;
                for (id, generation) in leases {
                    if self.leases.get(id).is_some_and(|l| l.generation == *generation) {
                        self.revoke(*id, effects);
                        expired += 1;
                    }
                }
                Ok(Reply::LeasesExpired { expired })
            }
            Command::LeaseCheckpoint { checkpoints, .. } => {
                for c in checkpoints {
                    if let Some(lease) = self.leases.get_mut(&c.id).filter(|l| l.generation == c.generation) {
                        // The record capped at the TTL; the trackers told
                        // the measurement (a new leader's grace may exceed
                        // the TTL).
                        lease.remaining_ms = c.remaining_ms.min(ttl_ms(lease.ttl));
                        effects.push(LeaseEffect::Deadline {
                            id: c.id,
                            generation: c.generation,
                            remaining_ms: c.remaining_ms,
                            checkpoint: true,
                        });
                    }
                }
                Ok(Reply::Checkpointed)
            }
            Command::SetLeaseLimits(limits) => {
                self.limits = *limits;
                Ok(Reply::LimitsSet)
            }
            Command::PublishMember { .. } => Ok(Reply::MemberPublished),
            Command::MarkPendingVoter { .. } => Ok(Reply::PendingVoterMarked),
            Command::Batch(_) => Err(ApplyError::Invalid(String::new())),
        }
    }

    fn grant(&mut self, id: i64, ttl: i64, anonymous: bool, effects: &mut Vec<LeaseEffect>) {
        let generation = self.take_generation();
        let lease = ModelLease {
            ttl,
            granted_at: self.rev,
            remaining_ms: ttl_ms(ttl),
            generation,
            anonymous,
            keys: BTreeSet::new(),
        };
        effects.push(LeaseEffect::Deadline { id, generation, remaining_ms: lease.remaining_ms, checkpoint: false });
        self.leases.insert(id, lease);
    }

    /// Drops a lease and deletes its keys at one new revision.
    fn revoke(&mut self, id: i64, effects: &mut Vec<LeaseEffect>) -> u64 {
        let lease = self.leases.remove(&id).unwrap();
        effects.push(LeaseEffect::Removed { id });
        let deleted = lease.keys.iter().filter(|k| self.current.remove(*k).is_some()).count() as u64;
        if deleted > 0 {
            self.commit(self.rev + 1);
        }
        deleted
    }

    fn check_put(&self, req: &PutRequest, pending: &mut Pending) -> Result<(), ApplyError> {
        let exists = self.current.contains_key(&req.key);
        if req.value.is_none() && !exists {
            return Err(ApplyError::KeyNotFound);
        }
        match req.lease {
            LeaseChoice::None => Ok(()),
            LeaseChoice::Keep if exists => Ok(()),
            LeaseChoice::Keep => Err(ApplyError::KeyNotFound),
            LeaseChoice::Lease(id) => {
                let lease = self.leases.get(&id).ok_or(ApplyError::LeaseNotFound(id))?;
                if lease.keys.contains(&req.key) {
                    return Ok(());
                }
                if lease.anonymous {
                    return Err(ApplyError::AnonymousLease(id));
                }
                let added = pending.per_lease.entry(id).or_default();
                *added += 1;
                if lease.keys.len() as u64 + *added > self.limits.max_keys_per_lease {
                    return Err(ApplyError::TooManyKeysOnLease { lease: id, max: self.limits.max_keys_per_lease });
                }
                Ok(())
            }
            LeaseChoice::Anonymous { ttl_secs } => {
                if ttl_secs <= 0 {
                    return Err(ApplyError::Invalid(String::new()));
                }
                pending.new_leases += 1;
                if self.leases.len() as u64 + pending.new_leases > self.limits.max_leases {
                    return Err(ApplyError::TooManyLeases { max: self.limits.max_leases });
                }
                Ok(())
            }
        }
    }

    fn detach(&mut self, lease: i64, key: &Bytes, effects: &mut Vec<LeaseEffect>) {
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.remove(key);
            if l.anonymous && l.keys.is_empty() {
                self.leases.remove(&lease);
                effects.push(LeaseEffect::Removed { id: lease });
            }
        }
    }

    fn exec_put(&mut self, revision: i64, req: &PutRequest, effects: &mut Vec<LeaseEffect>) -> PutResponse {
        let prev = self.current.get(&req.key).cloned();
        let old_lease = prev.as_ref().map_or(0, |p| p.lease);
        let new_lease = match req.lease {
            LeaseChoice::None => 0,
            LeaseChoice::Lease(id) => id,
            LeaseChoice::Keep => old_lease,
            LeaseChoice::Anonymous { ttl_secs } => {
                let id = self.pick_id();
                self.grant(id, ttl_secs, true, effects);
                id
            }
        };
        let value = req.value.clone().or_else(|| prev.as_ref().map(|p| p.value.clone())).unwrap_or_default();
        let (create, version) = prev.as_ref().map_or((revision, 1), |p| (p.create, p.version + 1));
        self.current.insert(req.key.clone(), ModelKv { value, create, modr: revision, version, lease: new_lease });
        if old_lease != 0 && old_lease != new_lease {
            self.detach(old_lease, &req.key, effects);
        }
        if new_lease != 0 && old_lease != new_lease {
            self.leases.get_mut(&new_lease).unwrap().keys.insert(req.key.clone());
        }
        PutResponse {
            revision,
            prev_kv: if req.prev_kv { prev.as_ref().map(|p| to_kv(&req.key, p, false)) } else { None },
            lease: (new_lease != 0).then_some(new_lease),
        }
    }

    fn exec_delete(&mut self, revision: i64, req: &DeleteRequest, effects: &mut Vec<LeaseEffect>) -> DeleteResponse {
        let doomed: Vec<(Bytes, ModelKv)> =
            self.current.iter().filter(|(k, _)| req.range.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, kv) in &doomed {
            self.current.remove(key);
            if kv.lease != 0 {
                self.detach(kv.lease, key, effects);
            }
        }
        DeleteResponse {
            revision,
            deleted: doomed.len() as u64,
            prev_kvs: if req.prev_kv { doomed.iter().map(|(k, v)| to_kv(k, v, false)).collect() } else { Vec::new() },
        }
    }

    /// The keyspace as a read at `revision` sees it (the staged one past
    /// the committed revision, inside a transaction).
    fn keyspace_at(&self, revision: i64) -> &BTreeMap<Bytes, ModelKv> {
        if revision > self.rev { &self.current } else { &self.at[&revision] }
    }

    fn range(&self, req: &RangeRequest, latest: i64) -> RangeResponse {
        let at = if req.revision <= 0 { latest } else { req.revision };
        let mut resp = RangeResponse { revision: latest, ..Default::default() };
        let Some(range) = &req.range else { return resp };
        let limit = if req.limit == 0 { u64::MAX } else { req.limit };
        for (key, kv) in self.keyspace_at(at).iter().filter(|(k, _)| range.contains(k)) {
            resp.count += 1;
            if req.count_only {
                continue;
            }
            if (resp.kvs.len() as u64) < limit {
                resp.kvs.push(to_kv(key, kv, req.keys_only));
            } else {
                resp.more = true;
            }
        }
        resp
    }

    fn compare_holds(&self, cmp: &Compare) -> bool {
        let kvs: Vec<&ModelKv> = self.current.iter().filter(|(k, _)| cmp.range.contains(k)).map(|(_, v)| v).collect();
        let one = |kv: Option<&ModelKv>| {
            let ordering = match &cmp.target {
                CompareTarget::Value(v) => match kv {
                    Some(kv) => kv.value.as_ref().cmp(v.as_ref()),
                    None => return false,
                },
                CompareTarget::Version(v) => kv.map_or(0, |kv| kv.version).cmp(v),
                CompareTarget::CreateRevision(r) => kv.map_or(0, |kv| kv.create).cmp(r),
                CompareTarget::ModRevision(r) => kv.map_or(0, |kv| kv.modr).cmp(r),
                CompareTarget::Lease(l) => kv.map_or(0, |kv| kv.lease).cmp(l),
            };
            match cmp.op {
                CompareOp::Equal => ordering.is_eq(),
                CompareOp::NotEqual => ordering.is_ne(),
                CompareOp::Greater => ordering.is_gt(),
                CompareOp::Less => ordering.is_lt(),
            }
        };
        if kvs.is_empty() { one(None) } else { kvs.into_iter().all(|kv| one(Some(kv))) }
    }

    fn txn(&mut self, txn: &TxnRequest, effects: &mut Vec<LeaseEffect>) -> Result<TxnResponse, ApplyError> {
        let path = self.choose(txn);
        let mut writes = (Vec::new(), Vec::new(), Pending::default());
        self.check(txn, &path, &mut writes)?;
        let revision = self.rev + 1;
        let mut changed = false;
        let mut resp = self.exec(txn, &path, revision, &mut changed, effects);
        if changed {
            self.commit(revision);
        }
        set_revision(&mut resp, self.rev);
        Ok(resp)
    }

    fn choose(&self, txn: &TxnRequest) -> Path {
        let succeeded = txn.compare.iter().all(|c| self.compare_holds(c));
        let branch = if succeeded { &txn.success } else { &txn.failure };
        let nested = branch
            .iter()
            .filter_map(|op| match op {
                TxnOp::Txn(inner) => Some(self.choose(inner)),
                _ => None,
            })
            .collect();
        Path { succeeded, nested }
    }

    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        txn: &TxnRequest,
        path: &Path,
        writes: &mut (Vec<KeyRange>, Vec<KeyRange>, Pending),
    ) -> Result<(), ApplyError> {
        let branch = if path.succeeded { &txn.success } else { &txn.failure };
        let mut nested = path.nested.iter();
        for op in branch {
            match op {
                TxnOp::Range(req) => {
                    if req.revision > self.rev {
                        return Err(ApplyError::FutureRevision { revision: req.revision, current: self.rev });
                    }
                    if req.revision > 0 && req.revision < self.compact {
                        return Err(ApplyError::Compacted { compact_revision: self.compact });
                    }
                }
                TxnOp::Put(req) => {
                    self.check_put(req, &mut writes.2)?;
                    let key = KeyRange::key(req.key.clone());
                    if writes.0.iter().chain(&writes.1).any(|r| r.overlaps(&key)) {
                        return Err(ApplyError::DuplicateKey);
                    }
                    writes.0.push(key);
                }
                TxnOp::DeleteRange(req) => {
                    if writes.0.iter().any(|p| p.overlaps(&req.range)) {
                        return Err(ApplyError::DuplicateKey);
                    }
                    writes.1.push(req.range.clone());
                }
                TxnOp::Txn(inner) => self.check(inner, nested.next().unwrap(), writes)?,
            }
        }
        Ok(())
    }

    fn exec(
        &mut self,
        txn: &TxnRequest,
        path: &Path,
        revision: i64,
        changed: &mut bool,
        effects: &mut Vec<LeaseEffect>,
    ) -> TxnResponse {
        let branch = if path.succeeded { &txn.success } else { &txn.failure };
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in branch {
            responses.push(match op {
                TxnOp::Range(req) => {
                    let latest = if *changed { revision } else { self.rev };
                    TxnOpResponse::Range(self.range(req, latest))
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
                    TxnOpResponse::Txn(self.exec(inner, nested.next().unwrap(), revision, changed, effects))
                }
            });
        }
        TxnResponse { succeeded: path.succeeded, revision, responses }
    }
}

struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

fn set_revision(resp: &mut TxnResponse, revision: i64) {
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

fn txn_puts(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| match op {
        TxnOp::Put(_) => true,
        TxnOp::Txn(inner) => txn_puts(inner),
        _ => false,
    })
}
