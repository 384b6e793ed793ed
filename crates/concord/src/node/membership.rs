//! Membership changes at runtime: add (as a learner, or as a voter that
//! joins as a learner and is promoted once caught up), promote, remove,
//! update — with etcd's rules and refusals.
//!
//! Invariants:
//! - Changes go one at a time: the leader carries each out under
//!   `membership_lock`, and refuses a change while the last membership entry
//!   is not yet applied (a joint configuration still being left, a change
//!   by a previous leader not yet committed). The refusal is retryable.
//! - A change is carried out by the leader only; a follower hands it over
//!   the peer protocol (`ChangeMembership`), once.
//! - etcd's strict reconfiguration check holds: no change leaves fewer
//!   *started* voters (members that published their attributes) than a
//!   quorum; at most one learner; a learner is promoted only with 90% of the
//!   leader's log.
//! - A voter added at runtime is first a learner (openraft needs that, and a
//!   voter that cannot vote yet would only cost quorum); the wish to promote
//!   it is replicated (`Command::MarkPendingVoter`), so whichever member
//!   leads promotes it once it has caught up (`promote_pending_voters`).
//! - A member added at runtime gets etcd's time-salted id, so one added
//!   again at the same URLs after a removal is a new member (openraft must
//!   never see a wiped member come back under an id it knew).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};

use super::Concord;
use crate::cluster::{ClusterView, Member, MemberId, MemberInfo, MembershipChange, MembershipChanged};
use crate::command::Command;
use crate::error::{Error, Result};

/// A learner may be promoted once it holds this share of the leader's log
/// (etcd's `readyPercent`).
const PROMOTE_READY_SHARE: f64 = 0.9;

/// Membership of the cluster, and changes to it: `db.cluster()`.
#[derive(Clone)]
pub struct Cluster {
    db: Concord,
}

impl Concord {
    /// The cluster this member belongs to: its view, and membership changes.
    pub fn cluster(&self) -> Cluster {
        Cluster { db: self.clone() }
    }
}

impl Cluster {
    /// What this member knows of its cluster: members, leader, term, role.
    pub fn view(&self) -> ClusterView {
        self.db.cluster_view()
    }

    /// Every member, in member id order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.db.members()
    }

    /// Adds a learner reached at `peer_urls`: it receives the log (or a
    /// snapshot) but does not vote until promoted. Start it with
    /// `initial_cluster_state existing` once added.
    pub async fn add_learner(&self, peer_urls: Vec<String>) -> Result<MembershipChanged> {
        self.change(MembershipChange::Add { peer_urls, learner: true }).await
    }

    /// Adds a voter reached at `peer_urls`: it joins as a learner and the
    /// leader promotes it as soon as it has caught up.
    pub async fn add_voter(&self, peer_urls: Vec<String>) -> Result<MembershipChanged> {
        self.change(MembershipChange::Add { peer_urls, learner: false }).await
    }

    /// Makes learner `id` a voter; refused until it has caught up.
    pub async fn promote(&self, id: MemberId) -> Result<MembershipChanged> {
        self.change(MembershipChange::Promote { id }).await
    }

    /// Removes member `id` (a learner, a follower or the leader, which steps
    /// down once the change is committed). The removed member stops serving.
    pub async fn remove(&self, id: MemberId) -> Result<MembershipChanged> {
        self.change(MembershipChange::Remove { id }).await
    }

    /// Changes the peer URLs member `id` is reached at.
    pub async fn update(&self, id: MemberId, peer_urls: Vec<String>) -> Result<MembershipChanged> {
        self.change(MembershipChange::Update { id, peer_urls }).await
    }

    async fn change(&self, change: MembershipChange) -> Result<MembershipChanged> {
        let timeout = self.db.default_timeout();
        match tokio::time::timeout(timeout, self.db.route_membership_change(change, timeout)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }
}

impl Concord {
    async fn route_membership_change(&self, change: MembershipChange, timeout: Duration) -> Result<MembershipChanged> {
        self.check_not_removed()?;
        match self.leader() {
            Some(leader) if leader == self.inner.member_id => self.change_membership_as_leader(change, timeout).await,
            Some(leader) => {
                let member = self.member_record(leader).ok_or_else(|| Error::NotReady("leader unknown".into()))?;
                self.inner.network.change_membership(leader, &member, &change, timeout).await
            }
            None => Err(Error::NotReady("no leader".into())),
        }
    }

