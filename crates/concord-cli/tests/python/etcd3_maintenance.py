"""Drives Concord's Maintenance RPCs with python-etcd3 (a gRPC etcd client
from PyPI): status, hash, alarms, defragment and a backup, as its users
call them.
Behaviour checked against etcd 3.4.23 with the same script.

    python3 etcd3_maintenance.py HOST:PORT BACKUP_FILE
"""
import sys

import etcd3

host, port = sys.argv[1].rsplit(":", 1)
backup = sys.argv[2]
client = etcd3.client(host=host, port=int(port))

status = client.status()
member = status.leader.id
assert status.version, status
assert member, "the member leads itself"

# The whole-state hash changes with the state and only with it.
client.put("/py/a", "1")
first = client.hash()
assert first == client.hash()
client.put("/py/a", "2")
assert client.hash() != first

# Alarms: member 0 is stored as given (python-etcd3's "all members"), a
# member's NOSPACE refuses writes until disarmed.
assert list(client.list_alarms()) == []
raised = client.create_alarm()
assert [(a.member_id, a.alarm_type) for a in raised] == [(0, 1)], raised
assert [(a.member_id, a.alarm_type) for a in client.list_alarms()] == [(0, 1)]
assert [(a.member_id, a.alarm_type) for a in client.disarm_alarm()] == [(0, 1)]
assert list(client.list_alarms()) == []
assert [(a.member_id, a.alarm_type) for a in client.create_alarm(member)] == [(member, 1)]
try:
    client.put("/py/b", "refused")
    raise AssertionError("a put was taken while NOSPACE is raised")
except Exception as e:  # grpc's error type, as python-etcd3 lets it through
    assert "database space exceeded" in str(e), e
client.delete("/py/a")
assert [(a.member_id, a.alarm_type) for a in client.disarm_alarm(member)] == [(member, 1)]
assert client.disarm_alarm(member) == []
client.put("/py/b", "taken")

# Defragmenting after large deletes and a compaction gives the space back.
big = "x" * (64 * 1024)
for i in range(64):
    client.put("/py/big/%d" % i, big)
full = client.status().db_size
assert full > 512 * 1024, full
client.delete_prefix("/py/big/")
client.compact(client.put("/py/b", "taken").header.revision)
client.defragment()
after = client.status().db_size
assert after < full // 2, (full, after)

# A backup, streamed: etcd's shape (a multiple of 512 bytes, then the
# SHA-256), written where the caller can check it.
with open(backup, "wb") as f:
    client.snapshot(f)
with open(backup, "rb") as f:
    size = len(f.read())
assert size % 512 == 32, size
print("python-etcd3: all checks passed")
