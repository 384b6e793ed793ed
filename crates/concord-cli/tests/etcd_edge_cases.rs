//! etcd behaviour at the edges, each test named after a difference from
//! etcd that was found and fixed: stream shutdown, empty watch keys, watch id
//! reuse, MemberList's header and URLs, LeaseLeases and Status sizes.

mod common;

use std::time::{Duration, Instant};

use common::{Server, stdout};
use concord_etcd::pb::etcdserverpb as pb;
use concord_etcd::pb::etcdserverpb::watch_client::WatchClient;
use tokio_stream::StreamExt;

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "etcdctl failed: {}\n{}", stdout(&out), common::stderr(&out));
    stdout(&out)
}

/// `concord serve` kept running after SIGTERM while any watch or keep-alive
/// stream was open.
#[test]
fn sigterm_ends_open_watch_and_keep_alive_streams() {
    let s = Server::start();
    let granted = ok(s.etcdctl(&["lease", "grant", "60"]));
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    let _watch = s.spawn_background(common::etcdctl_path(), &["watch", "w"]);
    let keep = s.spawn_background(common::etcdctl_path(), &["lease", "keep-alive", &id]);
    keep.wait_lines(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::http_get(&s.metrics, "/metrics").unwrap().1.contains("rpc=\"Watch\",code=\"OK\"") {
        assert!(Instant::now() < deadline, "etcdctl watch never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = Instant::now();
    let (status, _dir) = s.stop();
    assert!(status.success(), "exit status {status:?}");
    // Streams end at once; the grace period is for unary requests.
    assert!(asked.elapsed() < Duration::from_secs(8), "took {:?} to stop", asked.elapsed());
}

/// `etcdctl watch ""` was refused ("key is not provided"); etcd watches
/// `\0`, and with `--prefix` every key.
#[test]
fn an_empty_watch_key_is_nul_as_in_etcd() {
    let s = Server::start();
    let all = s.spawn_background(common::etcdctl_path(), &["watch", "", "--prefix"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::http_get(&s.metrics, "/metrics").unwrap().1.contains("rpc=\"Watch\",code=\"OK\"") {
        assert!(Instant::now() < deadline, "the empty-key watch was not created");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(s.etcdctl(&["put", "anything", "1"]));
    assert_eq!(all.wait_lines(3), "PUT\nanything\n1\n");
}

fn create(id: i64, key: &str, start_revision: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.as_bytes().to_vec().into(),
            start_revision,
            watch_id: id,
            ..Default::default()
        })),
    }
}

async fn next(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no watch response within 10 s")
        .expect("stream ended")
        .expect("stream failed")
}

/// A watch that ended (canceled for compaction) kept its id, so creating a
/// watch with that id again was refused as a duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn a_finished_watch_frees_its_id() {
    let s = Server::start();
    for v in ["1", "2", "3"] {
        ok(s.etcdctl(&["put", "k", v]));
    }
    ok(s.etcdctl(&["compact", "3"]));
    let mut client = WatchClient::connect(format!("http://{}", s.endpoint)).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut stream = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(create(7, "k", 2)).await.unwrap();
    let created = next(&mut stream).await;
    assert!(created.created && created.watch_id == 7);
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled && canceled.compact_revision == 3, "{canceled:?}");
    // Same id, a valid start (exactly the compaction revision, as etcd allows).
    tx.send(create(7, "k", 3)).await.unwrap();
    let again = next(&mut stream).await;
    assert!(again.created && !again.canceled, "the id of a finished watch was refused: {again:?}");
    let events = next(&mut stream).await;
    let revisions: Vec<i64> = events.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect();
    assert_eq!(revisions, [3, 4]);
}

/// Watches per stream were unbounded (each costs a task and a buffer).
#[tokio::test(flavor = "multi_thread")]
async fn watches_per_stream_are_bounded() {
    let s = Server::start();
    let max = concord_etcd::watch::MAX_WATCHES_PER_STREAM;
    let mut client = WatchClient::connect(format!("http://{}", s.endpoint)).await.unwrap();
    let requests = (0..=max).map(|i| create(0, &format!("k{i}"), 0));
    let mut stream = client.watch(tokio_stream::iter(requests)).await.unwrap().into_inner();
    for i in 0..max {
        let resp = next(&mut stream).await;
        assert!(resp.created && !resp.canceled, "watch {i} was refused: {resp:?}");
    }
    let refused = next(&mut stream).await;
    assert!(refused.created && refused.canceled, "{refused:?}");
    assert!(refused.cancel_reason.contains("too many watches"), "{}", refused.cancel_reason);
}

/// MemberList's header carried a store revision (etcd sends none) and the
/// member had no peer URLs.
#[test]
fn member_list_has_etcds_header_and_peer_urls() {
    let s = Server::start();
    ok(s.etcdctl(&["put", "k", "v"]));
    let json: serde_json::Value = serde_json::from_str(&ok(s.etcdctl(&["member", "list", "-w", "json"]))).unwrap();
    assert!(json["header"].get("revision").is_none(), "{json}");
    assert_eq!(json["members"][0]["peerURLs"][0], "http://localhost:2380");
    let custom = Server::start_with(&["--initial-advertise-peer-urls=http://127.0.0.1:12380"]);
    let json: serde_json::Value = serde_json::from_str(&ok(custom.etcdctl(&["member", "list", "-w", "json"]))).unwrap();
    assert_eq!(json["members"][0]["peerURLs"][0], "http://127.0.0.1:12380");
}

