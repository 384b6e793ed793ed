//! The authorization matrix (issue 22): every RPC of every service Concord
//! serves — enumerated from the proto descriptors the server is built from,
//! not from a list kept here — called by every kind of caller, over gRPC,
//! over the JSON gateway and through a follower, and checked against the
//! one rule `concord_etcd::authz::RULES` declares for it.
//!
//! The matrix fails when a served RPC has no rule (or no request here to
//! call it with), so an RPC added later cannot ship unguarded. The answers
//! expected are etcd 3.4's codes and texts, except where Concord goes
//! beyond it (alarms need root; listing a lease's keys needs read on them).
//!
//! Callers: no token; a stale token (its user's password changed since);
//! alice, who may read and write `e/` only, acting on `secret/` (not
//! permitted) and on `e/` (permitted); root. Requests target keys whose
//! start is in the scope but whose end may pass it (`--from-key`, wider
//! prefixes): a check on the start key alone fails the matrix.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::{Server, b64, start_cluster};
use concord_etcd::authz::{RULES, Rule, SERVED_SERVICES};
use concord_etcd::gateway::RawCodec;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use serde_json::{Value, json};
use tonic::Code;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Stale,
    Unprivileged,
    Permitted,
    Root,
}

/// The longest a call may take (the server's own request timeout is 5 s).
const CALL_LIMIT: Duration = Duration::from_secs(15);

const EVERYONE: [Who; 5] = [Who::Anonymous, Who::Stale, Who::Unprivileged, Who::Permitted, Who::Root];

/// How a call ended: through authorization (answered, or refused for a
/// reason that is not authorization's), or refused.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Passed(String),
    Refused(Code, String),
}

/// What the rule says the call must end as (`None`: passes).
fn expected(rule: Rule, who: Who) -> Option<(Code, &'static str)> {
    use Who::*;
    const EMPTY: (Code, &str) = (Code::InvalidArgument, "etcdserver: user name is empty");
    const INVALID: (Code, &str) = (Code::Unauthenticated, "etcdserver: invalid auth token");
    const DENIED: (Code, &str) = (Code::PermissionDenied, "etcdserver: permission denied");
    match (rule, who) {
        (Rule::Open, _) => None,
        (Rule::Unimplemented, _) => Some((Code::Unimplemented, "")),
        (_, Root) => None,
        (Rule::Authenticated | Rule::KeyRead | Rule::KeyWrite | Rule::Root, Anonymous) => Some(EMPTY),
        (Rule::Authenticated | Rule::KeyRead | Rule::KeyWrite | Rule::Root, Stale) => Some(INVALID),
        (Rule::Authenticated, _) | (Rule::KeyRead | Rule::KeyWrite, Permitted) => None,
        (Rule::KeyRead | Rule::KeyWrite | Rule::Root, _) => Some(DENIED),
        (Rule::MaintenanceRoot | Rule::AlarmChange, Anonymous) => Some((Code::Unknown, "auth: user name is empty")),
        (Rule::MaintenanceRoot | Rule::AlarmChange, Stale) => Some((Code::Unknown, "auth: invalid auth token")),
        (Rule::MaintenanceRoot | Rule::AlarmChange, _) => Some((Code::Unknown, "auth: permission denied")),
    }
}

/// One member's endpoint, with the tokens its own `Authenticate` issued.
struct Member {
    endpoint: String,
    channel: tonic::transport::Channel,
    stale: String,
    alice: String,
    root: String,
}

impl Member {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anonymous => None,
            Who::Stale => Some(&self.stale),
            Who::Unprivileged | Who::Permitted => Some(&self.alice),
            Who::Root => Some(&self.root),
        }
    }
}

/// The matrix's state: the descriptors and a counter for fresh names.
struct Matrix {
    pool: DescriptorPool,
    next: u64,
    checked: u64,
}

