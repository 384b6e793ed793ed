use super::*;

fn cmd(store: &mut AuthStore, command: AuthCommand) -> Result<(), AuthError> {
    let before = store.clone();
    let result = store.apply(&command);
    match &result {
        Ok(()) => assert_eq!(store.revision, before.revision + 1, "{command:?}"),
        Err(_) => assert_eq!(*store, before, "a refused {command:?} changed the store"),
    }
    result
}

fn user_add(name: &str) -> AuthCommand {
    AuthCommand::UserAdd { name: name.into(), password_hash: Some("hash".into()) }
}

fn grant(role: &str, kind: PermissionKind, range: KeyRange) -> AuthCommand {
    AuthCommand::RoleGrantPermission { role: role.into(), permission: Permission { kind, range } }
}

/// etcd's refusals, each changing nothing.
#[test]
fn management_is_refused_as_etcd_refuses_it() {
    let mut s = AuthStore::default();
    assert_eq!(cmd(&mut s, AuthCommand::Enable), Err(AuthError::RootUserNotExist));
    cmd(&mut s, user_add(ROOT)).unwrap();
    assert_eq!(cmd(&mut s, AuthCommand::Enable), Err(AuthError::RootRoleNotGranted));
    assert_eq!(cmd(&mut s, user_add(ROOT)), Err(AuthError::UserExists));
    assert_eq!(cmd(&mut s, user_add("")), Err(AuthError::UserEmpty));
    assert_eq!(cmd(&mut s, AuthCommand::RoleAdd { name: String::new() }), Err(AuthError::RoleEmpty));
    let grant_role = |user: &str, role: &str| AuthCommand::UserGrantRole { user: user.into(), role: role.into() };
    assert_eq!(cmd(&mut s, grant_role(ROOT, "nope")), Err(AuthError::RoleNotFound));
    assert_eq!(cmd(&mut s, grant_role("nobody", ROOT)), Err(AuthError::UserNotFound));
    // The root role exists without being added.
    cmd(&mut s, grant_role(ROOT, ROOT)).unwrap();
    // Granting it again is answered as done and changes nothing (etcd).
    let before = s.clone();
    assert_eq!(s.apply(&grant_role(ROOT, ROOT)), Ok(()));
    assert_eq!(s, before);
    cmd(&mut s, AuthCommand::Enable).unwrap();
    // While enabled, root stays root.
    assert_eq!(cmd(&mut s, AuthCommand::UserDelete { name: ROOT.into() }), Err(AuthError::InvalidAuthManagement));
    let revoke_root = AuthCommand::UserRevokeRole { user: ROOT.into(), role: ROOT.into() };
    assert_eq!(cmd(&mut s, revoke_root.clone()), Err(AuthError::InvalidAuthManagement));
    cmd(&mut s, AuthCommand::RoleAdd { name: "r".into() }).unwrap();
    assert_eq!(cmd(&mut s, AuthCommand::RoleAdd { name: "r".into() }), Err(AuthError::RoleExists));
    let revoke = AuthCommand::RoleRevokePermission { role: "r".into(), range: KeyRange::key("k") };
    assert_eq!(cmd(&mut s, revoke), Err(AuthError::PermissionNotGranted));
    cmd(&mut s, user_add("u")).unwrap();
    let revoke_r = AuthCommand::UserRevokeRole { user: "u".into(), role: "r".into() };
    assert_eq!(cmd(&mut s, revoke_r), Err(AuthError::RoleNotGranted));
    cmd(&mut s, AuthCommand::Disable).unwrap();
    cmd(&mut s, revoke_root).unwrap();
    cmd(&mut s, AuthCommand::UserDelete { name: ROOT.into() }).unwrap();
}

