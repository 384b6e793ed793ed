//! The `concord` command: client subcommands in the seed's vocabulary,
//! `serve` settings, clean shutdown on SIGTERM, and the metrics endpoint.

mod common;

use std::process::Command;

use common::{Server, assert_shape, http_get, stderr, stdout};

const ID: &str = "[0-9a-f]{16}";

#[test]
fn lease_and_kv_subcommands() {
    let s = Server::start();
    let granted = s.concord(&["lease", "grant", "30"]);
    assert!(granted.status.success(), "{}", stderr(&granted));
    assert_shape(&stdout(&granted), &format!(r"lease {ID} granted with TTL\(30s\)\n"));
    let id = stdout(&granted).split_whitespace().nth(1).unwrap().to_string();

    assert_eq!(stdout(&s.concord(&["put", "svc/a", "10.0.0.1", "--lease", &id])), "OK\n");
    assert_eq!(stdout(&s.concord(&["put", "svc/b", "10.0.0.2", "--lease", &id])), "OK\n");
    assert_eq!(stdout(&s.concord(&["get", "svc/a"])), "svc/a\n10.0.0.1\n");
    assert_eq!(stdout(&s.concord(&["get", "svc/", "--prefix"])), "svc/a\n10.0.0.1\nsvc/b\n10.0.0.2\n");
    assert_shape(
        &stdout(&s.concord(&["lease", "info", &id])),
        &format!(r"lease {id} granted with TTL\(30s\), remaining\((29|30)s\), attached keys\(\[svc/a svc/b\]\)\n"),
    );
    assert_eq!(stdout(&s.concord(&["lease", "list"])), format!("found 1 leases\n{id}\n"));
    assert_eq!(
        stdout(&s.concord(&["lease", "keep-alive", &id, "--once"])),
        format!("lease {id} keepalived with TTL(30)\n")
    );

    let json = stdout(&s.concord(&["get", "svc/", "--prefix", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kvs"][1]["value"], "10.0.0.2");
    assert_eq!(v["kvs"][1]["lease"], id.as_str());
    let info: serde_json::Value = serde_json::from_str(&stdout(&s.concord(&["lease", "info", &id, "--json"]))).unwrap();
    assert_eq!(info["keys"], serde_json::json!(["svc/a", "svc/b"]));
    // Concord also says when the lease was granted (the seed's `granted_at`):
    // the store's revision then — the first, on this fresh member.
    assert_eq!(info["granted_at"], 1, "{info}");

    assert_eq!(stdout(&s.concord(&["lease", "revoke", &id])), format!("lease {id} revoked\n"));
    assert_eq!(stdout(&s.concord(&["get", "svc/", "--prefix"])), "");
    s.concord(&["put", "x", "1"]);
    assert_eq!(stdout(&s.concord(&["del", "x"])), "1\n");

    // Errors: one line, non-zero exit.
    let info = s.concord(&["lease", "info", &id]);
    assert_eq!(info.status.code(), Some(1));
    assert_eq!(stderr(&info), format!("Error: lease {id} not found (expired or revoked)\n"));
    let put = s.concord(&["put", "k", "v", "--lease", "63"]);
    assert_eq!(put.status.code(), Some(1));
    assert_eq!(stderr(&put), "Error: etcdserver: requested lease not found\n");
    let keep = s.concord(&["lease", "keep-alive", &id, "--once"]);
    assert_eq!(stderr(&keep), format!("Error: lease {id} expired or revoked\n"));
    let bad = s.concord(&["lease", "revoke", "not-hex"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).starts_with("Error: bad lease id"));
}

#[test]
fn client_reports_an_unreachable_endpoint() {
    let port = common::free_port();
    let out = common::run_bounded(Command::new(env!("CARGO_BIN_EXE_concord")).args([
        "get",
        "k",
        &format!("--endpoints=127.0.0.1:{port}"),
        "--command-timeout=2",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with(&format!("Error: cannot connect to 127.0.0.1:{port}")), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1);
}

#[test]
fn sigterm_shuts_down_cleanly_and_data_survives() {
    let s = Server::start();
    assert_eq!(stdout(&s.etcdctl(&["put", "durable", "yes"])), "OK\n");
    let granted = stdout(&s.etcdctl(&["lease", "grant", "600"]));
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    let (status, dir) = s.stop();
    assert!(status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("shutting down: finishing in-flight requests") && log.contains("stopped"), "{log}");
    let s = Server::start_in(dir, &[]);
    assert_eq!(stdout(&s.etcdctl(&["get", "durable"])), "durable\nyes\n");
    assert_shape(
        &stdout(&s.etcdctl(&["lease", "timetolive", &id])),
        &format!(r"lease {id} granted with TTL\(600s\), remaining\(\d+s\)\n"),
    );
}

#[test]
fn config_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("concord.toml");
    std::fs::write(&file, "name = \"from-file\"\nmax-request-bytes = 1024\n").unwrap();
    let s = Server::start_in(dir, &["--config-file", file.to_str().unwrap()]);
    let members = stdout(&s.etcdctl(&["member", "list"]));
    assert!(members.contains(", from-file, "), "{members}");
    let big = "x".repeat(2000);
    let out = s.etcdctl(&["put", "k", &big]);
    assert!(stderr(&out).contains("etcdserver: request is too large"), "{}", stderr(&out));

    let bad = tempfile::tempdir().unwrap();
    let bad_file = bad.path().join("bad.toml");
    std::fs::write(&bad_file, "no-such-setting = 1\n").unwrap();
    let out = common::run_bounded(Command::new(env!("CARGO_BIN_EXE_concord")).args([
        "serve",
        "--config-file",
        bad_file.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown field `no-such-setting`"), "{}", stderr(&out));
}

#[test]
fn health_and_metrics_endpoints() {
    let s = Server::start();
    s.etcdctl(&["put", "a", "1"]);
    s.etcdctl(&["lease", "grant", "60"]);
    s.etcdctl(&["put", "--lease=63", "b", "1"]);
    let (code, body) = http_get(&s.metrics, "/health").unwrap();
    assert_eq!((code, body.as_str()), (200, "{\"health\":\"true\"}\n"));
    let (code, metrics) = http_get(&s.metrics, "/metrics").unwrap();
    assert_eq!(code, 200);
    for needle in [
        "concord_grpc_requests_total{rpc=\"Put\",code=\"OK\"} 1",
        "concord_grpc_requests_total{rpc=\"Put\",code=\"NotFound\"} 1",
        "concord_grpc_requests_total{rpc=\"LeaseGrant\",code=\"OK\"} 1",
        "concord_commit_latency_seconds_count 2",
        "concord_fsync_latency_seconds_count",
        "concord_active_leases 1",
        "concord_keys 1",
        "concord_revision 2",
    ] {
        assert!(metrics.contains(needle), "missing {needle:?} in:\n{metrics}");
    }
    let (code, _) = http_get(&s.metrics, "/nope").unwrap();
    assert_eq!(code, 404);
    // The same endpoints on the client URL, beside gRPC, as etcd serves them.
    let (code, body) = http_get(&s.endpoint, "/health").unwrap();
    assert_eq!((code, body.as_str()), (200, "{\"health\":\"true\"}\n"));
    let (code, metrics) = http_get(&s.endpoint, "/metrics").unwrap();
    assert!(code == 200 && metrics.contains("concord_revision 2"), "{metrics}");
}

#[test]
fn help_explains_every_serve_flag() {
    let out = common::run_bounded(Command::new(env!("CARGO_BIN_EXE_concord")).args(["serve", "--help"]));
    let help = stdout(&out);
    for flag in [
        "--name",
        "--data-dir",
        "--listen-client-urls",
        "--advertise-client-urls",
        "--listen-metrics-urls",
        "--max-request-bytes",
        "--max-concurrent-streams",
        "--config-file",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn watch_subcommand_prints_changes() {
    let s = Server::start();
    s.etcdctl(&["put", "cfg/a", "1"]);
    let w = s.spawn_background(env!("CARGO_BIN_EXE_concord"), &["watch", "cfg/", "--prefix", "--rev", "1"]);
    assert_eq!(w.wait_lines(3), "PUT\ncfg/a\n1\n");
    s.etcdctl(&["put", "cfg/b", "2"]);
    s.etcdctl(&["del", "cfg/a"]);
    assert_eq!(w.wait_lines(9), "PUT\ncfg/a\n1\nPUT\ncfg/b\n2\nDELETE\ncfg/a\n\n");
    let j = s.spawn_background(env!("CARGO_BIN_EXE_concord"), &["watch", "cfg/b", "--rev", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(j.wait_lines(1).lines().next().unwrap()).unwrap();
    assert_eq!((v["type"].as_str(), v["key"].as_str(), v["value"].as_str()), (Some("PUT"), Some("cfg/b"), Some("2")));
}
