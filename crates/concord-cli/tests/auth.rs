//! Authentication and authorization end to end with the real etcdctl (its
//! outputs and etcd's refusals, as etcd 3.4.23 gives them for the same
//! commands), tokens over gRPC, and python-etcd3 as a second client.

mod common;

use common::{Server, stderr, stdout};
use concord_etcd::pb::etcdserverpb as pb;

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "etcdctl failed: {}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn refused(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected a refusal, got: {}", stdout(&out));
    let text = stderr(&out);
    text.lines().filter(|l| l.starts_with("Error:")).collect::<Vec<_>>().join("\n")
}

/// `etcdctl --user=NAME:PASSWORD ARGS`.
fn as_user(s: &Server, user: &str, args: &[&str]) -> std::process::Output {
    let user = format!("--user={user}");
    s.etcdctl(&[&[user.as_str()][..], args].concat())
}

/// Adds `users` (`(name, password)`, root among them) and turns auth on.
fn enable_auth(s: &Server, users: &[(&str, &str)]) {
    for (name, password) in users {
        ok(s.etcdctl(&["user", "add", name, &format!("--new-user-password={password}")]));
    }
    ok(s.etcdctl(&["auth", "enable"]));
}

/// A gRPC channel to the server.
async fn grpc(s: &Server) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", s.endpoint)).unwrap().connect().await.unwrap()
}

