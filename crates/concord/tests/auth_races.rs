//! Authorization races in a cluster, made deterministic: one member's disk
//! is held (`Disk::stall_syncs`) so it cannot append or apply anything new,
//! an auth change is acknowledged through the leader, and a request goes
//! through the lagging member — which received it with the old auth state.
//! The request is decided where it takes effect (at apply for writes, after
//! the read index for reads), so the lagging member's view never lets it
//! through. Each test is named after the hole it closes (issue 22).

mod common;

use std::time::Duration;

use common::disk_cluster::{Member, leader_index, shutdown, start_with};
use concord::auth::{AuthCommand, AuthError, Caller, PermissionKind};
use concord::{Concord, Error, KeyRange, TokenError};

/// How long a request held by the lagging member is watched for not
/// finishing before its disk is released.
const HELD: Duration = Duration::from_millis(300);

/// Three members; root (root role), alice (read-write on `e/`, read on
/// `secret/`) and bob (root role), auth enabled, everywhere applied. The
/// leader's index and a follower's.
async fn cluster() -> (Vec<Member>, usize, usize) {
    let members = start_with(3, |c| c).await;
    let leader = leader_index(&members).await;
    let db = &members[leader].db;
    for user in ["root", "alice", "bob"] {
        db.user_add(user, Some("pw")).await.unwrap();
    }
    for (user, role) in [("root", "root"), ("bob", "root")] {
        db.auth_change(AuthCommand::UserGrantRole { user: user.into(), role: role.into() }).await.unwrap();
    }
    db.auth_change(AuthCommand::RoleAdd { name: "app".into() }).await.unwrap();
    db.role_grant_permission("app", PermissionKind::ReadWrite, KeyRange::prefix("e/")).await.unwrap();
    db.role_grant_permission("app", PermissionKind::Read, KeyRange::prefix("secret/")).await.unwrap();
    db.auth_change(AuthCommand::UserGrantRole { user: "alice".into(), role: "app".into() }).await.unwrap();
    db.kv().put("secret/x", "the secret").await.unwrap();
    db.auth_change(AuthCommand::Enable).await.unwrap();
    settle(&members).await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    (members, leader, follower)
}

