//! Membership changes done to a running [`Cluster`], as an operator does
//! them with `etcdctl member …`: remove a member (it exits on its own),
//! add a fresh one in its place (empty data directory, a new name, the
//! same peer and client addresses, so its links and clients find it),
//! promote a learner once it has caught up, update a member's peer URLs.
//!
//! Each request goes to another running member and is retried while the
//! cluster answers that it cannot take it yet (no leader, a change still in
//! progress, a learner not caught up), for a bounded time.

use std::time::{Duration, Instant};

use concord_etcd_proto::etcdserverpb as pb;
use tonic::transport::Channel;

use crate::cluster::{Cluster, status_of};

/// How long a membership request is retried.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// How long a removed member has to exit on its own before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

impl Cluster {
    /// The URL member `i` advertises to its peers.
    pub fn peer_url(&self, i: usize) -> String {
        format!("http://{}", self.members[i].peer)
    }

    /// Member `i`'s id (asked of it if not known yet).
    pub async fn member_id(&mut self, i: usize) -> Option<u64> {
        if self.members[i].id.is_none() {
            self.members[i].id = status_of(&self.members[i].channel).await;
        }
        self.members[i].id
    }

    /// Runs `request` against a running, unpaused member other than
    /// `except`, retrying (other members too) until it is answered or
    /// [`RETRY_FOR`] passes; a refusal `done` accepts ends it too.
    async fn ask<T>(
        &self,
        except: Option<usize>,
        what: &str,
        done: impl Fn(&tonic::Status) -> bool,
        mut request: impl AsyncFnMut(pb::cluster_client::ClusterClient<Channel>) -> Result<T, tonic::Status>,
    ) -> Result<Option<T>, String> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut last = String::new();
        while Instant::now() < deadline {
            for (i, m) in self.members.iter().enumerate() {
                if Some(i) == except || !m.is_running() || m.is_paused() {
                    continue;
                }
                let client = pb::cluster_client::ClusterClient::new(m.channel.clone());
                match tokio::time::timeout(Duration::from_secs(5), request(client)).await {
                    Ok(Ok(answer)) => return Ok(Some(answer)),
                    Ok(Err(status)) if done(&status) => return Ok(None),
                    Ok(Err(status)) => last = format!("{}: {}", m.name, status.message()),
                    Err(_) => last = format!("{}: no answer in 5 s", m.name),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("{what} was not done within {}s (last: {last})", RETRY_FOR.as_secs()))
    }

    /// Removes member `i` from the cluster; it exits by itself (killed if
    /// it has not within `EXIT_WITHIN`). Its data directory stays.
    pub async fn remove_member(&mut self, i: usize) -> Result<(), String> {
        let id = self.member_id(i).await.ok_or_else(|| format!("{}: its id is unknown", self.members[i].name))?;
        // "member not found": an earlier try that timed out did it.
        let gone = |s: &tonic::Status| s.message().contains("member not found");
        self.ask(Some(i), "member remove", gone, async |mut c| {
            c.member_remove(pb::MemberRemoveRequest { id }).await.map(drop)
        })
        .await?;
        let deadline = Instant::now() + EXIT_WITHIN;
        while Instant::now() < deadline {
            let exited = self.members[i].child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                self.members[i].child = None;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(member = %self.members[i].name, "a removed member did not exit; killed");
        self.kill(i);
        Ok(())
    }

    /// Adds a fresh member in slot `i` (which must be stopped and out of
    /// the cluster): its data directory emptied, a new name, the slot's
    /// addresses; started with `--initial-cluster-state existing`. Returns
    /// its id.
    pub async fn add_fresh(&mut self, i: usize, learner: bool) -> Result<u64, String> {
        let url = self.peer_url(i);
        let added = self
            .ask(
                Some(i),
                "member add",
                |_| false,
                async |mut c| {
                    let request = pb::MemberAddRequest { peer_ur_ls: vec![url.clone()], is_learner: learner };
                    c.member_add(request).await.map(|r| r.into_inner())
                },
            )
            .await?
            .ok_or("member add: no answer")?;
        let id = added.member.map(|m| m.id).ok_or("member add: no member in the answer")?;
        let m = &mut self.members[i];
        let generation = m.name.split_once('r').map_or(0, |(_, g)| g.parse::<u32>().unwrap_or(0)) + 1;
        let base = m.name.split_once('r').map_or(m.name.clone(), |(b, _)| b.to_string());
        let name = format!("{base}r{generation}");
        for arg in &mut m.args {
            if let Some(data) = arg.strip_prefix("--data-dir=") {
                let _ = std::fs::remove_dir_all(data);
            } else if arg.starts_with("--name=") {
                *arg = format!("--name={name}");
            } else if let Some(initial) = arg.strip_prefix("--initial-cluster=") {
                let entries = initial.split(',').map(|e| match e.split_once('=') {
                    Some((_, u)) if u == url => format!("{name}={u}"),
                    _ => e.to_string(),
                });
                *arg = format!("--initial-cluster={}", entries.collect::<Vec<_>>().join(","));
            }
        }
        if !m.args.iter().any(|a| a == "--initial-cluster-state=existing") {
            m.args.push("--initial-cluster-state=existing".into());
        }
        m.name = name;
        m.id = Some(id);
        self.spawn(i)?;
        Ok(id)
    }

    /// Promotes the learner `id` once it has caught up.
    pub async fn promote(&self, id: u64) -> Result<(), String> {
        // Not caught up yet, or already a voter (an earlier try that timed
        // out did it): the member list says which.
        let done = |s: &tonic::Status| s.message().contains("can only promote a learner member");
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let promoted = self
                .ask(None, "member promote", done, async |mut c| {
                    c.member_promote(pb::MemberPromoteRequest { id }).await.map(drop)
                })
                .await?;
            if promoted.is_some() || self.is_voter(id).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("member {id:x} was not promoted within {}s", RETRY_FOR.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the cluster lists `id` as a voter.
    async fn is_voter(&self, id: u64) -> bool {
        let listed = self
            .ask(
                None,
                "member list",
                |_| false,
                async |mut c| c.member_list(pb::MemberListRequest { linearizable: true }).await.map(|r| r.into_inner()),
            )
            .await;
        listed.ok().flatten().is_some_and(|l| l.members.iter().any(|m| m.id == id && !m.is_learner))
    }

    /// Sets member `i`'s peer URLs (its own stays first, where it listens).
    pub async fn update_peer_urls(&mut self, i: usize, urls: Vec<String>) -> Result<(), String> {
        let id = self.member_id(i).await.ok_or_else(|| format!("{}: its id is unknown", self.members[i].name))?;
        self.ask(
            None,
            "member update",
            |_| false,
            async |mut c| c.member_update(pb::MemberUpdateRequest { id, peer_ur_ls: urls.clone() }).await.map(drop),
        )
        .await?;
        Ok(())
    }
}
