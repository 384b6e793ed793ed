//! Three real `concord serve` processes on loopback form one cluster:
//! etcdctl against all of them, writes through each member read from every
//! member, and the loss of the leader (SIGKILL) survived with nothing
//! acknowledged lost. Peer ports are chosen free at run time; client ports
//! are bound by the servers themselves (port 0) and read from their logs.

mod common;

use std::time::{Duration, Instant};

use common::{Server, start_cluster, stderr, stdout};

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "etcdctl failed: {}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn all_endpoints(servers: &[&Server]) -> String {
    servers.iter().map(|s| format!("http://{}", s.endpoint)).collect::<Vec<_>>().join(",")
}

/// etcdctl against every member at once.
fn etcdctl_all(servers: &[&Server], args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(common::etcdctl_path());
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", all_endpoints(servers)))
        .arg("--command-timeout=5s")
        .args(args);
    common::run_bounded(&mut cmd)
}

fn leader_of(servers: &[&Server]) -> u64 {
    let json: serde_json::Value =
        serde_json::from_str(&ok(etcdctl_all(servers, &["endpoint", "status", "-w", "json"]))).unwrap();
    let leaders: Vec<u64> = json.as_array().unwrap().iter().map(|s| s["Status"]["leader"].as_u64().unwrap()).collect();
    assert!(leaders.windows(2).all(|w| w[0] == w[1]), "members disagree on the leader: {leaders:?}");
    leaders[0]
}