impl Matrix {
    fn method(&self, name: &str) -> MethodDescriptor {
        let (service, method) = name.rsplit_once('.').unwrap();
        self.pool.get_service_by_name(service).unwrap().methods().find(|m| m.name() == method).unwrap()
    }

    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// As root on `m`: a lease with `key` attached.
    async fn lease_with(&mut self, m: &Member, key: &str) -> i64 {
        let grant = grpc(m, &self.method("etcdserverpb.Lease.LeaseGrant"), json!({"TTL": 600}), Some(&m.root)).await;
        let Outcome::Passed(grant) = grant else { panic!("{grant:?}") };
        let id: i64 = serde_json::from_str::<Value>(&grant).unwrap()["ID"].as_str().unwrap().parse().unwrap();
        let put = json!({"key": b64(key), "value": b64("v"), "lease": id.to_string()});
        let put = grpc(m, &self.method("etcdserverpb.KV.Put"), put, Some(&m.root)).await;
        assert!(matches!(put, Outcome::Passed(_)), "{put:?}");
        id
    }

    /// The request `who` sends to `method` (`None`: this test has none,
    /// which fails the matrix). `scope` is `e/` for a permitted caller,
    /// `secret/` otherwise.
    async fn request(&mut self, m: &Member, method: &str, who: Who) -> Option<Value> {
        let scope = if who == Who::Permitted { "e/" } else { "secret/" };
        let n = self.fresh();
        let key = |suffix: &str| b64(format!("{scope}{suffix}"));
        // The end of the permitted prefix `e/` is `e0`.
        let end = b64(if who == Who::Permitted { "e0" } else { "secret0" });
        Some(match method {
            "etcdserverpb.KV.Range" | "etcdserverpb.KV.RangeStream" => {
                // Unprivileged: starts at a key alice may read, ends past it.
                if who == Who::Permitted {
                    json!({"key": key(""), "range_end": end})
                } else {
                    json!({"key": b64("e/"), "range_end": b64("\0")})
                }
            }
            "etcdserverpb.KV.Put" => json!({"key": key(&format!("put{n}")), "value": b64("v")}),
            "etcdserverpb.KV.DeleteRange" => {
                if who == Who::Permitted {
                    json!({"key": key(""), "range_end": end})
                } else {
                    json!({"key": b64("e/"), "range_end": b64("f")})
                }
            }
            "etcdserverpb.KV.Txn" => json!({
                "compare": [{"key": b64("e/c"), "target": "VERSION", "result": "EQUAL", "version": "0"}],
                "success": [{"request_put": {"key": b64("e/ok"), "value": b64("v")}}],
                "failure": [{"request_delete_range": {"key": key("")}}],
            }),
            "etcdserverpb.KV.Compact" => json!({"revision": "1"}),
            "etcdserverpb.Watch.Watch" => {
                if who == Who::Permitted {
                    json!({"create_request": {"key": key(""), "range_end": end}})
                } else {
                    json!({"create_request": {"key": b64("e/"), "range_end": b64("\0")}})
                }
            }
            "etcdserverpb.Lease.LeaseGrant" => json!({"TTL": 60}),
            "etcdserverpb.Lease.LeaseRevoke" => {
                let id = self.lease_with(m, &format!("{scope}leased{n}")).await;
                json!({"ID": id.to_string()})
            }
            "etcdserverpb.Lease.LeaseKeepAlive" => json!({"ID": "12345"}),
            "etcdserverpb.Lease.LeaseTimeToLive" => {
                let id = self.lease_with(m, &format!("{scope}leased{n}")).await;
                json!({"ID": id.to_string(), "keys": true})
            }
            "etcdserverpb.Lease.LeaseLeases" => json!({}),
            "etcdserverpb.Cluster.MemberAdd" => {
                json!({"peerURLs": [format!("http://127.0.0.1:{}", common::free_port())], "isLearner": true})
            }
            "etcdserverpb.Cluster.MemberRemove" | "etcdserverpb.Cluster.MemberPromote" => json!({"ID": "1"}),
            "etcdserverpb.Cluster.MemberUpdate" => json!({"ID": "1", "peerURLs": ["http://127.0.0.1:1"]}),
            "etcdserverpb.Cluster.MemberList" => json!({}),
            // Raising "no alarm": authorized like any raise, changes nothing.
            "etcdserverpb.Maintenance.Alarm" => json!({"action": "ACTIVATE", "alarm": "NONE"}),
            "etcdserverpb.Maintenance.Status"
            | "etcdserverpb.Maintenance.Defragment"
            | "etcdserverpb.Maintenance.Hash"
            | "etcdserverpb.Maintenance.Snapshot"
            | "etcdserverpb.Maintenance.Downgrade" => json!({}),
            "etcdserverpb.Maintenance.HashKV" => json!({"revision": "0"}),
            "etcdserverpb.Maintenance.MoveLeader" => json!({"targetID": "1"}),
            // Already enabled: root's enable answers as etcd's does.
            "etcdserverpb.Auth.AuthEnable" | "etcdserverpb.Auth.AuthStatus" => json!({}),
            // Disabling would end the matrix: a caller that passes is
            // checked by the auth tests; here it is sent by those refused.
            "etcdserverpb.Auth.AuthDisable" => return (who != Who::Root).then(|| json!({})),
            "etcdserverpb.Auth.Authenticate" => json!({"name": "alice", "password": "wrong"}),
            "etcdserverpb.Auth.UserAdd" => json!({"name": format!("user{n}"), "password": "pw"}),
            "etcdserverpb.Auth.UserGet" => json!({"name": "alice"}),
            "etcdserverpb.Auth.UserList" | "etcdserverpb.Auth.RoleList" => json!({}),
            "etcdserverpb.Auth.UserDelete" => json!({"name": format!("nobody{n}")}),
            "etcdserverpb.Auth.UserChangePassword" => json!({"name": format!("nobody{n}"), "password": "x"}),
            "etcdserverpb.Auth.UserGrantRole" => json!({"user": format!("nobody{n}"), "role": "app"}),
            "etcdserverpb.Auth.UserRevokeRole" => json!({"name": format!("nobody{n}"), "role": "app"}),
            "etcdserverpb.Auth.RoleAdd" => json!({"name": format!("role{n}")}),
            "etcdserverpb.Auth.RoleGet" => json!({"role": "app"}),
            "etcdserverpb.Auth.RoleDelete" => json!({"role": format!("norole{n}")}),
            "etcdserverpb.Auth.RoleGrantPermission" => {
                json!({"name": format!("norole{n}"), "perm": {"permType": "READ", "key": b64("x")}})
            }
            "etcdserverpb.Auth.RoleRevokePermission" => json!({"role": format!("norole{n}"), "key": b64("x")}),
            "v3lockpb.Lock.Lock" => json!({"name": key(&format!("lock{n}"))}),
            "v3lockpb.Lock.Unlock" => json!({"key": key(&format!("lock{n}/1"))}),
            "v3electionpb.Election.Campaign" => json!({"name": key(&format!("vote{n}")), "value": b64("me")}),
            // A leader key under the caller's scope; the name claims `e/`
            // (Proclaim and Resign must check the key itself).
            "v3electionpb.Election.Proclaim" => json!({
                "leader": {"name": b64(format!("e/vote{n}")), "key": key("admin"), "rev": "1"},
                "value": b64("HACKED"),
            }),
            "v3electionpb.Election.Resign" => {
                json!({"leader": {"name": b64(format!("e/vote{n}")), "key": key("admin"), "rev": "1"}})
            }
            "v3electionpb.Election.Leader" | "v3electionpb.Election.Observe" => {
                json!({"name": key(&format!("vote{n}"))})
            }
            _ => return None,
        })
    }
}