#[test]
fn users_roles_and_permissions_as_etcdctl_sees_them() {
    let s = Server::start();
    assert_eq!(ok(s.etcdctl(&["user", "add", "root", "--new-user-password=rootpw"])), "User root created\n");
    assert_eq!(ok(s.etcdctl(&["user", "add", "alice", "--new-user-password=a"])), "User alice created\n");
    assert_eq!(ok(s.etcdctl(&["user", "add", "bob", "--new-user-password=b"])), "User bob created\n");
    assert_eq!(ok(s.etcdctl(&["role", "add", "app"])), "Role app created\n");
    assert_eq!(ok(s.etcdctl(&["role", "add", "reader"])), "Role reader created\n");
    assert_eq!(
        ok(s.etcdctl(&["role", "grant-permission", "app", "readwrite", "app/", "--prefix"])),
        "Role app updated\n"
    );
    assert_eq!(
        ok(s.etcdctl(&["role", "grant-permission", "reader", "read", "app/", "--prefix"])),
        "Role reader updated\n"
    );
    assert_eq!(ok(s.etcdctl(&["user", "grant-role", "alice", "app"])), "Role app is granted to user alice\n");
    assert_eq!(ok(s.etcdctl(&["user", "grant-role", "bob", "reader"])), "Role reader is granted to user bob\n");
    assert_eq!(
        refused(s.etcdctl(&["user", "add", "alice", "--new-user-password=x"])),
        "Error: etcdserver: user name already exists"
    );
    assert_eq!(refused(s.etcdctl(&["user", "grant-role", "alice", "nope"])), "Error: etcdserver: role name not found");
    assert_eq!(ok(s.etcdctl(&["put", "app/k", "v0"])), "OK\n");
    assert_eq!(ok(s.etcdctl(&["put", "other", "x"])), "OK\n");
    // etcdctl adds the root role and grants it to root before enabling.
    assert_eq!(ok(s.etcdctl(&["auth", "enable"])), "Authentication Enabled\n");
    assert_eq!(
        ok(s.etcdctl(&["--user=root:rootpw", "role", "get", "app"])),
        "Role app\nKV Read:\n\t[app/, app0) (prefix app/)\nKV Write:\n\t[app/, app0) (prefix app/)\n"
    );
    assert_eq!(ok(s.etcdctl(&["--user=root:rootpw", "user", "get", "alice"])), "User: alice\nRoles: app\n");

    // No credentials, wrong ones, or not enough permission.
    assert_eq!(refused(s.etcdctl(&["get", "app/k"])), "Error: etcdserver: user name is empty");
    assert_eq!(
        refused(as_user(&s, "alice:wrong", &["get", "app/k"])),
        "Error: etcdserver: authentication failed, invalid user ID or password"
    );
    // The matrix: alice reads and writes app/, bob only reads it, neither
    // touches anything else; root does everything.
    assert_eq!(ok(as_user(&s, "alice:a", &["put", "app/k", "v1"])), "OK\n");
    assert_eq!(ok(as_user(&s, "alice:a", &["get", "app/k", "--print-value-only"])), "v1\n");
    assert_eq!(ok(as_user(&s, "bob:b", &["get", "app/k", "--print-value-only"])), "v1\n");
    assert_eq!(ok(as_user(&s, "bob:b", &["get", "app/", "--prefix", "--keys-only"])), "app/k\n\n");
    let denied = "Error: etcdserver: permission denied";
    assert_eq!(refused(as_user(&s, "bob:b", &["put", "app/k", "v2"])), denied);
    assert_eq!(refused(as_user(&s, "bob:b", &["del", "app/k"])), denied);
    assert_eq!(refused(as_user(&s, "alice:a", &["get", "other"])), denied);
    assert_eq!(refused(as_user(&s, "alice:a", &["put", "other", "y"])), denied);
    assert_eq!(refused(as_user(&s, "alice:a", &["get", "", "--prefix"])), denied);
    // A transaction needs every range it compares, reads or writes.
    let txn_inside = "value(\"app/k\") = \"v1\"\n\nput app/k v3\n\nget app/k\n\n";
    assert_eq!(ok(s.etcdctl_stdin(&["--user=alice:a", "txn"], Some(txn_inside))), "SUCCESS\n\nOK\n");
    let txn_outside = "value(\"app/k\") = \"v3\"\n\nput other z\n\n\n";
    assert_eq!(refused(s.etcdctl_stdin(&["--user=alice:a", "txn"], Some(txn_outside))), denied);
    let txn_compare_outside = "value(\"other\") = \"x\"\n\nput app/k v4\n\n\n";
    assert_eq!(refused(s.etcdctl_stdin(&["--user=alice:a", "txn"], Some(txn_compare_outside))), denied);
    assert_eq!(ok(as_user(&s, "root:rootpw", &["get", "other", "--print-value-only"])), "x\n");
    // Revoking a lease deletes its keys: it needs write on each of them.
    let grant = ok(as_user(&s, "root:rootpw", &["lease", "grant", "100"]));
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    ok(as_user(&s, "root:rootpw", &["put", "other/leased", "x", "--lease", &lease]));
    assert_eq!(
        refused(as_user(&s, "alice:a", &["lease", "revoke", &lease])),
        "Error: failed to revoke lease (etcdserver: permission denied)"
    );
    ok(as_user(&s, "root:rootpw", &["lease", "revoke", &lease]));
    // Cluster administration needs the root role.
    assert_eq!(refused(as_user(&s, "alice:a", &["user", "add", "eve", "--new-user-password=e"])), denied);
    assert_eq!(
        refused(as_user(&s, "root:rootpw", &["user", "delete", "root"])),
        "Error: etcdserver: invalid auth management"
    );
    // Maintenance needs the root role too, refused as etcd 3.4 refuses it
    // (code Unknown, the auth store's own text).
    let defrag = as_user(&s, "alice:a", &["defrag"]);
    assert!(!defrag.status.success());
    let failed = format!(
        "Failed to defragment etcd member[{}] (rpc error: code = Unknown desc = auth: permission denied)",
        s.endpoint
    );
    assert!(stderr(&defrag).contains(&failed), "{}", stderr(&defrag));
    let defrag = s.etcdctl(&["defrag"]);
    assert!(stderr(&defrag).contains("code = Unknown desc = auth: user name is empty"), "{}", stderr(&defrag));
    assert_eq!(
        refused(as_user(&s, "bob:b", &["endpoint", "hashkv"])),
        "Error: rpc error: code = Unknown desc = auth: permission denied"
    );
    assert_eq!(
        ok(as_user(&s, "root:rootpw", &["defrag"])),
        format!("Finished defragmenting etcd member[{}]\n", s.endpoint)
    );

    // A password change takes effect at once.
    let passwd =
        s.etcdctl_stdin(&["--user=root:rootpw", "user", "passwd", "alice", "--interactive=false"], Some("a2\n"));
    assert_eq!(ok(passwd), "Password updated\n");
    assert_eq!(
        refused(as_user(&s, "alice:a", &["get", "app/k"])),
        "Error: etcdserver: authentication failed, invalid user ID or password"
    );
    // Permissions revoked take effect at once too.
    assert_eq!(
        ok(as_user(&s, "root:rootpw", &["role", "revoke-permission", "reader", "app/", "--prefix"])),
        "Permission of range [app/, app0) is revoked from role reader\n"
    );
    assert_eq!(refused(as_user(&s, "bob:b", &["get", "app/k"])), denied);

    assert_eq!(ok(as_user(&s, "root:rootpw", &["auth", "disable"])), "Authentication Disabled\n");
    assert_eq!(ok(s.etcdctl(&["get", "other", "--print-value-only"])), "x\n");
}

