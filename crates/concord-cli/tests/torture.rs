//! The short form of the torture run (docs/reliability.md): a real
//! 3-member cluster of `concord serve` processes on loopback, clients on
//! every member, and one round of each fault — SIGKILL of a random member
//! and of the leader, SIGSTOP of the leader and of a minority, the leader
//! isolated and a minority partitioned off by the proxies on the peer
//! links, the leader's disk slowed and a member's disk failing (failpoints:
//! the tests build concord with them), every member's wall clock jumped
//! (libfaketime, installed by scripts/test), and membership changes — a
//! follower replaced by a fresh member, the leader removed and a fresh
//! learner added and promoted in its place, a member's peer URLs updated.
//! What the clients saw must be linearizable per key, every acknowledged
//! write readable (serializable) through the member that acknowledged it,
//! leases never early and gone at one revision, watchers must miss nothing.

use std::time::Duration;

use concord_torture::{Fault, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_round_of_each_fault_on_three_members_keeps_every_promise() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(env!("CARGO_BIN_EXE_concord").into(), dir.path().to_path_buf());
    options.faults = Fault::ALL.to_vec();
    options.fault_time = Duration::from_secs(3);
    options.calm_time = Duration::from_secs(3);
    let run = tokio::time::timeout(Duration::from_secs(240), concord_torture::run(&options));
    let report = run.await.expect("the run finished within its bound").expect("the run could be carried out");
    println!("{}", report.markdown());
    let logs = || (0..3).map(|i| std::fs::read_to_string(dir.path().join(format!("m{i}.log"))).unwrap_or_default());
    assert!(
        report.passed(),
        "{}\nlast member logs:\n{}",
        report.markdown(),
        logs().collect::<Vec<_>>().join("\n---\n")
    );

    // The run did what it says: every fault once, real traffic through
    // each, leases expired on their own and were seen gone.
    assert_eq!(report.rounds.iter().map(|r| r.fault).collect::<Vec<_>>(), Fault::ALL.to_vec());
    let acknowledged: u64 = report
        .operations
        .iter()
        .filter(|((kind, outcome), _)| *kind != "get" && *outcome == "ok")
        .map(|(_, n)| n)
        .sum();
    assert!(acknowledged > 100, "too few acknowledged writes to mean anything: {:?}", report.operations);
    assert!(!report.lateness_ms.is_empty(), "no lease was seen expiring");
    assert!(report.own_writes_checked > 100, "only {} writes read back", report.own_writes_checked);
    assert!(report.watch_events.iter().all(|&n| n as u64 >= acknowledged / 2), "{:?}", report.watch_events);
    // Every fault healed: the cluster wrote again within the calm after it.
    for (fault, ms) in &report.unavailability_ms {
        assert!(*ms < 6_000, "{} left the cluster without writes for {ms} ms", fault.name());
    }
}

/// Found by the torture run (isolate-leader): a leader cut off from its
/// followers kept answering renewals from its own deadlines, which nobody
/// renewed any more, and told a client "lease not found" (TTL 0) for a lease
/// the new leader was keeping alive. A deposed leader must not answer that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_old_leader_does_not_call_a_kept_lease_gone() {
    use concord_etcd::pb::etcdserverpb as pb;
    use concord_torture::cluster::Cluster;

    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(env!("CARGO_BIN_EXE_concord").as_ref(), 3, dir.path()).await.unwrap();
    let old = cluster.leader().await.expect("a leader");
    let follower = (old + 1) % 3;
    let lease_client = |i: usize| pb::lease_client::LeaseClient::new(cluster.members[i].channel.clone());
    let grant = lease_client(follower).lease_grant(pb::LeaseGrantRequest { ttl: 5, id: 0 }).await.unwrap();
    let lease = grant.into_inner().id;

    cluster.partition(&[old]);
    // Keep the lease alive through the majority for well past its TTL.
    let keep = |i: usize| {
        let mut client = lease_client(i);
        async move {
            let requests = tokio_stream::iter([pb::LeaseKeepAliveRequest { id: lease }]);
            let mut request = tonic::Request::new(requests);
            request.set_timeout(Duration::from_secs(1));
            let answer = tokio::time::timeout(Duration::from_secs(2), async {
                let mut stream = client.lease_keep_alive(request).await?.into_inner();
                stream.message().await
            })
            .await;
            match answer {
                Ok(Ok(Some(kept))) => Some(kept.ttl),
                _ => None,
            }
        }
    };
    let start = std::time::Instant::now();
    let mut kept_by_majority = 0;
    // Past the TTL from the grant: the old leader's deadline has passed.
    while start.elapsed() < Duration::from_millis(6_500) {
        if keep(follower).await.is_some_and(|ttl| ttl > 0) {
            kept_by_majority += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(kept_by_majority >= 3, "the majority side kept the lease alive only {kept_by_majority} times");
    // Just renewed by the cluster, while the old leader's own deadline for
    // the lease has long passed.
    assert!(keep(follower).await.is_some_and(|ttl| ttl > 0), "the lease is alive");
    let answer = keep(old).await;
    assert_ne!(answer, Some(0), "the isolated old leader called a lease the cluster keeps alive gone");
    cluster.heal_links();
}