/// Status.db_size counted only the log file, not the snapshot file.
#[test]
fn status_db_size_counts_every_data_file() {
    let s = Server::start();
    ok(s.etcdctl(&["put", "k", "v"]));
    let json: serde_json::Value = serde_json::from_str(&ok(s.etcdctl(&["endpoint", "status", "-w", "json"]))).unwrap();
    let reported = json[0]["Status"]["dbSize"].as_u64().unwrap();
    // The redb files and the log's segment files.
    let files: u64 = std::fs::read_dir(s.data_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            e.file_name().to_string_lossy().ends_with(".redb") || e.file_name().to_string_lossy().ends_with(".wal")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        std::fs::read_dir(s.data_dir()).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".wal"))
    );
    assert_eq!(reported, files);
}

/// LeaseLeases hid anonymous (per-key TTL) leases, whose ids do appear on keys.
#[tokio::test(flavor = "multi_thread")]
async fn lease_leases_lists_anonymous_leases() {
    let dir = tempfile::tempdir().unwrap();
    let db = concord::Concord::open(dir.path()).await.unwrap();
    let put = db.kv().put("session", "x").ttl(30).await.unwrap();
    let anonymous = put.lease.expect("a ttl put has a lease");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(concord_etcd::serve(
        db.clone(),
        listener,
        concord_etcd::ServerOptions::default(),
        concord_etcd::Metrics::new(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut c = etcd_client::Client::connect([addr.to_string()], None).await.unwrap();
    let leases = c.leases().await.unwrap();
    let ids: Vec<i64> = leases.leases().iter().map(|l| l.id()).collect();
    assert_eq!(ids, vec![anonymous]);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    db.shutdown().await.unwrap();
}

/// Runs a client against `endpoint` exactly as given (bounded).
fn client_at(program: &str, endpoint: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(program);
    cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).arg("--command-timeout=10s").args(args);
    common::run_bounded(&mut cmd)
}

/// `--endpoints=http://host:port` (the form deployments and health probes
/// use) failed for `endpoint status` / `hashkv`: the HTTP/2 layer reset
/// requests whose `:authority` was the whole URI. Every command the README
/// shows, through that form, with etcdctl and with `concord`.
#[test]
fn every_readme_command_works_with_http_endpoints() {
    let s = Server::start();
    let url = format!("http://{}", s.endpoint);
    let etcdctl = |args: &[&str]| ok(client_at(common::etcdctl_path(), &url, args));
    assert_eq!(etcdctl(&["put", "foo", "bar"]), "OK\n");
    assert_eq!(etcdctl(&["get", "foo"]), "foo\nbar\n");
    let granted = etcdctl(&["lease", "grant", "30"]);
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(etcdctl(&["put", &format!("--lease={id}"), "session/a", "alive"]), "OK\n");
    assert!(etcdctl(&["lease", "timetolive", "--keys", &id]).contains("attached keys([session/a])"));
    let status = etcdctl(&["endpoint", "status", "-w", "table"]);
    assert!(status.contains(&url) && status.contains("3.4.0"), "{status}");
    assert!(etcdctl(&["endpoint", "hashkv"]).starts_with(&url));
    let health = client_at(common::etcdctl_path(), &url, &["endpoint", "health"]);
    assert!(health.status.success(), "{}", common::stderr(&health));
    // A watch runs until stopped: read its output, then kill it.
    let out_path = s.dir.path().join("http-watch.out");
    let mut watch = std::process::Command::new(common::etcdctl_path())
        .env("ETCDCTL_API", "3")
        .args([format!("--endpoints={url}").as_str(), "watch", "--prefix", "session/", "--rev=1"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&out_path).unwrap().lines().count() < 3 {
        assert!(Instant::now() < deadline, "the watch printed nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "PUT\nsession/a\nalive\n");

    let concord = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_concord"));
        cmd.args(args).arg(format!("--endpoints={url}"));
        let out = common::run_bounded(&mut cmd);
        assert!(out.status.success(), "concord {args:?}: {}", common::stderr(&out));
        stdout(&out)
    };
    let granted = concord(&["lease", "grant", "30"]);
    let id2 = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(concord(&["put", "svc/a", "10.0.0.1", "--lease", &id2]), "OK\n");
    assert!(concord(&["lease", "info", &id2]).contains("attached keys([svc/a])"));
    assert!(concord(&["lease", "keep-alive", &id2, "--once"]).contains("keepalived"));
    assert!(concord(&["lease", "list"]).contains(&id2));
    assert!(concord(&["lease", "revoke", &id2]).contains("revoked"));
    assert_eq!(concord(&["get", "svc/", "--prefix"]), "");
    assert_eq!(concord(&["del", "foo"]), "1\n");
}