    /// The membership's record of member `id`.
    pub(super) fn member_record(&self, id: MemberId) -> Option<Member> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// Carries out `change` on this member, which must lead.
    pub(super) async fn change_membership_as_leader(
        &self,
        change: MembershipChange,
        timeout: Duration,
    ) -> Result<MembershipChanged> {
        let _one_at_a_time = self.inner.membership_lock.try_lock().map_err(|_| Error::MembershipChangeInProgress)?;
        let now = self.membership_now()?;
        let (id, changes) = match &change {
            MembershipChange::Add { peer_urls, learner } => {
                crate::cluster::check_peer_urls(peer_urls).map_err(Error::BadMemberUrls)?;
                now.check_urls_free(None, peer_urls)?;
                if *learner {
                    if now.learners().count() > 0 {
                        return Err(Error::TooManyLearners);
                    }
                } else if !now.ready_to_add_voter() {
                    return Err(Error::NotEnoughStartedMembers);
                }
                let unix_secs =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let mut id = crate::cluster::new_member_id(peer_urls, &self.inner.config.cluster_token, unix_secs);
                while now.nodes.contains_key(&id) || id == 0 {
                    id = id.wrapping_add(1);
                }
                if !*learner {
                    self.execute(Command::MarkPendingVoter { id }, timeout).await?;
                }
                let member = Member { name: String::new(), peer_urls: peer_urls.clone(), client_urls: Vec::new() };
                tracing::info!(member = %format!("{id:x}"), urls = %peer_urls.join(","), learner, "adding a member");
                (id, ChangeMembers::AddNodes(BTreeMap::from([(id, member)])))
            }
            MembershipChange::Promote { id } => {
                now.get(*id)?;
                if now.voters.contains(id) {
                    return Err(Error::MemberNotLearner(*id));
                }
                if !now.ready_to_promote() {
                    return Err(Error::NotEnoughStartedMembers);
                }
                self.check_learner_ready(*id)?;
                tracing::info!(member = %format!("{id:x}"), "promoting a learner");
                (*id, ChangeMembers::AddVoterIds(BTreeSet::from([*id])))
            }
            MembershipChange::Remove { id } => {
                now.get(*id)?;
                if now.voters.contains(id) {
                    if !now.ready_to_remove_voter(*id) {
                        return Err(Error::NotEnoughStartedMembers);
                    }
                    tracing::info!(member = %format!("{id:x}"), "removing a voter");
                    (*id, ChangeMembers::RemoveVoters(BTreeSet::from([*id])))
                } else {
                    tracing::info!(member = %format!("{id:x}"), "removing a learner");
                    (*id, ChangeMembers::RemoveNodes(BTreeSet::from([*id])))
                }
            }
            MembershipChange::Update { id, peer_urls } => {
                let mut member = now.get(*id)?.clone();
                crate::cluster::check_peer_urls(peer_urls).map_err(Error::BadMemberUrls)?;
                now.check_urls_free(Some(*id), peer_urls)?;
                member.peer_urls = peer_urls.clone();
                tracing::info!(member = %format!("{id:x}"), urls = %peer_urls.join(","), "updating a member's peer URLs");
                (*id, ChangeMembers::SetNodes(BTreeMap::from([(*id, member)])))
            }
        };
        // Remembered before the change: a removed member is no longer listed.
        let before = self.members().into_iter().find(|m| m.id == id);
        let written = self.inner.raft.change_membership(changes, false).await.map_err(membership_error)?;
        // Answered once the change is applied here too, as etcd answers a
        // member change: the next change must not find this one in progress.
        // The metrics are published after the call returns: wait for this
        // change's own entry, not for whatever configuration they still show
        // (the member list read below would miss a member just added).
        let entry = written.log_id.index;
        let applied = self
            .inner
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    let config = m.membership_config.log_id().as_ref().map_or(0, |id| id.index);
                    config >= entry && m.last_applied.map_or(0, |id| id.index) >= config
                },
                "the membership change applied",
            )
            .await;
        if let Err(e) = applied {
            tracing::warn!(error = %e, "a membership change committed but is not applied yet");
        }
        let members = self.members();
        let member = members.iter().find(|m| m.id == id).cloned().or(before).ok_or(Error::MemberNotFound(id))?;
        Ok(MembershipChanged { member, members })
    }

    /// The membership as this leader has it, refused while a change is not
    /// applied yet.
    fn membership_now(&self) -> Result<MembershipNow> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let config = &m.membership_config;
        let applied = m.last_applied.map(|id| id.index);
        let config_index = config.log_id().as_ref().map(|id| id.index);
        if config_index > applied {
            return Err(Error::MembershipChangeInProgress);
        }
        let membership = config.membership();
        let state = self.inner.shared.applier.read();
        Ok(MembershipNow {
            nodes: membership.nodes().map(|(id, member)| (*id, member.clone())).collect(),
            voters: membership.voter_ids().collect(),
            started: state.machine.state.member_attributes.keys().copied().collect(),
            pending_voters: state.machine.state.pending_voters.clone(),
        })
    }

    /// etcd's `isLearnerReady`: the learner holds 90% of the leader's log.
    fn check_learner_ready(&self, id: MemberId) -> Result<()> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let leader = m.last_log_index.unwrap_or(0);
        let matched =
            (m.replication.as_ref()).and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |log_id| log_id.index);
        if (matched as f64) < leader as f64 * PROMOTE_READY_SHARE || matched == 0 {
            return Err(Error::LearnerNotReady { id, matched, leader });
        }
        Ok(())
    }

    /// On the leader: promotes every member added as a voter that has
    /// caught up (a leader task; a refusal is retried on its next round).
    pub(super) async fn promote_pending_voters(&self) {
        let pending: Vec<MemberId> =
            self.inner.shared.applier.read().machine.state.pending_voters.iter().copied().collect();
        for id in pending {
            let learner = self.member_record(id).is_some() && !self.is_voter(id);
            if !learner || self.check_learner_ready(id).is_err() {
                continue;
            }
            match self.change_membership_as_leader(MembershipChange::Promote { id }, self.default_timeout()).await {
                Ok(_) => {
                    tracing::info!(member = %format!("{id:x}"), "a member added as a voter caught up and votes now")
                }
                Err(e) => tracing::debug!(member = %format!("{id:x}"), error = %e, "promotion postponed"),
            }
        }
    }

    fn is_voter(&self, id: MemberId) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().voter_ids().any(|v| v == id)
    }

    pub(super) fn check_not_removed(&self) -> Result<()> {
        if *self.inner.removed.borrow() { Err(Error::Removed) } else { Ok(()) }
    }

    /// Resolves once this member has been removed from its cluster (it then
    /// serves nothing; a server process exits).
    pub async fn removed(&self) {
        let mut removed = self.inner.removed.subscribe();
        let _ = removed.wait_for(|r| *r).await;
    }
}

