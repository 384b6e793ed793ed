#!/usr/bin/env python3
"""Failover time on a 3-member cluster on loopback: SIGKILL the leader (or,
with --signal TERM, stop it gracefully: both etcd and Concord then hand
leadership to a follower first), then time until a write through the
surviving members succeeds. Repeats N times (restarting the stopped member
between rounds) and prints every time and the median, for Concord and (with
--etcd) for etcd 3.4 with its default timings.

    bench/failover.py [--rounds 10] [--etcd] [--signal KILL|TERM]

Needs a release build of concord (`cargo build --release -p concord-cli`),
etcdctl, and for --etcd Debian's etcd-server. Everything runs on 127.0.0.1
with ports chosen free at run time, and is stopped at the end.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcdctl(endpoints, *args, timeout="1s"):
    cmd = ["etcdctl", f"--endpoints={','.join(endpoints)}", f"--command-timeout={timeout}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)


class Cluster:
    def __init__(self, kind, work):
        self.kind, self.work = kind, work
        self.peers = [free_port() for _ in range(3)]
        self.clients = [free_port() for _ in range(3)]
        self.procs = [None] * 3
        self.initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peers))

    def args(self, i):
        peer, client = f"http://127.0.0.1:{self.peers[i]}", f"http://127.0.0.1:{self.clients[i]}"
        data = os.path.join(self.work, f"m{i}")
        common = [f"--name=m{i}", f"--data-dir={data}", f"--listen-client-urls={client}",
                  f"--advertise-client-urls={client}", f"--listen-peer-urls={peer}",
                  f"--initial-advertise-peer-urls={peer}", f"--initial-cluster={self.initial}",
                  "--initial-cluster-state=new", "--initial-cluster-token=failover-bench"]
        if self.kind == "etcd":
            return ["etcd", *common]
        return [os.path.join(ROOT, "target/release/concord"), "serve", *common, "--listen-metrics-urls="]

    def start(self, i):
        log = open(os.path.join(self.work, f"m{i}.log"), "a")
        self.procs[i] = subprocess.Popen(self.args(i), stdout=log, stderr=log)

    def endpoints(self, members=range(3)):
        return [f"http://127.0.0.1:{self.clients[i]}" for i in members]

    def wait_healthy(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            if etcdctl(self.endpoints(), "put", "warmup", "x").returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} cluster never became healthy")

    def leader(self):
        out = etcdctl(self.endpoints(), "endpoint", "status", "-w", "json", timeout="3s")
        statuses = json.loads(out.stdout)
        leader = statuses[0]["Status"]["leader"]
        for i, s in enumerate(statuses):
            if s["Status"]["header"]["member_id"] == leader:
                return i
        raise RuntimeError("leader not among the members")

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


def measure(kind, rounds, sig):
    work = tempfile.mkdtemp(prefix=f"failover-{kind}-")
    cluster = Cluster(kind, work)
    times = []
    try:
        for i in range(3):
            cluster.start(i)
        cluster.wait_healthy()
        for r in range(rounds):
            time.sleep(1.0)
            leader = cluster.leader()
            others = [i for i in range(3) if i != leader]
            cluster.procs[leader].send_signal(sig)
            killed = time.monotonic()
            while etcdctl(cluster.endpoints(others), "put", "failover", str(r)).returncode != 0:
                if time.monotonic() - killed > 60:
                    raise RuntimeError("no write succeeded within 60 s")
            times.append(time.monotonic() - killed)
            cluster.procs[leader].wait(timeout=60)
            print(f"{kind} round {r + 1}: {times[-1] * 1000:.0f} ms", flush=True)
            cluster.start(leader)
            cluster.wait_healthy()
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--etcd", action="store_true", help="also measure etcd (Debian's etcd-server)")
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL", help="how the leader is stopped")
    args = parser.parse_args()
    kinds = ["concord"] + (["etcd"] if args.etcd else [])
    sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGTERM
    results = {kind: measure(kind, args.rounds, sig) for kind in kinds}
    for kind, times in results.items():
        ms = sorted(t * 1000 for t in times)
        print(f"{kind}: median {statistics.median(ms):.0f} ms, min {ms[0]:.0f}, max {ms[-1]:.0f} "
              f"over {len(ms)} leaders stopped with SIG{args.signal}")


if __name__ == "__main__":
    sys.exit(main())
