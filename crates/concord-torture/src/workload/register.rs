//! Register clients: get / put / compare-and-set through the etcd KV API.
//!
//! Keys are `r/<slot>/<generation>`: a slot's key is replaced by a fresh
//! one after [`OPS_PER_KEY`] operations, so that no key's history holds
//! more than a few operations of unknown outcome (each one doubles the
//! checker's work on its key). Values are unique (`<client>.<seq>`), so a
//! value read names the write it came from.
//!
//! Read-your-writes: after a write is acknowledged, the client reads the
//! key back through the same member with a serializable read (what etcd
//! clients do for cheap reads): the member must have applied the write —
//! its revision at least the write's, the key's at least the write's.

use std::sync::Arc;

use bytes::Bytes;
use concord_check::{Call, Outcome, WatchEvent};
use concord_etcd_proto::etcdserverpb as pb;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Shared, back_off, certainly_not_applied};

/// Operations on one key before its slot moves to a new key.
pub const OPS_PER_KEY: u32 = 60;

/// The keys in use: per slot, its generation and operations so far.
pub struct KeySlots {
    slots: Mutex<Vec<(u64, u32)>>,
}

impl KeySlots {
    pub fn new(slots: usize) -> Arc<KeySlots> {
        Arc::new(KeySlots { slots: Mutex::new(vec![(0, 0); slots.max(1)]) })
    }

    fn pick(&self, rng: &mut StdRng) -> String {
        let mut slots = self.slots.lock();
        let slot = rng.random_range(0..slots.len());
        let (generation, ops) = &mut slots[slot];
        *ops += 1;
        if *ops > OPS_PER_KEY {
            *generation += 1;
            *ops = 1;
        }
        format!("r/{slot:03}/{generation}")
    }
}

/// One client; runs until the run stops.
pub async fn client(id: u64, seed: u64, shared: Arc<Shared>, keys: Arc<KeySlots>) {
    let mut rng = StdRng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut member = id as usize % shared.members();
    let mut seq = 0u64;
    // What this client last saw in each key: what a compare-and-set expects.
    let mut seen: std::collections::HashMap<String, Option<String>> = Default::default();
    while !shared.stopping() {
        let key = keys.pick(&mut rng);
        seq += 1;
        let value = format!("{id}.{seq}");
        let call = match rng.random_range(0..10) {
            0..4 => Call::Get,
            4..7 => Call::Put(value),
            _ => {
                // Expect what a read of the key would most likely show.
                let expect = if rng.random_bool(0.2) { None } else { seen.get(&key).cloned().flatten() };
                Call::Cas { expect, new: value }
            }
        };
        if let Call::Put(v) | Call::Cas { new: v, .. } = &call {
            shared.watch.lock().attempt(key.as_bytes(), v.as_bytes());
        }
        let pending = shared.recorder.invoke(id, key.clone(), call.clone());
        let outcome = perform(&shared, member, &key, &call).await;
        match (&call, &outcome) {
            (_, Outcome::Got(v)) => drop(seen.insert(key.clone(), v.clone())),
            (Call::Put(v), Outcome::Done) | (Call::Cas { new: v, .. }, Outcome::Swapped(true)) => {
                drop(seen.insert(key.clone(), Some(v.clone())))
            }
            _ => {}
        }
        let failed = matches!(outcome, Outcome::Unknown | Outcome::Failed);
        shared.recorder.complete(pending, outcome);
        if failed {
            member = (member + 1) % shared.members();
            back_off().await;
        }
    }
}

