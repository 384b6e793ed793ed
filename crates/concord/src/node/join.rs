//! Joining a running cluster (etcd's `--initial-cluster-state existing`
//! with an empty data directory).
//!
//! The member asks the members it was told of (`initial_cluster`) for the
//! cluster's id and member list (`ClusterInfo` on the peer port, answered
//! to anyone) and finds itself in that list by its advertised peer URL, as
//! etcd's `GetClusterFromRemotePeers` does. It never initializes: the leader
//! sends it the log, or a snapshot and the log after it. A member that was
//! not added first is refused with what to run.

use std::time::Duration;

use super::{Concord, Config};
use crate::cluster::{ClusterInfo, MemberId};
use crate::error::{Error, Result};
use crate::replication::network::PeerNetwork;

/// How long one member may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between rounds while no member answers.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What a joining member learned from the cluster.
pub(super) struct Joined {
    pub cluster_id: u64,
    pub member_id: MemberId,
    pub learner: bool,
}

/// How long a joining member waits for the leader's own answer before it
/// takes the newest membership another member gave.
const LEADER_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Finds this member in the running cluster's member list; retries while no
/// member answers, for at most `open_timeout`.
///
/// The leader's list is the one trusted: a follower that has not applied
/// the latest changes may still list a removed member at this member's
/// peer URL (a member replaced at the same address), and joining as that
/// member ends at once in "removed from the cluster". Without an answer
/// from the leader within [`LEADER_ANSWER_WAIT`], the answer with the
/// newest membership is taken.
pub(super) async fn discover(config: &Config) -> Result<Joined> {
    let network = PeerNetwork::new(0, config.peer_dial_map.clone(), config.peer_tls.clone());
    let asked: Vec<String> = (config.initial_cluster.iter())
        .flat_map(|(_, urls)| urls.iter().cloned())
        .filter(|url| !config.advertise_peer_urls.contains(url))
        .collect();
    if asked.is_empty() {
        return Err(Error::InvalidRequest(
            "joining a running cluster needs --initial-cluster to name at least one of its members".into(),
        ));
    }
    let started = tokio::time::Instant::now();
    let give_up = started + config.open_timeout;
    let mut failures = Vec::new();
    let mut newest: Option<ClusterInfo> = None;
    loop {
        for url in &asked {
            match network.cluster_info(url, ASK_TIMEOUT).await {
                Ok(info) if info.cluster_id != 0 && !info.members.is_empty() => {
                    if info.from_leader {
                        return find_self(config, &info);
                    }
                    if newest.as_ref().is_none_or(|n| info.membership_index > n.membership_index) {
                        newest = Some(info);
                    }
                }
                Ok(_) => failures.push(format!("{url}: not part of a cluster yet")),
                Err(e) => failures.push(e),
            }
        }
        let now = tokio::time::Instant::now();
        if let Some(info) = &newest
            && (now >= started + LEADER_ANSWER_WAIT || now >= give_up)
        {
            tracing::warn!(
                membership_index = info.membership_index,
                "no answer from the leader; joining by the newest member list another member gave"
            );
            return find_self(config, info);
        }
        if now >= give_up {
            failures.dedup();
            return Err(Error::NotReady(format!(
                "cannot join: no member of the cluster answered ({})",
                failures.iter().rev().take(asked.len()).cloned().collect::<Vec<_>>().join("; ")
            )));
        }
        failures.clear();
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

fn find_self(config: &Config, info: &ClusterInfo) -> Result<Joined> {
    let found = info.members.iter().find(|m| m.peer_urls.iter().any(|u| config.advertise_peer_urls.contains(u)));
    match found {
        Some(member) => Ok(Joined { cluster_id: info.cluster_id, member_id: member.id, learner: member.is_learner }),
        None => Err(Error::InvalidRequest(format!(
            "cannot join cluster {:x}: no member there has peer URL {}; add this member first \
             (etcdctl member add {} --peer-urls={})",
            info.cluster_id,
            config.advertise_peer_urls.join(","),
            config.name,
            config.advertise_peer_urls.join(","),
        ))),
    }
}

impl Concord {
    /// What this member tells anyone asking on the peer port.
    pub(super) fn cluster_info(&self) -> ClusterInfo {
        let membership_index = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            m.membership_config.log_id().as_ref().map_or(0, |id| id.index)
        };
        let from_leader = self.is_leader();
        ClusterInfo { cluster_id: self.inner.cluster_id, from_leader, membership_index, members: self.members() }
    }
}
