#!/usr/bin/env python3
"""Time for a new member to join a store of a given size, and the write
throughput clients see before and while it joins.

A single member is filled with --mib MiB of values (1 KiB each), then a put
load (32 clients, 256-byte values) runs for --load seconds; after a quiet
baseline part, `etcdctl member add` adds a voter and a new member is started
with --initial-cluster-state existing. Printed: the time from start until
the new member logs the snapshot it received and until it is healthy, the
snapshot's size and rate, the load's throughput before the join and
while the snapshot is in transfer (from the load's 1-second samples), and
the memory of both members (resident set: the leader's before the join and
its highest while it sends, the new member's highest).

    bench/join.py [--mib 500] [--load 40]

Needs release builds (`cargo build --release -p concord-cli -p
concord-bench`) and etcdctl. Everything runs on 127.0.0.1 with ports chosen
free at run time, and is stopped at the end.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONCORD = os.path.join(ROOT, "target/release/concord")
BENCH = os.path.join(ROOT, "target/release/concord-bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcdctl(endpoint, *args):
    cmd = ["etcdctl", f"--endpoints={endpoint}", "--command-timeout=10s", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=60)


def serve(work, name, peer, client, initial, state):
    log = open(os.path.join(work, f"{name}.log"), "w")
    args = [CONCORD, "serve", f"--name={name}", f"--data-dir={os.path.join(work, name)}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={initial}", f"--initial-cluster-state={state}",
            "--initial-cluster-token=join-bench", "--listen-metrics-urls="]
    return subprocess.Popen(args, stdout=log, stderr=log)


def rss_mib(proc, field="VmRSS"):
    """A process's resident memory (or its peak, with VmHWM) in MiB."""
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            line = next(l for l in f if l.startswith(field + ":"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def healthy(endpoint):
    return etcdctl(endpoint, "endpoint", "health").returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=500)
    parser.add_argument("--load", type=int, default=40, help="seconds of put load")
    opts = parser.parse_args()
    work = tempfile.mkdtemp(prefix="join-bench-")
    procs = []
    try:
        peers = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        clients = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        procs.append(serve(work, "m0", peers[0], clients[0], f"m0={peers[0]}", "new"))
        while not healthy(clients[0]):
            time.sleep(0.1)
        keys = opts.mib * 1024
        started = time.monotonic()
        subprocess.run([BENCH, "put", f"--endpoints={clients[0][7:]}", "--clients=64", "--conns=4",
                        f"--total={keys}", f"--key-space={keys}", "--sequential-keys", "--key-size=16",
                        "--val-size=1024"], check=True, capture_output=True)
        print(f"filled {keys} keys of 1 KiB in {time.monotonic() - started:.1f} s", flush=True)

        # The load; its throughput by the store's revision (one per put), sampled every second.
        samples = []
        leader_rss = []
        load = subprocess.Popen([BENCH, "put", f"--endpoints={clients[0][7:]}", "--clients=32", "--conns=2",
                                 f"--duration={opts.load}", "--key-space=10000", "--val-size=256", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        load_started = time.monotonic()

        def sample():
            last = None
            while load.poll() is None:
                out = etcdctl(clients[0], "endpoint", "status", "-w", "json")
                try:
                    index = json.loads(out.stdout)[0]["Status"]["header"]["revision"]
                except (ValueError, KeyError, IndexError):
                    index = None
                samples.append((time.monotonic() - load_started, index))
                leader_rss.append((time.monotonic() - load_started, rss_mib(procs[0])))
                time.sleep(1.0)

        threading.Thread(target=sample, daemon=True).start()
        time.sleep(opts.load / 4)
        joined_at = time.monotonic()
        out = etcdctl(clients[0], "member", "add", "m1", f"--peer-urls={peers[1]}")
        assert out.returncode == 0, out.stderr
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', out.stdout).group(1)
        procs.append(serve(work, "m1", peers[1], clients[1], initial, "existing"))
        received = None
        while time.monotonic() - joined_at < 600:
            log = open(os.path.join(work, "m1.log")).read()
            if received is None and "snapshot received" in log:
                received = time.monotonic() - joined_at
                line = next(l for l in log.splitlines() if "snapshot received" in l)
                size = int(re.search(r"bytes=(\d+)", line).group(1))
            if received is not None and healthy(clients[1]):
                break
            time.sleep(0.1)
        ready = time.monotonic() - joined_at
        joiner_peak = rss_mib(procs[1], "VmHWM")
        result = json.loads(load.communicate()[0])
        print(f"snapshot of {size / 2**20:.0f} MiB received {received:.1f} s after member add "
              f"({size / 2**20 / received:.0f} MiB/s including the new member's start); healthy after {ready:.1f} s")
        print(f"load over {opts.load} s: {result['ops_per_sec']:.0f} puts/s on average", flush=True)
        join_offset = joined_at - load_started
        before = [s for s in samples if s[0] < join_offset and s[1] is not None]
        during = [s for s in samples if join_offset <= s[0] <= join_offset + received and s[1] is not None]
        for label, part in (("before the join", before), ("during the transfer", during)):
            if len(part) >= 2:
                rate = (part[-1][1] - part[0][1]) / (part[-1][0] - part[0][0])
                print(f"  puts/s {label}: {rate:.0f}")
        before_rss = [r for t, r in leader_rss if t < join_offset and r is not None]
        during_rss = [r for t, r in leader_rss if join_offset <= t <= join_offset + ready and r is not None]
        if before_rss and during_rss:
            print(f"leader resident memory: {before_rss[-1]:.0f} MiB before the join, "
                  f"at most {max(during_rss):.0f} MiB while the new member joined")
        if joiner_peak is not None:
            print(f"new member's peak resident memory: {joiner_peak:.0f} MiB")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
