//! `concord serve` started the way etcd 3.4 is: etcd's flags in etcd's
//! spellings, `ETCD_*` variables, several client URLs; and the settings
//! Concord cannot honour refused at start, with the reason.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, stderr, stdout};

#[test]
fn an_etcd_command_line_and_environment_start_a_member() {
    let (a, b) = (common::free_port(), common::free_port());
    let urls = format!("http://127.0.0.1:{a},http://127.0.0.1:{b}");
    let mut server = Server::spawn_in_env(
        tempfile::tempdir().unwrap(),
        &[
            "--listen-peer-urls=http://127.0.0.1:0",
            &format!("--listen-client-urls={urls}"),
            &format!("--advertise-client-urls={urls}"),
            "--client-cert-auth=false",
            "--snapshot-count=50",
            "--max-txn-ops=2",
            "--logger=zap",
            "--enable-v2=false",
            "--experimental-initial-corrupt-check=true",
        ],
        &[
            ("ETCD_NAME", "named-by-env"),
            ("ETCD_AUTO_COMPACTION_MODE", "revision"),
            ("ETCD_AUTO_COMPACTION_RETENTION", "5"),
        ],
    );
    server.wait_ready();
    let etcdctl = |port: u16, args: &[&str]| {
        let mut cmd = Command::new(common::etcdctl_path());
        cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints=http://127.0.0.1:{port}")).args(args);
        common::run_bounded(&mut cmd)
    };
    // Both client URLs serve.
    assert_eq!(stdout(&etcdctl(a, &["put", "k", "0"])), "OK\n");
    assert_eq!(stdout(&etcdctl(b, &["get", "k", "--print-value-only"])), "0\n");
    let members = stdout(&etcdctl(b, &["member", "list"]));
    assert!(members.contains("named-by-env") && members.contains(&urls), "{members}");
    // --max-txn-ops=2.
    let two = server.etcdctl_stdin(&["txn"], Some("\nput x 1\nput y 2\n\n\n"));
    assert!(two.status.success(), "{}", stderr(&two));
    let three = server.etcdctl_stdin(&["txn"], Some("\nput x 1\nput y 2\nput z 3\n\n\n"));
    assert!(stderr(&three).contains("etcdserver: too many operations in txn request"), "{}", stderr(&three));
    // Revision-mode compaction keeping 5 revisions, from ETCD_* variables.
    for i in 1..=20 {
        assert_eq!(stdout(&etcdctl(a, &["put", "k", &i.to_string()])), "OK\n");
    }
    let start = Instant::now();
    loop {
        let old = etcdctl(a, &["get", "k", "--rev=3"]);
        if stderr(&old).contains("required revision has been compacted") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "revision-mode compaction never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.log();
    assert!(log.contains("--logger=zap has no effect"), "{log}");
    assert!(!log.contains("--enable-v2"), "a false switch is not worth a note: {log}");
}

/// What Concord cannot honour stops the start, saying why; nothing opens.
#[test]
fn settings_concord_cannot_honour_are_refused_at_start() {
    let refused = |args: &[&str], env: &[(&str, &str)], expected: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_concord"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls=http://127.0.0.1:0")
            .arg("--listen-peer-urls=http://127.0.0.1:0")
            .args(args)
            .envs(env.iter().copied());
        let out = common::run_bounded(&mut cmd);
        assert!(!out.status.success(), "{args:?} {env:?} started");
        assert!(stderr(&out).contains(expected), "{args:?} {env:?}: {}", stderr(&out));
        assert!(!dir.path().join("data").exists(), "{args:?}: a data directory was created");
    };
    refused(&["--peer-crl-file=/etc/etcd/peer.crl"], &[], "--peer-trusted-ca-file only");
    refused(&[], &[("ETCD_PEER_AUTO_TLS", "true")], "--peer-trusted-ca-file only");
    refused(
        &["--listen-peer-urls=https://127.0.0.1:0", "--initial-advertise-peer-urls=https://127.0.0.1:1"],
        &[],
        "--peer-cert-file, --peer-key-file) must be provided",
    );
    refused(&["--force-new-cluster"], &[], "restore one member from a snapshot");
    refused(&["--wal-dir=/wal"], &[], "a separate WAL directory is not supported");
    refused(&["--unsafe-no-fsync=true"], &[], "every acknowledged write is fsynced");
    refused(&["--auto-compaction-mode=revision", "--auto-compaction-retention=1h"], &[], "not a number of revisions");
    refused(&["--config-file=/etc/etcd/etcd.conf.yml"], &[], "YAML config files are not read");
    refused(&["--no-such-flag"], &[], "unexpected argument");
}
