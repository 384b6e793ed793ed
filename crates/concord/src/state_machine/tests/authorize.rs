//! Apply-time authorization (`state_machine::authorize`): a client's write
//! is decided against the auth state and lease table at its own point of
//! the log, whatever its front end saw. Each test is named after the hole
//! it closes.

use super::*;
use crate::alarm::{Alarm, AlarmKind};
use crate::auth::{AuthCommand, AuthError, Caller, Permission, PermissionKind};
use crate::command::{Compare, CompareOp, CompareTarget};

/// root (root role) and alice (read-write on `e/` only), auth enabled.
fn with_alice() -> Harness {
    let mut h = Harness::new();
    for command in [
        AuthCommand::UserAdd { name: "root".into(), password_hash: None },
        AuthCommand::UserGrantRole { user: "root".into(), role: "root".into() },
        AuthCommand::UserAdd { name: "alice".into(), password_hash: None },
        AuthCommand::RoleAdd { name: "e".into() },
        AuthCommand::RoleGrantPermission {
            role: "e".into(),
            permission: Permission { kind: PermissionKind::ReadWrite, range: KeyRange::prefix("e/") },
        },
        AuthCommand::UserGrantRole { user: "alice".into(), role: "e".into() },
        AuthCommand::Enable,
    ] {
        h.ok(Command::Auth(command));
    }
    h
}

fn caller(h: &Harness, user: &str) -> Caller {
    Caller::new(Some(user.into()), h.sm.state.auth.revision)
}

fn as_caller(caller: &Caller, command: Command) -> Command {
    command.as_caller(Some(caller.clone()))
}

/// Applies `command` as `caller`, expects `error`, and that nothing changed.
fn refused(h: &mut Harness, caller: &Caller, command: Command, error: AuthError) {
    let state = h.sm.state.clone();
    let applied = h.apply(as_caller(caller, command.clone()));
    assert_eq!(applied.result, Err(ApplyError::Auth(error)), "{command:?}");
    assert_eq!(h.sm.state, state, "a refused write changed the state: {command:?}");
}

fn root_put(h: &mut Harness, key: &str, lease: LeaseChoice) {
    let root = caller(h, "root");
    h.ok(as_caller(&root, put(key, "root's", lease)));
}

#[test]
fn a_write_outside_the_callers_permissions_is_refused_at_apply() {
    let mut h = with_alice();
    let alice = caller(&h, "alice");
    h.ok(as_caller(&alice, put("e/x", "1", LeaseChoice::None)));
    refused(&mut h, &alice, put("secret/x", "1", LeaseChoice::None), AuthError::PermissionDenied);
    let delete = |range| Command::DeleteRange(DeleteRequest { range, prev_kv: false });
    refused(&mut h, &alice, delete(KeyRange::key("secret/x")), AuthError::PermissionDenied);
}

#[test]
fn a_range_whose_start_is_permitted_but_not_its_end_is_refused() {
    let mut h = with_alice();
    root_put(&mut h, "other", LeaseChoice::None);
    let alice = caller(&h, "alice");
    let delete = |range| Command::DeleteRange(DeleteRequest { range, prev_kv: false });
    refused(&mut h, &alice, delete(KeyRange::from("e/")), AuthError::PermissionDenied);
    refused(&mut h, &alice, delete(KeyRange::between("e/a", "zzz")), AuthError::PermissionDenied);
    refused(&mut h, &alice, delete(KeyRange::prefix("e")), AuthError::PermissionDenied);
    let txn_delete = Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![TxnOp::DeleteRange(DeleteRequest { range: KeyRange::from("e/"), prev_kv: false })],
        failure: vec![],
    });
    refused(&mut h, &alice, txn_delete, AuthError::PermissionDenied);
    let txn_read = Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![TxnOp::range(KeyRange::from("e/"))],
        failure: vec![],
    });
    refused(&mut h, &alice, txn_read, AuthError::PermissionDenied);
    h.ok(as_caller(&alice, delete(KeyRange::prefix("e/"))));
}