/// Puts `key` through `servers` until it succeeds (at most 30 s).
fn write_until_ok(servers: &[&Server], key: &str, value: &str, failure: &str) {
    let start = Instant::now();
    loop {
        let out = etcdctl_all(servers, &["put", key, value, "--command-timeout=2s"]);
        if out.status.success() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{failure}: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn member_id_of(s: &Server) -> u64 {
    let json: serde_json::Value = serde_json::from_str(&ok(s.etcdctl(&["endpoint", "status", "-w", "json"]))).unwrap();
    json[0]["Status"]["header"]["member_id"].as_u64().unwrap()
}

#[test]
fn three_processes_serve_any_client_and_survive_a_leader_kill() {
    let (mut servers, args) = start_cluster(3);
    let refs: Vec<&Server> = servers.iter().collect();
    // A new member knows its cluster id before its first vote request.
    for s in &refs {
        assert!(!s.log().contains("not 0"), "a peer message went out without the cluster id:\n{}", s.log());
    }

    // etcdctl naming every member: put, get, txn, lease, member list, status.
    assert_eq!(ok(etcdctl_all(&refs, &["put", "foo", "bar"])), "OK\n");
    assert_eq!(ok(etcdctl_all(&refs, &["get", "foo"])), "foo\nbar\n");
    let granted = ok(etcdctl_all(&refs, &["lease", "grant", "60"]));
    let lease = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(ok(etcdctl_all(&refs, &["put", "--lease", &lease, "leased", "v"])), "OK\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let members = ok(etcdctl_all(&refs, &["member", "list"]));
        let published = members.lines().filter(|l| l.contains("http://127.0.0.1")).count() == 3
            && servers.iter().all(|s| members.contains(&format!("http://{}", s.endpoint)));
        if published {
            assert_eq!(members.lines().count(), 3, "{members}");
            break;
        }
        assert!(Instant::now() < deadline, "members never published their client URLs:\n{members}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Our own client agrees with etcdctl.
    let ours = stdout(&servers[1].concord(&["member", "list"]));
    assert_eq!(ours.lines().count(), 3, "{ours}");
    for s in &servers {
        assert!(ours.contains(&format!("http://{}", s.endpoint)), "{ours}");
    }
    let status = ok(etcdctl_all(&refs, &["endpoint", "status", "--cluster", "-w", "table"]));
    let leader_rows = regex::Regex::new(r"\|\s+true\s+\|\s+false\s+\|").unwrap().find_iter(&status).count();
    assert_eq!((leader_rows, status.matches("3.4.0").count()), (1, 3), "three members, one leader:\n{status}");

    // A transaction through each member (two of them forward it).
    for (i, s) in servers.iter().enumerate() {
        let txn = format!("value(\"foo\") = \"bar\"\n\nput txn{i} yes\n\nput txn{i} no\n\n");
        assert_eq!(ok(s.etcdctl_stdin(&["txn"], Some(&txn))), "SUCCESS\n\nOK\n");
    }
    // A write through each member, read through every member.
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(ok(s.etcdctl(&["put", &format!("k{i}"), &format!("v{i}")])), "OK\n");
    }
    for s in &servers {
        for i in 0..3 {
            assert_eq!(ok(s.etcdctl(&["get", &format!("k{i}")])), format!("k{i}\nv{i}\n"));
            assert_eq!(ok(s.etcdctl(&["get", &format!("txn{i}")])), format!("txn{i}\nyes\n"));
        }
    }
    // A watch on a follower sees a write made through another member.
    let leader = leader_of(&refs);
    let ids: Vec<u64> = servers.iter().map(member_id_of).collect();
    let old = ids.iter().position(|id| *id == leader).expect("the leader is one of the members");
    let (a, b) = ((old + 1) % 3, (old + 2) % 3);
    // /metrics on the client URL: roles, term, forwarding, replication lag.
    let metrics = |s: &Server| common::http_get(&s.endpoint, "/metrics").unwrap().1;
    let on_leader = metrics(&servers[old]);
    assert!(on_leader.contains("concord_role{role=\"leader\"} 1"), "{on_leader}");
    assert_eq!(on_leader.matches("concord_peer_replication_lag_entries{").count(), 2, "{on_leader}");
    let on_follower = metrics(&servers[a]);
    assert!(on_follower.contains("concord_role{role=\"follower\"} 1"), "{on_follower}");
    assert!(!on_follower.contains("concord_forwarded_requests{kind=\"write\"} 0"), "{on_follower}");
    assert!(regex::Regex::new(r"(?m)^concord_raft_term [1-9]").unwrap().is_match(&on_follower), "{on_follower}");
    let watch = servers[a].spawn_background(common::etcdctl_path(), &["watch", "w"]);
    std::thread::sleep(Duration::from_millis(300));
    ok(servers[b].etcdctl(&["put", "w", "seen"]));
    assert_eq!(watch.wait_lines(3), "PUT\nw\nseen\n");

    // A 3 s lease kept alive by etcdctl through a follower (one that survives).
    let short = ok(servers[a].etcdctl(&["lease", "grant", "3"]));
    let short = short.split_whitespace().nth(1).unwrap().to_string();
    ok(servers[a].etcdctl(&["put", "--lease", &short, "kept", "alive"]));
    let keeper = servers[a].spawn_background(common::etcdctl_path(), &["lease", "keep-alive", &short]);
    keeper.wait_lines(1);

    // SIGKILL the leader; time the first successful write through a survivor.
    let killed_dir = servers.remove(old).kill();
    let killed_at = Instant::now();
    let survivors: Vec<&Server> = servers.iter().collect();
    write_until_ok(&survivors, "after", "failover", "no write succeeded after the kill");
    println!("leader SIGKILL -> first successful write: {:?}", killed_at.elapsed());
    for s in &survivors {
        for i in 0..3 {
            assert_eq!(ok(s.etcdctl(&["get", &format!("k{i}")])), format!("k{i}\nv{i}\n"), "acknowledged write lost");
        }
        assert!(ok(s.etcdctl(&["lease", "timetolive", &lease])).contains("remaining"), "the lease survived");
    }
    // Well past its 3 s TTL, the kept-alive lease and its key are still there.
    std::thread::sleep(Duration::from_secs(4));
    for s in &survivors {
        assert_eq!(ok(s.etcdctl(&["get", "kept"])), "kept\nalive\n", "a lease kept alive through a follower was lost");
    }
    drop(keeper);
    drop(survivors);

    // The killed member restarts on its data and catches up.
    let args: Vec<&str> = args[old].iter().map(String::as_str).collect();
    let mut back = Server::spawn_in(killed_dir, &args);
    back.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok(back.etcdctl(&["get", "after", "--consistency=s"])) != "after\nfailover\n" {
        assert!(Instant::now() < deadline, "the restarted member never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(s: &Server, sig: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(s.pid().to_string()).status().unwrap();
    assert!(status.success());
}

/// A leader stopped (SIGSTOP) for 5 s: the others elect a leader and go on;
/// once it runs again (SIGCONT) it steps down and never answers a
/// linearizable read with the value it had before the pause. An abandoned
/// lease is not cut short by the change of leader and is gone within
/// TTL + 3 s.
#[test]
fn a_paused_leader_steps_down_and_never_serves_stale_reads() {
    let (servers, _args) = start_cluster(3);
    let refs: Vec<&Server> = servers.iter().collect();
    ok(etcdctl_all(&refs, &["put", "x", "before"]));
    let granted = ok(etcdctl_all(&refs, &["lease", "grant", "5"]));
    let granting = Instant::now();
    let lease = granted.split_whitespace().nth(1).unwrap().to_string();
    ok(etcdctl_all(&refs, &["put", "--lease", &lease, "abandoned", "v"]));
    let leader = leader_of(&refs);
    let old = servers.iter().position(|s| member_id_of(s) == leader).unwrap();
    let others: Vec<&Server> = servers.iter().enumerate().filter(|(i, _)| *i != old).map(|(_, s)| s).collect();

    signal(&servers[old], "STOP");
    let paused = Instant::now();
    // Writes through one follower, sent before it notices the pause: they
    // go to the paused leader and their clients give up after 1 s.
    std::thread::scope(|scope| {
        for i in 0..4 {
            let follower = others[0];
            scope.spawn(move || follower.etcdctl(&["put", &format!("stuck/{i}"), "v", "--command-timeout=1s"]));
        }
    });
    write_until_ok(&others, "x", "during", "no write while the leader was paused");
    println!("leader SIGSTOP -> first successful write: {:?}", paused.elapsed());
    // Whatever that follower still had out to the paused leader does not
    // hold up its writes to the new one.
    let through_follower = Instant::now();
    write_until_ok(&[others[0]], "y", "through the follower", "no write through the follower");
    assert!(
        through_follower.elapsed() < Duration::from_secs(3),
        "a write through the follower took {:?}: held up by calls to the paused leader",
        through_follower.elapsed()
    );
    let failover_at = Instant::now();
    std::thread::sleep(Duration::from_secs(5).saturating_sub(paused.elapsed()));
    signal(&servers[old], "CONT");
    // Straight away, through the old leader only: the new value or an error.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = servers[old].etcdctl(&["get", "x", "--command-timeout=2s"]);
        if out.status.success() {
            assert_eq!(stdout(&out), "x\nduring\n", "the old leader served a stale read");
            break;
        }
        assert!(Instant::now() < deadline, "the old leader never served again: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_ne!(leader_of(&refs), 0);
    // The abandoned lease: never early, gone within TTL + 3 s after the failover.
    loop {
        let out = ok(others[0].etcdctl(&["get", "abandoned"]));
        if out.is_empty() {
            assert!(granting.elapsed() >= Duration::from_secs(5), "the lease expired early");
            break;
        }
        assert!(failover_at.elapsed() < Duration::from_secs(5 + 3), "the abandoned lease outlived TTL + 3 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `etcdctl move-leader` as against etcd: it needs the leader among its
/// endpoints ("no leader endpoint given"), names an unknown member "bad
/// leader transferee", and prints "Leadership transferred from X to Y"
/// once the target leads. A leader stopped with SIGTERM hands leadership
/// to a follower before it exits, as etcd does.
#[test]
fn etcdctl_move_leader_and_a_stopping_leader_hand_leadership_over() {
    let (mut servers, _args) = start_cluster(3);
    let refs: Vec<&Server> = servers.iter().collect();
    let leader = leader_of(&refs);
    let ids: Vec<u64> = servers.iter().map(member_id_of).collect();
    let old = ids.iter().position(|id| *id == leader).unwrap();
    let target = (old + 1) % 3;

    let out = servers[target].etcdctl(&["move-leader", &format!("{:x}", ids[old])]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no leader endpoint given at"), "{}", stderr(&out));
    let out = etcdctl_all(&refs, &["move-leader", "99"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("etcdserver: bad leader transferee"), "{}", stderr(&out));

    let moved = ok(etcdctl_all(&refs, &["move-leader", &format!("{:x}", ids[target])]));
    assert_eq!(moved, format!("Leadership transferred from {:x} to {:x}\n", ids[old], ids[target]));
    let agreed = Instant::now();
    while servers.iter().any(|s| {
        let json: serde_json::Value =
            serde_json::from_str(&ok(s.etcdctl(&["endpoint", "status", "-w", "json"]))).unwrap();
        json[0]["Status"]["leader"].as_u64() != Some(ids[target])
    }) {
        assert!(agreed.elapsed() < Duration::from_secs(10), "the members never agreed on the new leader");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ok(etcdctl_all(&refs, &["put", "after-move", "v"])), "OK\n");

    // SIGTERM the new leader: it hands leadership over, then exits cleanly.
    drop(refs);
    let (status, dir) = servers.remove(target).stop();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("leadership transfer finished"), "the stopping leader did not hand over:\n{log}");
    let survivors: Vec<&Server> = servers.iter().collect();
    write_until_ok(&survivors, "after-stop", "v", "no write after the leader stopped");
    let new = leader_of(&survivors);
    assert!(ids.contains(&new) && new != ids[target], "a survivor leads");
}