/// A first answer that refuses in-band (a watch cancelled at creation).
fn in_band(answer: &Value) -> Option<Outcome> {
    let reason = answer.get("cancelReason").or_else(|| answer.get("cancel_reason"))?.as_str()?;
    let code = if reason.contains("permission denied") { Code::PermissionDenied } else { Code::Unknown };
    Some(Outcome::Refused(code, reason.to_string()))
}

/// Calls `method` on `m` over gRPC with `body`; a stream's first answer.
async fn grpc(m: &Member, method: &MethodDescriptor, body: Value, token: Option<&str>) -> Outcome {
    let input = DynamicMessage::deserialize(method.input(), body).expect("the request matches the descriptor");
    let path: tonic::codegen::http::uri::PathAndQuery =
        format!("/{}/{}", method.parent_service().full_name(), method.name()).parse().unwrap();
    let mut grpc = tonic::client::Grpc::new(m.channel.clone());
    grpc.ready().await.unwrap();
    fn with_token<T>(mut request: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
        if let Some(token) = token {
            request.metadata_mut().insert("token", token.parse().unwrap());
        }
        request
    }
    let decode = |bytes: Bytes| {
        let answer = DynamicMessage::decode(method.output(), bytes).unwrap();
        serde_json::to_value(&answer).unwrap()
    };
    let message = Bytes::from(input.encode_to_vec());
    if !method.is_client_streaming() && !method.is_server_streaming() {
        return match grpc.unary(with_token(tonic::Request::new(message), token), path, RawCodec).await {
            Ok(answer) => Outcome::Passed(decode(answer.into_inner()).to_string()),
            Err(status) => Outcome::Refused(status.code(), status.message().to_string()),
        };
    }
    let answers = if method.is_client_streaming() {
        // The request stream stays open, as a client's would.
        let requests = tokio_stream::StreamExt::chain(tokio_stream::iter([message]), tokio_stream::pending());
        grpc.streaming(with_token(tonic::Request::new(requests), token), path, RawCodec).await
    } else {
        grpc.server_streaming(with_token(tonic::Request::new(message), token), path, RawCodec).await
    };
    let answers = match answers {
        Ok(answers) => answers,
        Err(status) => return Outcome::Refused(status.code(), status.message().to_string()),
    };
    let mut answers = answers.into_inner();
    match tokio::time::timeout(Duration::from_secs(2), answers.message()).await {
        // Still waiting (an election with no leader yet): nothing refused it.
        Err(_) => Outcome::Passed("(waiting)".into()),
        Ok(Err(status)) => Outcome::Refused(status.code(), status.message().to_string()),
        Ok(Ok(None)) => Outcome::Passed("(ended)".into()),
        Ok(Ok(Some(answer))) => {
            let answer = decode(answer);
            in_band(&answer).unwrap_or(Outcome::Passed(answer.to_string()))
        }
    }
}