#[test]
fn a_write_checked_before_a_permission_revoke_is_refused_at_apply() {
    let mut h = with_alice();
    let alice = caller(&h, "alice");
    h.ok(Command::Auth(AuthCommand::RoleRevokePermission { role: "e".into(), range: KeyRange::prefix("e/") }));
    refused(&mut h, &alice, put("e/x", "1", LeaseChoice::None), AuthError::OldRevision);
    let alice = caller(&h, "alice");
    refused(&mut h, &alice, put("e/x", "1", LeaseChoice::None), AuthError::PermissionDenied);
}

#[test]
fn a_write_received_before_auth_was_enabled_is_refused_once_it_is() {
    let mut h = Harness::new();
    let unauthenticated = Caller::new(None, h.sm.state.auth.revision);
    h.ok(as_caller(&unauthenticated, put("a", "1", LeaseChoice::None)));
    h.ok(Command::Auth(AuthCommand::UserAdd { name: "root".into(), password_hash: None }));
    h.ok(Command::Auth(AuthCommand::UserGrantRole { user: "root".into(), role: "root".into() }));
    h.ok(Command::Auth(AuthCommand::Enable));
    refused(&mut h, &unauthenticated, put("b", "1", LeaseChoice::None), AuthError::UserEmpty);
    // Even one that claims the current revision.
    let claims_current = Caller::new(None, u64::MAX);
    refused(&mut h, &claims_current, put("b", "1", LeaseChoice::None), AuthError::UserEmpty);
}

#[test]
fn a_lease_revoke_needs_write_on_the_keys_attached_when_it_applies() {
    let mut h = with_alice();
    let alice = caller(&h, "alice");
    let id = match h.ok(as_caller(&alice, Command::LeaseGrant { id: None, ttl_secs: 60 })) {
        Reply::LeaseGranted { id, .. } => id,
        other => panic!("{other:?}"),
    };
    // The lease was empty when alice might have looked; root attaches a
    // key before her revoke applies.
    root_put(&mut h, "secret/k", LeaseChoice::Lease(id));
    refused(&mut h, &alice, Command::LeaseRevoke { id }, AuthError::PermissionDenied);
    assert!(h.value("secret/k").is_some());
    assert_eq!(h.lease_keys(id), vec![Bytes::from("secret/k")]);
    // A revoke of an unknown lease is answered as such, not as a refusal.
    let applied = h.apply(as_caller(&alice, Command::LeaseRevoke { id: 424242 }));
    assert_eq!(applied.result, Err(ApplyError::LeaseNotFound(424242)));
}

#[test]
fn attaching_a_key_to_a_lease_needs_write_on_the_keys_it_has() {
    let mut h = with_alice();
    let root = caller(&h, "root");
    let id = match h.ok(as_caller(&root, Command::LeaseGrant { id: None, ttl_secs: 60 })) {
        Reply::LeaseGranted { id, .. } => id,
        other => panic!("{other:?}"),
    };
    root_put(&mut h, "secret/k", LeaseChoice::Lease(id));
    let alice = caller(&h, "alice");
    refused(&mut h, &alice, put("e/mine", "1", LeaseChoice::Lease(id)), AuthError::PermissionDenied);
    let txn = Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![],
        failure: vec![TxnOp::put_with_lease("e/mine", "1", id)],
    });
    refused(&mut h, &alice, txn, AuthError::PermissionDenied);
}

