//! A cluster of real `concord serve` processes on loopback, with a
//! [`Link`] on every peer link, and the faults done to it.
//!
//! Every port is chosen free when the cluster starts and kept for its
//! life, so a member restarts where its peers and clients expect it.
//! Everything started is stopped when the cluster is dropped (paused
//! members are continued first, so that a kill can take them).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concord_etcd_proto::etcdserverpb as pb;
use tonic::transport::{Channel, Endpoint};

use crate::proxy::Link;

pub struct Member {
    pub name: String,
    /// host:port of the etcd API.
    pub client: SocketAddr,
    /// host:port this member serves its peers on (not through a link).
    pub peer: SocketAddr,
    pub(crate) args: Vec<String>,
    log: PathBuf,
    /// The failpoint control file (concord's src/failpoints.rs).
    failpoints: PathBuf,
    /// The wall-clock offset file libfaketime reads (`+N` / `-N` seconds).
    clock: PathBuf,
    pub(crate) child: Option<Child>,
    paused: bool,
    /// The member id, once a status answer told it.
    pub id: Option<u64>,
    pub channel: Channel,
}

impl Member {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    /// Whether the concord binary obeys failpoints (built with them).
    pub has_failpoints: bool,
    /// libfaketime, if installed: members run under it, their wall clocks
    /// movable one by one (their monotonic clocks untouched).
    faketime: Option<PathBuf>,
    /// (from, to) → the link `from` dials `to` through.
    links: HashMap<(usize, usize), Link>,
    bin: PathBuf,
}

/// Where Debian's libfaketime puts its library.
const FAKETIME: [&str; 2] =
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"];

/// A loopback port nobody listens on now, for a member to bind later.
///
/// Taken below Linux's ephemeral range (32768–60999), where no outgoing
/// connection is given a port by the kernel, so only another explicit bind
/// can take it before the member does; port 0 if none is found.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..100 {
        let port = rng.random_range(20_000..32_000);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr();
        }
    }
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

