//! An embedded three-member cluster in one process: three `Concord`
//! handles on their own data directories, talking gRPC over loopback on
//! sockets bound at run time. Any member serves any client; the cluster
//! survives the loss of its leader.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::{Concord, Config, KeyRange, PeerListen, WatchMessage};
use tempfile::TempDir;

struct Member {
    db: Option<Concord>,
    /// Removed when the test ends (the member keeps its data across restarts).
    _dir: TempDir,
    config: Config,
}

fn configs(n: usize) -> Vec<(Config, TempDir)> {
    let sockets: Vec<Arc<std::net::TcpListener>> =
        (0..n).map(|_| Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap())).collect();
    let urls: Vec<String> = sockets.iter().map(|s| format!("http://{}", s.local_addr().unwrap())).collect();
    let initial: Vec<(String, String)> = urls.iter().enumerate().map(|(i, u)| (format!("m{i}"), u.clone())).collect();
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let dir = tempfile::tempdir().unwrap();
            let config = Config::new(dir.path())
                .cluster(format!("m{i}"), urls[i].clone(), PeerListen::Bound(socket), initial.clone())
                .request_timeout(Duration::from_secs(10));
            (config, dir)
        })
        .collect()
}

async fn start(n: usize) -> Vec<Member> {
    let opened = configs(n).into_iter().map(|(config, dir)| {
        let c = config.clone();
        (tokio::spawn(async move { c.open().await.unwrap() }), dir, config)
    });
    let mut members = Vec::new();
    for (task, dir, config) in opened {
        members.push(Member { db: Some(task.await.unwrap()), _dir: dir, config });
    }
    for m in &members {
        m.db.as_ref().unwrap().wait_for_leader(Duration::from_secs(20)).await.unwrap();
    }
    members
}

fn db(m: &Member) -> &Concord {
    m.db.as_ref().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn any_member_serves_any_client_and_the_cluster_survives_its_leader() {
    let mut members = start(3).await;
    let leader = db(&members[0]).wait_for_leader(Duration::from_secs(5)).await.unwrap();
    for m in &members {
        assert_eq!(db(m).wait_for_leader(Duration::from_secs(5)).await.unwrap(), leader, "one leader for all");
        assert_eq!(db(m).members().len(), 3);
    }
    // A watch on every member.
    let mut watchers = Vec::new();
    for m in &members {
        watchers.push(db(m).watch(KeyRange::prefix("k/")).await.unwrap());
    }
    // A write through each member, read linearizably through every member.
    for (i, m) in members.iter().enumerate() {
        db(m).kv().put(format!("k/{i}"), format!("from {i}")).await.unwrap();
    }
    for m in &members {
        for i in 0..3 {
            let kv = db(m).kv().get(format!("k/{i}")).await.unwrap().expect("a write is visible from every member");
            assert_eq!(kv.value, format!("from {i}"));
        }
    }
    for w in &mut watchers {
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("watch event") {
                Some(WatchMessage::Events { events, .. }) => seen.extend(events.iter().map(|e| e.kv.key.clone())),
                Some(WatchMessage::Progress { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, ["k/0", "k/1", "k/2"], "every member's watchers see every write, in order");
    }
    // Leases through a follower.
    let follower = members.iter().position(|m| db(m).member_id() != leader).unwrap();
    let lease = db(&members[follower]).lease().grant(30).await.unwrap();
    db(&members[follower]).kv().put("leased", "v").lease(lease.id).await.unwrap();
    db(&members[follower]).lease().keep_alive(lease.id).await.unwrap();
    let info = db(&members[follower]).lease().info(lease.id).await.unwrap();
    assert_eq!(info.keys.len(), 1);

    // Stop the leader: the other two elect one and go on.
    let old = members.iter().position(|m| db(m).member_id() == leader).unwrap();
    let stopped_at = Instant::now();
    members[old].db.take().unwrap().shutdown().await.unwrap();
    let survivor = (old + 1) % 3;
    let written = loop {
        match db(&members[survivor]).kv().put("after", "failover").timeout(Duration::from_secs(2)).await {
            Ok(resp) => break resp,
            Err(_) => {
                assert!(stopped_at.elapsed() < Duration::from_secs(20), "no new leader took writes");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    println!("leader stopped -> first successful write: {:?}", stopped_at.elapsed());
    assert!(written.revision > 0);
    for (i, m) in members.iter().enumerate() {
        if let Some(db) = &m.db {
            for k in 0..3 {
                assert!(db.kv().get(format!("k/{k}")).await.unwrap().is_some(), "member {i} lost k/{k}");
            }
            assert!(db.lease().info(lease.id).await.is_ok(), "the lease survived the failover");
        }
    }
    // The old leader comes back and catches up.
    let config = members[old].config.clone();
    members[old].db = Some(config.open().await.unwrap());
    let back = db(&members[old]);
    let start = Instant::now();
    loop {
        if let Ok(Some(kv)) = back.kv().get("after").await {
            assert_eq!(kv.value, "failover");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the restarted member never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in &mut members {
        if let Some(db) = m.db.take() {
            db.shutdown().await.unwrap();
        }
    }
}
