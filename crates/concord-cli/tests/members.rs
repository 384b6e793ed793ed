//! `etcdctl member add/promote/update/remove/list` (and `concord member`)
//! against real `concord serve` processes: a cluster grown from one member
//! by the printed settings, outputs as etcd prints them, etcd's refusals,
//! and a removed member that exits.

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_shape, free_peer_url, stderr, stdout};

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "command failed: {}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn refused(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected a refusal, got: {}", stdout(&out));
    stderr(&out)
}

/// Starts a member from etcdctl's printed `ETCD_*` settings.
fn start_from(printed: &str, token: &str) -> Server {
    let setting = |name: &str| -> String {
        let line = printed.lines().find(|l| l.starts_with(&format!("{name}="))).expect(name);
        line[name.len() + 1..].trim_matches('"').to_string()
    };
    let peer = setting("ETCD_INITIAL_ADVERTISE_PEER_URLS");
    let args = [
        format!("--name={}", setting("ETCD_NAME")),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster={}", setting("ETCD_INITIAL_CLUSTER")),
        format!("--initial-cluster-state={}", setting("ETCD_INITIAL_CLUSTER_STATE")),
        format!("--initial-cluster-token={token}"),
    ];
    let mut server =
        Server::spawn_in(tempfile::tempdir().unwrap(), &args.iter().map(String::as_str).collect::<Vec<_>>());
    server.wait_ready();
    server
}

/// Starts the first member of a new cluster, alone.
fn start_alone(name: &str, peer_url: &str, token: &str) -> Server {
    let mut server = Server::spawn_in(
        tempfile::tempdir().unwrap(),
        &[
            &format!("--name={name}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster={name}={peer_url}"),
            &format!("--initial-cluster-token={token}"),
        ],
    );
    server.wait_ready();
    server
}

