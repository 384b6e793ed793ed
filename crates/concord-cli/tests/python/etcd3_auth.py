"""Drives Concord's Auth service with python-etcd3 (a gRPC etcd client from
PyPI): users, roles and permissions through its generated Auth stubs, then
python-etcd3's own client logged in as those users. Checked against etcd
3.4.23 with the same script (see the one difference noted below).

    python3 etcd3_auth.py HOST:PORT
"""
import sys

import grpc

import etcd3
from etcd3 import etcdrpc
from etcd3.etcdrpc import auth_pb2

host, port = sys.argv[1].rsplit(":", 1)
port = int(port)
admin = etcd3.client(host=host, port=port)
auth = etcdrpc.AuthStub(admin.channel)


def as_user(user, password):
    client = etcd3.client(host=host, port=port, user=user, password=password)
    # grpcio refuses call credentials on a plaintext channel; python-etcd3
    # also sends the token as `token` metadata, as etcd's clients do.
    client.call_credentials = None
    return client


def refused(call, code, text):
    try:
        call()
    except grpc.RpcError as e:
        assert e.code() == code and e.details() == text, (e.code(), e.details())
        return
    raise AssertionError("expected %s %r" % (code, text))


auth.UserAdd(etcdrpc.AuthUserAddRequest(name="root", password="rootpw"))
auth.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user="root", role="root"))
auth.RoleAdd(etcdrpc.AuthRoleAddRequest(name="app"))
perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"app/", range_end=b"app0")
auth.RoleGrantPermission(etcdrpc.AuthRoleGrantPermissionRequest(name="app", perm=perm))
auth.UserAdd(etcdrpc.AuthUserAddRequest(name="alice", password="a"))
auth.UserGrantRole(etcdrpc.AuthUserGrantRoleRequest(user="alice", role="app"))
refused(
    lambda: auth.UserAdd(etcdrpc.AuthUserAddRequest(name="alice", password="x")),
    grpc.StatusCode.FAILED_PRECONDITION,
    "etcdserver: user name already exists",
)
roles = auth.UserGet(etcdrpc.AuthUserGetRequest(name="alice")).roles
assert list(roles) == ["app"], roles
got = auth.RoleGet(etcdrpc.AuthRoleGetRequest(role="app")).perm
assert [(p.permType, p.key, p.range_end) for p in got] == [(2, b"app/", b"app0")], got
admin.put("other", "x")
auth.AuthEnable(etcdrpc.AuthEnableRequest())

# Without a token, with a wrong password, outside the permissions.
refused(lambda: admin.get("app/k"), grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
refused(
    lambda: as_user("alice", "wrong"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "etcdserver: authentication failed, invalid user ID or password",
)
alice = as_user("alice", "a")
alice.put("app/k", "v1")
assert alice.get("app/k")[0] == b"v1"
denied = "etcdserver: permission denied"
refused(lambda: alice.put("other", "y"), grpc.StatusCode.PERMISSION_DENIED, denied)
refused(lambda: alice.get("other"), grpc.StatusCode.PERMISSION_DENIED, denied)
ok, _ = alice.transaction(
    compare=[alice.transactions.value("app/k") == "v1"],
    success=[alice.transactions.put("app/k", "v2")],
    failure=[],
)
assert ok
refused(
    lambda: alice.transaction(compare=[], success=[alice.transactions.put("other", "z")], failure=[]),
    grpc.StatusCode.PERMISSION_DENIED,
    denied,
)
# Maintenance needs root, refused as etcd 3.4 refuses it. (python-etcd3
# sends no token with its maintenance calls: the stubs are called with it.)
refused(lambda: alice.hash(), grpc.StatusCode.UNKNOWN, "auth: user name is empty")
maintenance = etcdrpc.MaintenanceStub(admin.channel)
refused(
    lambda: maintenance.Hash(etcdrpc.HashRequest(), metadata=alice.metadata),
    grpc.StatusCode.UNKNOWN,
    "auth: permission denied",
)
root = as_user("root", "rootpw")
assert root.get("other")[0] == b"x"
maintenance.Defragment(etcdrpc.DefragmentRequest(), metadata=root.metadata)
maintenance.Hash(etcdrpc.HashRequest(), metadata=root.metadata)

# A password change: the old password is refused at once.
root_auth = etcdrpc.AuthStub(root.channel)
root_auth.UserChangePassword(
    etcdrpc.AuthUserChangePasswordRequest(name="alice", password="a2"), metadata=root.metadata
)
refused(
    lambda: as_user("alice", "a"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "etcdserver: authentication failed, invalid user ID or password",
)
# Her old token is refused too: here as every token issued before an auth
# change ("revision of auth store is old"; clients authenticate again),
# where etcd 3.4's simple tokens answer "invalid auth token" for her.
try:
    alice.get("app/k")
    raise AssertionError("a token from before the password change was taken")
except grpc.RpcError as e:
    assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED), e
assert as_user("alice", "a2").get("app/k")[0] == b"v2"

root = as_user("root", "rootpw")
etcdrpc.AuthStub(root.channel).AuthDisable(etcdrpc.AuthDisableRequest(), metadata=root.metadata)
assert admin.get("other")[0] == b"x"
print("python-etcd3 auth: all checks passed")
