//! Backups as an operator takes and uses them: `etcdctl snapshot save` and
//! `concord snapshot save` while a writer runs, `concord snapshot status`,
//! and `concord snapshot restore` into a new data directory whose member
//! serves exactly the saved keys, history and leases.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Server, free_port, run_bounded, stderr, stdout};
use serde_json::Value;

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn concord(args: &[&str]) -> std::process::Output {
    run_bounded(Command::new(env!("CARGO_BIN_EXE_concord")).args(args))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every key at `rev` (0: latest) with its revisions, version and lease.
fn all_keys(s: &Server, rev: i64) -> Vec<Value> {
    let rev = format!("--rev={rev}");
    let answer = json(&ok(s.etcdctl(&["get", "--prefix", "", &rev, "-w", "json"])));
    answer["kvs"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_backup_taken_while_writing_restores_exactly() {
    let s = Server::start();
    for i in 0..200 {
        ok(s.etcdctl(&["put", &format!("k/{i:03}"), &format!("v{i}")]));
    }
    for i in 0..20 {
        ok(s.etcdctl(&["put", &format!("k/{i:03}"), &format!("second {i}")]));
    }
    let grant = ok(s.etcdctl(&["lease", "grant", "600"]));
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    ok(s.etcdctl(&["put", "leased/a", "x", "--lease", &lease]));
    ok(s.etcdctl(&["put", "leased/b", "y", "--lease", &lease]));
    let before_compaction =
        json(&ok(s.etcdctl(&["get", "k/000", "-w", "json"])))["header"]["revision"].as_i64().unwrap();
    ok(s.etcdctl(&["compact", &(before_compaction - 10).to_string()]));

    // A writer keeps going while the backups are taken.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, endpoint) = (writing.clone(), s.endpoint.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while writing.load(Ordering::Relaxed) {
                let out = concord(&["put", &format!("w/{n}"), "x", &format!("--endpoints={endpoint}")]);
                assert!(out.status.success(), "{}", stderr(&out));
                n += 1;
            }
            n
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let by_etcdctl = dir.path().join("etcdctl.backup");
    let by_concord = dir.path().join("concord.backup");
    let saved = ok(s.etcdctl(&["snapshot", "save", by_etcdctl.to_str().unwrap()]));
    assert!(saved.contains(&format!("Snapshot saved at {}", by_etcdctl.display())), "{saved}");
    let saved = ok(s.concord(&["snapshot", "save", by_concord.to_str().unwrap()]));
    assert_eq!(saved, format!("Snapshot saved at {}\n", by_concord.display()));
    writing.store(false, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0, "the writer never wrote during the backups");

    // Both files check out; the status names the revision the backup holds.
    for file in [&by_etcdctl, &by_concord] {
        let simple = ok(concord(&["snapshot", "status", file.to_str().unwrap()]));
        assert_eq!(simple.split(", ").count(), 4, "{simple}");
    }
    let status = json(&ok(concord(&["snapshot", "status", by_concord.to_str().unwrap(), "-w", "json"])));
    let revision = status["revision"].as_i64().unwrap();
    assert!(revision > before_compaction && status["totalKey"].as_u64().unwrap() >= 202, "{status}");
    // A damaged file is refused.
    let mut bytes = std::fs::read(&by_concord).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let damaged = dir.path().join("damaged.backup");
    std::fs::write(&damaged, bytes).unwrap();
    let refused = concord(&["snapshot", "status", damaged.to_str().unwrap()]);
    assert!(!refused.status.success() && stderr(&refused).contains("checksum"), "{}", stderr(&refused));

    // Restored as a new one-member cluster.
    let peer = format!("http://127.0.0.1:{}", free_port());
    let restored_dir = tempfile::tempdir().unwrap();
    let data = restored_dir.path().join("data");
    let cluster = format!("--initial-cluster=r0={peer}");
    let peer_urls = format!("--initial-advertise-peer-urls={peer}");
    let restore = |file: &std::path::Path| {
        concord(&[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--name=r0",
            &cluster,
            &peer_urls,
        ])
    };
    let said = ok(restore(&by_concord));
    assert!(said.contains(&format!("at revision {revision}")), "{said}");
    // A restore never writes over a data directory.
    let again = restore(&by_concord);
    assert!(!again.status.success() && stderr(&again).contains("not empty"), "{}", stderr(&again));
    let mut r =
        Server::spawn_in(restored_dir, &["--name=r0", &format!("--listen-peer-urls={peer}"), &peer_urls, &cluster]);
    r.wait_ready();

    // Exactly the keys at the backup's revision, with their revisions,
    // versions and leases; the history since the compaction too.
    assert_eq!(all_keys(&r, 0), all_keys(&s, revision));
    let older = before_compaction - 5;
    assert_eq!(all_keys(&r, older), all_keys(&s, older));
    let compacted = r.etcdctl(&["get", "k/000", &format!("--rev={}", before_compaction - 20)]);
    assert!(stderr(&compacted).contains("required revision has been compacted"), "{}", stderr(&compacted));
    // The lease, its keys and its remaining time.
    let ttl = ok(r.etcdctl(&["lease", "timetolive", &lease, "--keys"]));
    assert!(ttl.contains("granted with TTL(600s)") && ttl.contains("leased/a") && ttl.contains("leased/b"), "{ttl}");
    let remaining: i64 = ttl.split("remaining(").nth(1).unwrap().split('s').next().unwrap().parse().unwrap();
    assert!((500..=600).contains(&remaining), "{ttl}");
    // And it takes writes at the next revision.
    ok(r.etcdctl(&["put", "after", "restore"]));
    let after = json(&ok(r.etcdctl(&["get", "after", "-w", "json"])));
    assert_eq!(after["kvs"][0]["mod_revision"].as_i64(), Some(revision + 1));
}

/// One backup restored by three members (each with its own settings, the
/// same initial cluster) makes a three-member cluster holding the backup.
#[test]
fn a_backup_restored_on_three_members_forms_a_cluster() {
    let s = Server::start();
    for i in 0..50 {
        ok(s.etcdctl(&["put", &format!("k/{i:02}"), &format!("v{i}")]));
    }
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("b.backup");
    ok(s.concord(&["snapshot", "save", backup.to_str().unwrap()]));
    let expected = all_keys(&s, 0);
    drop(s);

    let peers: Vec<String> = (0..3).map(|_| format!("http://127.0.0.1:{}", free_port())).collect();
    let initial =
        format!("--initial-cluster={}", (0..3).map(|i| format!("r{i}={}", peers[i])).collect::<Vec<_>>().join(","));
    let token = "--initial-cluster-token=restored";
    let mut members = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let member_dir = tempfile::tempdir().unwrap();
        let data = member_dir.path().join("data");
        let (name, peer_urls) = (format!("--name=r{i}"), format!("--initial-advertise-peer-urls={peer}"));
        ok(concord(&[
            "snapshot",
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            &name,
            &initial,
            &peer_urls,
            token,
        ]));
        let listen = format!("--listen-peer-urls={peer}");
        members.push(Server::spawn_in(member_dir, &[&name, &listen, &peer_urls, &initial, token]));
    }
    for m in &mut members {
        m.wait_ready();
    }
    for m in &members {
        assert_eq!(all_keys(m, 0), expected);
    }
    let list = ok(members[0].etcdctl(&["member", "list"]));
    assert_eq!(list.lines().count(), 3, "{list}");
    ok(members[1].etcdctl(&["put", "after", "restore"]));
    assert_eq!(ok(members[2].etcdctl(&["get", "after", "--print-value-only"])), "restore\n");
}

/// python-etcd3 (a gRPC client from PyPI, installed by scripts/test) calls
/// status, hash, alarms, defragment and snapshot; its backup checks out.
#[test]
fn python_etcd3_uses_status_hash_alarms_defragment_and_snapshot() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("py.backup");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/etcd3_maintenance.py");
    let out = run_bounded(
        Command::new("python3")
            // python-etcd3's generated code predates protobuf 4's C backend.
            .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
            .arg(script)
            .arg(&s.endpoint)
            .arg(&backup),
    );
    assert!(
        out.status.success() && stdout(&out).contains("all checks passed"),
        "python-etcd3 against Concord failed (scripts/test installs etcd3 with pip):\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let status = json(&ok(concord(&["snapshot", "status", backup.to_str().unwrap(), "-w", "json"])));
    // One live key (`totalKey` counts every entry of the file's buckets, as etcdctl's does).
    assert_eq!(status["liveKeys"], 1, "{status}");
}

/// A process killed when dropped (also when the test fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A one-member etcd named `e0` on `data`, its log in `log`; killed when dropped.
fn start_etcd(
    etcd: &std::path::Path,
    data: &std::path::Path,
    client: &str,
    peer: &str,
    log: &std::path::Path,
) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    Killed(
        Command::new(etcd)
            .args(["--name", "e0", "--data-dir", data.to_str().unwrap()])
            .args(["--listen-client-urls", client, "--advertise-client-urls", client])
            .args(["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("e0={peer}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A Concord backup is an etcd snapshot to etcd's own tools:
/// `etcdctl snapshot status` reads it (and says what `concord snapshot
/// status` says), `etcdctl snapshot restore` makes an etcd data directory
/// of it, and an etcd started there serves the same keys, history and lease.
#[test]
fn etcd_tools_read_and_restore_a_concord_backup() {
    let s = Server::start();
    for i in 0..50 {
        ok(s.etcdctl(&["put", &format!("k/{i:02}"), &format!("v{i}")]));
    }
    ok(s.etcdctl(&["put", "k/00", "second"]));
    ok(s.etcdctl(&["del", "k/01"]));
    ok(s.etcdctl_stdin(&["txn"], Some("\nput t/a 1\nput t/b 2\ndel k/02\n\n\n")));
    let grant = ok(s.etcdctl(&["lease", "grant", "600"]));
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    ok(s.etcdctl(&["put", "leased", "x", "--lease", &lease]));
    ok(s.etcdctl(&["compact", "10"]));
    // Larger than a bolt page (overflow pages), small enough for a pipe.
    ok(s.etcdctl(&["put", "large", &"x".repeat(20_000)]));
    let revision = json(&ok(s.etcdctl(&["get", "k/00", "-w", "json"])))["header"]["revision"].as_i64().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("concord.backup");
    ok(s.concord(&["snapshot", "save", backup.to_str().unwrap()]));
    let etcdctl = |args: &[&str]| run_bounded(Command::new(common::etcdctl_path()).args(args));
    for format in ["simple", "table", "json"] {
        let by_etcd = ok(etcdctl(&["snapshot", "status", backup.to_str().unwrap(), "-w", format]));
        let by_concord = ok(concord(&["snapshot", "status", backup.to_str().unwrap(), "-w", format]));
        if format == "json" {
            let (e, c) = (json(&by_etcd), json(&by_concord));
            for field in ["hash", "revision", "totalKey", "totalSize"] {
                assert_eq!(e[field], c[field], "{field}: {by_etcd} / {by_concord}");
            }
            assert_eq!(e["revision"].as_i64(), Some(revision), "{by_etcd}");
        } else {
            assert_eq!(by_etcd, by_concord, "-w {format}");
        }
    }

    // etcd's restore replays the key bucket through its own store.
    let (client, peer) = (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
    let data = dir.path().join("etcd");
    let cluster = format!("e0={peer}");
    ok(etcdctl(&[
        "snapshot",
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "e0",
        "--initial-cluster",
        &cluster,
        "--initial-advertise-peer-urls",
        &peer,
    ]));
    let db = data.join("member/snap/db");
    let restored = json(&ok(etcdctl(&["snapshot", "status", db.to_str().unwrap(), "-w", "json"])));
    assert_eq!(restored["revision"].as_i64(), Some(revision), "{restored}");

    // An etcd member on it serves what Concord served (where etcd is installed).
    let Ok(etcd) = which_etcd() else {
        eprintln!("no etcd server binary: the restored etcd member is not started");
        return;
    };
    let _etcd = start_etcd(&etcd, &data, &client, &peer, &dir.path().join("etcd.log"));
    let get = |rev: i64| {
        let mut last = None;
        for _ in 0..100 {
            let out = etcdctl(&["--endpoints", &client, "get", "--prefix", "", &format!("--rev={rev}"), "-w", "json"]);
            if out.status.success() {
                return json(&stdout(&out))["kvs"].clone();
            }
            last = Some(stderr(&out));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the restored etcd did not answer: {last:?}");
    };
    assert_eq!(get(0), Value::Array(all_keys(&s, 0)));
    assert_eq!(get(20), Value::Array(all_keys(&s, 20)));
    let compacted = etcdctl(&["--endpoints", &client, "get", "k/03", "--rev=5"]);
    assert!(stderr(&compacted).contains("required revision has been compacted"), "{}", stderr(&compacted));
    let leases = ok(etcdctl(&["--endpoints", &client, "lease", "timetolive", &lease, "--keys"]));
    assert!(leases.contains("granted with TTL(600s)") && leases.contains("leased"), "{leases}");
    // `concord lease info --json` prints `granted_at` only where the server
    // says it (Concord's extension field): a real etcd leaves it out.
    let endpoint = format!("--endpoints={client}");
    let info = json(&ok(concord(&["lease", "info", &lease, "--json", &endpoint])));
    assert_eq!((info["ttl"].as_i64(), info.get("granted_at")), (Some(600), None), "{info}");
}

/// The etcd server binary, if one is installed.
fn which_etcd() -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path).map(|d| d.join("etcd")).find(|p| p.is_file()).ok_or(())
}

/// The way from etcd to Concord: an etcd member's `etcdctl snapshot save`,
/// restored by `concord snapshot restore`, serves etcd's keys with their
/// revisions, versions and leases, the history since the compaction, users
/// and roles; the next write gets etcd's revision + 1 (where etcd is
/// installed).
#[test]
fn an_etcd_snapshot_restores_into_concord() {
    let Ok(etcd) = which_etcd() else {
        eprintln!("no etcd server binary: nothing to take a snapshot of");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
    let _etcd = start_etcd(&etcd, &dir.path().join("etcd"), &client, &peer, &dir.path().join("etcd.log"));
    let etcdctl = |args: &[&str]| {
        run_bounded(
            Command::new(common::etcdctl_path()).args(["--endpoints", &client, "--command-timeout=5s"]).args(args),
        )
    };
    let etcdctl_in = |stdin: &str, args: &[&str]| {
        let mut child = Command::new(common::etcdctl_path())
            .args(["--endpoints", &client])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        common::wait_bounded(child, std::time::Duration::from_secs(30), "etcdctl")
    };
    let mut ready = false;
    for _ in 0..100 {
        if etcdctl(&["put", "first", "1"]).status.success() {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ready, "etcd did not start: {}", std::fs::read_to_string(dir.path().join("etcd.log")).unwrap());
    for i in 0..30 {
        ok(etcdctl(&["put", &format!("k/{i:02}"), &format!("v{i}")]));
    }
    ok(etcdctl(&["put", "k/00", "again"]));
    ok(etcdctl(&["del", "k/01"]));
    ok(etcdctl_in("\nput t/b 2\nput t/a 1\ndel k/02\n\n\n", &["txn"]));
    let lease = ok(etcdctl(&["lease", "grant", "600"])).split_whitespace().nth(1).unwrap().to_string();
    ok(etcdctl(&["put", "leased", "x", "--lease", &lease]));
    ok(etcdctl(&["compact", "20"]));
    ok(etcdctl(&["put", "after-compaction", "y"]));
    ok(etcdctl_in("secret\n", &["user", "add", "ann", "--interactive=false"]));
    ok(etcdctl(&["role", "add", "reader"]));
    ok(etcdctl(&["role", "grant-permission", "reader", "read", "k/", "--prefix"]));
    ok(etcdctl(&["user", "grant-role", "ann", "reader"]));
    let snapshot = dir.path().join("etcd.snapshot");
    ok(etcdctl(&["snapshot", "save", snapshot.to_str().unwrap()]));
    let revision = json(&ok(etcdctl(&["get", "first", "-w", "json"])))["header"]["revision"].as_i64().unwrap();
    let keys_at = |endpoint: &str, rev: i64| {
        let out = run_bounded(Command::new(common::etcdctl_path()).args([
            "--endpoints",
            endpoint,
            "get",
            "--prefix",
            "",
            &format!("--rev={rev}"),
            "-w",
            "json",
        ]));
        json(&ok(out))["kvs"].clone()
    };
    let expected: Vec<_> = [0, 20, 25].iter().map(|&rev| keys_at(&client, rev)).collect();

    // A database file without the snapshot's SHA-256 (as copied from a
    // member's data directory) restores only with --skip-hash-check.
    let bytes = std::fs::read(&snapshot).unwrap();
    let raw = dir.path().join("etcd.db");
    std::fs::write(&raw, &bytes[..bytes.len() - 32]).unwrap();
    let restore_raw = |extra: &[&str]| {
        let data = dir.path().join(format!("from-raw{}", extra.len()));
        concord(
            &[&["snapshot", "restore", raw.to_str().unwrap(), "--data-dir", data.to_str().unwrap()], extra].concat(),
        )
    };
    let refused = restore_raw(&[]);
    assert!(!refused.status.success() && stderr(&refused).contains("--skip-hash-check"), "{}", stderr(&refused));
    assert!(ok(restore_raw(&["--skip-hash-check"])).contains(&format!("at revision {revision}")));

    let status = json(&ok(concord(&["snapshot", "status", snapshot.to_str().unwrap(), "-w", "json"])));
    let by_etcdctl = json(&ok(etcdctl(&["snapshot", "status", snapshot.to_str().unwrap(), "-w", "json"])));
    assert_eq!(
        (status["hash"].clone(), status["totalKey"].clone()),
        (by_etcdctl["hash"].clone(), by_etcdctl["totalKey"].clone())
    );
    let restored_dir = tempfile::tempdir().unwrap();
    let r_peer = format!("http://127.0.0.1:{}", free_port());
    let said = ok(concord(&[
        "snapshot",
        "restore",
        snapshot.to_str().unwrap(),
        "--data-dir",
        restored_dir.path().join("data").to_str().unwrap(),
        "--name=r0",
        &format!("--initial-cluster=r0={r_peer}"),
        &format!("--initial-advertise-peer-urls={r_peer}"),
    ]));
    assert!(said.contains(&format!("at revision {revision}")), "{said}");
    let mut r = Server::spawn_in(
        restored_dir,
        &[
            "--name=r0",
            &format!("--listen-peer-urls={r_peer}"),
            &format!("--initial-advertise-peer-urls={r_peer}"),
            &format!("--initial-cluster=r0={r_peer}"),
        ],
    );
    r.wait_ready();
    for (rev, want) in [0, 20, 25].iter().zip(&expected) {
        assert_eq!(&keys_at(&r.endpoint, *rev), want, "keys at revision {rev}");
    }
    let compacted = r.etcdctl(&["get", "k/03", "--rev=5"]);
    assert!(stderr(&compacted).contains("required revision has been compacted"), "{}", stderr(&compacted));
    let ttl = ok(r.etcdctl(&["lease", "timetolive", &lease, "--keys"]));
    assert!(ttl.contains("granted with TTL(600s)") && ttl.contains("leased"), "{ttl}");
    assert!(ok(r.etcdctl(&["user", "get", "ann"])).contains("reader"));
    let role = ok(r.etcdctl(&["role", "get", "reader"]));
    assert!(role.contains("[k/, k0) (prefix k/)"), "{role}");
    ok(r.etcdctl(&["put", "next", "z"]));
    let next = json(&ok(r.etcdctl(&["get", "next", "-w", "json"])));
    assert_eq!(next["kvs"][0]["mod_revision"].as_i64(), Some(revision + 1));
}
