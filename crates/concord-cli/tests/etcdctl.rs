//! The real etcdctl 3.4 against a real `concord serve`: outputs must have
//! the shapes of shared/reference/etcdctl-3.4.23-transcript.txt (ids and
//! revisions aside).

mod common;

use std::time::Duration;

use common::{Server, assert_shape, stderr, stdout};

const ID: &str = "[0-9a-f]{16}";

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "etcdctl failed: {}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

#[test]
fn put_get_del_with_prefixes_and_revisions() {
    let s = Server::start();
    assert_eq!(ok(s.etcdctl(&["put", "foo", "bar"])), "OK\n");
    let rev_bar = s.etcdctl(&["get", "foo", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&ok(rev_bar)).unwrap();
    let rev = json["header"]["revision"].as_i64().unwrap();
    assert_eq!(json["kvs"][0]["key"], "Zm9v");
    assert_eq!(json["count"], 1);
    assert_eq!(ok(s.etcdctl(&["get", "foo"])), "foo\nbar\n");
    assert_eq!(ok(s.etcdctl(&["get", "nosuchkey"])), "");
    assert_eq!(ok(s.etcdctl(&["put", "--prev-kv", "foo", "zzz"])), "OK\nfoo\nbar\n");
    assert_eq!(ok(s.etcdctl(&["get", "foo", &format!("--rev={rev}")])), "foo\nbar\n");
    ok(s.etcdctl(&["put", "k", "v"]));
    ok(s.etcdctl(&["put", "k2", "v2"]));
    assert_eq!(ok(s.etcdctl(&["get", "--prefix", "", "--keys-only"])), "foo\n\nk\n\nk2\n\n");
    assert_eq!(ok(s.etcdctl(&["get", "--prefix", "k"])), "k\nv\nk2\nv2\n");
    let fields = ok(s.etcdctl(&["get", "--prefix", "k", "-w", "fields"]));
    assert_shape(
        &fields,
        r#""ClusterID" : \d+
"MemberID" : \d+
"Revision" : \d+
"RaftTerm" : \d+
"Key" : "k"
"CreateRevision" : \d+
"ModRevision" : \d+
"Version" : 1
"Value" : "v"
"Lease" : 0
"Key" : "k2"
"CreateRevision" : \d+
"ModRevision" : \d+
"Version" : 1
"Value" : "v2"
"Lease" : 0
"More" : false
"Count" : 2
"#,
    );
    let limited = ok(s.etcdctl(&["get", "--from-key", "a", "-w", "json", "--limit", "1"]));
    let json: serde_json::Value = serde_json::from_str(&limited).unwrap();
    assert_eq!(json["kvs"].as_array().unwrap().len(), 1);
    assert_eq!(json["count"], 3);
    assert_eq!(json["more"], true);
    let sorted = ok(s.etcdctl(&["get", "--prefix", "", "--sort-by=MODIFY", "--order=DESCEND", "--keys-only"]));
    assert_eq!(sorted, "k2\n\nk\n\nfoo\n\n");
    assert_eq!(ok(s.etcdctl(&["del", "k2"])), "1\n");
    assert_eq!(ok(s.etcdctl(&["del", "missing"])), "0\n");
    assert_eq!(ok(s.etcdctl(&["del", "--prefix", ""])), "2\n");
    assert_eq!(ok(s.etcdctl(&["get", "--prefix", ""])), "");
}

#[test]
fn txn_success_and_failure() {
    let s = Server::start();
    ok(s.etcdctl(&["put", "foo", "bar"]));
    let txn = "value(\"foo\") = \"bar\"\n\nput txnkey yes\n\nput txnkey no\n\n";
    assert_eq!(ok(s.etcdctl_stdin(&["txn"], Some(txn))), "SUCCESS\n\nOK\n");
    assert_eq!(ok(s.etcdctl(&["get", "txnkey"])), "txnkey\nyes\n");
    let txn = "value(\"foo\") = \"other\"\n\nput txnkey yes\n\nput txnkey no\n\n";
    assert_eq!(ok(s.etcdctl_stdin(&["txn"], Some(txn))), "FAILURE\n\nOK\n");
    assert_eq!(ok(s.etcdctl(&["get", "txnkey"])), "txnkey\nno\n");
    // (etcdctl 3.4 itself cannot parse a lease("k") compare, so none here.)
    let txn = "version(\"txnkey\") > \"1\"\nmod(\"foo\") > \"0\"\n\nget txnkey\ndel foo\n\n\n";
    assert_eq!(ok(s.etcdctl_stdin(&["txn"], Some(txn))), "SUCCESS\n\ntxnkey\nno\n\n1\n");
}

#[test]
fn compaction_refuses_old_revisions() {
    let s = Server::start();
    for v in ["1", "2", "3"] {
        ok(s.etcdctl(&["put", "foo", v]));
    }
    assert_eq!(ok(s.etcdctl(&["compact", "3"])), "compacted revision 3\n");
    let out = s.etcdctl(&["get", "foo", "--rev=2"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Error: etcdserver: mvcc: required revision has been compacted"), "{}", stderr(&out));
    assert_eq!(ok(s.etcdctl(&["get", "foo", "--rev=3"])), "foo\n2\n");
}

#[test]
fn lease_grant_attach_timetolive_keepalive_list_revoke() {
    let s = Server::start();
    let granted = ok(s.etcdctl(&["lease", "grant", "10"]));
    assert_shape(&granted, &format!(r"lease {ID} granted with TTL\(10s\)\n"));
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(ok(s.etcdctl(&["put", &format!("--lease={id}"), "k", "v"])), "OK\n");
    assert_eq!(ok(s.etcdctl(&["put", &format!("--lease={id}"), "k2", "v2"])), "OK\n");
    assert_shape(
        &ok(s.etcdctl(&["lease", "timetolive", &id])),
        &format!(r"lease {id} granted with TTL\(10s\), remaining\((9|10)s\)\n"),
    );
    assert_shape(
        &ok(s.etcdctl(&["lease", "timetolive", "--keys", &id])),
        &format!(r"lease {id} granted with TTL\(10s\), remaining\((9|10)s\), attached keys\(\[k k2\]\)\n"),
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(s.etcdctl(&["lease", "timetolive", "--keys", "-w", "json", &id]))).unwrap();
    assert_eq!(json["granted-ttl"], 10);
    assert_eq!(json["keys"], serde_json::json!(["aw==", "azI="]));
    assert_eq!(ok(s.etcdctl(&["lease", "list"])), format!("found 1 leases\n{id}\n"));
    assert_eq!(ok(s.etcdctl(&["lease", "keep-alive", "--once", &id])), format!("lease {id} keepalived with TTL(10)\n"));
    let json: serde_json::Value = serde_json::from_str(&ok(s.etcdctl(&["get", "k", "-w", "json"]))).unwrap();
    assert_eq!(json["kvs"][0]["lease"].as_i64().unwrap(), i64::from_str_radix(&id, 16).unwrap());
    assert_eq!(ok(s.etcdctl(&["lease", "revoke", &id])), format!("lease {id} revoked\n"));
    assert_eq!(ok(s.etcdctl(&["lease", "timetolive", &id])), format!("lease {id} already expired\n"));
    assert_eq!(ok(s.etcdctl(&["get", "--prefix", "k"])), "");
    let json: serde_json::Value =
        serde_json::from_str(&ok(s.etcdctl(&["lease", "timetolive", "-w", "json", "1234"]))).unwrap();
    assert_eq!(
        (json["id"].as_i64(), json["ttl"].as_i64(), json["granted-ttl"].as_i64()),
        (Some(4660), Some(-1), Some(0))
    );
    let grant_json: serde_json::Value =
        serde_json::from_str(&ok(s.etcdctl(&["lease", "grant", "10", "-w", "json"]))).unwrap();
    assert_eq!((grant_json["TTL"].as_i64(), grant_json["Error"].as_str()), (Some(10), Some("")));
}

#[test]
fn a_short_lease_expires_and_takes_its_keys() {
    let s = Server::start();
    let granted = ok(s.etcdctl(&["lease", "grant", "2"]));
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    ok(s.etcdctl(&["put", &format!("--lease={id}"), "eph", "x"]));
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(ok(s.etcdctl(&["lease", "timetolive", &id])), format!("lease {id} already expired\n"));
    assert_eq!(ok(s.etcdctl(&["get", "eph"])), "");
}

#[test]
fn errors_have_etcds_text_and_exit_code() {
    let s = Server::start();
    let out = s.etcdctl(&["put", "--lease=99", "k", "v"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).ends_with("Error: etcdserver: requested lease not found\n"), "{}", stderr(&out));
    assert_eq!(ok(s.etcdctl(&["get", "k"])), "", "nothing was written");
    let out = s.etcdctl(&["lease", "revoke", "99"]);
    assert!(stderr(&out).ends_with("(etcdserver: requested lease not found)\n"), "{}", stderr(&out));
    let out = s.etcdctl(&["lease", "grant", "9000000001"]);
    assert!(stderr(&out).contains("code = OutOfRange desc = etcdserver: too large lease TTL"), "{}", stderr(&out));
    assert!(stderr(&out).ends_with("(etcdserver: too large lease TTL)\n"), "{}", stderr(&out));
}

#[test]
fn endpoint_status_health_and_member_list() {
    let s = Server::start();
    let status = ok(s.etcdctl(&["endpoint", "status", "-w", "table"]));
    assert_shape(
        &status,
        &format!(
            r"\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+
\|\s+ENDPOINT\s+\|\s+ID\s+\|\s+VERSION\s+\|\s+DB SIZE\s+\|\s+IS LEADER\s+\|\s+IS LEARNER\s+\|\s+RAFT TERM\s+\|\s+RAFT INDEX\s+\|\s+RAFT APPLIED INDEX\s+\|\s+ERRORS\s+\|
\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+
\| {} \| {ID} \|\s+3\.4\.0 \|\s+\d+ kB \|\s+true \|\s+false \|\s+\d+ \|\s+\d+ \|\s+\d+ \|\s+\|
\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+
",
            regex::escape(&s.endpoint)
        ),
    );
    // etcdctl 3.4 prints the health line on stderr.
    let health = s.etcdctl(&["endpoint", "health"]);
    assert!(health.status.success());
    assert_shape(
        &stderr(&health),
        &format!(r"{} is healthy: successfully committed proposal: took = \S+\n", regex::escape(&s.endpoint)),
    );
    assert_shape(
        &ok(s.etcdctl(&["member", "list"])),
        &format!(r"{ID}, started, default, http://localhost:2380, http://{}, false\n", regex::escape(&s.endpoint)),
    );
}

/// `etcdctl defrag` after large deletes and a compaction gives the space
/// back: `endpoint status` shows the smaller DB SIZE, and its in-use part.
#[test]
fn defrag_after_large_deletes_shrinks_the_reported_size() {
    let s = Server::start();
    let value = "v".repeat(100 * 1024);
    for i in 0..60 {
        ok(s.etcdctl(&["put", &format!("big/{i:02}"), &value]));
    }
    ok(s.etcdctl(&["put", "kept", "yes"]));
    let sizes = || {
        let status: serde_json::Value =
            serde_json::from_str(&ok(s.etcdctl(&["endpoint", "status", "-w", "json"]))).unwrap();
        let status = &status[0]["Status"];
        (status["dbSize"].as_u64().unwrap(), status["dbSizeInUse"].as_u64().unwrap())
    };
    let (full, full_in_use) = sizes();
    assert!(full >= 60 * 100 * 1024 && full_in_use <= full, "{full} {full_in_use}");
    assert_eq!(ok(s.etcdctl(&["del", "big/", "--prefix"])), "60\n");
    let revision = ok(s.etcdctl(&["get", "kept", "-w", "json"]));
    let revision: serde_json::Value = serde_json::from_str(&revision).unwrap();
    let revision = revision["header"]["revision"].as_i64().unwrap().to_string();
    ok(s.etcdctl(&["compact", &revision]));
    assert_eq!(ok(s.etcdctl(&["defrag"])), format!("Finished defragmenting etcd member[{}]\n", s.endpoint));
    let (after, in_use) = sizes();
    assert!(after < full / 4, "DB SIZE {full} → {after} after deleting everything but one key");
    assert!(in_use <= after, "{in_use} > {after}");
    assert_eq!(ok(s.etcdctl(&["get", "kept", "--print-value-only"])), "yes\n");
    assert!(s.log().contains("finished defragmenting the data files"), "{}", s.log());
}

#[test]
fn watch_prints_puts_and_deletes_live_and_replayed() {
    let s = Server::start();
    let live = s.spawn_background(common::etcdctl_path(), &["watch", "w"]);
    // The watch is registered when the server counts it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !common::http_get(&s.metrics, "/metrics").unwrap().1.contains("rpc=\"Watch\",code=\"OK\"") {
        assert!(std::time::Instant::now() < deadline, "etcdctl watch never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(s.etcdctl(&["put", "w", "1"]));
    ok(s.etcdctl(&["put", "w", "2"]));
    ok(s.etcdctl(&["put", "other", "x"]));
    ok(s.etcdctl(&["del", "w"]));
    assert_eq!(live.wait_lines(8), "PUT\nw\n1\nPUT\nw\n2\nDELETE\nw\n\n");

    let replay = s.spawn_background(common::etcdctl_path(), &["watch", "--rev=1", "--prev-kv", "--prefix", "w"]);
    assert_eq!(replay.wait_lines(12), "PUT\nw\n1\nPUT\nw\n1\nw\n2\nDELETE\nw\n2\nw\n\n");

    let json = s.spawn_background(common::etcdctl_path(), &["watch", "-w", "json", "w", "--rev=1"]);
    let line = json.wait_lines(1);
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(v["Events"].as_array().unwrap().len(), 3);
    assert_eq!(v["Events"][2]["type"], 1);
    assert_eq!(v["Events"][2]["kv"]["mod_revision"], 5);

    ok(s.etcdctl(&["compact", "4"]));
    let out = s.etcdctl(&["watch", "w", "--rev=2"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"), "{all}");
    assert!(!out.status.success());
}
