//! Puts and deletes, on their own or inside a transaction: the checks that
//! must pass before anything changes, and the changes, which keep each key's
//! lease attachment in step with its latest version.

use std::collections::HashMap;

use bytes::Bytes;

use crate::command::{ApplyError, DeleteRequest, DeleteResponse, LeaseChoice, LeaseEffect, PutRequest, PutResponse};
use crate::types::{LeaseId, Revision};

use super::StateMachine;

/// What a sequence of puts will add to leases, so limits are checked for the
/// whole sequence (a transaction) and not one put at a time.
#[derive(Debug, Default)]
pub(super) struct PendingAttachments {
    per_lease: HashMap<LeaseId, u64>,
    new_leases: u64,
}

impl StateMachine {
    pub(super) fn apply_put(
        &mut self,
        req: &PutRequest,
        effects: &mut Vec<LeaseEffect>,
    ) -> Result<PutResponse, ApplyError> {
        self.check_put(req, &mut PendingAttachments::default())?;
        let revision = self.state.kv.revision() + 1;
        let resp = self.exec_put(revision, req, effects);
        self.state.kv.commit_revision(revision);
        Ok(resp)
    }

    pub(super) fn apply_delete(&mut self, req: &DeleteRequest, effects: &mut Vec<LeaseEffect>) -> DeleteResponse {
        let revision = self.state.kv.revision() + 1;
        let mut resp = self.exec_delete(revision, req, effects);
        if resp.deleted > 0 {
            self.state.kv.commit_revision(revision);
        }
        resp.revision = self.state.kv.revision();
        resp
    }

    /// Everything that can make a put fail, checked against the current state
    /// plus what earlier puts of the same command will attach.
    pub(super) fn check_put(&self, req: &PutRequest, pending: &mut PendingAttachments) -> Result<(), ApplyError> {
        let exists = || self.state.kv.get(&req.key).is_some();
        if req.value.is_none() && !exists() {
            return Err(ApplyError::KeyNotFound);
        }
        match req.lease {
            LeaseChoice::None => Ok(()),
            LeaseChoice::Keep if !exists() => Err(ApplyError::KeyNotFound),
            LeaseChoice::Keep => Ok(()),
            LeaseChoice::Lease(id) => {
                self.state.leases.check_attach(id, &req.key, &self.limits)?;
                let lease = self.state.leases.get(id).expect("checked above");
                if !lease.keys.contains(&req.key) {
                    let added = pending.per_lease.entry(id).or_default();
                    *added += 1;
                    if lease.keys.len() as u64 + *added > self.limits.max_keys_per_lease {
                        return Err(ApplyError::TooManyKeysOnLease { lease: id, max: self.limits.max_keys_per_lease });
                    }
                }
                Ok(())
            }
            LeaseChoice::Anonymous { ttl_secs } => {
                if ttl_secs <= 0 {
                    return Err(ApplyError::Invalid(format!("key TTL {ttl_secs} is not positive")));
                }
                pending.new_leases += 1;
                self.state.leases.check_capacity(pending.new_leases, &self.limits)
            }
        }
    }

    /// Writes a checked put at `revision`.
    pub(super) fn exec_put(
        &mut self,
        revision: Revision,
        req: &PutRequest,
        effects: &mut Vec<LeaseEffect>,
    ) -> PutResponse {
        let old_lease = self.state.kv.lease_of(&req.key);
        let new_lease = match req.lease {
            LeaseChoice::None => 0,
            LeaseChoice::Lease(id) => id,
            LeaseChoice::Keep => old_lease,
            LeaseChoice::Anonymous { ttl_secs } => {
                let granted_at = self.state.kv.revision();
                let lease = (self.state.leases.grant(None, ttl_secs, granted_at, true))
                    .expect("a store-picked id is always free");
                effects.push(LeaseEffect::Deadline {
                    id: lease.id,
                    generation: lease.generation,
                    remaining_ms: lease.remaining_ms,
                    checkpoint: false,
                });
                lease.id
            }
        };
        let prev = self.state.kv.put(revision, &req.key, req.value.clone(), new_lease);
        if old_lease != 0 && old_lease != new_lease {
            self.detach(old_lease, &req.key, effects);
        }
        if new_lease != 0 && old_lease != new_lease {
            // A copy, for the same reason the store copies keys.
            self.state.leases.attach(new_lease, &Bytes::copy_from_slice(&req.key));
        }
        PutResponse {
            revision,
            prev_kv: if req.prev_kv { prev } else { None },
            lease: (new_lease != 0).then_some(new_lease),
        }
    }

    /// Deletes at `revision`; `revision` in the response is left for the caller.
    pub(super) fn exec_delete(
        &mut self,
        revision: Revision,
        req: &DeleteRequest,
        effects: &mut Vec<LeaseEffect>,
    ) -> DeleteResponse {
        let deleted = self.state.kv.delete_range(revision, &req.range);
        for kv in &deleted {
            if let Some(lease) = kv.lease {
                self.detach(lease, &kv.key, effects);
            }
        }
        DeleteResponse {
            revision,
            deleted: deleted.len() as u64,
            prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
        }
    }

    /// Detaches a key from its lease; an anonymous lease left without keys is
    /// dropped.
    fn detach(&mut self, lease: LeaseId, key: &[u8], effects: &mut Vec<LeaseEffect>) {
        if self.state.leases.detach(lease, key) {
            self.state.leases.remove(lease);
            effects.push(LeaseEffect::Removed { id: lease });
        }
    }
}