#[test]
fn a_transaction_needs_read_on_its_compares_and_rights_in_both_branches() {
    let mut h = with_alice();
    root_put(&mut h, "secret/admin", LeaseChoice::None);
    let alice = caller(&h, "alice");
    let created = h.value("secret/admin").unwrap().create_revision;
    // Election's Proclaim as a transaction on a key alice names: refused
    // before the compare is evaluated, whether its revision is right or not.
    for rev in [created, created + 1] {
        let proclaim = Command::Txn(TxnRequest {
            compare: vec![Compare {
                range: KeyRange::key("secret/admin"),
                target: CompareTarget::CreateRevision(rev),
                op: CompareOp::Equal,
            }],
            success: vec![txn_put("secret/admin", "HACKED")],
            failure: vec![],
        });
        refused(&mut h, &alice, proclaim, AuthError::PermissionDenied);
    }
    // The branch that would not run is checked too.
    let unused_branch = Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![txn_put("e/x", "1")],
        failure: vec![TxnOp::delete("secret/admin")],
    });
    refused(&mut h, &alice, unused_branch, AuthError::PermissionDenied);
    let nested = Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![TxnOp::txn(TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![TxnOp::get("secret/admin")],
        })],
        failure: vec![],
    });
    refused(&mut h, &alice, nested, AuthError::PermissionDenied);
    let prev_kv = Command::Put(PutRequest {
        key: "e/x".into(),
        value: Some("1".into()),
        lease: LeaseChoice::None,
        prev_kv: true,
    });
    h.ok(as_caller(&alice, prev_kv));
}

#[test]
fn auth_changes_and_alarms_need_the_root_role_at_apply() {
    let mut h = with_alice();
    let alice = caller(&h, "alice");
    refused(&mut h, &alice, Command::Auth(AuthCommand::RoleAdd { name: "x".into() }), AuthError::PermissionDenied);
    let grant_self_root = Command::Auth(AuthCommand::UserGrantRole { user: "alice".into(), role: "root".into() });
    refused(&mut h, &alice, grant_self_root, AuthError::PermissionDenied);
    let alarm = Command::Alarm { activate: true, alarm: Alarm { member: 1, kind: AlarmKind::NoSpace } };
    refused(&mut h, &alice, alarm.clone(), AuthError::PermissionDenied);
    let root = caller(&h, "root");
    h.ok(as_caller(&root, alarm));
    let root = caller(&h, "root");
    h.ok(as_caller(&root, Command::Auth(AuthCommand::RoleAdd { name: "x".into() })));
    // root checked before a later auth change is refused like anyone.
    refused(&mut h, &root, Command::Auth(AuthCommand::RoleAdd { name: "y".into() }), AuthError::OldRevision);
}

#[test]
fn commands_only_members_propose_are_refused_from_a_client() {
    let mut h = with_alice();
    let root = caller(&h, "root");
    refused(&mut h, &root, Command::LeaseExpire { leases: vec![], term: 1 }, AuthError::PermissionDenied);
    refused(&mut h, &root, Command::MarkPendingVoter { id: 7 }, AuthError::PermissionDenied);
    let nested = as_caller(&root, put("a", "1", LeaseChoice::None));
    assert!(matches!(h.apply(as_caller(&root, nested)).result, Err(ApplyError::Invalid(_))));
}

#[test]
fn a_deleted_user_is_refused_and_an_established_caller_is_checked_at_any_revision() {
    let mut h = with_alice();
    let alice = Caller::established(Some("alice".into()));
    h.ok(Command::Auth(AuthCommand::RoleAdd { name: "unrelated".into() }));
    h.ok(as_caller(&alice, put("e/x", "1", LeaseChoice::None)));
    h.ok(as_caller(&alice, Command::LeaseGrant { id: None, ttl_secs: 5 }));
    refused(&mut h, &alice, put("secret/x", "1", LeaseChoice::None), AuthError::PermissionDenied);
    h.ok(Command::Auth(AuthCommand::UserDelete { name: "alice".into() }));
    refused(&mut h, &alice, put("e/x", "2", LeaseChoice::None), AuthError::PermissionDenied);
    // Auth disabled, nothing is checked.
    h.ok(Command::Auth(AuthCommand::Disable));
    h.ok(as_caller(&Caller::new(None, 0), put("secret/x", "1", LeaseChoice::None)));
}
