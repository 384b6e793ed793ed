//! The authorization rule of every RPC Concord serves, in one table: what
//! `docs/security.md` lists and the authorization matrix test
//! (`concord-cli/tests/authz_matrix.rs`) checks every RPC against — with
//! every kind of caller, over gRPC, the JSON gateway and a follower. The
//! test fails for an RPC of the served services without a rule here, so a
//! service added later cannot ship unguarded.

/// Who may call an RPC, and how a refusal reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone; the token is not even read (etcd: Status, MemberList,
    /// AuthStatus, Authenticate).
    Open,
    /// Any authenticated user (etcd: lease grants, keep-alives and
    /// listings, compaction).
    Authenticated,
    /// Read permission on every key it reads (a range's whole extent, a
    /// lease's attached keys when it lists them, a watch's range, an
    /// election's keys).
    KeyRead,
    /// Write permission on every key it writes or deletes, and read on
    /// every key it compares or returns (puts, deletes, transactions in
    /// both branches, a lease revoke on the keys attached when it applies,
    /// Lock and Election steps on the keys they really touch).
    KeyWrite,
    /// The root role, refused with etcd's auth errors (auth management,
    /// membership changes).
    Root,
    /// The root role, refused as etcd 3.4's maintenance service refuses
    /// (code Unknown, `auth: …`): snapshots, hashes, defragmentation,
    /// moving the leader.
    MaintenanceRoot,
    /// Listing is open; raising or disarming needs the root role, refused
    /// as [`Rule::MaintenanceRoot`] (beyond etcd 3.4, which takes both
    /// from anyone).
    AlarmChange,
    /// Not served: UNIMPLEMENTED for everyone.
    Unimplemented,
}

/// Every RPC of the services Concord serves, by its full name
/// (`package.Service.Method`), with its rule.
pub const RULES: &[(&str, Rule)] = &[
    ("etcdserverpb.KV.Range", Rule::KeyRead),
    ("etcdserverpb.KV.RangeStream", Rule::Unimplemented),
    ("etcdserverpb.KV.Put", Rule::KeyWrite),
    ("etcdserverpb.KV.DeleteRange", Rule::KeyWrite),
    ("etcdserverpb.KV.Txn", Rule::KeyWrite),
    ("etcdserverpb.KV.Compact", Rule::Authenticated),
    ("etcdserverpb.Watch.Watch", Rule::KeyRead),
    ("etcdserverpb.Lease.LeaseGrant", Rule::Authenticated),
    ("etcdserverpb.Lease.LeaseRevoke", Rule::KeyWrite),
    ("etcdserverpb.Lease.LeaseKeepAlive", Rule::Authenticated),
    ("etcdserverpb.Lease.LeaseTimeToLive", Rule::KeyRead),
    ("etcdserverpb.Lease.LeaseLeases", Rule::Authenticated),
    ("etcdserverpb.Cluster.MemberAdd", Rule::Root),
    ("etcdserverpb.Cluster.MemberRemove", Rule::Root),
    ("etcdserverpb.Cluster.MemberUpdate", Rule::Root),
    ("etcdserverpb.Cluster.MemberList", Rule::Open),
    ("etcdserverpb.Cluster.MemberPromote", Rule::Root),
    ("etcdserverpb.Maintenance.Alarm", Rule::AlarmChange),
    ("etcdserverpb.Maintenance.Status", Rule::Open),
    ("etcdserverpb.Maintenance.Defragment", Rule::MaintenanceRoot),
    ("etcdserverpb.Maintenance.Hash", Rule::MaintenanceRoot),
    ("etcdserverpb.Maintenance.HashKV", Rule::MaintenanceRoot),
    ("etcdserverpb.Maintenance.Snapshot", Rule::MaintenanceRoot),
    ("etcdserverpb.Maintenance.MoveLeader", Rule::MaintenanceRoot),
    ("etcdserverpb.Maintenance.Downgrade", Rule::Unimplemented),
    ("etcdserverpb.Auth.AuthEnable", Rule::Root),
    ("etcdserverpb.Auth.AuthDisable", Rule::Root),
    ("etcdserverpb.Auth.AuthStatus", Rule::Open),
    ("etcdserverpb.Auth.Authenticate", Rule::Open),
    ("etcdserverpb.Auth.UserAdd", Rule::Root),
    ("etcdserverpb.Auth.UserGet", Rule::Root),
    ("etcdserverpb.Auth.UserList", Rule::Root),
    ("etcdserverpb.Auth.UserDelete", Rule::Root),
    ("etcdserverpb.Auth.UserChangePassword", Rule::Root),
    ("etcdserverpb.Auth.UserGrantRole", Rule::Root),
    ("etcdserverpb.Auth.UserRevokeRole", Rule::Root),
    ("etcdserverpb.Auth.RoleAdd", Rule::Root),
    ("etcdserverpb.Auth.RoleGet", Rule::Root),
    ("etcdserverpb.Auth.RoleList", Rule::Root),
    ("etcdserverpb.Auth.RoleDelete", Rule::Root),
    ("etcdserverpb.Auth.RoleGrantPermission", Rule::Root),
    ("etcdserverpb.Auth.RoleRevokePermission", Rule::Root),
    ("v3lockpb.Lock.Lock", Rule::KeyWrite),
    ("v3lockpb.Lock.Unlock", Rule::KeyWrite),
    ("v3electionpb.Election.Campaign", Rule::KeyWrite),
    ("v3electionpb.Election.Proclaim", Rule::KeyWrite),
    ("v3electionpb.Election.Leader", Rule::KeyRead),
    ("v3electionpb.Election.Observe", Rule::KeyRead),
    ("v3electionpb.Election.Resign", Rule::KeyWrite),
];

/// The services Concord serves (their RPCs are all in [`RULES`]).
pub const SERVED_SERVICES: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3lockpb.Lock",
    "v3electionpb.Election",
];

/// The rule of `method` (`package.Service.Method`), if it has one.
pub fn rule(method: &str) -> Option<Rule> {
    RULES.iter().find(|(name, _)| *name == method).map(|(_, rule)| *rule)
}
