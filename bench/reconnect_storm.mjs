// 10,000 simultaneous reconnects with Last-Event-ID across 3 cluster nodes: how long until
// every stream has its replay and is live again. Starts its own redis-server (free port, temp
// dir, AOF always) and three target/release/tidings nodes; Node's standard library only.
//
//   cargo build --release -p tidings
//   ulimit -n 20000; node bench/reconnect_storm.mjs [clients=10000] [backlog=20] [workers=2]
//
// Each client asks for the topic `storm` from `backlog` events back (the same id for all), so
// each reconnect replays `backlog` events before it is live; the figure is the time from the
// first connect to the last stream having received all of them.
//
// The clients are plain sockets (the request written by hand, `id:` lines counted as they
// arrive) spread over `workers` threads, each with its own event loop: with node:http on one
// thread the client itself used a whole core for 3 s, and the figure measured it rather than
// the hub (2.9-3.4 s). Pass workers=0 for that old client (node:http, one thread).
import http from "node:http";
import net from "node:net";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

if (!isMainThread) {
  // One worker: open its clients when told, report when each is live.
  const { ports, slice, first, backlog } = workerData;
  parentPort.once("message", () => {
    let done = 0, failed = 0, last = 0;
    const report = () => {
      if (done + failed === slice.length) parentPort.postMessage({ done, failed, last });
    };
    for (const c of slice) {
      const socket = net.connect({ host: "127.0.0.1", port: ports[c % 3], localAddress: `127.0.0.${2 + (c % 200)}` });
      let seen = 0, tail = "", finished = false;
      socket.setEncoding("latin1");
      socket.on("connect", () => socket.write(`GET /events?topic=storm HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: ${first}\r\n\r\n`));
      socket.on("data", (d) => {
        const text = tail + d;
        let at = 0;
        while ((at = text.indexOf("\nid: ", at)) >= 0) { seen++; at += 5; }
        tail = text.slice(-5);
        if (!finished && seen >= backlog) {
          finished = true;
          done++;
          last = Date.now();
          socket.destroy();
          report();
        }
      });
      socket.on("error", () => { if (!finished) { finished = true; failed++; report(); } });
      socket.on("close", () => { if (!finished) { finished = true; failed++; report(); } });
    }
  });
} else {
const CLIENTS = Number(process.argv[2] ?? 10000);
const BACKLOG = Number(process.argv[3] ?? 20);
const BIN = new URL("../target/release/tidings", import.meta.url).pathname;
const KEY = "storm-publish-key-0123456789";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise((r) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => r(p)); }); });

const dir = mkdtempSync(join(tmpdir(), "tidings-storm-"));
const redisPort = await freePort();
const redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--dir", dir, "--save", "",
  "--appendonly", "yes", "--appendfsync", "always", "--logfile", ""], { stdio: "ignore" });
await sleep(500);
const nodes = [];
for (let i = 0; i < 3; i++) {
  const port = await freePort();
  const child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--cluster", `redis://127.0.0.1:${redisPort}/0`,
    "--publish-key", KEY, "--public-topic", "**", "--max-connections-per-ip", "100000", "--max-http-connections", "20000"],
    { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise((r) => child.stdout.on("data", (d) => String(d).includes("listening") && r()));
  nodes.push({ child, port });
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
async function publish(i) {
  const body = JSON.stringify({ topic: "storm", data: { i } });
  return new Promise((resolve) => {
    const req = http.request({ host: "127.0.0.1", port: nodes[0].port, path: "/publish", method: "POST", agent,
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => { let t = ""; res.on("data", (d) => (t += d)); res.on("end", () => resolve(JSON.parse(t).id)); });
    req.end(body);
  });
}
const first = await publish(-1);
for (let i = 0; i < BACKLOG; i++) await publish(i);
await sleep(300);

const WORKERS = Number(process.argv[4] ?? 2);
let done = 0, failed = 0;
let started = Date.now();
let last = 0;
if (WORKERS > 0) {
  const workers = [];
  for (let w = 0; w < WORKERS; w++) {
    const slice = [];
    for (let c = w; c < CLIENTS; c += WORKERS) slice.push(c);
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { ports: nodes.map((n) => n.port), slice, first, backlog: BACKLOG },
    });
    await new Promise((r) => worker.once("online", r));
    workers.push(worker);
  }
  const reports = workers.map((w) => new Promise((r) => w.once("message", r)));
  started = Date.now();
  for (const w of workers) w.postMessage("go");
  for (const r of await Promise.all(reports)) {
    done += r.done;
    failed += r.failed;
    last = Math.max(last, r.last);
  }
  for (const w of workers) await w.terminate();
} else await new Promise((resolveAll) => {
  for (let c = 0; c < CLIENTS; c++) {
    const node = nodes[c % 3];
    const req = http.get({ host: "127.0.0.1", port: node.port, path: "/events?topic=storm", agent: false,
      localAddress: `127.0.0.${2 + (c % 200)}`, headers: { "last-event-id": first } }, (res) => {
      let seen = 0, buf = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        buf += d;
        let at;
        while ((at = buf.indexOf("\n\n")) >= 0) {
          if (buf.slice(0, at).startsWith("id: ")) seen++;
          buf = buf.slice(at + 2);
        }
        if (seen === BACKLOG) {
          seen++;
          done++;
          last = Date.now();
          res.destroy();
          if (done + failed === CLIENTS) resolveAll();
        }
      });
    });
    req.on("error", () => { failed++; if (done + failed === CLIENTS) resolveAll(); });
  }
});
console.log(`${CLIENTS} reconnects with Last-Event-ID across 3 nodes, ${BACKLOG} events replayed each: ` +
  `all live after ${last - started} ms (${done} ok, ${failed} failed; ` +
  `${WORKERS > 0 ? `${WORKERS} client threads, plain sockets` : "node:http, one thread"})`);
for (const n of nodes) n.child.kill("SIGKILL");
redis.kill("SIGKILL");
process.exit(0);
}
