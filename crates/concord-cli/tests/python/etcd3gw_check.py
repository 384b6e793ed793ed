"""Drives Concord's JSON gateway with etcd3gw (OpenStack's etcd v3 gateway
client): every call it makes goes through /v3/... as JSON."""
import sys
import threading
import time

import etcd3gw

host, port = sys.argv[1].rsplit(":", 1)
client = etcd3gw.client(host=host, port=int(port))
P = "/gw-%d/" % time.time_ns()
print("api path", client.api_path)
assert client.status()["version"]
assert client.put(P + "a", "1")
assert client.get(P + "a") == [b"1"], client.get(P + "a")
assert client.create(P + "a", "2") is False
assert client.create(P + "b", "2") is True
assert client.replace(P + "a", "1", "3") is True
assert client.replace(P + "a", "1", "4") is False
assert sorted(v for v, _ in client.get_prefix(P + "")) == [b"2", b"3"]
lease = client.lease(ttl=30)
assert client.put(P + "leased", "x", lease=lease)
assert lease.ttl() > 25, lease.ttl()
assert lease.refresh() == 30
assert [k for k in lease.keys()] == [(P + "leased").encode()], lease.keys()
assert lease.revoke() is True
assert client.get(P + "leased") == []
events = []
watcher, cancel = client.watch(P + "w")
def collect():
    for event in watcher:
        events.append(event)
        if len(events) == 2:
            break
t = threading.Thread(target=collect, daemon=True)
t.start()
time.sleep(0.5)
client.put(P + "w", "one")
client.delete(P + "w")
t.join(10)
cancel()
assert [e.get("type", "PUT") for e in events] == ["PUT", "DELETE"], events
assert events[0]["kv"]["value"] == b"one", events
assert client.delete_prefix(P + "")
assert client.get_prefix(P + "") == []
members = client.members()
assert len(members) == 1, members
print("etcd3gw: all checks passed")