/// `member list -w json` as (id, name, is_learner).
fn members(server: &Server) -> Vec<(u64, String, bool)> {
    let json: serde_json::Value = serde_json::from_str(&ok(server.etcdctl(&["member", "list", "-w", "json"]))).unwrap();
    (json["members"].as_array().unwrap().iter())
        .map(|m| {
            (
                m["ID"].as_u64().unwrap(),
                m["name"].as_str().unwrap_or_default().to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn etcdctl_grows_updates_and_shrinks_a_cluster() {
    let token = format!("members-{}", std::process::id());
    let p0 = free_peer_url();
    let first = start_alone("m0", &p0, &token);
    ok(first.etcdctl(&["put", "before", "1"]));

    // A voter, added the etcd way: `member add`, then start it with what
    // etcdctl printed.
    let p1 = free_peer_url();
    let printed = ok(first.etcdctl(&["member", "add", "m1", &format!("--peer-urls={p1}")]));
    assert_shape(
        &printed,
        &format!(
            "Member [ 0-9a-f]{{16}} added to cluster [ 0-9a-f]{{16}}\n\nETCD_NAME=\"m1\"\n\
             ETCD_INITIAL_CLUSTER=\"(m0={p0},m1={p1}|m1={p1},m0={p0})\"\nETCD_INITIAL_ADVERTISE_PEER_URLS=\"{p1}\"\n\
             ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"
        ),
    );
    let second = start_from(&printed, &token);
    assert_eq!(ok(second.etcdctl(&["get", "before", "--print-value-only"])), "1\n");
    until("m1 to vote", || members(&first).iter().all(|(_, name, learner)| !name.is_empty() && !learner));

    // A learner: refused promotion until it runs and has caught up.
    let p2 = free_peer_url();
    let printed = ok(first.etcdctl(&["member", "add", "m2", &format!("--peer-urls={p2}"), "--learner"]));
    // etcdctl 3.4 prints no "as learner" (3.5 does, from the response).
    assert_shape(&printed, "Member [ 0-9a-f]{16} added (as learner )?to cluster [ 0-9a-f]{16}\n\n.*");
    let learner = members(&first).into_iter().find(|(_, _, learner)| *learner).expect("a learner").0;
    let learner_hex = format!("{learner:x}");
    let early = refused(first.etcdctl(&["member", "promote", &learner_hex]));
    assert!(
        early.contains("Error: etcdserver: can only promote a learner member which is in sync with leader"),
        "{early}"
    );
    // One learner at a time.
    let second_learner =
        refused(first.etcdctl(&["member", "add", "x", &format!("--peer-urls={}", free_peer_url()), "--learner"]));
    assert!(second_learner.contains("Error: etcdserver: too many learner members in cluster"), "{second_learner}");
    let mut third = start_from(&printed, &token);
    let mut promoted = String::new();
    until("the learner to catch up and be promoted", || {
        let out = first.etcdctl(&["member", "promote", &learner_hex]);
        promoted = stdout(&out);
        out.status.success()
    });
    assert_shape(&promoted, &format!("Member {learner:16x} promoted in cluster [ 0-9a-f]{{16}}\n"));
    let again = refused(first.etcdctl(&["member", "promote", &learner_hex]));
    assert!(again.contains("Error: etcdserver: can only promote a learner member"), "{again}");

    // etcd's refusals.
    let taken = refused(first.etcdctl(&["member", "add", "dup", &format!("--peer-urls={p0}")]));
    assert!(taken.contains("Error: etcdserver: Peer URLs already exists"), "{taken}");
    let unknown = refused(first.etcdctl(&["member", "remove", "1234"]));
    assert!(unknown.contains("Error: etcdserver: member not found"), "{unknown}");

    // Update: a second peer URL for m2 (it keeps listening on the first).
    let extra = free_peer_url();
    let updated = ok(third.etcdctl(&["member", "update", &learner_hex, &format!("--peer-urls={p2},{extra}")]));
    assert_shape(&updated, &format!("Member {learner:16x} updated in cluster [ 0-9a-f]{{16}}\n"));
    let listed = ok(first.concord(&["member", "list"]));
    assert!(listed.contains(&format!("{p2},{extra}")), "{listed}");

    // Remove (asked of a follower: it goes to the leader); the removed
    // member exits on its own, cleanly.
    let removed = ok(second.etcdctl(&["member", "remove", &learner_hex]));
    assert_shape(&removed, &format!("Member {learner:16x} removed from cluster [ 0-9a-f]{{16}}\n"));
    let status = third.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "a removed member exits with 0: {status}");
    assert!(third.log().contains("removed from the cluster"), "{}", third.log());
    assert_eq!(members(&first).len(), 2);
    ok(second.etcdctl(&["put", "after", "2"]));
    assert_eq!(ok(first.etcdctl(&["get", "after", "--print-value-only"])), "2\n");
}

/// The operator's sequence that once left the new member outside forever:
/// grow 1→3 (a voter, then a learner promoted), remove the leader, add a
/// fourth — under a light write load. The fourth catches up from the start
/// of the log, whose first configuration holds only the removed leader.
#[test]
fn a_member_added_after_the_leader_was_removed_serves_the_data() {
    let token = format!("members-after-{}", std::process::id());
    let mut m1 = start_alone("m1", &free_peer_url(), &token);
    let printed = ok(m1.etcdctl(&["member", "add", "m2", &format!("--peer-urls={}", free_peer_url())]));
    let m2 = start_from(&printed, &token);
    until("m2 to vote", || members(&m1).iter().all(|(_, name, learner)| !name.is_empty() && !learner));

    // A light write load through m2 from here on: one put at a time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let (stop, endpoint) = (stop.clone(), m2.endpoint.clone());
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("w{i:05}");
                if common::etcdctl_at(&endpoint, &["put", &key, "v"]).status.success() {
                    acked.push(key);
                }
            }
            acked
        })
    };

    let printed = ok(m1.etcdctl(&["member", "add", "m3", &format!("--peer-urls={}", free_peer_url()), "--learner"]));
    let m3 = start_from(&printed, &token);
    let learner = members(&m1).into_iter().find(|(_, _, learner)| *learner).expect("a learner").0;
    until("the learner to catch up and be promoted", || {
        m1.etcdctl(&["member", "promote", &format!("{learner:x}")]).status.success()
    });

    // Remove the leader (m1: it has led since it started alone).
    let m1_id = members(&m1).into_iter().find(|(_, name, _)| name == "m1").unwrap().0;
    ok(m2.etcdctl(&["member", "remove", &format!("{m1_id:x}")]));
    assert!(m1.wait_exit(Duration::from_secs(20)).success(), "the removed leader exits with 0");

    // Until m2 and m3 elect a leader, etcd's "no leader".
    let (p4, mut printed) = (free_peer_url(), String::new());
    until("a new leader to add m4", || {
        let out = m2.etcdctl(&["member", "add", "m4", &format!("--peer-urls={p4}")]);
        printed = stdout(&out);
        out.status.success() || !stderr(&out).contains("no leader") && panic!("{}", stderr(&out))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writing.join().unwrap();
    assert!(!acked.is_empty(), "the writer made progress");
    let started = Instant::now();
    let m4 = start_from(&printed, &token);
    let last = acked.last().unwrap();
    while stdout(&m4.etcdctl(&["get", last, "--print-value-only", "--consistency=s"])) != "v\n" {
        assert!(started.elapsed() < Duration::from_secs(5), "m4 does not serve the data; log:\n{}", m4.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let keys = ok(m4.etcdctl(&["get", "w", "--prefix", "--keys-only", "--consistency=s"]));
    let served: std::collections::HashSet<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    for key in &acked {
        assert!(served.contains(key.as_str()), "m4 lacks acknowledged key {key}");
    }
    // A leader refused by a member retries it a few times a second at most
    // (it once retried ~2,700 times a second).
    let refusals = m2.log().matches("is not in this cluster's configuration").count()
        + m3.log().matches("is not in this cluster's configuration").count();
    assert!(refusals < 50, "{refusals} refusals logged");
    until("m4 to vote", || members(&m2).iter().all(|(_, name, learner)| !name.is_empty() && !learner));
    ok(m4.etcdctl(&["put", "after", "m4"]));
    assert_eq!(ok(m3.etcdctl(&["get", "after", "--print-value-only"])), "m4\n");
}
