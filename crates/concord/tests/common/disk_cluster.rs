//! In-process clusters whose members each write to a simulated disk
//! (`disk::Disk`): a member's fsyncs can be held, so it falls behind the
//! log deterministically (it cannot append, so it cannot apply) while the
//! others go on.

use std::sync::Arc;
use std::time::Duration;

use concord::{Concord, Config, PeerListen};
use tempfile::TempDir;

use super::disk::Disk;

/// A member, its simulated disk and its directory.
pub struct Member {
    pub db: Concord,
    pub disk: Arc<Disk>,
    pub _dir: TempDir,
}

/// `n` members on loopback (ports picked by the system), each tuned by
/// `tune`, once each knows a leader.
pub async fn start_with(n: usize, tune: impl Fn(Config) -> Config) -> Vec<Member> {
    let sockets: Vec<Arc<std::net::TcpListener>> =
        (0..n).map(|_| Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap())).collect();
    let urls: Vec<String> = sockets.iter().map(|s| format!("http://{}", s.local_addr().unwrap())).collect();
    let initial: Vec<(String, String)> = urls.iter().enumerate().map(|(i, u)| (format!("m{i}"), u.clone())).collect();
    let mut opening = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new();
        let mut config = Config::new(dir.path()).storage(disk.storage()).request_timeout(Duration::from_secs(10));
        if n > 1 {
            config = config.cluster(format!("m{i}"), urls[i].clone(), PeerListen::Bound(socket), initial.clone());
        }
        let config = tune(config);
        opening.push((tokio::spawn(async move { config.open().await.unwrap() }), disk, dir));
    }
    let mut members = Vec::new();
    for (task, disk, dir) in opening {
        members.push(Member { db: task.await.unwrap(), disk, _dir: dir });
    }
    for m in &members {
        m.db.wait_for_leader(Duration::from_secs(20)).await.unwrap();
    }
    members
}

/// The index of the member that leads now.
pub async fn leader_index(members: &[Member]) -> usize {
    let since = std::time::Instant::now();
    loop {
        if let Some(i) = members.iter().position(|m| m.db.status().is_leader) {
            return i;
        }
        assert!(since.elapsed() < Duration::from_secs(20), "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shuts every member down.
pub async fn shutdown(members: Vec<Member>) {
    for m in members {
        m.db.shutdown().await.unwrap();
    }
}
