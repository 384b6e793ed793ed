//! Apply: the only place where the keyspace and the leases meet.
//!
//! [`StateMachine::apply`] turns one committed [`Command`] into one
//! [`Applied`]. It is deterministic: it reads the command and the state,
//! never a clock or a random source, and iterates only ordered collections,
//! so every member that applies the same log holds the same state.
//!
//! Every command is checked completely before anything is changed, so a
//! refused command ([`ApplyError`]) leaves the state exactly as it was and
//! does not advance the revision. A command that changes at least one key
//! advances the revision by exactly one, whatever number of keys it touches
//! (a transaction, a revoke); expiring several leases in one command gives
//! each lease its own revision.

mod authorize;
mod txn;
mod write;

use serde::{Deserialize, Serialize};

use crate::alarm::{Alarm, AlarmKind};
use crate::auth::AuthStore;
use crate::command::{Applied, ApplyError, Command, LeaseEffect, Reply};
use crate::lease::{LeaseLimits, Lessor};
use crate::mvcc::KvStore;

/// The replicated data: what a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The revisioned keyspace.
    pub kv: KvStore,
    /// The lease table.
    pub leases: Lessor,
    /// The lease limits apply enforces. Replicated (never read from local
    /// settings), so replay and every member decide alike; `None` until the
    /// creating member's `SetLeaseLimits` is applied (defaults meanwhile).
    pub lease_limits: Option<LeaseLimits>,
    /// What each member published about itself (name, client URLs).
    pub member_attributes: std::collections::BTreeMap<crate::cluster::MemberId, crate::cluster::MemberAttributes>,
    /// Members added as voters that are still learners: the leader promotes
    /// each once it has caught up. An id leaves the set when a membership
    /// entry is applied in which it is a voter or no member at all.
    pub pending_voters: std::collections::BTreeSet<crate::cluster::MemberId>,
    /// Raised alarms (`crate::alarm`): while a `NoSpace` is here, apply
    /// refuses what would grow the store.
    pub alarms: std::collections::BTreeSet<Alarm>,
    /// Users, roles and permissions (`crate::auth`).
    pub auth: AuthStore,
}

/// [`State`] as written before `auth` existed (postcard has no optional
/// trailing fields): such snapshots still load.
#[derive(Deserialize)]
struct StateBeforeAuth {
    kv: KvStore,
    leases: Lessor,
    lease_limits: Option<LeaseLimits>,
    member_attributes: std::collections::BTreeMap<crate::cluster::MemberId, crate::cluster::MemberAttributes>,
    pending_voters: std::collections::BTreeSet<crate::cluster::MemberId>,
    alarms: std::collections::BTreeSet<Alarm>,
}

#[derive(Deserialize)]
struct SnapshotBodyBeforeAuth {
    state: StateBeforeAuth,
}

/// [`State`] as written before `alarms` existed (postcard has no optional
/// trailing fields): such snapshots still load.
#[derive(Deserialize)]
struct StateBeforeAlarms {
    kv: KvStore,
    leases: Lessor,
    lease_limits: Option<LeaseLimits>,
    member_attributes: std::collections::BTreeMap<crate::cluster::MemberId, crate::cluster::MemberAttributes>,
    pending_voters: std::collections::BTreeSet<crate::cluster::MemberId>,
}

/// [`State`] as written before `pending_voters` existed.
#[derive(Deserialize)]
struct StateBeforePendingVoters {
    kv: KvStore,
    leases: Lessor,
    lease_limits: Option<LeaseLimits>,
    member_attributes: std::collections::BTreeMap<crate::cluster::MemberId, crate::cluster::MemberAttributes>,
}

#[derive(Deserialize)]
struct SnapshotBodyBeforeAlarms {
    state: StateBeforeAlarms,
}

#[derive(Deserialize)]
struct SnapshotBodyBeforePendingVoters {
    state: StateBeforePendingVoters,
}

impl From<StateBeforeAuth> for State {
    fn from(old: StateBeforeAuth) -> Self {
        State {
            kv: old.kv,
            leases: old.leases,
            lease_limits: old.lease_limits,
            member_attributes: old.member_attributes,
            pending_voters: old.pending_voters,
            alarms: old.alarms,
            auth: AuthStore::default(),
        }
    }
}

