//! Members of one cluster on embedded `Concord`s in one process, each on its
//! own data directory, talking gRPC over loopback (ports bound at run time
//! and kept): the settings, waits and checks the membership and
//! composition tests share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use concord::{Concord, Config, Error, PeerListen};
use tempfile::TempDir;

/// A member's settings before it is opened: its peer socket is bound (the
/// port chosen free) and kept, so nothing else can take it.
pub struct Slot {
    pub name: String,
    pub url: String,
    pub socket: Arc<std::net::TcpListener>,
    pub dir: TempDir,
}

pub fn slot(name: &str) -> Slot {
    let socket = Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let url = format!("http://{}", socket.local_addr().unwrap());
    Slot { name: name.into(), url, socket, dir: tempfile::tempdir().unwrap() }
}

/// The config of `slot` in a cluster whose members are `known` (with it).
pub fn config(slot: &Slot, known: &[&Slot], join: bool) -> Config {
    let initial = known.iter().map(|s| (s.name.clone(), s.url.clone()));
    let mut config = Config::new(slot.dir.path())
        .cluster(slot.name.clone(), slot.url.clone(), PeerListen::Bound(slot.socket.clone()), initial)
        .request_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_millis(50))
        .election_timeout(Duration::from_millis(500));
    config.join_existing = join;
    config
}

pub async fn until<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let give_up = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn voters(db: &Concord) -> usize {
    db.cluster().members().iter().filter(|m| !m.is_learner).count()
}

/// Retries a membership change the cluster asks to retry (a change still in
/// progress, an election).
pub async fn retry<T>(mut change: impl AsyncFnMut() -> concord::Result<T>) -> T {
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        match change().await {
            Ok(done) => return done,
            Err(e @ (Error::MembershipChangeInProgress | Error::NotReady(_) | Error::NotEnoughStartedMembers))
                if Instant::now() < give_up =>
            {
                tracing::debug!(error = %e, "retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("membership change failed: {e}"),
        }
    }
}

/// Puts `w<i>` until stopped; returns the keys whose put was acknowledged.
pub fn writer(db: Concord, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    writer_of(db, stop, "w", Duration::from_secs(5))
}

/// Puts `<prefix><i>` until stopped, each put given up after `timeout`;
/// returns the keys whose put was acknowledged.
pub fn writer_of(
    db: Concord,
    stop: Arc<AtomicBool>,
    prefix: &str,
    timeout: Duration,
) -> tokio::task::JoinHandle<Vec<String>> {
    let prefix = prefix.to_string();
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("{prefix}{i:06}");
            if db.kv().put(key.clone(), "v").timeout(timeout).await.is_ok() {
                acked.push(key);
            }
            i += 1;
        }
        acked
    })
}

pub async fn assert_has_all(db: &Concord, keys: &[String]) {
    for key in keys {
        let got = db.kv().get(key.clone()).await.unwrap();
        assert!(got.is_some(), "member {:x} lacks acknowledged key {key}", db.member_id());
    }
}

/// Waits until `db` has applied `revision`, then checks with one local
/// (serializable) read of `prefix` that it serves every key of `keys`.
pub async fn assert_applied_all(db: &Concord, revision: i64, prefix: &str, keys: &[String]) {
    until("the member to apply everything", Duration::from_secs(20), async || {
        (db.kv().revision() >= revision).then_some(())
    })
    .await;
    let served = db.kv().range(concord::KeyRange::prefix(prefix.to_string())).keys_only().serializable().await.unwrap();
    let served: std::collections::HashSet<&[u8]> = served.kvs.iter().map(|kv| kv.key.as_ref()).collect();
    for key in keys {
        assert!(served.contains(key.as_bytes()), "member {:x} lacks acknowledged key {key}", db.member_id());
    }
}

/// Starts a three-member cluster; returns the members in slot order.
pub async fn three(slots: &[Slot]) -> Vec<Concord> {
    let known: Vec<&Slot> = slots.iter().collect();
    let opening: Vec<_> = slots
        .iter()
        .map(|s| {
            let c = config(s, &known, false);
            tokio::spawn(async move { c.open().await.unwrap() })
        })
        .collect();
    let mut members = Vec::new();
    for task in opening {
        members.push(task.await.unwrap());
    }
    for db in &members {
        db.wait_for_leader(Duration::from_secs(20)).await.unwrap();
    }
    // Every member started (published itself): etcd's checks count those.
    until("every member to publish itself", Duration::from_secs(20), async || {
        members[0].cluster().members().iter().all(|m| !m.name.is_empty()).then_some(())
    })
    .await;
    members
}
