// 10,000 simultaneous reconnects with Last-Event-ID across 3 cluster nodes: how long until
// every stream has its replay and is live again. Starts its own redis-server (free port, temp
// dir, AOF always) and three target/release/tidings nodes; Node's standard library only.
//
//   cargo build --release -p tidings
//   ulimit -n 20000; node bench/reconnect_storm.mjs [clients=10000] [backlog=20]
//
// Each client asks for the topic `storm` from `backlog` events back (the same id for all), so
// each reconnect replays `backlog` events before it is live; the figure is the time from the
// first connect to the last stream having received all of them.
import http from "node:http";
import net from "node:net";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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

let done = 0, failed = 0;
const started = Date.now();
let last = 0;
await new Promise((resolveAll) => {
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
  `all live after ${last - started} ms (${done} ok, ${failed} failed)`);
for (const n of nodes) n.child.kill("SIGKILL");
redis.kill("SIGKILL");
process.exit(0);