impl From<StateBeforeAlarms> for StateBeforeAuth {
    fn from(old: StateBeforeAlarms) -> Self {
        StateBeforeAuth {
            kv: old.kv,
            leases: old.leases,
            lease_limits: old.lease_limits,
            member_attributes: old.member_attributes,
            pending_voters: old.pending_voters,
            alarms: Default::default(),
        }
    }
}

impl From<StateBeforePendingVoters> for StateBeforeAlarms {
    fn from(old: StateBeforePendingVoters) -> Self {
        StateBeforeAlarms {
            kv: old.kv,
            leases: old.leases,
            lease_limits: old.lease_limits,
            member_attributes: old.member_attributes,
            pending_voters: Default::default(),
        }
    }
}

/// The snapshot file format: the replicated state (where it stands in the
/// log is kept beside it, in the snapshot's meta).
#[derive(Deserialize)]
struct SnapshotBody {
    state: State,
}

/// [`SnapshotBody`] by reference, to encode without copying the state.
#[derive(Serialize)]
struct SnapshotBodyRef<'a> {
    state: &'a State,
}

/// Largest single key, value or string a snapshot decodes (postcard reads
/// each into a scratch buffer this big, reused for the next). No key or
/// value reaches it: none can be bigger than a replicated log entry.
const SNAPSHOT_SCRATCH: usize = crate::limits::MAX_PEER_MESSAGE;

impl State {
    /// The bytes a snapshot holds for this state.
    pub fn encode_snapshot(&self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        self.encode_snapshot_to(&mut bytes)?;
        Ok(bytes)
    }

    /// Writes the bytes a snapshot holds for this state to `out`, as they
    /// are produced (nothing of the size of the snapshot is held).
    pub fn encode_snapshot_to(&self, out: &mut dyn std::io::Write) -> Result<(), String> {
        postcard::to_io(&SnapshotBodyRef { state: self }, out)
            .map(|_| ())
            .map_err(|e| format!("cannot encode a snapshot: {e}"))
    }

    /// The state a snapshot's bytes hold.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<State, String> {
        Self::decode_snapshot_from(|| Ok(bytes))
    }

    /// The state a snapshot holds, read as a stream from what `open`
    /// returns (called again to read from the start for an older format).
    /// Memory: the state itself and one scratch buffer the size of the
    /// largest key or value in it (untouched pages cost nothing).
    pub fn decode_snapshot_from<R: std::io::Read>(open: impl Fn() -> Result<R, String>) -> Result<State, String> {
        let mut scratch = vec![0u8; SNAPSHOT_SCRATCH];
        let mut state = match postcard::from_io::<SnapshotBody, _>((open()?, &mut scratch)) {
            Ok((body, _)) => body.state,
            Err(e) => {
                // Older formats, newest first, each upgraded step by step.
                if let Ok((SnapshotBodyBeforeAuth { state: old }, _)) = postcard::from_io((open()?, &mut scratch)) {
                    old.into()
                } else if let Ok((SnapshotBodyBeforeAlarms { state: old }, _)) =
                    postcard::from_io((open()?, &mut scratch))
                {
                    StateBeforeAuth::from(old).into()
                } else if let Ok((SnapshotBodyBeforePendingVoters { state: old }, _)) =
                    postcard::from_io((open()?, &mut scratch))
                {
                    StateBeforeAuth::from(StateBeforeAlarms::from(old)).into()
                } else {
                    return Err(format!("cannot decode a snapshot: {e}"));
                }
            }
        };
        state.kv.recount_bytes();
        Ok(state)
    }

    /// What the state counts for in the space quota (`crate::alarm`).
    pub fn quota_bytes(&self) -> u64 {
        self.kv.quota_bytes() + self.leases.len() as u64 * crate::alarm::LEASE_OVERHEAD
    }

    /// Whether a `NoSpace` alarm is raised (by any member).
    pub fn out_of_space(&self) -> bool {
        self.alarms.iter().any(|a| a.kind == AlarmKind::NoSpace)
    }
}

