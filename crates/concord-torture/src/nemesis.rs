//! The faults a torture run injects, one round at a time: inject, hold,
//! heal, let the cluster settle.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::cluster::Cluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL a random member; restart it on its data when healed.
    KillRandom,
    /// SIGKILL the leader; restart it when healed.
    KillLeader,
    /// SIGSTOP the leader; SIGCONT when healed.
    PauseLeader,
    /// SIGSTOP a random minority; SIGCONT when healed.
    PauseMinority,
    /// Cut every link between the leader and the rest, both ways.
    IsolateLeader,
    /// Cut a random minority off from the majority, both ways.
    PartitionMinority,
    /// Every fsync of the leader's data files takes 200 ms longer.
    SlowDiskLeader,
    /// Every fsync of a random member fails: it must stop writing (and
    /// acknowledge nothing more); healed by a good disk and a restart.
    FailingDisk,
    /// Every member's wall clock jumps up to an hour away, each its own
    /// way (libfaketime); leases must not care. Healed by jumping back.
    ClockJumps,
    /// `member remove` a random follower, then `member add` a fresh one in
    /// its place (empty data directory, new name) and start it: it catches
    /// up and is promoted while the fault holds.
    ReplaceFollower,
    /// `member remove` the leader (it exits); healed by adding a fresh
    /// member in its place as a learner and promoting it once caught up.
    RemoveLeader,
    /// `member update` a random member with a second peer URL; healed by
    /// updating it back.
    UpdatePeerUrls,
}

impl Fault {
    pub const ALL: [Fault; 12] = [
        Fault::KillRandom,
        Fault::KillLeader,
        Fault::PauseLeader,
        Fault::PauseMinority,
        Fault::IsolateLeader,
        Fault::PartitionMinority,
        Fault::SlowDiskLeader,
        Fault::FailingDisk,
        Fault::ClockJumps,
        Fault::ReplaceFollower,
        Fault::RemoveLeader,
        Fault::UpdatePeerUrls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillRandom => "kill-random",
            Fault::KillLeader => "kill-leader",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseMinority => "pause-minority",
            Fault::IsolateLeader => "isolate-leader",
            Fault::PartitionMinority => "partition-minority",
            Fault::SlowDiskLeader => "slow-disk-leader",
            Fault::FailingDisk => "failing-disk",
            Fault::ClockJumps => "clock-jumps",
            Fault::ReplaceFollower => "replace-follower",
            Fault::RemoveLeader => "remove-leader",
            Fault::UpdatePeerUrls => "update-peer-urls",
        }
    }

    /// Whether the fault needs a concord built with failpoints.
    pub fn needs_failpoints(self) -> bool {
        matches!(self, Fault::SlowDiskLeader | Fault::FailingDisk)
    }

    pub fn parse(name: &str) -> Result<Fault, String> {
        Fault::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
            format!("unknown fault {name:?} (known: {})", known.join(", "))
        })
    }
}

/// Who a fault was done to.
#[derive(Debug, Clone)]
pub struct Targets(pub Vec<usize>);

async fn leader_or_random(cluster: &mut Cluster, rng: &mut StdRng) -> usize {
    match cluster.leader().await {
        Some(leader) => leader,
        None => rng.random_range(0..cluster.members.len()),
    }
}

async fn follower(cluster: &mut Cluster, rng: &mut StdRng) -> usize {
    let n = cluster.members.len();
    match cluster.leader().await {
        Some(leader) => (leader + rng.random_range(1..n.max(2))) % n,
        None => rng.random_range(0..n),
    }
}

fn minority(cluster: &Cluster, rng: &mut StdRng) -> Vec<usize> {
    let n = cluster.members.len();
    let all: Vec<usize> = (0..n).collect();
    let size = rng.random_range(1..=((n - 1) / 2).max(1));
    all.choose_multiple(rng, size).copied().collect()
}

/// Does `fault` to the cluster.
pub async fn inject(fault: Fault, cluster: &mut Cluster, rng: &mut StdRng) -> Result<Targets, String> {
    let targets = match fault {
        Fault::KillRandom | Fault::FailingDisk | Fault::UpdatePeerUrls => {
            vec![rng.random_range(0..cluster.members.len())]
        }
        Fault::KillLeader | Fault::PauseLeader | Fault::IsolateLeader | Fault::SlowDiskLeader | Fault::RemoveLeader => {
            vec![leader_or_random(cluster, rng).await]
        }
        Fault::ReplaceFollower => vec![follower(cluster, rng).await],
        Fault::PauseMinority | Fault::PartitionMinority => minority(cluster, rng),
        Fault::ClockJumps => (0..cluster.members.len()).collect(),
    };
    match fault {
        Fault::KillRandom | Fault::KillLeader => targets.iter().for_each(|&i| cluster.kill(i)),
        Fault::PauseLeader | Fault::PauseMinority => targets.iter().for_each(|&i| cluster.pause(i)),
        Fault::IsolateLeader | Fault::PartitionMinority => cluster.partition(&targets),
        Fault::SlowDiskLeader => cluster.set_disk(targets[0], "fsync-delay-ms=200")?,
        Fault::FailingDisk => cluster.set_disk(targets[0], "fsync-fail")?,
        Fault::ClockJumps => {
            for &i in &targets {
                cluster.set_clock(i, rng.random_range(-3600..=3600))?;
            }
        }
        Fault::ReplaceFollower => {
            cluster.remove_member(targets[0]).await?;
            cluster.add_fresh(targets[0], false).await?;
        }
        Fault::RemoveLeader => cluster.remove_member(targets[0]).await?,
        Fault::UpdatePeerUrls => {
            let urls = vec![
                cluster.peer_url(targets[0]),
                format!("http://{}", crate::cluster::free_addr().map_err(|e| e.to_string())?),
            ];
            cluster.update_peer_urls(targets[0], urls).await?;
        }
    }
    Ok(Targets(targets))
}

/// Undoes `fault`.
pub async fn heal(fault: Fault, cluster: &mut Cluster, targets: &Targets) -> Result<(), String> {
    match fault {
        Fault::KillRandom | Fault::KillLeader => {
            for &i in &targets.0 {
                cluster.restart(i)?;
            }
        }
        Fault::PauseLeader | Fault::PauseMinority => targets.0.iter().for_each(|&i| cluster.resume(i)),
        Fault::IsolateLeader | Fault::PartitionMinority => cluster.heal_links(),
        Fault::SlowDiskLeader => cluster.set_disk(targets.0[0], "")?,
        Fault::ClockJumps => {
            for &i in &targets.0 {
                cluster.set_clock(i, 0)?;
            }
        }
        Fault::FailingDisk => {
            // A member whose disk failed has stopped writing for good; it
            // comes back by restarting on a good disk.
            cluster.set_disk(targets.0[0], "")?;
            cluster.kill(targets.0[0]);
            cluster.restart(targets.0[0])?;
        }
        // Promoted by the leader once caught up (added as a voter).
        Fault::ReplaceFollower => {}
        Fault::RemoveLeader => {
            let id = cluster.add_fresh(targets.0[0], true).await?;
            cluster.promote(id).await?;
        }
        Fault::UpdatePeerUrls => {
            let urls = vec![cluster.peer_url(targets.0[0])];
            cluster.update_peer_urls(targets.0[0], urls).await?;
        }
    }
    Ok(())
}
