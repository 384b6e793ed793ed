//! The authorization bypasses of issue 22, reproduced from outside as an
//! attacker would (etcdctl, curl on the JSON gateway, gRPC), each test
//! named after the hole it closes. root administers; alice may read and
//! write `e/` only; root's `secret/` holds what alice must not touch.

mod common;

use common::{Server, b64, stderr, stdout};
use concord_etcd::pb::etcdserverpb as pb;
use serde_json::Value;

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "etcdctl failed: {}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn refused(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected a refusal, got: {}", stdout(&out));
    stderr(&out)
}

/// root (rootpw), alice (alicepw, read-write on `e/`), `secret/admin`
/// written by root; auth enabled.
fn server() -> Server {
    let s = Server::start();
    for args in [
        &["user", "add", "root", "--new-user-password=rootpw"][..],
        &["user", "add", "alice", "--new-user-password=alicepw"],
        &["role", "add", "app"],
        &["role", "grant-permission", "app", "readwrite", "e/", "--prefix"],
        &["user", "grant-role", "alice", "app"],
        &["put", "secret/admin", "root's"],
        &["auth", "enable"],
    ] {
        ok(s.etcdctl(args));
    }
    s
}

/// `curl -X POST` to the gateway with `token`: (HTTP status, JSON).
fn post_as(s: &Server, token: &str, path: &str, body: &str) -> (u16, Value) {
    common::gateway_post(s, Some(token).filter(|t| !t.is_empty()), path, body)
}

fn gateway_token(s: &Server, user: &str, password: &str) -> String {
    let body = format!(r#"{{"name":"{user}","password":"{password}"}}"#);
    let (status, answer) = post_as(s, "", "/v3/auth/authenticate", &body);
    assert_eq!(status, 200, "{answer}");
    answer["token"].as_str().unwrap().to_string()
}

/// `message` carrying `token`.
fn with<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("token", token.parse().unwrap());
    request
}

fn secret_admin(s: &Server) -> (String, i64) {
    let out = ok(s.etcdctl(&["--user=root:rootpw", "get", "secret/admin", "-w", "json"]));
    let answer: Value = serde_json::from_str(&out).unwrap();
    let kv = &answer["kvs"][0];
    let value = String::from_utf8(common::b64_decode(kv["value"].as_str().unwrap())).unwrap();
    (value, kv["create_revision"].as_i64().unwrap())
}

