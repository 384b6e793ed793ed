//! Smoke test of every workload, as CI runs it: small totals against a
//! real gRPC server on loopback (the same `serve` that `concord serve`
//! runs, on a real data directory). Every run must complete with zero
//! errors; no timing is asserted.

use std::process::Command;

use concord::Config;
use concord_etcd::{Metrics, ServerOptions};

fn bench(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_concord-bench"))
        .args(["--endpoints", endpoint, "--json"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run concord-bench");
    // Bounded: a wedged run fails the test instead of hanging it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("concord-bench {args:?} did not finish within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "concord-bench {args:?} failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    report
}

#[test]
fn every_workload_completes_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let db = rt.block_on(Config::new(dir.path()).open()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(concord_etcd::serve(db.clone(), listener, ServerOptions::default(), Metrics::new(), async {
        let _ = stopped.await;
    }));

    let small = ["--clients", "8", "--total", "400", "--key-space", "100"];
    for workload in [
        &["put"][..],
        &["range", "--consistency", "l"],
        &["range", "--consistency", "s"],
        &["txn-put"],
        &["mixed"],
        &["lease-grant"],
    ] {
        let report = bench(&endpoint, &[&small[..], workload].concat());
        assert_eq!(report["completed"], 400, "{report}");
    }
    let keepalive = bench(&endpoint, &["--clients", "4", "--total", "200", "lease-keepalive", "--leases", "20"]);
    assert_eq!(keepalive["completed"], 200);
    let revoke = bench(&endpoint, &["lease-revoke", "--keys", "300", "--repeat", "2"]);
    assert_eq!(revoke["completed"], 2);
    let expiry = bench(&endpoint, &["--clients", "4", "lease-expiry", "--leases", "20", "--ttl", "1"]);
    assert_eq!(expiry["completed"], 20, "every lease expired, none early: {expiry}");
    let watch = bench(&endpoint, &["--clients", "4", "--total", "200", "watch", "--watchers", "5"]);
    assert_eq!(watch["completed"], 200);

    let _ = stop.send(());
    rt.block_on(server).unwrap().unwrap();
    rt.block_on(db.shutdown()).unwrap();
}