/// POSTs `body` to the gateway `path` on `endpoint`; the first JSON answer
/// (a stream's first line).
fn gateway(endpoint: &str, path: &str, body: &Value, token: Option<&str>) -> Outcome {
    let mut stream = TcpStream::connect(endpoint).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream.set_write_timeout(Some(CALL_LIMIT)).unwrap();
    let body = body.to_string();
    let auth = token.map(|t| format!("Authorization: {t}\r\n")).unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    // Enough to hold the head and a first full JSON line, or the end.
    loop {
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
            let payload = if chunked { dechunk(rest) } else { rest.to_string() };
            if let Some(line) = payload.lines().find(|l| l.trim_start().starts_with('{'))
                && let Ok(answer) = serde_json::from_str::<Value>(line)
            {
                let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return gateway_outcome(status, answer);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!("{path}: the gateway closed without an answer: {text:?}"),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            // A stream with nothing to say yet: nothing refused it.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Outcome::Passed("(waiting)".into());
            }
            Err(e) => panic!("{path}: {e}"),
        }
    }
}

/// The payload of a chunked body received so far.
fn dechunk(mut rest: &str) -> String {
    let mut payload = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            payload.push_str(&after[..after.len().min(size)]);
            break;
        }
        payload.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    payload
}

fn gateway_outcome(status: u16, answer: Value) -> Outcome {
    let code = |n: &Value| Code::from_i32(n.as_i64().unwrap() as i32);
    if status != 200 {
        return Outcome::Refused(code(&answer["code"]), answer["message"].as_str().unwrap().to_string());
    }
    if let Some(error) = answer.get("error") {
        return Outcome::Refused(code(&error["grpc_code"]), error["message"].as_str().unwrap().to_string());
    }
    let result = answer.get("result").cloned().unwrap_or(answer);
    in_band(&result).unwrap_or(Outcome::Passed(result.to_string()))
}