/// The membership at the start of a change, with what etcd's checks need.
struct MembershipNow {
    nodes: BTreeMap<MemberId, Member>,
    voters: BTreeSet<MemberId>,
    /// Members that published their attributes (etcd's "started").
    started: BTreeSet<MemberId>,
    pending_voters: BTreeSet<MemberId>,
}

impl MembershipNow {
    fn get(&self, id: MemberId) -> Result<&Member> {
        self.nodes.get(&id).ok_or(Error::MemberNotFound(id))
    }

    fn learners(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.nodes.keys().copied().filter(|id| !self.voters.contains(id) && !self.pending_voters.contains(id))
    }

    fn check_urls_free(&self, except: Option<MemberId>, urls: &[String]) -> Result<()> {
        for (id, member) in &self.nodes {
            if Some(*id) == except {
                continue;
            }
            if let Some(taken) = urls.iter().find(|u| member.peer_urls.contains(u)) {
                return Err(Error::PeerUrlExists(taken.clone()));
            }
        }
        Ok(())
    }

    /// Voters and members on their way to vote.
    fn voting(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.voters.iter().copied().chain(self.pending_voters.iter().copied().filter(|id| self.nodes.contains_key(id)))
    }

    /// etcd's `IsReadyToAddVotingMember`.
    fn ready_to_add_voter(&self) -> bool {
        let members = 1 + self.voting().count();
        let started = self.voting().filter(|id| self.started.contains(id)).count();
        (started == 1 && members == 2) || started > members / 2
    }