async fn perform(shared: &Shared, member: usize, key: &str, call: &Call<String>) -> Outcome<String> {
    let mut kv = pb::kv_client::KvClient::new(shared.channels[member].clone());
    let key_bytes = Bytes::from(key.to_string());
    let answer = match call {
        Call::Get => {
            let serializable = shared.serializable_reads;
            let request = pb::RangeRequest { key: key_bytes.clone(), serializable, ..Default::default() };
            shared.bounded(kv.range(shared.request(request))).await.map(|r| {
                let Some(kv) = r.kvs.into_iter().next() else { return Outcome::Got(None) };
                let value = String::from_utf8_lossy(&kv.value).into_owned();
                let read = WatchEvent {
                    revision: kv.mod_revision as u64,
                    key: kv.key.to_vec(),
                    value: Some(kv.value.to_vec()),
                };
                shared.watch.lock().reads.push(read);
                Outcome::Got(Some(value))
            })
        }
        Call::Put(value) => {
            let request =
                pb::PutRequest { key: key_bytes.clone(), value: Bytes::from(value.clone()), ..Default::default() };
            let answer = shared.bounded(kv.put(shared.request(request))).await;
            if let Ok(r) = &answer {
                read_own_write(shared, member, key, r.header.as_ref()).await;
            }
            answer.map(|r| {
                wrote(shared, r.header, key, value);
                Outcome::Done
            })
        }
        Call::Cas { expect, new } => {
            let compare = match expect {
                Some(v) => pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Value as i32,
                    key: key_bytes.clone(),
                    target_union: Some(pb::compare::TargetUnion::Value(Bytes::from(v.clone()))),
                    ..Default::default()
                },
                None => pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Version as i32,
                    key: key_bytes.clone(),
                    target_union: Some(pb::compare::TargetUnion::Version(0)),
                    ..Default::default()
                },
            };
            let put = pb::PutRequest { key: key_bytes.clone(), value: Bytes::from(new.clone()), ..Default::default() };
            let request = pb::TxnRequest {
                compare: vec![compare],
                success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) }],
                failure: vec![],
            };
            let answer = shared.bounded(kv.txn(shared.request(request))).await;
            if let Ok(r) = &answer
                && r.succeeded
            {
                read_own_write(shared, member, key, r.header.as_ref()).await;
            }
            answer.map(|r| {
                if r.succeeded {
                    wrote(shared, r.header, key, new);
                }
                Outcome::Swapped(r.succeeded)
            })
        }
    };
    match answer {
        Ok(outcome) => outcome,
        Err(status) if certainly_not_applied(&status) => Outcome::Failed,
        Err(_) => Outcome::Unknown,
    }
}

fn wrote(shared: &Shared, header: Option<pb::ResponseHeader>, key: &str, value: &str) {
    let revision = header.map_or(0, |h| h.revision as u64);
    let write = WatchEvent { revision, key: key.as_bytes().to_vec(), value: Some(value.as_bytes().to_vec()) };
    shared.watch.lock().writes.push(write);
}

/// Reads `key` back through `member`, which acknowledged a write of it at
/// the revision in `header`; notes a read that misses it. A read that
/// fails proves nothing (the member may be gone) and is not counted.
async fn read_own_write(shared: &Shared, member: usize, key: &str, header: Option<&pb::ResponseHeader>) {
    let Some((written, writer)) = header.map(|h| (h.revision, h.member_id)) else { return };
    let mut kv = pb::kv_client::KvClient::new(shared.channels[member].clone());
    let request = pb::RangeRequest { key: Bytes::from(key.to_string()), serializable: true, ..Default::default() };
    let Ok(read) = shared.bounded(kv.range(shared.request(request))).await else { return };
    // Another member at that address now (a member replaced meanwhile):
    // it owes this client nothing.
    if read.header.as_ref().is_none_or(|h| h.member_id != writer) {
        return;
    }
    let revision = read.header.map_or(0, |h| h.revision);
    let modified = read.kvs.first().map_or(0, |kv| kv.mod_revision);
    let mut own = shared.own_writes.lock();
    own.0 += 1;
    if revision < written || modified < written {
        own.1.push(format!(
            "{key} written at revision {written} through member {member}; read back there at revision {revision}, \
             the key's {modified}"
        ));
    }
}