impl Cluster {
    /// Starts `n` members of a new cluster, data under `dir`, and waits
    /// until they have a leader.
    ///
    /// A port chosen free can be taken by someone else (another test's
    /// connection, say) before the member binds it; a member that exits at
    /// start is therefore not a failure of the cluster: the whole start is
    /// tried again on fresh ports (its logs kept as `m{i}.log.failed-{try}`).
    pub async fn start(bin: &Path, n: usize, dir: &Path) -> Result<Cluster, String> {
        const TRIES: usize = 3;
        for attempt in 1..=TRIES {
            let mut cluster = Cluster::start_once(bin, n, dir).await?;
            if cluster.wait_for_agreement(Duration::from_secs(30)).await {
                cluster.has_failpoints = (0..n).all(|i| cluster.log_tail(i, 1000).contains("failpoints compiled in"));
                return Ok(cluster);
            }
            let exited: Vec<usize> = (0..n)
                .filter(|&i| cluster.members[i].child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))))
                .collect();
            let logs: Vec<String> =
                (0..n).map(|i| format!("--- m{i} (last lines of its log) ---\n{}", cluster.log_tail(i, 20))).collect();
            drop(cluster);
            if exited.is_empty() || attempt == TRIES {
                return Err(format!(
                    "the members did not agree on a leader within 30 s (try {attempt}; exited: {exited:?})\n{}",
                    logs.join("\n")
                ));
            }
            tracing::warn!(?exited, attempt, "a member exited at start; starting the cluster again on fresh ports");
            for i in 0..n {
                let log = dir.join(format!("m{i}.log"));
                let _ = std::fs::rename(&log, dir.join(format!("m{i}.log.failed-{attempt}")));
                let _ = std::fs::remove_dir_all(dir.join(format!("m{i}")));
            }
        }
        unreachable!("every try returns")
    }

    /// Spawns the members of a new cluster on freshly chosen ports.
    async fn start_once(bin: &Path, n: usize, dir: &Path) -> Result<Cluster, String> {
        let io = |e: std::io::Error| e.to_string();
        let clients: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect::<Result<_, _>>().map_err(io)?;
        let peers: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect::<Result<_, _>>().map_err(io)?;
        let mut links = HashMap::new();
        for from in 0..n {
            for to in (0..n).filter(|&to| to != from) {
                links.insert((from, to), Link::start(peers[to]).await.map_err(io)?);
            }
        }
        let url = |a: SocketAddr| format!("http://{a}");
        let initial = (0..n).map(|i| format!("m{i}={}", url(peers[i]))).collect::<Vec<_>>().join(",");
        let mut members = Vec::new();
        for i in 0..n {
            let dial_map = (0..n)
                .filter(|&to| to != i)
                .map(|to| format!("{}={}", url(peers[to]), url(links[&(i, to)].addr())))
                .collect::<Vec<_>>()
                .join(",");
            let data = dir.join(format!("m{i}"));
            let args = vec![
                "serve".to_string(),
                format!("--name=m{i}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={}", url(clients[i])),
                format!("--listen-peer-urls={}", url(peers[i])),
                format!("--initial-advertise-peer-urls={}", url(peers[i])),
                format!("--initial-cluster={initial}"),
                "--initial-cluster-token=torture".into(),
                // Watchers resume from any revision of the run.
                "--auto-compaction-retention=0".into(),
                format!("--peer-dial-map={dial_map}"),
            ];
            let channel = Endpoint::from_shared(url(clients[i]))
                .map_err(|e| e.to_string())?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_millis(500))
                .connect_lazy();
            let failpoints = dir.join(format!("m{i}.failpoints"));
            std::fs::write(&failpoints, "").map_err(io)?;
            let clock = dir.join(format!("m{i}.clock"));
            std::fs::write(&clock, "+0").map_err(io)?;
            members.push(Member {
                name: format!("m{i}"),
                client: clients[i],
                peer: peers[i],
                args,
                log: dir.join(format!("m{i}.log")),
                failpoints,
                clock,
                child: None,
                paused: false,
                id: None,
                channel,
            });
        }
        let faketime = FAKETIME.iter().map(PathBuf::from).find(|p| p.exists());
        let mut cluster = Cluster { members, has_failpoints: false, faketime, links, bin: bin.to_path_buf() };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    pub(crate) fn spawn(&mut self, i: usize) -> Result<(), String> {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|e| format!("{}: {e}", m.log.display()))?;
        let mut command = Command::new(&self.bin);
        if let Some(faketime) = &self.faketime {
            command
                .env("LD_PRELOAD", faketime)
                .env("FAKETIME_TIMESTAMP_FILE", &m.clock)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .args(&m.args)
            .env("CONCORD_FAILPOINTS", &m.failpoints)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        m.paused = false;
    }

    /// Starts a killed member again on its data.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        if self.members[i].child.is_none() { self.spawn(i) } else { Ok(()) }
    }

    /// Sets member `i`'s disk failpoint: `fsync-delay-ms=N`, `fsync-fail`,
    /// or `""` for a healthy disk.
    pub fn set_disk(&self, i: usize, order: &str) -> Result<(), String> {
        let path = &self.members[i].failpoints;
        std::fs::write(path, order).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether wall clocks can be moved ([`Cluster::set_clock`]).
    pub fn has_clock_control(&self) -> bool {
        self.faketime.is_some()
    }

    /// Sets member `i`'s wall clock `offset_secs` away from the real one
    /// (it takes effect within a second; the monotonic clock stays).
    pub fn set_clock(&self, i: usize, offset_secs: i64) -> Result<(), String> {
        let path = &self.members[i].clock;
        std::fs::write(path, format!("{offset_secs:+}")).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.members[i].pid() {
            signal(pid, "STOP");
            self.members[i].paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.members[i].pid() {
            signal(pid, "CONT");
        }
        self.members[i].paused = false;
    }

    /// Cuts every link between a member of `side` and one outside it.
    pub fn partition(&self, side: &[usize]) {
        for ((from, to), link) in &self.links {
            if side.contains(from) != side.contains(to) {
                link.cut();
            }
        }
    }

    pub fn heal_links(&self) {
        self.links.values().for_each(Link::heal);
    }

    /// Undoes every fault: links and disks healed, paused members continued,
    /// killed ones restarted.
    pub fn heal_all(&mut self) -> Result<(), String> {
        self.heal_links();
        for i in 0..self.members.len() {
            self.set_disk(i, "")?;
            self.set_clock(i, 0)?;
        }
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.resume(i);
            }
            self.restart(i)?;
        }
        Ok(())
    }

    /// The index of the member that running, unpaused members name leader
    /// (the first answer; `None` if nobody answers with one).
    pub async fn leader(&mut self) -> Option<usize> {
        for i in 0..self.members.len() {
            let m = &self.members[i];
            if !m.is_running() || m.paused {
                continue;
            }
            let Some(status) = status(&m.channel).await else { continue };
            let id = status.header.as_ref().map(|h| h.member_id);
            self.members[i].id = id;
            if status.leader != 0 {
                if let Some(at) = self.members.iter().position(|m| m.id == Some(status.leader)) {
                    return Some(at);
                }
                // Learn the other members' ids, then look again.
                for j in 0..self.members.len() {
                    if self.members[j].id.is_none() && self.members[j].is_running() && !self.members[j].paused {
                        self.members[j].id = status_of(&self.members[j].channel).await;
                    }
                }
                return self.members.iter().position(|m| m.id == Some(status.leader));
            }
        }
        None
    }

    /// Waits until every member names the same leader (a fresh cluster:
    /// one member may know the election's result before another).
    pub async fn wait_for_agreement(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut leaders = Vec::new();
            for m in &self.members {
                leaders.push(status(&m.channel).await.map(|s| s.leader).unwrap_or(0));
            }
            if leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]) {
                return self.leader().await.is_some();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub async fn wait_for_leader(&mut self, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Each time a member's Raft core stopped on an error other than a
    /// disk failure the run injected, as `member: line` (from the members'
    /// logs, every incarnation of each slot). Such a member serves nothing
    /// until restarted: a bug, even when every client check passes.
    pub fn raft_core_stops(&self) -> Vec<String> {
        let injected = ["(failpoint)", "the data file failed earlier", "a write to the data file failed"];
        let mut stops = Vec::new();
        for member in &self.members {
            let log = std::fs::read_to_string(&member.log).unwrap_or_default();
            for line in log.lines().filter(|l| l.contains("quit RaftCore::main on error")) {
                if !injected.iter().any(|cause| line.contains(cause)) {
                    let file = member.log.file_name().unwrap_or_default().to_string_lossy();
                    stops.push(format!("{file}: Raft stopped: {line}"));
                }
            }
        }
        stops
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}

pub(crate) async fn status(channel: &Channel) -> Option<pb::StatusResponse> {
    let mut client = pb::maintenance_client::MaintenanceClient::new(channel.clone());
    let mut request = tonic::Request::new(pb::StatusRequest {});
    request.set_timeout(Duration::from_millis(500));
    let answer = tokio::time::timeout(Duration::from_millis(600), client.status(request)).await;
    answer.ok()?.ok().map(tonic::Response::into_inner)
}

pub(crate) async fn status_of(channel: &Channel) -> Option<u64> {
    status(channel).await?.header.map(|h| h.member_id)
}
