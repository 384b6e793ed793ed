//! etcd's JSON gateway on the client port, driven by the real curl and by
//! etcd3gw (a Python etcd client that speaks only the gateway). The shapes
//! asserted here are the ones etcd 3.4.23's gateway gives for the same
//! requests.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, b64, run_bounded};
use serde_json::Value;

/// `curl -X POST` of `body` to `path`: (HTTP status, the JSON answer).
fn post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    common::gateway_post(server, None, path, body)
}

/// etcd's error body and status for a refused request.
fn assert_error(answer: (u16, Value), status: u16, code: i64, message: &str) {
    let (got_status, body) = answer;
    assert_eq!(got_status, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["error"], message, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

#[test]
fn the_json_gateway_answers_as_etcds_does() {
    let server = Server::start();
    let (status, put) = post(&server, "/v3/kv/put", &format!(r#"{{"key":"{}","value":"{}"}}"#, b64("foo"), b64("bar")));
    assert_eq!(status, 200, "{put}");
    // 64-bit integers are strings; a field at its default is left out.
    let revision = put["header"]["revision"].as_str().expect("revision as a string").to_string();
    assert!(put["header"]["cluster_id"].is_string() && put["header"]["member_id"].is_string(), "{put}");

    let (status, range) = post(&server, "/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("foo")));
    assert_eq!(status, 200);
    assert_eq!(range["count"], "1", "{range}");
    let kv = &range["kvs"][0];
    assert_eq!((kv["key"].as_str(), kv["value"].as_str()), (Some("Zm9v"), Some("YmFy")), "{range}");
    assert_eq!((kv["create_revision"].as_str(), kv["version"].as_str()), (Some(revision.as_str()), Some("1")));
    assert!(kv.get("lease").is_none(), "no lease: left out: {kv}");
    // The older prefixes answer the same; lowerCamel names and integers
    // given as numbers are read too; unknown fields are ignored.
    for prefix in ["/v3beta", "/v3alpha"] {
        let (status, again) = post(&server, &format!("{prefix}/kv/range"), &format!(r#"{{"key":"{}"}}"#, b64("foo")));
        assert_eq!((status, &again["kvs"]), (200, &range["kvs"]));
    }
    let (_, keys_only) =
        post(&server, "/v3/kv/range", &format!(r#"{{"key":"{}","keysOnly":true,"limit":1,"other":1}}"#, b64("foo")));
    assert!(keys_only["kvs"][0].get("value").is_none(), "{keys_only}");
    let (_, missing) = post(&server, "/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("nothing")));
    assert!(missing.get("kvs").is_none() && missing.get("count").is_none(), "{missing}");

    // Refusals: the gRPC error's code and text, grpc-gateway's status.
    assert_error(
        post(&server, "/v3/kv/range", &format!(r#"{{"key":"{}","revision":"100"}}"#, b64("foo"))),
        400,
        11,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert_error(post(&server, "/v3/kv/range", "{}"), 400, 3, "etcdserver: key is not provided");
    assert_error(post(&server, "/v3/kv/range", ""), 400, 3, "etcdserver: key is not provided");
    let (status, malformed) = post(&server, "/v3/kv/range", r#"{"key":"#);
    assert_eq!((status, &malformed["code"]), (400, &Value::from(3)), "{malformed}");
    let (status, bad_base64) = post(&server, "/v3/kv/range", r#"{"key":"Zm9v!"}"#);
    assert_eq!((status, &bad_base64["code"]), (400, &Value::from(3)), "{bad_base64}");

    // Transactions.
    let txn = format!(
        r#"{{"compare":[{{"key":"{k}","target":"VERSION","result":"EQUAL","version":"1"}}],
            "success":[{{"request_put":{{"key":"{k}","value":"{v}"}}}},{{"request_range":{{"key":"{k}"}}}}]}}"#,
        k = b64("foo"),
        v = b64("baz")
    );
    let (status, txn) = post(&server, "/v3/kv/txn", &txn);
    assert_eq!(status, 200, "{txn}");
    assert_eq!(txn["succeeded"], true, "{txn}");
    assert_eq!(txn["responses"][1]["response_range"]["kvs"][0]["value"], b64("baz"), "{txn}");

    // Leases, under both of etcd's paths.
    let (status, grant) = post(&server, "/v3/lease/grant", r#"{"TTL":60}"#);
    assert_eq!((status, grant["TTL"].as_str()), (200, Some("60")), "{grant}");
    let id = grant["ID"].as_str().expect("lease ID as a string").to_string();
    let (status, _) =
        post(&server, "/v3/kv/put", &format!(r#"{{"key":"{}","value":"{}","lease":"{id}"}}"#, b64("leased"), b64("x")));
    assert_eq!(status, 200);
    let (_, ttl) = post(&server, "/v3/lease/timetolive", &format!(r#"{{"ID":"{id}","keys":true}}"#));
    assert_eq!((ttl["grantedTTL"].as_str(), &ttl["keys"]), (Some("60"), &serde_json::json!([b64("leased")])), "{ttl}");
    let (_, leases) = post(&server, "/v3/kv/lease/leases", "{}");
    assert_eq!(leases["leases"], serde_json::json!([{ "ID": id }]), "{leases}");
    // A keep-alive is a stream: one result per request in the body.
    let (status, kept) = post(&server, "/v3/lease/keepalive", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!((status, kept["result"]["TTL"].as_str()), (200, Some("60")), "{kept}");
    let (status, _) = post(&server, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(status, 200);
    assert_error(
        post(&server, "/v3/kv/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#)),
        404,
        5,
        "etcdserver: requested lease not found",
    );
    let (_, gone) = post(&server, "/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("leased")));
    assert!(gone.get("kvs").is_none(), "revoked with its lease: {gone}");

    // Deletion and compaction.
    let (_, deleted) = post(&server, "/v3/kv/deleterange", &format!(r#"{{"key":"{}","prev_kv":true}}"#, b64("foo")));
    assert_eq!((deleted["deleted"].as_str(), &deleted["prev_kvs"][0]["value"]), (Some("1"), &Value::from(b64("baz"))));
    let (status, _) = post(&server, "/v3/kv/compaction", &format!(r#"{{"revision":"{revision}"}}"#));
    assert_eq!(status, 200);

    // Maintenance and cluster.
    let (_, status_answer) = post(&server, "/v3/maintenance/status", "{}");
    assert_eq!(status_answer["version"], "3.4.0", "{status_answer}");
    assert!(status_answer["dbSize"].is_string() && status_answer["raftIndex"].is_string(), "{status_answer}");
    let (_, members) = post(&server, "/v3/cluster/member/list", "{}");
    assert_eq!(members["members"][0]["name"], "default", "{members}");
    assert!(members["members"][0]["clientURLs"][0].is_string(), "{members}");

    // What gateway clients read first to pick the prefix.
    let version =
        run_bounded(Command::new("curl").args(["-s", "-m", "10", &format!("http://{}/version", server.endpoint)]));
    let version: Value = serde_json::from_slice(&version.stdout).unwrap();
    assert_eq!(version["etcdcluster"], "3.4.0");
    // The gateway takes POST only.
    let get = run_bounded(Command::new("curl").args([
        "-s",
        "-m",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{}/v3/kv/range", server.endpoint),
    ]));
    assert_eq!(String::from_utf8_lossy(&get.stdout), "405");
}

/// `curl -N` in the background, killed when dropped.
struct Streaming {
    child: Child,
    out: std::path::PathBuf,
}

impl Streaming {
    fn lines(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(Instant::now() < deadline, "expected {n} lines, got {text:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_watch_over_the_gateway_streams_results_and_stays_open() {
    let server = Server::start();
    let out = server.dir.path().join("watch.out");
    let body = format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64("w"));
    let child = Command::new("curl")
        .args(["-s", "-N", "-m", "30", "-X", "POST", "-d", &body, &format!("http://{}/v3/watch", server.endpoint)])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut watch = Streaming { child, out };
    assert_eq!(watch.lines(1)[0]["result"]["created"], true);
    post(&server, "/v3/kv/put", &format!(r#"{{"key":"{}","value":"{}"}}"#, b64("w"), b64("one")));
    post(&server, "/v3/kv/deleterange", &format!(r#"{{"key":"{}"}}"#, b64("w")));
    let lines = watch.lines(3);
    let put = &lines[1]["result"]["events"][0];
    assert!(put.get("type").is_none(), "a PUT is the default type, left out: {put}");
    assert_eq!(put["kv"]["value"], b64("one"));
    let delete = &lines[2]["result"]["events"][0];
    assert_eq!((delete["type"].as_str(), delete["kv"]["key"].as_str()), (Some("DELETE"), Some(b64("w").as_str())));
    // The request body ended long ago: the watch is still open, as etcd's.
    std::thread::sleep(Duration::from_millis(300));
    assert!(watch.child.try_wait().unwrap().is_none(), "the watch stream ended with the request body");
}

/// etcd3gw (from PyPI, installed by scripts/test) runs its usual calls —
/// put, get, create, replace, prefixes, leases with keys, watch, delete,
/// members — against Concord through the gateway.
#[test]
fn etcd3gw_drives_concord_through_the_gateway() {
    let server = Server::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/etcd3gw_check.py");
    let out = run_bounded(Command::new("python3").arg(script).arg(&server.endpoint));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "etcd3gw against Concord failed (scripts/test installs etcd3gw with pip):\n{stdout}\n{stderr}"
    );
}

/// Values up to the request limit go through the gateway (in base64, a
/// third bigger than the limit, and past axum's default 2 MiB body limit
/// with the JSON around it); a bigger one gets etcd's refusal.
#[test]
fn large_values_go_through_the_gateway_up_to_the_request_limit() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let put = |bytes: usize| {
        let body = dir.path().join("body.json");
        let value = "v".repeat(bytes);
        std::fs::write(&body, format!(r#"{{"key":"{}","value":"{}"}}"#, b64("big"), b64(&value))).unwrap();
        let url = format!("http://{}/v3/kv/put", server.endpoint);
        let data = format!("@{}", body.display());
        let out = run_bounded(Command::new("curl").args([
            "-s",
            "-m",
            "10",
            "-w",
            "\n%{http_code}",
            "--data-binary",
            &data,
            &url,
        ]));
        let text = String::from_utf8(out.stdout).unwrap();
        let (json, code) = text.rsplit_once('\n').unwrap();
        (code.parse::<u16>().unwrap(), serde_json::from_str::<Value>(json).unwrap_or(Value::String(json.into())))
    };
    let (status, taken) = put(1_572_850);
    assert_eq!(status, 200, "{taken}");
    let (status, refused) = put(1_600_000);
    assert_eq!((status, &refused["message"]), (400, &Value::from("etcdserver: request is too large")), "{refused}");
}

/// With auth enabled, a gateway client authenticates and sends the token
/// in the `Authorization` header (as with etcd's gateway).
#[test]
fn the_gateway_takes_the_token_in_the_authorization_header() {
    let server = Server::start();
    for args in [&["user", "add", "root", "--new-user-password=pw"][..], &["auth", "enable"]] {
        let out = server.etcdctl(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let key = format!(r#"{{"key":"{}"}}"#, b64("k"));
    let (status, anonymous) = post(&server, "/v3/kv/range", &key);
    assert_eq!((status, &anonymous["message"]), (400, &Value::from("etcdserver: user name is empty")));
    let (status, auth) = post(&server, "/v3/auth/authenticate", r#"{"name":"root","password":"pw"}"#);
    assert_eq!(status, 200, "{auth}");
    let token = auth["token"].as_str().unwrap();
    let url = format!("http://{}/v3/kv/range", server.endpoint);
    let header = format!("Authorization: {token}");
    let out = run_bounded(Command::new("curl").args(["-s", "-m", "10", "-X", "POST", "-H", &header, "-d", &key, &url]));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer["header"]["revision"].is_string(), "{answer}");
    let (status, bad) = post(&server, "/v3/auth/authenticate", r#"{"name":"root","password":"no"}"#);
    assert_eq!(
        (status, &bad["message"]),
        (400, &Value::from("etcdserver: authentication failed, invalid user ID or password"))
    );
}
