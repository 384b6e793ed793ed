//! Alarms and the space quota (`crate::alarm`) on a member: the check
//! before a write is proposed, and the embedded API to list, raise and
//! disarm alarms.

use std::time::Duration;

use super::Concord;
use crate::alarm::{Alarm, AlarmKind, KEY_AND_VERSION_OVERHEAD, LEASE_OVERHEAD};
use crate::auth::Caller;
use crate::command::{Command, Reply, TxnOp, TxnRequest};
use crate::error::{Error, Result};

impl Concord {
    /// The alarms raised in the cluster, in (member, kind) order.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.shared().applier.read().machine.state.alarms.iter().copied().collect()
    }

    /// Raises `alarm` (through the log: every member sees it at the same
    /// point); returns it.
    pub async fn raise_alarm(&self, alarm: Alarm) -> Result<Alarm> {
        self.raise_alarm_as(alarm, None).await
    }

    /// [`Self::raise_alarm`] on behalf of `caller` (a network client): it
    /// must have the root role at apply (see `Command::Authorized`).
    pub async fn raise_alarm_as(&self, alarm: Alarm, caller: Option<Caller>) -> Result<Alarm> {
        let command = Command::Alarm { activate: true, alarm }.as_caller(caller);
        match self.execute(command, self.default_timeout()).await?.1 {
            Reply::Alarm(Some(alarm)) => Ok(alarm),
            other => Err(Error::Storage(format!("unexpected reply to an alarm: {other:?}"))),
        }
    }

    /// Disarms `alarm`; returns it if it was raised. Writes are taken again
    /// once no `NoSpace` alarm is left (the next write over the quota raises
    /// it again).
    pub async fn disarm_alarm(&self, alarm: Alarm) -> Result<Option<Alarm>> {
        self.disarm_alarm_as(alarm, None).await
    }

    /// [`Self::disarm_alarm`] on behalf of `caller` (a network client): it
    /// must have the root role at apply (see `Command::Authorized`).
    pub async fn disarm_alarm_as(&self, alarm: Alarm, caller: Option<Caller>) -> Result<Option<Alarm>> {
        let command = Command::Alarm { activate: false, alarm }.as_caller(caller);
        match self.execute(command, self.default_timeout()).await?.1 {
            Reply::Alarm(disarmed) => Ok(disarmed),
            other => Err(Error::Storage(format!("unexpected reply to an alarm: {other:?}"))),
        }
    }

    /// What the store counts for in the space quota now, in bytes: the
    /// state (`State::quota_bytes`) plus the bytes of the log file holding
    /// entries (freed by a snapshot and purge: `Concord::defragment`).
    pub fn space_used(&self) -> u64 {
        let state = self.shared().space_used.load(std::sync::atomic::Ordering::Acquire);
        state.saturating_add(self.inner.log_in_use.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Refuses (and raises this member's `NoSpace` alarm for) a write that
    /// would take the store past the space quota, as etcd's quota check
    /// before a proposal. Apply refuses writes once the alarm is raised.
    pub(super) async fn check_space_quota(&self, command: &Command, timeout: Duration) -> Result<()> {
        let Some(quota) = self.inner.config.space_quota else { return Ok(()) };
        let used = self.space_used();
        let cost = cost(command);
        if used.saturating_add(cost) <= quota {
            return Ok(());
        }
        tracing::warn!(used, cost, quota, "the space quota is exceeded: raising the NOSPACE alarm");
        let alarm = Alarm { member: self.inner.member_id, kind: AlarmKind::NoSpace };
        if let Err(e) = self.write(Command::Alarm { activate: true, alarm }, timeout).await {
            tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
        }
        Err(Error::NoSpace)
    }
}

/// What a write adds at most to the space the quota counts.
fn cost(command: &Command) -> u64 {
    match command {
        Command::Put(put) => {
            KEY_AND_VERSION_OVERHEAD + put.key.len() as u64 + put.value.as_ref().map_or(0, |v| v.len() as u64)
        }
        Command::Txn(txn) => txn_cost(txn),
        Command::LeaseGrant { .. } => LEASE_OVERHEAD,
        Command::AuthChecked { command, .. } | Command::Authorized { command, .. } => cost(command),
        _ => 0,
    }
}

/// The costlier branch of a transaction (only one runs).
fn txn_cost(txn: &TxnRequest) -> u64 {
    let branch = |ops: &[TxnOp]| -> u64 {
        ops.iter()
            .map(|op| match op {
                TxnOp::Put(put) => cost(&Command::Put(put.clone())),
                TxnOp::Txn(inner) => txn_cost(inner),
                TxnOp::Range(_) | TxnOp::DeleteRange(_) => 0,
            })
            .sum()
    };
    branch(&txn.success).max(branch(&txn.failure))
}