/// Waits until every member applied what the leader has.
async fn settle(members: &[Member]) {
    let since = std::time::Instant::now();
    loop {
        let statuses: Vec<(bool, u64)> = members.iter().map(|m| m.db.auth_status()).collect();
        let revisions: Vec<i64> = members.iter().map(|m| m.db.kv().revision()).collect();
        if statuses.windows(2).all(|w| w[0] == w[1]) && revisions.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(since.elapsed() < Duration::from_secs(10), "members did not converge: {statuses:?} {revisions:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `user`'s caller on `db`, as the etcd front end makes it from a token.
async fn login(db: &Concord, user: &str) -> Caller {
    let token = db.authenticate(user, "pw").await.unwrap();
    db.caller(Some(&token)).unwrap()
}

fn refused(result: Result<impl std::fmt::Debug, Error>) -> AuthError {
    match result {
        Err(Error::Auth(e)) => e,
        other => panic!("expected an auth refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_through_a_member_behind_a_permission_revoke_is_refused() {
    let (members, leader, follower) = cluster().await;
    let alice = login(&members[follower].db, "alice").await;
    let stalled = members[follower].disk.stall_syncs();
    let revoke = AuthCommand::RoleRevokePermission { role: "app".into(), range: KeyRange::prefix("secret/") };
    members[leader].db.auth_change(revoke).await.unwrap();

    let db = members[follower].db.clone();
    let caller = alice.clone();
    let mut read = tokio::spawn(async move { db.kv().range(KeyRange::prefix("secret/")).as_caller(caller).await });
    assert!(tokio::time::timeout(HELD, &mut read).await.is_err(), "answered before applying the read index");
    drop(stalled);
    let error = refused(read.await.unwrap());
    assert!(matches!(error, AuthError::OldRevision | AuthError::PermissionDenied), "{error:?}");
    // Authenticated again: denied.
    let alice = login(&members[follower].db, "alice").await;
    let read = members[follower].db.kv().range(KeyRange::prefix("secret/")).as_caller(alice).await;
    assert_eq!(refused(read), AuthError::PermissionDenied);
    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_a_member_behind_auth_enable_is_refused() {
    let members = start_with(3, |c| c).await;
    let leader = leader_index(&members).await;
    let db = &members[leader].db;
    db.user_add("root", Some("pw")).await.unwrap();
    db.auth_change(AuthCommand::UserGrantRole { user: "root".into(), role: "root".into() }).await.unwrap();
    settle(&members).await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let stalled = members[follower].disk.stall_syncs();
    members[leader].db.auth_change(AuthCommand::Enable).await.unwrap();

    // The lagging member still sees auth disabled: no token needed.
    let unauthenticated = members[follower].db.caller(None).unwrap();
    assert_eq!(unauthenticated.user, None);
    let db = members[follower].db.clone();
    let put = tokio::spawn(async move { db.kv().put("k", "unauthenticated").as_caller(unauthenticated).await });
    tokio::time::sleep(HELD).await;
    drop(stalled);
    assert_eq!(refused(put.await.unwrap()), AuthError::UserEmpty);
    assert!(members[leader].db.kv().get("k").await.unwrap().is_none(), "the refused write was applied");
    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_revoke_through_a_lagging_member_is_checked_on_the_keys_attached_at_apply() {
    let (members, leader, follower) = cluster().await;
    let alice = login(&members[follower].db, "alice").await;
    let lease = members[follower].db.lease().grant(60).as_caller(alice.clone()).await.unwrap();
    settle(&members).await;
    let stalled = members[follower].disk.stall_syncs();
    // Attached while the lagging member still sees the lease empty.
    members[leader].db.kv().put("secret/admin", "root's").lease(lease.id).await.unwrap();

    let db = members[follower].db.clone();
    let revoke = tokio::spawn(async move { db.lease().revoke(lease.id).as_caller(alice).await });
    tokio::time::sleep(HELD).await;
    drop(stalled);
    let error = refused(revoke.await.unwrap());
    assert!(matches!(error, AuthError::PermissionDenied | AuthError::OldRevision), "{error:?}");
    assert!(members[leader].db.kv().get("secret/admin").await.unwrap().is_some(), "the key was deleted");
    assert!(members[leader].db.lease().info(lease.id).await.is_ok(), "the lease was revoked");
    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auth_change_through_a_member_behind_the_callers_demotion_is_refused() {
    let (members, leader, follower) = cluster().await;
    let bob = login(&members[follower].db, "bob").await;
    let stalled = members[follower].disk.stall_syncs();
    let demote = AuthCommand::UserRevokeRole { user: "bob".into(), role: "root".into() };
    members[leader].db.auth_change(demote).await.unwrap();

    // The lagging member still sees bob as root.
    assert!(members[follower].db.is_admin(bob.user.as_deref()));
    let db = members[follower].db.clone();
    let grant = AuthCommand::UserGrantRole { user: "alice".into(), role: "root".into() };
    let change = tokio::spawn(async move { db.auth_change_as(grant, Some(bob)).await });
    tokio::time::sleep(HELD).await;
    drop(stalled);
    let error = refused(change.await.unwrap());
    assert!(matches!(error, AuthError::OldRevision | AuthError::PermissionDenied), "{error:?}");
    assert!(!members[leader].db.auth_store().is_root("alice"));
    let bob = Caller::new(Some("bob".into()), members[leader].db.auth_status().1);
    let retry = AuthCommand::UserGrantRole { user: "alice".into(), role: "root".into() };
    assert_eq!(refused(members[leader].db.auth_change_as(retry, Some(bob)).await), AuthError::PermissionDenied);
    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn old_tokens_lose_root_after_a_password_change_or_a_re_added_user() {
    let (members, leader, _) = cluster().await;
    let db = &members[leader].db;
    let root_token = db.authenticate("root", "pw").await.unwrap();
    let bob_token = db.authenticate("bob", "pw").await.unwrap();
    let alice_token = db.authenticate("alice", "pw").await.unwrap();
    assert!(db.caller(Some(&root_token)).is_ok());

    db.user_change_password("root", Some("new")).await.unwrap();
    assert_eq!(db.caller(Some(&root_token)).unwrap_err(), TokenError::Invalid);
    assert_eq!(db.caller(Some(&root_token)).unwrap_err(), TokenError::Invalid);
    // Others' tokens still name their users (maintenance checks the role now).
    assert_eq!(db.caller(Some(&bob_token)).unwrap().user.as_deref(), Some("bob"));

    db.auth_change(AuthCommand::UserDelete { name: "alice".into() }).await.unwrap();
    db.user_add("alice", Some("pw")).await.unwrap();
    assert_eq!(db.caller(Some(&alice_token)).unwrap_err(), TokenError::Invalid);

    let root_token = db.authenticate("root", "new").await.unwrap();
    let root = db.caller(Some(&root_token)).unwrap();
    db.auth_change_as(AuthCommand::Disable, Some(root)).await.unwrap();
    db.auth_change(AuthCommand::Enable).await.unwrap();
    assert_eq!(db.caller(Some(&root_token)).unwrap_err(), TokenError::Invalid);
    assert_eq!(db.caller(Some(&bob_token)).unwrap_err(), TokenError::Invalid);
    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_through_a_member_behind_a_permission_revoke_is_refused() {
    let (members, leader, follower) = cluster().await;
    let alice = Caller::established(Some("alice".into()));
    let secret = [KeyRange::prefix("secret/")];
    members[follower].db.authorize_watch(&alice, &secret).await.unwrap();
    let stalled = members[follower].disk.stall_syncs();
    let revoke = AuthCommand::RoleRevokePermission { role: "app".into(), range: KeyRange::prefix("secret/") };
    members[leader].db.auth_change(revoke).await.unwrap();

    let db = members[follower].db.clone();
    let check = tokio::spawn(async move { db.authorize_watch(&alice, &secret).await });
    tokio::time::sleep(HELD).await;
    drop(stalled);
    assert_eq!(refused(check.await.unwrap()), AuthError::PermissionDenied);
    shutdown(members).await;
}

/// Watches are served from a member's own state: one cut off from every
/// other member still creates them (checked against its state, as a
/// serializable read), and still refuses what its state forbids.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_without_a_leader_still_checks_and_creates_watches() {
    let (mut members, _, _) = cluster().await;
    let alone = members.pop().unwrap();
    shutdown(members).await;
    let alice = Caller::established(Some("alice".into()));
    let started = std::time::Instant::now();
    alone.db.authorize_watch(&alice, &[KeyRange::prefix("e/")]).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "waited {:?} for a leader", started.elapsed());
    let denied = alone.db.authorize_watch(&alice, &[KeyRange::prefix("other")]).await;
    assert_eq!(refused(denied), AuthError::PermissionDenied);
    let _ = alone.db.shutdown().await;
}
