#!/usr/bin/env python3
"""What one wide publish costs the durable history: data-dir bytes written per event byte, and
how long /healthz waits while wide publishes are processed (issue: hardening).

Usage: bench/wide_event_cost.py [path/to/tidings]   (default: target/release/tidings)
Starts its own hub on a free loopback port with a temp data dir; stops by itself.
"""
import json, os, re, shutil, socket, subprocess, sys, tempfile, threading, time, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/tidings"
KEY = "bench-publish-key-0123456789"


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def written(pid):
    """Bytes the process passed to write calls (files and sockets): /proc/PID/io wchar."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise SystemExit("no wchar in /proc/PID/io")


def post(addr, body):
    req = urllib.request.Request(f"http://{addr}/publish", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def start(data, extra):
    p = subprocess.Popen([BIN, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
                          "--publish-key", KEY, *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            return p, m.group(1)
    raise SystemExit("the hub did not start")


def wide(n, event_bytes):
    topics = [f"wide/{i:0>195}" for i in range(n)]
    names = sum(map(len, topics))
    return {"topics": topics, "text": "x" * max(0, event_bytes - names - 64)}, names


def main():
    rows = []
    for n, size, extra in [(1, 512 << 10, []), (4, 512 << 10, []), (64, 512 << 10, []),
                           (3000, 1 << 20, ["--max-targets", "3000", "--max-event-bytes", "1MiB",
                                            "--max-body-bytes", "2MiB"])]:
        data = tempfile.mkdtemp(prefix="tidings-wide-")
        p, addr = start(data, extra)
        try:
            body, names = wide(n, size)
            before = written(p.pid)
            post(addr, body)
            grew = written(p.pid) - before
            ev = names + len(body["text"])
            rows.append((n, ev, grew))
        finally:
            p.kill(); p.wait(); shutil.rmtree(data, ignore_errors=True)
    print("| topics | event bytes (frame + names) | bytes the hub wrote | ratio |")
    print("| --- | --- | --- | --- |")
    for n, ev, grew in rows:
        print(f"| {n} | {ev:,} | {grew:,} | {grew / ev:.2f} |")

    # /healthz while three publishes with 3,000 topics each (144 KB bodies) are processed.
    data = tempfile.mkdtemp(prefix="tidings-wide-")
    p, addr = start(data, ["--max-targets", "3000"])
    try:
        topics = [f"t/{i:0>40}" for i in range(3000)]
        body = {"topics": topics, "text": "x"}
        worst = [0.0]
        done = threading.Event()

        def probe():
            while not done.is_set():
                t = time.monotonic()
                urllib.request.urlopen(f"http://{addr}/healthz", timeout=60).read()
                worst[0] = max(worst[0], time.monotonic() - t)
        th = threading.Thread(target=probe); th.start()
        t0 = time.monotonic()
        pubs = [threading.Thread(target=post, args=(addr, body)) for _ in range(3)]
        [t.start() for t in pubs]; [t.join() for t in pubs]
        elapsed = time.monotonic() - t0
        done.set(); th.join()
        print(f"\n3 concurrent publishes of {len(json.dumps(body)):,}-byte bodies with 3,000 topics: "
              f"{elapsed * 1000:.0f} ms in all; slowest /healthz meanwhile {worst[0] * 1000:.1f} ms")
    finally:
        p.kill(); p.wait(); shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