#[test]
fn election_proclaim_and_resign_cannot_touch_a_key_outside_the_callers_permissions() {
    let s = server();
    let alice = gateway_token(&s, "alice", "alicepw");
    let (_, created) = secret_admin(&s);
    // The right create revision and a wrong one get the same answer:
    // nothing about the key is revealed.
    for rev in [created, created + 1] {
        let leader = format!(r#"{{"name":"{}","key":"{}","rev":"{rev}"}}"#, b64("e/x"), b64("secret/admin"));
        let proclaim = format!(r#"{{"leader":{leader},"value":"{}"}}"#, b64("HACKED"));
        let (status, answer) = post_as(&s, &alice, "/v3/election/proclaim", &proclaim);
        assert_eq!((status, answer["message"].as_str()), (403, Some("etcdserver: permission denied")), "{answer}");
        let (status, answer) = post_as(&s, &alice, "/v3/election/resign", &format!(r#"{{"leader":{leader}}}"#));
        assert_eq!((status, answer["message"].as_str()), (403, Some("etcdserver: permission denied")), "{answer}");
    }
    assert_eq!(secret_admin(&s), ("root's".to_string(), created));
    // Her own election works.
    let (status, campaign) = post_as(
        &s,
        &alice,
        "/v3/election/campaign",
        &format!(r#"{{"name":"{}","value":"{}"}}"#, b64("e/x"), b64("me")),
    );
    assert_eq!(status, 200, "{campaign}");
    let proclaim = format!(r#"{{"leader":{},"value":"{}"}}"#, campaign["leader"], b64("still me"));
    assert_eq!(post_as(&s, &alice, "/v3/election/proclaim", &proclaim).0, 200);
    assert_eq!(post_as(&s, &alice, "/v3/election/resign", &format!(r#"{{"leader":{}}}"#, campaign["leader"])).0, 200);
}

#[test]
fn a_lease_revoke_needs_write_on_every_attached_key() {
    let s = server();
    let granted = ok(s.etcdctl(&["--user=root:rootpw", "lease", "grant", "600"]));
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    ok(s.etcdctl(&["--user=root:rootpw", "put", "secret/leased", "v", &format!("--lease={id}")]));
    let text = refused(s.etcdctl(&["--user=alice:alicepw", "lease", "revoke", &id]));
    assert!(text.contains("etcdserver: permission denied"), "{text}");
    assert_eq!(ok(s.etcdctl(&["--user=root:rootpw", "get", "secret/leased", "--print-value-only"])), "v\n");
}

#[test]
fn lease_timetolive_keys_lists_keys_only_to_a_caller_who_may_read_them() {
    let s = server();
    let granted = ok(s.etcdctl(&["--user=root:rootpw", "lease", "grant", "600"]));
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    ok(s.etcdctl(&["--user=root:rootpw", "put", "secret/leased", "v", &format!("--lease={id}")]));
    // CVE-2023-32082: with --keys, alice is refused; without, she sees the TTL.
    let text = refused(s.etcdctl(&["--user=alice:alicepw", "lease", "timetolive", &id, "--keys"]));
    assert!(text.contains("etcdserver: permission denied") && !text.contains("secret/"), "{text}");
    let out = ok(s.etcdctl(&["--user=alice:alicepw", "lease", "timetolive", &id]));
    assert!(out.contains("remaining") && !out.contains("secret/"), "{out}");
    let out = ok(s.etcdctl(&["--user=root:rootpw", "lease", "timetolive", &id, "--keys"]));
    assert!(out.contains("secret/leased"), "{out}");
}

/// Maintenance calls with root's token from before `user passwd root`:
/// refused, as every other call is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_root_token_cannot_take_a_backup_after_roots_password_changed() {
    let s = server();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap();
    let mut auth = pb::auth_client::AuthClient::new(channel.clone());
    let login = |password: &str| pb::AuthenticateRequest { name: "root".into(), password: password.into() };
    let old = auth.authenticate(login("rootpw")).await.unwrap().into_inner().token;
    let mut maintenance = pb::maintenance_client::MaintenanceClient::new(channel);
    maintenance.hash_kv(with(&old, pb::HashKvRequest { revision: 0 })).await.unwrap();

    ok(s.etcdctl_stdin(&["--user=root:rootpw", "user", "passwd", "root", "--interactive=false"], Some("new\n")));
    let refused = maintenance.snapshot(with(&old, pb::SnapshotRequest {})).await.unwrap_err();
    assert_eq!((refused.code(), refused.message()), (tonic::Code::Unknown, "auth: invalid auth token"));
    let refused = maintenance.hash_kv(with(&old, pb::HashKvRequest { revision: 0 })).await.unwrap_err();
    assert_eq!((refused.code(), refused.message()), (tonic::Code::Unknown, "auth: invalid auth token"));
    let new = auth.authenticate(login("new")).await.unwrap().into_inner().token;
    maintenance.hash_kv(with(&new, pb::HashKvRequest { revision: 0 })).await.unwrap();

    // A user deleted and added again under the same name inherits nothing.
    let alice = auth.authenticate(pb::AuthenticateRequest { name: "alice".into(), password: "alicepw".into() });
    let alice = alice.await.unwrap().into_inner().token;
    ok(s.etcdctl(&["--user=root:new", "user", "delete", "alice"]));
    ok(s.etcdctl(&["--user=root:new", "user", "add", "alice", "--new-user-password=other"]));
    let mut kv = pb::kv_client::KvClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap(),
    );
    let refused = kv.range(with(&alice, pb::RangeRequest { key: "e/x".into(), ..Default::default() })).await;
    let refused = refused.unwrap_err();
    assert_eq!((refused.code(), refused.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
}

#[test]
fn a_range_whose_end_passes_the_callers_grant_is_refused() {
    let s = server();
    ok(s.etcdctl(&["--user=root:rootpw", "put", "other", "secret"]));
    ok(s.etcdctl(&["--user=alice:alicepw", "put", "e/k", "mine"]));
    for args in [
        &["get", "e/", "--from-key"][..],
        &["get", "e/", "f"],
        &["get", "e", "--prefix"],
        &["del", "e/", "--from-key"],
        &["watch", "e/", "f"],
        &["watch", "e", "--prefix"],
    ] {
        let args = [&["--user=alice:alicepw"][..], args].concat();
        let out = s.etcdctl(&args);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains("permission denied"), "{args:?}: {text}");
        assert!(!text.contains("secret"), "{args:?} leaked: {text}");
    }
    assert_eq!(ok(s.etcdctl(&["--user=alice:alicepw", "get", "e/", "--prefix", "--print-value-only"])), "mine\n");
    assert_eq!(ok(s.etcdctl(&["--user=root:rootpw", "get", "other", "--print-value-only"])), "secret\n");
}

/// A stream keeps its credentials, not just its user's name: once the
/// token is ended (its user's password changed), the stream can create no
/// watch and renew no lease, though it was opened while the token was good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_loses_its_rights_when_its_token_ends() {
    use tokio_stream::wrappers::ReceiverStream;
    let s = server();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap();
    let mut auth = pb::auth_client::AuthClient::new(channel.clone());
    let login = pb::AuthenticateRequest { name: "alice".into(), password: "alicepw".into() };
    let token = auth.authenticate(login).await.unwrap().into_inner().token;

    let (watches, requests) = tokio::sync::mpsc::channel(4);
    let mut watch = pb::watch_client::WatchClient::new(channel.clone());
    let mut answers = watch.watch(with(&token, ReceiverStream::new(requests))).await.unwrap().into_inner();
    let create = |key: &str, end: &str| pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.as_bytes().to_vec().into(),
            range_end: end.as_bytes().to_vec().into(),
            ..Default::default()
        })),
    };
    watches.send(create("e/", "e0")).await.unwrap();
    let first = answers.message().await.unwrap().unwrap();
    assert!(first.created && !first.canceled, "{first:?}");

    let (renewals, renewal_requests) = tokio::sync::mpsc::channel(4);
    let mut lease = pb::lease_client::LeaseClient::new(channel.clone());
    let granted = lease.lease_grant(with(&token, pb::LeaseGrantRequest { ttl: 60, id: 0 })).await.unwrap().into_inner();
    let mut kept =
        lease.lease_keep_alive(with(&token, ReceiverStream::new(renewal_requests))).await.unwrap().into_inner();
    renewals.send(pb::LeaseKeepAliveRequest { id: granted.id }).await.unwrap();
    assert_eq!(kept.message().await.unwrap().unwrap().ttl, 60);

    ok(s.etcdctl_stdin(&["--user=root:rootpw", "user", "passwd", "alice", "--interactive=false"], Some("new\n")));
    watches.send(create("e/", "e0")).await.unwrap();
    let refused = answers.message().await.unwrap().unwrap();
    assert!(refused.created && refused.canceled, "{refused:?}");
    assert_eq!(refused.cancel_reason, "etcdserver: invalid auth token");
    renewals.send(pb::LeaseKeepAliveRequest { id: granted.id }).await.unwrap();
    let ended = kept.message().await.unwrap_err();
    assert_eq!((ended.code(), ended.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
}
