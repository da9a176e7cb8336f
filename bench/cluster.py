#!/usr/bin/env python3
"""The cluster figures of docs/CLUSTER.md, on loopback, with the project's bench tool.

Starts its own redis-server (free port, temporary directory, AOF) and hub nodes
(target/release/tidings serve --cluster), runs `tidings bench`, prints one line per figure,
and stops everything. Nothing else is touched (never the machine's Redis on 6379).

    cargo build --release -p tidings -p tidings-bench
    python3 bench/cluster.py                 # every figure
    python3 bench/cluster.py publish latency # some of them

Figures:
  publish   acknowledged publishes/s through one node, 50 concurrent publishers: appendfsync
            always, always with batches of 10, everysec (with --durability interval)
  latency   publish -> delivery, 1,000 subscribers: on the publishing node vs on another node,
            and a single node (--memory) for reference; fan-out throughput per node
  recovery  Redis killed and restarted: time from Redis accepting connections to the first
            event delivered again through the same open stream on another node
  redis-cpu Redis CPU seconds per published event, with 1 and 3 nodes tailing
  fanout    fan-out throughput at saturation (1,000 subscribers, publishing back to back):
            a single node (--memory) against a cluster node whose subscribers get events
            published on another node
  nats      acknowledged publishes/s through one nats-server -js (R1, file storage), 50
            concurrent publishers, single events and batches of 10
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "tidings")
KEY = "cluster-bench-publish-key-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, fsync="always"):
        self.dir = tempfile.mkdtemp(prefix="tidings-bench-redis-")
        self.port = free_port()
        self.fsync = fsync
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "yes", "--appendfsync", self.fsync, "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not self.ping():
            if time.time() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.005)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


class NatsServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tidings-bench-nats-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("nats-server did not start")
                time.sleep(0.01)

    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Node:
    def __init__(self, args):
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--publish-key", KEY, "--public-topic", "**",
             "--queue-bytes", "16MiB", *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            if "listening on http://" in line:
                self.addr = line.split("http://")[1].split()[0]
                return
        sys.exit(f"a node did not start: {args}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def bench(*args):
    out = subprocess.run([BIN, "bench", *args, "--auth", f"Bearer {KEY}", "-q"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tidings bench {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def publish_figures():
    for fsync, durability, body, label in [
        ("always", "sync", None, "appendfsync always"),
        ("always", "sync", "batch", "appendfsync always, batches of 10"),
        ("everysec", "interval", None, "appendfsync everysec (--durability interval)"),
    ]:
        redis = Redis(fsync)
        node = Node(["--cluster", redis.url(), "--durability", durability])
        args = ["publish", "--url", f"http://{node.addr}", "-c", "50",
                "--hub-pid", str(node.proc.pid)]
        per = 1
        if body == "batch":
            per = 10
            one = '{"topic":"{topic}","data":{"seq":{seq},"ts":{ts}}}'
            args += ["--publish-body", "[" + ",".join([one] * per) + "]", "-k", "10000"]
        else:
            args += ["-k", "60000"]
        redis_cpu = redis.cpu_seconds()
        r = bench(*args)
        redis_cpu = redis.cpu_seconds() - redis_cpu
        ack = r["ack_us"]
        events = r["acked"] * per
        print(f"publish, {label}: {r['publishes_per_s'] * per:,.0f} events/s acknowledged "
              f"({r['publishes_per_s']:,.0f} requests/s), ack p50 {ack['p50'] / 1000:.2f} ms, "
              f"p99 {ack['p99'] / 1000:.2f} ms, failed {r['publish_failed']}; CPU per event: "
              f"hub {r.get('hub_cpu_s', 0) / events * 1e6:.1f} us, "
              f"redis {redis_cpu / events * 1e6:.1f} us")
        node.stop()
        redis.stop()


def latency_figures():
    redis = Redis()
    a = Node(["--cluster", redis.url()])
    b = Node(["--cluster", redis.url()])
    single = Node(["--memory"])
    data = tempfile.mkdtemp(prefix="tidings-bench-disk-")
    disk = Node(["--data-dir", data])
    common = ["fanout", "-n", "1000", "-k", "2000", "--rate", "200"]
    for label, sub, pub, pids in [
        ("single node (--memory)", single, single, [single]),
        ("single node (durable history, --durability sync)", disk, disk, [disk]),
        ("cluster, subscribers on the publishing node", a, a, [a, b]),
        ("cluster, subscribers on another node", b, a, [a, b]),
    ]:
        args = common + ["--subscribe-url", f"http://{sub.addr}/events?topic={{topic}}",
                         "--publish-url", f"http://{pub.addr}/publish"]
        for n in pids:
            args += ["--hub-pid", str(n.proc.pid)]
        r = bench(*args)
        lat = r.get("latency_us", {})
        print(f"delivery, {label}: p50 {lat.get('p50', 0) / 1000:.2f} ms, p99 "
              f"{lat.get('p99', 0) / 1000:.2f} ms, {r.get('deliveries_per_s', 0):,.0f} deliveries/s, "
              f"lost {r.get('lost', '?')}, duplicated {r.get('duplicated', '?')}")
    for n in (a, b, single, disk):
        n.stop()
    shutil.rmtree(data, ignore_errors=True)
    redis.stop()


def recovery_figure(runs=5):
    redis = Redis()
    a = Node(["--cluster", redis.url()])
    b = Node(["--cluster", redis.url()])
    results = []
    for run in range(runs):
        host, port = b.addr.rsplit(":", 1)
        sub = socket.create_connection((host, int(port)))
        sub.sendall(b"GET /events?topic=recovery HTTP/1.1\r\nHost: x\r\n\r\n")
        sub.settimeout(10)
        buf = b""
        while b"clientId" not in buf:
            buf += sub.recv(65536)
        redis.kill9()
        time.sleep(0.5)
        redis.start()
        accepting = time.time()
        marker = f"back-{run}".encode()
        buf = b""
        while True:
            status = post(a.addr, '{"topic":"recovery","data":"%s"}' % marker.decode())
            if status == 200:
                break
            time.sleep(0.005)
        while marker not in buf:
            buf += sub.recv(65536)
        results.append(time.time() - accepting)
        sub.close()
    print("recovery, Redis accepting -> first event delivered on another node's open stream: "
          + ", ".join(f"{r * 1000:.0f} ms" for r in results))
    for n in (a, b):
        n.stop()
    redis.stop()


def post(addr, body):
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall((f"POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                       "Connection: close\r\n\r\n" + body).encode())
            return int(s.recv(64).split()[1])
    except OSError:
        return 0


def redis_cpu_figures():
    for n in (1, 3):
        redis = Redis()
        nodes = [Node(["--cluster", redis.url()]) for _ in range(n)]
        before = redis.cpu_seconds()
        r = bench("publish", "--url", f"http://{nodes[0].addr}", "-c", "50", "-k", "30000")
        cpu = redis.cpu_seconds() - before
        print(f"redis CPU with {n} node(s) tailing: {cpu / r['acked'] * 1e6:.1f} us per event "
              f"({r['acked']} events)")
        for node in nodes:
            node.stop()
        redis.stop()


def fanout_figures():
    redis = Redis()
    a = Node(["--cluster", redis.url()])
    b = Node(["--cluster", redis.url()])
    single = Node(["--memory"])
    for label, sub, pub, pids in [
        ("single node (--memory)", single, single, [single]),
        ("cluster, subscribers on another node", b, a, [a, b]),
    ]:
        args = ["fanout", "-n", "1000", "-k", "4000", "-c", "32",
                "--subscribe-url", f"http://{sub.addr}/events?topic={{topic}}",
                "--publish-url", f"http://{pub.addr}/publish"]
        for n in pids:
            args += ["--hub-pid", str(n.proc.pid)]
        r = bench(*args)
        lat = r.get("latency_us", {})
        print(f"fan-out at saturation, {label}: {r.get('deliveries_per_s', 0):,.0f} deliveries/s, "
              f"p50 {lat.get('p50', 0) / 1000:.1f} ms, p99 {lat.get('p99', 0) / 1000:.1f} ms, "
              f"lost {r.get('lost', '?')}, duplicated {r.get('duplicated', '?')}")
    for n in (a, b, single):
        n.stop()
    redis.stop()


def nats_figures():
    for per in (1, 10):
        nats = NatsServer()
        node = Node(["--cluster", nats.url()])
        args = ["publish", "--url", f"http://{node.addr}", "-c", "50", "--hub-pid", str(node.proc.pid)]
        if per > 1:
            one = '{"topic":"{topic}","data":{"seq":{seq},"ts":{ts}}}'
            args += ["--publish-body", "[" + ",".join([one] * per) + "]", "-k", "10000"]
        else:
            args += ["-k", "60000"]
        cpu = nats.cpu_seconds()
        r = bench(*args)
        cpu = nats.cpu_seconds() - cpu
        ack = r["ack_us"]
        events = r["acked"] * per
        label = "single events" if per == 1 else f"batches of {per}"
        print(f"nats publish, {label}: {r['publishes_per_s'] * per:,.0f} events/s acknowledged, "
              f"ack p50 {ack['p50'] / 1000:.2f} ms, p99 {ack['p99'] / 1000:.2f} ms, failed "
              f"{r['publish_failed']}; CPU per event: hub {r.get('hub_cpu_s', 0) / events * 1e6:.1f} us, "
              f"nats-server {cpu / events * 1e6:.1f} us")
        node.stop()
        nats.stop()


FIGURES = {"fanout": fanout_figures, "nats": nats_figures, "publish": publish_figures, "latency": latency_figures,
           "recovery": recovery_figure, "redis-cpu": redis_cpu_figures}

if __name__ == "__main__":
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release -p tidings -p tidings-bench")
    for name in sys.argv[1:] or list(FIGURES):
        FIGURES[name]()