/// A watch needs read permission on its range: refused, it is cancelled
/// with etcd's reason.
#[test]
fn a_watch_outside_the_permissions_is_cancelled() {
    let s = Server::start();
    for args in [
        &["user", "add", "root", "--new-user-password=r"][..],
        &["user", "add", "w", "--new-user-password=w"],
        &["role", "add", "watcher"],
        &["role", "grant-permission", "watcher", "read", "mine/", "--prefix"],
        &["user", "grant-role", "w", "watcher"],
        &["auth", "enable"],
    ] {
        ok(s.etcdctl(args));
    }
    let out = as_user(&s, "w:w", &["watch", "theirs/", "--prefix"]);
    assert!(
        stdout(&out).contains("permission denied") || stderr(&out).contains("permission denied"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Tokens over gRPC, as etcd's simple tokens behave: one from
/// Authenticate keeps naming its user while roles and permissions change
/// (each call is checked against them as they are), and is ended by a
/// change to its user's password, refused as etcd refuses it; a new one
/// works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_refused_after_its_users_password_changes() {
    let s = Server::start();
    enable_auth(&s, &[("root", "r"), ("u", "p1")]);
    let channel = grpc(&s).await;
    let mut auth = pb::auth_client::AuthClient::new(channel.clone());
    let mut kv = pb::kv_client::KvClient::new(channel);
    let token = |password: &str| pb::AuthenticateRequest { name: "u".into(), password: password.into() };
    let t1 = auth.authenticate(token("p1")).await.unwrap().into_inner().token;
    let status = auth.auth_status(pb::AuthStatusRequest {}).await.unwrap().into_inner();
    assert!(status.enabled && status.auth_revision > 0);
    let get = |token: &str| {
        let mut request = tonic::Request::new(pb::RangeRequest { key: "k".into(), ..Default::default() });
        request.metadata_mut().insert("token", token.parse().unwrap());
        request
    };
    // u has no permission on k: authenticated, then denied.
    let denied = kv.range(get(&t1)).await.unwrap_err();
    assert_eq!((denied.code(), denied.message()), (tonic::Code::PermissionDenied, "etcdserver: permission denied"));
    let bogus = kv.range(get("nonsense.1")).await.unwrap_err();
    assert_eq!((bogus.code(), bogus.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));

    // Granted read on k: the same token reads it at once.
    ok(as_user(&s, "root:r", &["role", "add", "k"]));
    ok(as_user(&s, "root:r", &["role", "grant-permission", "k", "read", "k"]));
    ok(as_user(&s, "root:r", &["user", "grant-role", "u", "k"]));
    kv.range(get(&t1)).await.unwrap();
    // And denied at once when it is revoked.
    ok(as_user(&s, "root:r", &["user", "revoke-role", "u", "k"]));
    let denied = kv.range(get(&t1)).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    ok(as_user(&s, "root:r", &["user", "grant-role", "u", "k"]));
    ok(s.etcdctl_stdin(&["--user=root:r", "user", "passwd", "u", "--interactive=false"], Some("p2\n")));
    let ended = kv.range(get(&t1)).await.unwrap_err();
    assert_eq!((ended.code(), ended.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
    let wrong = auth.authenticate(token("p1")).await.unwrap_err();
    assert_eq!(wrong.message(), "etcdserver: authentication failed, invalid user ID or password");
    let t2 = auth.authenticate(token("p2")).await.unwrap().into_inner().token;
    kv.range(get(&t2)).await.unwrap();
}

#[test]
fn python_etcd3_drives_users_roles_and_permissions() {
    let s = Server::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/etcd3_auth.py");
    let out = common::run_bounded(
        std::process::Command::new("python3")
            // python-etcd3's generated code predates protobuf 4's C backend.
            .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
            .arg(script)
            .arg(&s.endpoint),
    );
    assert!(
        out.status.success() && stdout(&out).contains("all checks passed"),
        "python-etcd3 against Concord failed (scripts/test installs etcd3 with pip):\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Membership changes need root under auth, as etcd checks them
/// (`checkMembershipOperationPermission`): anyone who reached the client
/// port could add a member, remove a voter (breaking the quorum) or point a
/// member's peer URL at an address that then receives the replicated log.
#[test]
fn membership_changes_need_root_under_auth() {
    let s = Server::start();
    ok(s.etcdctl(&["user", "add", "root", "--new-user-password=rootpw"]));
    ok(s.etcdctl(&["user", "add", "alice", "--new-user-password=a"]));
    ok(s.etcdctl(&["role", "add", "app"]));
    ok(s.etcdctl(&["role", "grant-permission", "app", "readwrite", "", "--from-key"]));
    ok(s.etcdctl(&["user", "grant-role", "alice", "app"]));
    ok(s.etcdctl(&["auth", "enable"]));
    let me = ok(as_user(&s, "root:rootpw", &["member", "list"]));
    let id = me.split(',').next().unwrap().trim().to_string();
    let rogue = format!("--peer-urls=http://127.0.0.1:{}", common::free_port());
    let changes: [&[&str]; 4] = [
        &["member", "add", "rogue", "--learner", &rogue],
        &["member", "remove", &id],
        &["member", "update", &id, &rogue],
        &["member", "promote", &id],
    ];
    for change in changes {
        assert_eq!(refused(s.etcdctl(change)), "Error: etcdserver: user name is empty", "{change:?}");
        assert_eq!(refused(as_user(&s, "alice:a", change)), "Error: etcdserver: permission denied", "{change:?}");
    }
    // Nothing changed; the list stays open to any user, as in etcd.
    assert_eq!(ok(as_user(&s, "alice:a", &["member", "list"])), me);
    assert_eq!(ok(s.etcdctl(&["member", "list"])), me);
    // root may.
    let added = ok(as_user(&s, "root:rootpw", &["member", "add", "rogue", "--learner", &rogue]));
    assert!(added.contains("Member") && added.contains("added to cluster"), "{added}");
    let listed = ok(as_user(&s, "root:rootpw", &["member", "list"]));
    // Not started, so listed without its name: found by its peer URL.
    let url = rogue.trim_start_matches("--peer-urls=");
    let learner = listed.lines().find(|l| l.contains(url)).unwrap().split(',').next().unwrap().trim().to_string();
    ok(as_user(&s, "root:rootpw", &["member", "remove", &learner]));
    assert_eq!(ok(s.etcdctl(&["member", "list"])), me);
}

/// Raising or disarming an alarm turns every write off or back on; etcd 3.4
/// takes either from anyone. Under auth Concord asks for root, refusing as
/// it refuses the other maintenance calls; listing stays open.
#[tokio::test]
async fn alarms_are_raised_and_disarmed_only_by_root_under_auth() {
    let s = Server::start();
    enable_auth(&s, &[("root", "r"), ("alice", "a")]);
    let channel = grpc(&s).await;
    let mut auth = pb::auth_client::AuthClient::new(channel.clone());
    let mut maintenance = pb::maintenance_client::MaintenanceClient::new(channel);
    let login = |name: &str, password: &str| pb::AuthenticateRequest { name: name.into(), password: password.into() };
    let alice = auth.authenticate(login("alice", "a")).await.unwrap().into_inner().token;
    let root = auth.authenticate(login("root", "r")).await.unwrap().into_inner().token;
    let alarm = |action: pb::alarm_request::AlarmAction, token: Option<&str>| {
        let mut request = tonic::Request::new(pb::AlarmRequest {
            action: action as i32,
            member_id: 0,
            alarm: pb::AlarmType::Nospace as i32,
        });
        if let Some(token) = token {
            request.metadata_mut().insert("token", token.parse().unwrap());
        }
        request
    };
    use pb::alarm_request::AlarmAction::{Activate, Deactivate, Get};
    for action in [Activate, Deactivate] {
        let anonymous = maintenance.alarm(alarm(action, None)).await.unwrap_err();
        assert_eq!((anonymous.code(), anonymous.message()), (tonic::Code::Unknown, "auth: user name is empty"));
        let denied = maintenance.alarm(alarm(action, Some(&alice))).await.unwrap_err();
        assert_eq!((denied.code(), denied.message()), (tonic::Code::Unknown, "auth: permission denied"));
    }
    // Nothing was raised, and writes go on; anyone may list.
    assert!(maintenance.alarm(alarm(Get, None)).await.unwrap().into_inner().alarms.is_empty());
    ok(as_user(&s, "root:r", &["put", "k", "v"]));
    // root may raise it (writes stop) and disarm it (writes resume).
    let raised = maintenance.alarm(alarm(Activate, Some(&root))).await.unwrap().into_inner();
    assert_eq!(raised.alarms.len(), 1);
    assert_eq!(refused(as_user(&s, "root:r", &["put", "k", "v"])), "Error: etcdserver: mvcc: database space exceeded");
    assert_eq!(maintenance.alarm(alarm(Get, Some(&alice))).await.unwrap().into_inner().alarms.len(), 1);
    maintenance.alarm(alarm(Deactivate, Some(&root))).await.unwrap();
    ok(as_user(&s, "root:r", &["put", "k", "v"]));
}