/// Whether `outcome` is what `rule` wants for `who`.
fn check(rule: Rule, who: Who, outcome: &Outcome) -> Result<(), String> {
    match (expected(rule, who), outcome) {
        (None, Outcome::Passed(_)) => Ok(()),
        // A refusal that is not authorization's (a member that does not
        // exist, a wrong password) still means the call got through.
        (None, Outcome::Refused(_, message)) if !is_auth_refusal(message) => Ok(()),
        (Some((Code::Unimplemented, _)), Outcome::Refused(Code::Unimplemented, _)) => Ok(()),
        (Some((code, message)), Outcome::Refused(got, text)) if *got == code && text == message => Ok(()),
        (want, got) => Err(format!("{rule:?} as {who:?}: expected {want:?}, got {got:?}")),
    }
}

fn is_auth_refusal(message: &str) -> bool {
    message.starts_with("auth: ")
        || [
            "etcdserver: user name is empty",
            "etcdserver: invalid auth token",
            "etcdserver: permission denied",
            "etcdserver: revision of auth store is old",
        ]
        .contains(&message)
}

/// Every method of the served services, from the descriptors.
fn served_methods(pool: &DescriptorPool) -> Vec<String> {
    let mut methods = Vec::new();
    for service in SERVED_SERVICES {
        let service = pool.get_service_by_name(service).unwrap_or_else(|| panic!("{service} is not in the protos"));
        methods.extend(service.methods().map(|m| m.full_name().to_string()));
    }
    methods
}

/// root, alice (read-write on `e/`), auth enabled; keys in and out of
/// alice's scope.
fn set_up(server: &Server) {
    let etcdctl = |args: &[&str]| {
        let out = server.etcdctl(args);
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
    };
    etcdctl(&["user", "add", "root", "--new-user-password=rootpw"]);
    etcdctl(&["user", "add", "alice", "--new-user-password=alicepw"]);
    etcdctl(&["role", "add", "app"]);
    etcdctl(&["role", "grant-permission", "app", "readwrite", "e/", "--prefix"]);
    etcdctl(&["user", "grant-role", "alice", "app"]);
    etcdctl(&["put", "e/k", "alice's"]);
    etcdctl(&["put", "other", "secret"]);
    etcdctl(&["put", "secret/admin", "root's"]);
    etcdctl(&["auth", "enable"]);
}

async fn authenticate(channel: &tonic::transport::Channel, name: &str, password: &str) -> String {
    let mut auth = concord_etcd::pb::etcdserverpb::auth_client::AuthClient::new(channel.clone());
    let request = concord_etcd::pb::etcdserverpb::AuthenticateRequest { name: name.into(), password: password.into() };
    auth.authenticate(request).await.unwrap().into_inner().token
}

/// A member's endpoint with fresh tokens, and a stale one for alice.
async fn member(endpoint: &str, alice_password: &str, stale: String) -> Member {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{endpoint}")).unwrap().connect().await.unwrap();
    let alice = authenticate(&channel, "alice", alice_password).await;
    let root = authenticate(&channel, "root", "rootpw").await;
    Member { endpoint: endpoint.to_string(), channel, stale, alice, root }
}

