//! One torture run: start a cluster, run the clients, inject the faults
//! round by round, heal everything, let the watchers catch up, check.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_check::LeaseEventKind;
use concord_etcd_proto::etcdserverpb as pb;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::nemesis::{self, Fault};
use crate::report::{Report, Round};
use crate::workload::{Shared, leases, register, watchers};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `concord` binary.
    pub concord: PathBuf,
    pub members: usize,
    /// Where the members keep their data and logs (kept after the run).
    pub dir: PathBuf,
    /// The faults, in order; with `duration`, the mix drawn from at random.
    pub faults: Vec<Fault>,
    /// Run rounds drawn from `faults` until this much time has passed,
    /// instead of each fault once in order.
    pub duration: Option<Duration>,
    pub fault_time: Duration,
    pub calm_time: Duration,
    pub register_clients: usize,
    pub lease_workers: usize,
    pub watchers: usize,
    pub op_timeout: Duration,
    pub seed: u64,
    /// Serializable register reads (see `Shared::serializable_reads`).
    pub serializable_reads: bool,
}

impl Options {
    pub fn new(concord: PathBuf, dir: PathBuf) -> Options {
        Options {
            concord,
            members: 3,
            dir,
            faults: Fault::ALL.to_vec(),
            duration: None,
            fault_time: Duration::from_secs(3),
            calm_time: Duration::from_secs(3),
            register_clients: 6,
            lease_workers: 3,
            watchers: 2,
            op_timeout: Duration::from_secs(1),
            seed: 1,
            serializable_reads: false,
        }
    }
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let started = Instant::now();
    let mut cluster = Cluster::start(&options.concord, options.members, &options.dir).await?;
    if !cluster.has_clock_control() && options.faults.contains(&Fault::ClockJumps) {
        return Err("clock-jumps needs libfaketime (apt-get install libfaketime)".into());
    }
    if !cluster.has_failpoints
        && let Some(f) = options.faults.iter().find(|f| f.needs_failpoints())
    {
        return Err(format!(
            "{} needs a concord built with failpoints (cargo build -p concord-cli --features failpoints)",
            f.name()
        ));
    }
    let channels = cluster.members.iter().map(|m| m.channel.clone()).collect();
    let shared = Shared::new(channels, options.op_timeout, options.serializable_reads);
    let keys = register::KeySlots::new(options.register_clients * 4);
    let mut clients = Vec::new();
    for id in 0..options.register_clients as u64 {
        clients.push(tokio::spawn(register::client(id, options.seed, shared.clone(), keys.clone())));
    }
    for id in 0..options.lease_workers as u64 {
        clients.push(tokio::spawn(leases::worker(id, options.seed, shared.clone())));
    }
    let (finish, finish_rx) = watch::channel(None);
    let watching: Vec<_> = (0..options.watchers)
        .map(|id| tokio::spawn(watchers::watcher(id as u64, shared.clone(), id % options.members, finish_rx.clone())))
        .collect();

    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut report = Report { members: options.members, seed: options.seed, ..Default::default() };
    tokio::time::sleep(options.calm_time).await;
    let mut order = options.faults.clone().into_iter();
    loop {
        let fault = match options.duration {
            Some(total) if started.elapsed() < total => *options.faults.choose(&mut rng).ok_or("no faults given")?,
            Some(_) => break,
            None => match order.next() {
                Some(fault) => fault,
                None => break,
            },
        };
        let injected = shared.now();
        let targets = nemesis::inject(fault, &mut cluster, &mut rng).await?;
        let names = targets.0.iter().map(|&i| cluster.members[i].name.clone()).collect();
        tracing::info!(fault = fault.name(), targets = ?names, "fault injected");
        tokio::time::sleep(options.fault_time).await;
        nemesis::heal(fault, &mut cluster, &targets).await?;
        let healed = shared.now();
        tokio::time::sleep(options.calm_time).await;
        report.rounds.push(Round { fault, targets: names, injected, healed, settled: shared.now() });
    }

    shared.stop();
    for client in clients {
        if tokio::time::timeout(Duration::from_secs(60), client).await.is_err() {
            report.problems.push("a client did not stop within 60 s".into());
        }
    }
    cluster.heal_all()?;
    if cluster.wait_for_leader(Duration::from_secs(30)).await.is_none() {
        report.problems.push("no leader within 30 s after every fault was healed".into());
    }
    report.problems.extend(cluster.raft_core_stops());
    // A last write, at a revision every watcher must reach.
    match final_write(&shared).await {
        Some(revision) => {
            let _ = finish.send(Some((revision, tokio::time::Instant::now() + Duration::from_secs(30))));
        }
        None => {
            report.problems.push("no write succeeded within 30 s after every fault was healed".into());
            let _ = finish.send(Some((u64::MAX, tokio::time::Instant::now())));
        }
    }
    let mut watch = std::mem::take(&mut *shared.watch.lock());
    for handle in watching {
        let watched = handle.await.map_err(|e| format!("a watcher panicked: {e}"))?;
        report.watch_events.push(watched.watcher.events.len());
        report.watch_reconnects += watched.reconnects;
        report.problems.extend(watched.problems);
        watch.watchers.push(watched.watcher);
    }
    report.elapsed = started.elapsed();

    // Check.
    let history = shared.recorder.history();
    report.count_operations(&history);
    report.measure_unavailability(&history);
    report.register_verdict(concord_check::check(&history));
    let mut leases = std::mem::take(&mut *shared.leases.lock());
    if let Some(first) = watch.watchers.first() {
        for event in first.events.iter().filter(|e| e.value.is_none()) {
            if let Some(lease) = leased_key(&event.key) {
                leases.deleted(lease, event.key.clone(), event.revision);
            }
        }
    }
    report.leases_granted =
        leases.events.iter().filter(|e| matches!(e.kind, LeaseEventKind::Granted { .. })).count() as u64;
    report.leases_revoked =
        leases.events.iter().filter(|e| matches!(e.kind, LeaseEventKind::Revoked { .. })).count() as u64;
    let lease_report = leases.check();
    report.lease_violations = lease_report.violations;
    report.lateness_ms = lease_report.lateness_ms;
    report.watch_violations = watch.check();
    (report.own_writes_checked, report.own_writes_missed) = std::mem::take(&mut *shared.own_writes.lock());
    Ok(report)
}

/// The lease id in a key `l/<lease>/<n>`.
fn leased_key(key: &[u8]) -> Option<i64> {
    std::str::from_utf8(key).ok()?.strip_prefix("l/")?.split('/').next()?.parse().ok()
}

/// Puts `end` through any member until one acknowledges it (30 s at most);
/// its revision.
async fn final_write(shared: &Shared) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut member = 0;
    while Instant::now() < deadline {
        shared.watch.lock().attempt(b"end", b"end");
        let mut kv = pb::kv_client::KvClient::new(shared.channels[member].clone());
        let request =
            pb::PutRequest { key: Bytes::from_static(b"end"), value: Bytes::from_static(b"end"), ..Default::default() };
        if let Ok(put) = shared.bounded(kv.put(shared.request(request))).await {
            let revision = put.header.map_or(0, |h| h.revision as u64);
            let write = concord_check::WatchEvent { revision, key: b"end".to_vec(), value: Some(b"end".to_vec()) };
            shared.watch.lock().writes.push(write);
            return Some(revision);
        }
        member = (member + 1) % shared.members();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
