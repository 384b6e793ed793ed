//! The space quota and the NOSPACE alarm, driven by the real etcdctl as an
//! operator meets them (texts as etcd 3.4.23 gives them for the same steps).

mod common;

use common::{Server, stderr, stdout};

const QUOTA: &str = "--quota-backend-bytes=1048576";
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "etcdctl failed: {}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn refused(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected a refusal, got: {}", stdout(&out));
    stderr(&out)
}

fn revision(s: &Server) -> i64 {
    let status: serde_json::Value = serde_json::from_str(&ok(s.etcdctl(&["get", "x", "-w", "json"]))).unwrap();
    status["header"]["revision"].as_i64().unwrap()
}

#[test]
fn past_the_quota_writes_are_refused_until_compaction_defrag_and_disarm() {
    let s = Server::start_with(&[QUOTA]);
    let value = "a".repeat(100_000);
    let mut written = 0;
    let mut refusal = None;
    for i in 0..20 {
        let out = s.etcdctl(&["put", &format!("k{i:02}"), &value]);
        if out.status.success() {
            written += 1;
        } else {
            refusal = Some(stderr(&out));
            break;
        }
    }
    // 1 MiB of quota holds five values of 100,000 bytes: each counts in
    // the state and in the log (etcd 3.4.23, which counts its database
    // file, takes nine).
    assert_eq!(written, 5, "writes taken before the quota");
    assert!(refusal.unwrap().contains(NO_SPACE));

    let status: serde_json::Value =
        serde_json::from_str(&ok(s.etcdctl(&["endpoint", "status", "-w", "json"]))).unwrap();
    let member = status[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    let alarm = format!("memberID:{member} alarm:NOSPACE \n");
    assert_eq!(ok(s.etcdctl(&["alarm", "list"])), alarm);
    assert_eq!(status[0]["Status"]["errors"][0].as_str(), Some(alarm.trim_end_matches('\n')));

    // Raised, it refuses what grows the store, however small, and keeps
    // refusing after a restart (it is replicated state).
    let (_, dir) = s.stop();
    let s = Server::start_in(dir, &[QUOTA]);
    assert_eq!(ok(s.etcdctl(&["alarm", "list"])), alarm);
    assert!(refused(s.etcdctl(&["put", "x", "y"])).contains(NO_SPACE));
    assert!(refused(s.etcdctl(&["lease", "grant", "10"])).contains(&format!("failed to grant lease ({NO_SPACE})")));
    let txn_put = s.etcdctl_stdin(&["txn"], Some("\nput x y\n\n\n"));
    assert!(refused(txn_put).contains(NO_SPACE));
    // Reads, deletes and read-only transactions are taken.
    assert_eq!(ok(s.etcdctl_stdin(&["txn"], Some("\nget k00 --keys-only\n\n\n"))), "SUCCESS\n\nk00\n\n");
    assert_eq!(ok(s.etcdctl(&["del", "--prefix", "k"])), "5\n");

    // Disarmed while the history and the log still hold the values: the
    // next write past the quota raises it again.
    assert_eq!(ok(s.etcdctl(&["alarm", "disarm"])), alarm);
    assert!(refused(s.etcdctl(&["put", "big", &value])).contains(NO_SPACE));
    assert_eq!(ok(s.etcdctl(&["alarm", "list"])), alarm);
    // etcd's procedure: compact (the values leave the history), defrag
    // (they leave the log: a snapshot, a purge), disarm. Writes are taken
    // again.
    let rev = revision(&s);
    ok(s.etcdctl(&["compact", &rev.to_string()]));
    let in_use = || {
        let status: serde_json::Value =
            serde_json::from_str(&ok(s.etcdctl(&["endpoint", "status", "-w", "json"]))).unwrap();
        status[0]["Status"]["dbSizeInUse"].as_u64().unwrap()
    };
    assert!(in_use() > 5 * 100_000, "the log still holds the values: {}", in_use());
    assert!(ok(s.etcdctl(&["defrag"])).starts_with("Finished defragmenting etcd member["));
    assert!(in_use() < 100_000, "defragmenting left {} bytes in use", in_use());
    assert_eq!(ok(s.etcdctl(&["alarm", "disarm"])), alarm);
    assert_eq!(ok(s.etcdctl(&["alarm", "list"])), "");
    assert_eq!(ok(s.etcdctl(&["put", "big", &value])), "OK\n");
    assert_eq!(ok(s.etcdctl(&["endpoint", "status", "-w", "json"])).matches("NOSPACE").count(), 0);
}