/// A role's permissions: one per range, sorted; granting a range again
/// changes its kind; deleting a role takes it from its users.
#[test]
fn permissions_are_kept_one_per_range_and_roles_leave_users_when_deleted() {
    let mut s = AuthStore::default();
    cmd(&mut s, AuthCommand::RoleAdd { name: "r".into() }).unwrap();
    cmd(&mut s, grant("r", PermissionKind::Read, KeyRange::prefix("b/"))).unwrap();
    cmd(&mut s, grant("r", PermissionKind::Read, KeyRange::prefix("a/"))).unwrap();
    cmd(&mut s, grant("r", PermissionKind::Write, KeyRange::prefix("b/"))).unwrap();
    let permissions = &s.roles["r"].permissions;
    assert_eq!(permissions.len(), 2);
    assert_eq!(permissions[0].range, KeyRange::prefix("a/"));
    assert_eq!(permissions[1].kind, PermissionKind::Write);
    cmd(&mut s, user_add("u")).unwrap();
    cmd(&mut s, AuthCommand::UserGrantRole { user: "u".into(), role: "r".into() }).unwrap();
    cmd(&mut s, AuthCommand::RoleDelete { name: "r".into() }).unwrap();
    assert!(s.users["u"].roles.is_empty());
}

/// A range is permitted only if the user's permissions of that kind cover
/// all of it, possibly several together; root may do everything; nothing
/// is checked while auth is disabled.
#[test]
fn access_needs_the_whole_range_covered() {
    let mut s = AuthStore::default();
    for c in [
        user_add(ROOT),
        AuthCommand::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
        user_add("u"),
        AuthCommand::RoleAdd { name: "r".into() },
        AuthCommand::RoleAdd { name: "w".into() },
        grant("r", PermissionKind::Read, KeyRange { start: "a".into(), end: RangeEnd::Exclusive("c".into()) }),
        grant("w", PermissionKind::ReadWrite, KeyRange { start: "c".into(), end: RangeEnd::Exclusive("e".into()) }),
        grant("w", PermissionKind::Write, KeyRange::key("z")),
        AuthCommand::UserGrantRole { user: "u".into(), role: "r".into() },
        AuthCommand::UserGrantRole { user: "u".into(), role: "w".into() },
    ] {
        cmd(&mut s, c).unwrap();
    }
    let range = |a: &str, b: &str| KeyRange {
        start: Bytes::copy_from_slice(a.as_bytes()),
        end: RangeEnd::Exclusive(Bytes::copy_from_slice(b.as_bytes())),
    };
    // Disabled: anything goes, for anyone.
    assert!(s.permits("nobody", &KeyRange::all(), Access::Write));
    cmd(&mut s, AuthCommand::Enable).unwrap();
    assert!(s.permits("u", &range("a", "e"), Access::Read), "two roles together cover it");
    assert!(!s.permits("u", &range("a", "e"), Access::Write), "only [c, e) is writable");
    assert!(s.permits("u", &range("c", "d"), Access::Write));
    assert!(!s.permits("u", &range("a", "f"), Access::Read), "[e, f) is not granted");
    assert!(s.permits("u", &KeyRange::key("b"), Access::Read));
    assert!(s.permits("u", &KeyRange::key("z"), Access::Write));
    assert!(!s.permits("u", &KeyRange::key("z"), Access::Read));
    assert!(!s.permits("u", &KeyRange::key("za"), Access::Write), "a single key grants no other");
    assert!(!s.permits("u", &KeyRange::all(), Access::Read));
    assert!(!s.permits("nobody", &KeyRange::key("b"), Access::Read));
    assert!(s.permits(ROOT, &KeyRange::all(), Access::Write));
    assert!(s.is_root(ROOT) && !s.is_root("u"));
}

/// As etcd: enabling auth while it is on, or disabling it while it is off,
/// is answered as done and changes nothing (no new revision, so no token
/// is ended by it).
#[test]
fn enabling_what_is_enabled_changes_nothing() {
    let mut s = AuthStore::default();
    s.apply(&AuthCommand::Disable).unwrap();
    assert_eq!(s.revision, 0);
    s.apply(&AuthCommand::UserAdd { name: "root".into(), password_hash: None }).unwrap();
    s.apply(&AuthCommand::UserGrantRole { user: "root".into(), role: "root".into() }).unwrap();
    s.apply(&AuthCommand::Enable).unwrap();
    let before = s.clone();
    s.apply(&AuthCommand::Enable).unwrap();
    assert_eq!(s, before);
}
