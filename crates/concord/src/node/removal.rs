//! A member finds out it was removed, and stops (as etcd's does: "the
//! member has been permanently removed from the cluster").
//!
//! A removed member may never see the entry that removed it (the leader
//! stops replicating to it once the new membership is in its log), so it
//! learns in one of three ways:
//! - it applies a membership without itself, having been in an earlier one;
//! - a peer refuses its messages as from outside its configuration, and
//!   that peer's membership is newer than this member's (a peer that only
//!   lags behind a change that added this member proves nothing);
//! - while it is in no membership it has, it asks the members it knows
//!   (`ClusterInfo`) and the leader's membership, as new as its own or
//!   newer, leaves it out — how a removed member restarted with its old
//!   data finds out. Only the leader's answer counts: a follower may lag
//!   behind the change that added a member still catching up.
//!
//! Once removed, the member stops campaigning and every call fails with
//! [`Error::Removed`](crate::Error::Removed); [`Concord::removed`] resolves,
//! and a server process exits.
//!
//! Also here: the leader's promotion of members added as voters, once they
//! have caught up (`membership.rs`).

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;

use super::{Concord, Inner};

/// How often a member outside its own membership asks the cluster.
const PROBE_PERIOD: Duration = Duration::from_secs(1);
/// How often the leader looks for members to promote.
const PROMOTE_PERIOD: Duration = Duration::from_millis(200);

fn upgrade(inner: &Weak<Inner>) -> Option<Concord> {
    inner.upgrade().map(|inner| Concord { inner })
}

/// Where this member stands in the membership it has.
struct Standing {
    listed: bool,
    membership_index: u64,
    applied: u64,
}

impl Concord {
    fn standing(&self) -> Standing {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let config = &m.membership_config;
        Standing {
            listed: config.membership().get_node(&self.inner.member_id).is_some(),
            membership_index: config.log_id().as_ref().map_or(0, |id| id.index),
            applied: m.last_applied.map_or(0, |id| id.index),
        }
    }

    /// Asks the other members this one knows whether the leader's
    /// membership (as new as `since` or newer) leaves it out; returns that
    /// membership's index.
    async fn removed_per_peers(&self, since: u64) -> Option<u64> {
        let me = self.inner.member_id;
        let mut urls: Vec<String> = self
            .members()
            .into_iter()
            .filter(|m| m.id != me)
            .flat_map(|m| m.peer_urls)
            .chain(self.inner.config.initial_cluster.iter().flat_map(|(_, urls)| urls.iter().cloned()))
            .filter(|url| !self.inner.config.advertise_peer_urls.contains(url))
            .collect();
        urls.sort();
        urls.dedup();
        for url in urls {
            let Ok(info) = self.inner.network.cluster_info(&url, Duration::from_secs(1)).await else { continue };
            if info.cluster_id == self.inner.cluster_id
                && info.from_leader
                && info.membership_index >= since
                && !info.members.iter().any(|m| m.id == me)
            {
                return Some(info.membership_index);
            }
        }
        None
    }

    fn mark_removed(&self, why: &str) {
        if self.inner.removed.send_replace(true) {
            return;
        }
        tracing::error!(member = %format!("{:x}", self.inner.member_id), "the member has been permanently removed from the cluster: {why}");
        let runtime = self.inner.raft.runtime_config();
        runtime.elect(false);
        runtime.heartbeat(false);
    }
}

pub(super) async fn watch_for_removal(inner: Weak<Inner>, mut stop: watch::Receiver<bool>) {
    let Some(node) = upgrade(&inner) else { return };
    let mut metrics = node.inner.raft.metrics();
    let mut refusals = node.inner.network.refusals();
    let mut was_listed = node.standing().listed;
    let mut last_probe: Option<tokio::time::Instant> = None;
    drop(node);
    loop {
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            changed = refusals.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(PROBE_PERIOD) => {}
            _ = stop.changed() => return,
        }
        let Some(node) = upgrade(&inner) else { return };
        if *node.inner.removed.borrow() {
            return;
        }
        let now = node.standing();
        if now.listed {
            was_listed = true;
        } else if was_listed && now.applied >= now.membership_index {
            node.mark_removed(&format!(
                "the membership applied at log index {} no longer lists it",
                now.membership_index
            ));
            return;
        }
        let refused_at = *refusals.borrow_and_update();
        if refused_at > now.membership_index {
            node.mark_removed(&format!("a peer whose membership (log index {refused_at}) leaves it out refused it"));
            return;
        }
        let probe_due = last_probe.is_none_or(|at| at.elapsed() >= PROBE_PERIOD);
        if !now.listed && probe_due {
            last_probe = Some(tokio::time::Instant::now());
            if let Some(index) = node.removed_per_peers(now.membership_index).await {
                node.mark_removed(&format!("the cluster's membership (log index {index}) no longer lists it"));
                return;
            }
        }
    }
}

pub(super) async fn promote_caught_up_voters(inner: Weak<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PROMOTE_PERIOD) => {}
            _ = stop.changed() => return,
        }
        let Some(node) = upgrade(&inner) else { return };
        let pending = !node.inner.shared.applier.read().machine.state.pending_voters.is_empty();
        if pending && node.is_leader() {
            node.promote_pending_voters().await;
        }
    }
}