    /// etcd's `IsReadyToPromoteMember` (the learner counts as started).
    fn ready_to_promote(&self) -> bool {
        let members = 1 + self.voters.len();
        let started = 1 + self.voters.iter().filter(|id| self.started.contains(id)).count();
        started > members / 2
    }

    /// etcd's `IsReadyToRemoveVotingMember`.
    fn ready_to_remove_voter(&self, id: MemberId) -> bool {
        let rest: Vec<MemberId> = self.voters.iter().copied().filter(|v| *v != id).collect();
        let started = rest.iter().filter(|v| self.started.contains(v)).count();
        started > rest.len() / 2
    }
}

fn membership_error(e: RaftError<MemberId, ClientWriteError<MemberId, Member>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))) => {
            Error::MembershipChangeInProgress
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::LearnerNotFound(e))) => {
            Error::MemberNotFound(e.node_id)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::EmptyMembership(_))) => {
            Error::NotEnoughStartedMembers
        }
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Error::NotReady("leader changed".into()),
        other => super::write_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(voters: &[u64], learners: &[u64], started: &[u64], pending: &[u64]) -> MembershipNow {
        let nodes = voters.iter().chain(learners).map(|id| (*id, Member::default())).collect();
        MembershipNow {
            nodes,
            voters: voters.iter().copied().collect(),
            started: started.iter().copied().collect(),
            pending_voters: pending.iter().copied().collect(),
        }
    }

    /// etcd's strict reconfiguration rules, case by case.
    #[test]
    fn strict_reconfiguration_follows_etcd() {
        // Growing a started single member to two is allowed (data restore).
        assert!(now(&[1], &[], &[1], &[]).ready_to_add_voter());
        // 1 started of 2 voters: a third voter would need 2 started of 3.
        assert!(!now(&[1, 2], &[], &[1], &[]).ready_to_add_voter());
        assert!(now(&[1, 2], &[], &[1, 2], &[]).ready_to_add_voter());
        // A voter on its way counts as a voter that has not started.
        assert!(!now(&[1], &[2], &[1], &[2]).ready_to_add_voter());
        // Removing one of three leaves two: both must be started.
        assert!(now(&[1, 2, 3], &[], &[1, 2], &[]).ready_to_remove_voter(3));
        assert!(!now(&[1, 2, 3], &[], &[1, 2], &[]).ready_to_remove_voter(1));
        assert!(!now(&[1], &[], &[1], &[]).ready_to_remove_voter(1), "the last voter cannot go");
        // Promoting: the learner counts as started.
        assert!(now(&[1], &[2], &[1], &[]).ready_to_promote());
        assert!(!now(&[1, 2, 3], &[4], &[1], &[]).ready_to_promote());
        // One learner at a time; a voter on its way is not that learner.
        assert_eq!(now(&[1], &[2], &[1], &[]).learners().count(), 1);
        assert_eq!(now(&[1], &[2], &[1], &[2]).learners().count(), 0);
    }

    #[test]
    fn peer_urls_are_checked_as_etcd_does() {
        let ok = |u: &str| crate::cluster::check_peer_urls(&[u.to_string()]).is_ok();
        assert!(ok("http://127.0.0.1:2380"));
        assert!(ok("https://node-1.example:2380"));
        assert!(!ok("127.0.0.1:2380"));
        assert!(!ok("http://127.0.0.1"));
        assert!(!ok("ftp://127.0.0.1:2380"));
        assert!(!ok("http://127.0.0.1:2380/path"));
        assert!(crate::cluster::check_peer_urls(&[]).is_err());
        let taken = now(&[1], &[], &[1], &[]);
        let mut taken = taken;
        taken.nodes.get_mut(&1).unwrap().peer_urls = vec!["http://a:1".into()];
        assert_eq!(taken.check_urls_free(None, &["http://a:1".into()]), Err(Error::PeerUrlExists("http://a:1".into())));
        assert_eq!(taken.check_urls_free(Some(1), &["http://a:1".into()]), Ok(()));
    }
}