/// The replicated data and the deterministic rules that change it.
#[derive(Debug, Clone, Default)]
pub struct StateMachine {
    /// The replicated data.
    pub state: State,
    /// `state.lease_limits` or the defaults, kept at hand for apply.
    limits: LeaseLimits,
}

impl StateMachine {
    /// A fresh state whose lease limits are already set to `limits`.
    pub fn new(limits: LeaseLimits) -> Self {
        Self::with_state(State { lease_limits: Some(limits), ..State::default() })
    }

    /// A state machine over `state` (a snapshot's), with its lease limits.
    pub fn with_state(state: State) -> Self {
        let limits = state.lease_limits.unwrap_or_default();
        StateMachine { state, limits }
    }

    /// The lease limits in force.
    pub fn limits(&self) -> &LeaseLimits {
        &self.limits
    }

    /// The keyspace.
    pub fn kv(&self) -> &KvStore {
        &self.state.kv
    }

    /// The lease table.
    pub fn leases(&self) -> &Lessor {
        &self.state.leases
    }

    /// Applies one command. Lease changes the deadline tracker must learn
    /// about are appended to `effects`.
    pub fn apply(&mut self, command: &Command, effects: &mut Vec<LeaseEffect>) -> Applied {
        if self.state.out_of_space() && command.grows_store() {
            return Applied { revision: self.state.kv.revision(), result: Err(ApplyError::NoSpace) };
        }
        let result = match command {
            Command::Alarm { activate, alarm } => Ok(Reply::Alarm(self.apply_alarm(*activate, *alarm))),
            Command::Auth(command) => self
                .state
                .auth
                .apply(command)
                .map(|()| Reply::Auth { revision: self.state.auth.revision })
                .map_err(ApplyError::Auth),
            Command::Put(req) => self.apply_put(req, effects).map(Reply::Put),
            Command::DeleteRange(req) => Ok(Reply::Delete(self.apply_delete(req, effects))),
            Command::Txn(req) => self.apply_txn(req, effects).map(Reply::Txn),
            Command::Compact { revision } => self.state.kv.compact(*revision).map(|()| Reply::Compacted),
            Command::LeaseGrant { id, ttl_secs } => self.apply_grant(*id, *ttl_secs, effects),
            Command::LeaseRevoke { id } => self.apply_revoke(*id, effects),
            Command::LeaseKeepAlive { id, ttl_secs } => self.apply_keep_alive(*id, *ttl_secs, effects),
            Command::LeaseExpire { leases, .. } => Ok(self.apply_expire(leases, effects)),
            Command::LeaseCheckpoint { checkpoints, .. } => {
                for c in checkpoints {
                    // The record is capped at the TTL (what a restart
                    // resumes from); the deadline trackers get the
                    // measurement itself, which a new leader's grace may
                    // put past the TTL: capped, the first checkpoint after
                    // a leader change cut that grace back to the TTL.
                    if self.state.leases.checkpoint(c.id, c.generation, c.remaining_ms) {
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
            Command::PublishMember { id, attributes } => {
                self.state.member_attributes.insert(*id, attributes.clone());
                Ok(Reply::MemberPublished)
            }
            Command::MarkPendingVoter { id } => {
                self.state.pending_voters.insert(*id);
                Ok(Reply::PendingVoterMarked)
            }
            Command::SetLeaseLimits(limits) => {
                self.state.lease_limits = Some(*limits);
                self.limits = *limits;
                Ok(Reply::LimitsSet)
            }
            Command::AuthChecked { auth_revision, command } => match &**command {
                Command::Batch(_) | Command::AuthChecked { .. } => {
                    Err(ApplyError::Invalid("an auth check wraps a single command".into()))
                }
                _ if self.state.auth.enabled && self.state.auth.revision > *auth_revision => {
                    Err(ApplyError::Auth(crate::auth::AuthError::OldRevision))
                }
                command => return self.apply(command, effects),
            },
            Command::Authorized { caller, command } => match &**command {
                Command::Batch(_) | Command::AuthChecked { .. } | Command::Authorized { .. } => {
                    Err(ApplyError::Invalid("an authorization wraps a single command".into()))
                }
                command => match self.authorize(caller, command) {
                    Ok(()) => return self.apply(command, effects),
                    Err(e) => Err(ApplyError::Auth(e)),
                },
            },
            Command::Batch(commands) => {
                let results = commands
                    .iter()
                    .map(|command| match command {
                        Command::Batch(_) => Applied {
                            revision: self.state.kv.revision(),
                            result: Err(ApplyError::Invalid("batches do not nest".into())),
                        },
                        command => self.apply(command, effects),
                    })
                    .collect();
                Ok(Reply::Batch(results))
            }
        };
        Applied { revision: self.state.kv.revision(), result }
    }

    /// Raises (answers the alarm, raised now or before) or disarms
    /// (answers it if it was raised) one alarm.
    fn apply_alarm(&mut self, activate: bool, alarm: Alarm) -> Option<Alarm> {
        if activate {
            self.state.alarms.insert(alarm);
            Some(alarm)
        } else {
            self.state.alarms.remove(&alarm).then_some(alarm)
        }
    }

    fn apply_grant(
        &mut self,
        id: Option<i64>,
        ttl_secs: i64,
        effects: &mut Vec<LeaseEffect>,
    ) -> Result<Reply, ApplyError> {
        if ttl_secs <= 0 {
            return Err(ApplyError::Invalid(format!("lease TTL {ttl_secs} is not positive")));
        }
        let granted_at = self.state.kv.revision();
        self.state.leases.check_capacity(1, &self.limits)?;
        let lease = self.state.leases.grant(id, ttl_secs, granted_at, false)?;
        effects.push(LeaseEffect::Deadline {
            id: lease.id,
            generation: lease.generation,
            remaining_ms: lease.remaining_ms,
            checkpoint: false,
        });
        Ok(Reply::LeaseGranted { id: lease.id, ttl_secs: lease.ttl_secs })
    }

    fn apply_keep_alive(
        &mut self,
        id: i64,
        ttl_secs: Option<i64>,
        effects: &mut Vec<LeaseEffect>,
    ) -> Result<Reply, ApplyError> {
        if let Some(ttl) = ttl_secs.filter(|t| *t <= 0) {
            return Err(ApplyError::Invalid(format!("lease TTL {ttl} is not positive")));
        }
        let lease = self.state.leases.renew(id, ttl_secs)?;
        effects.push(LeaseEffect::Deadline {
            id,
            generation: lease.generation,
            remaining_ms: lease.remaining_ms,
            checkpoint: false,
        });
        Ok(Reply::LeaseKeptAlive { id, ttl_secs: lease.ttl_secs })
    }

    fn apply_revoke(&mut self, id: i64, effects: &mut Vec<LeaseEffect>) -> Result<Reply, ApplyError> {
        if !self.state.leases.contains(id) {
            return Err(ApplyError::LeaseNotFound(id));
        }
        let deleted_keys = self.revoke_lease(id, effects);
        Ok(Reply::LeaseRevoked { deleted_keys })
    }

    fn apply_expire(&mut self, leases: &[(i64, u64)], effects: &mut Vec<LeaseEffect>) -> Reply {
        let mut expired = 0;
        for &(id, generation) in leases {
            // A lease renewed after the leader saw it expire is not expired.
            if self.state.leases.get(id).is_some_and(|l| l.generation == generation) {
                self.revoke_lease(id, effects);
                expired += 1;
            }
        }
        Reply::LeasesExpired { expired }
    }

    /// Removes lease `id` and deletes all its keys at one new revision, in
    /// key order. Returns how many keys were deleted.
    fn revoke_lease(&mut self, id: i64, effects: &mut Vec<LeaseEffect>) -> u64 {
        let Some(lease) = self.state.leases.remove(id) else {
            return 0;
        };
        effects.push(LeaseEffect::Removed { id });
        let revision = self.state.kv.revision() + 1;
        let mut deleted = 0;
        for key in &lease.keys {
            if self.state.kv.delete_key(revision, key) {
                deleted += 1;
            }
        }
        if deleted > 0 {
            self.state.kv.commit_revision(revision);
        }
        deleted
    }
}

#[cfg(test)]
mod tests;