/// Runs every served RPC with every caller on `m`, over gRPC and the
/// gateway; the failures.
async fn run(matrix: &mut Matrix, m: &Member, via_gateway: bool) -> Vec<String> {
    let paths: Vec<(String, String)> = concord_etcd::gateway::http_paths(&matrix.pool)
        .into_iter()
        .map(|(path, method)| (method.full_name().to_string(), path))
        .collect();
    let mut failures = Vec::new();
    for method in served_methods(&matrix.pool) {
        let Some(rule) = concord_etcd::authz::rule(&method) else {
            failures.push(format!("{method}: no rule in concord_etcd::authz::RULES"));
            continue;
        };
        let descriptor = matrix.method(&method);
        for who in EVERYONE {
            let Some(body) = matrix.request(m, &method, who).await else {
                if method != "etcdserverpb.Auth.AuthDisable" {
                    failures.push(format!("{method}: the matrix has no request for it"));
                }
                continue;
            };
            eprintln!("{method} as {who:?} ({})", if via_gateway { "gateway" } else { "gRPC" });
            let outcome = if via_gateway {
                let Some((_, path)) = paths.iter().find(|(name, _)| *name == method) else { continue };
                gateway(&m.endpoint, path, &body, m.token(who))
            } else {
                let call = grpc(m, &descriptor, body, m.token(who));
                tokio::time::timeout(CALL_LIMIT, call)
                    .await
                    .unwrap_or_else(|_| Outcome::Refused(Code::DeadlineExceeded, "no answer in time".into()))
            };
            matrix.checked += 1;
            if let Err(e) = check(rule, who, &outcome) {
                failures.push(format!("{method} ({}): {e}", if via_gateway { "gateway" } else { "gRPC" }));
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_kind_of_caller_as_its_rule_says() {
    let pool = DescriptorPool::decode(concord_etcd::DESCRIPTORS).unwrap();
    // The table names only RPCs that exist, each once.
    let served: BTreeSet<String> = served_methods(&pool).into_iter().collect();
    let ruled: BTreeSet<String> = RULES.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(ruled.len(), RULES.len(), "an RPC has two rules");
    let unknown: Vec<_> = ruled.difference(&served).collect();
    assert!(unknown.is_empty(), "rules for RPCs that are not served: {unknown:?}");

    let (servers, _) = start_cluster(3);
    set_up(&servers[0]);
    let leader = servers
        .iter()
        .position(|s| {
            let out = s.etcdctl(&["--user=root:rootpw", "endpoint", "status", "-w", "json"]);
            let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            status[0]["Status"]["leader"] == status[0]["Status"]["header"]["member_id"]
        })
        .expect("a leader");
    let follower = (leader + 1) % servers.len();
    let mut matrix = Matrix { pool, next: 0, checked: 0 };

    // Stale tokens: alice's, from before her password changed.
    let mut stale = Vec::new();
    for s in &servers {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap();
        stale.push(authenticate(&channel, "alice", "alicepw").await);
    }
    let passwd = ["--user=root:rootpw", "user", "passwd", "alice", "--interactive=false"];
    let out = servers[0].etcdctl_stdin(&passwd, Some("alicepw2\n"));
    assert!(out.status.success(), "{}", common::stderr(&out));
    // Every member applied the change before the matrix runs.
    for s in &servers {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.etcdctl(&["--user=alice:alicepw2", "get", "e/k"]).status.code() != Some(0) {
            assert!(std::time::Instant::now() < deadline, "the password change did not reach {}", s.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let mut failures = Vec::new();
    let on_leader = member(&servers[leader].endpoint, "alicepw2", stale[leader].clone()).await;
    failures.extend(run(&mut matrix, &on_leader, false).await);
    failures.extend(run(&mut matrix, &on_leader, true).await);
    let on_follower = member(&servers[follower].endpoint, "alicepw2", stale[follower].clone()).await;
    failures.extend(run(&mut matrix, &on_follower, false).await);
    failures.extend(run(&mut matrix, &on_follower, true).await);

    // Nothing alice could not touch changed.
    let out = servers[0].etcdctl(&["--user=root:rootpw", "get", "", "--from-key"]);
    let all = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(all.contains("secret/admin\nroot's\n") && all.contains("other\nsecret\n"), "{all}");
    assert!(!all.contains("HACKED"), "{all}");
    drop(servers);
    assert!(matrix.checked > 400, "only {} calls checked", matrix.checked);
    assert!(
        failures.is_empty(),
        "{} of {} calls broke their rule:\n{}",
        failures.len(),
        matrix.checked,
        failures.join("\n")
    );
}
