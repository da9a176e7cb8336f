// What HTTP/2 (and TLS) cost the hub, per stream held and per event delivered, against the
// cleartext HTTP/1.1 native path. Node's standard library only (http, https, http2).
//
//   cargo build --release -p tidings
//   node bench/h2_cost.mjs [streams=2000] [events=300]
//
// For each mode it starts target/release/tidings on a free loopback port (TLS with a
// self-signed certificate made by openssl), opens the streams, reads the hub's RSS and CPU
// from /proc, publishes events at 100/s to a topic every stream follows, waits until every
// stream got every event, and reports RSS per stream and hub CPU per delivery.
import http from "node:http";
import https from "node:https";
import http2 from "node:http2";
import net from "node:net";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const STREAMS = Number(process.argv[2] ?? 2000);
const EVENTS = Number(process.argv[3] ?? 300);
const PER_H2 = 100; // streams per HTTP/2 connection
const BIN = new URL("../target/release/tidings", import.meta.url).pathname;
const KEY = "h2-cost-publish-key-0123456789";
const TICK = 100; // clock ticks per second on Linux

const dir = mkdtempSync(join(tmpdir(), "tidings-h2cost-"));
const cert = join(dir, "cert.pem"), key = join(dir, "key.pem");
execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
  "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
  "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"], { stdio: "ignore" });
const ca = readFileSync(cert);

const freePort = () => new Promise((r) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => r(p)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const proc = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
  return { cpu: (Number(stat[11]) + Number(stat[12])) / TICK, rss };
};

async function hub(tls) {
  const port = await freePort();
  const args = ["serve", "--memory", "--listen", `127.0.0.1:${port}`, "--publish-key", KEY, "--public-topic", "**",
    "--max-connections-per-ip", "100000", "--max-http-connections", "100000"];
  if (tls) args.push("--tls-cert", cert, "--tls-key", key);
  const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "ignore"] });
  await new Promise((r) => child.stdout.on("data", (d) => String(d).includes("listening on") && r()));
  return { child, port };
}

function count(onEvent) {
  let buf = "";
  return (chunk) => {
    buf += chunk;
    let at;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      if (buf.slice(0, at).includes("\ndata: ") || buf.startsWith("data: ") || buf.slice(0, at).includes("id: ")) onEvent();
      buf = buf.slice(at + 2);
    }
  };
}

async function open(mode, port, n, onEvent) {
  const path = "/events?topic=cost";
  const ready = [];
  const agentOpts = { keepAlive: false, ca };
  if (mode === "h2") {
    for (let c = 0; c < n / PER_H2; c++) {
      const session = http2.connect(`https://127.0.0.1:${port}`, { ca, settings: { initialWindowSize: 1 << 20 } });
      session.on("error", () => {});
      for (let s = 0; s < PER_H2; s++) {
        const req = session.request({ ":path": path });
        req.setEncoding("utf8");
        ready.push(new Promise((r) => req.once("data", () => r())));
        req.on("data", count(onEvent));
        req.on("error", () => {});
      }
    }
  } else {
    const lib = mode === "h1-tls" ? https : http;
    const scheme = mode === "h1-tls" ? "https" : "http";
    for (let i = 0; i < n; i++) {
      ready.push(new Promise((r) => {
        const req = lib.get(`${scheme}://127.0.0.1:${port}${path}`, { agent: false, ...agentOpts }, (res) => {
          res.setEncoding("utf8");
          res.once("data", () => r());
          res.on("data", count(onEvent));
        });
        req.on("error", () => r());
      }));
      if (i % 200 === 199) await sleep(20);
    }
  }
  await Promise.all(ready);
}

async function publish(mode, port, i) {
  const body = JSON.stringify({ topic: "cost", data: { i } });
  const lib = mode === "h1" ? http : https;
  const scheme = mode === "h1" ? "http" : "https";
  await new Promise((resolve) => {
    const req = lib.request(`${scheme}://127.0.0.1:${port}/publish`, { method: "POST", ca, agent: false,
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => { res.resume(); res.on("end", resolve); });
    req.on("error", resolve);
    req.end(body);
  });
}

for (const mode of ["h1", "h1-tls", "h2"]) {
  const { child, port } = await hub(mode !== "h1");
  await sleep(300);
  const idle = proc(child.pid);
  let got = 0;
  await open(mode, port, STREAMS, () => got++);
  await sleep(1000);
  const held = proc(child.pid);
  const before = proc(child.pid);
  got = 0;
  for (let i = 0; i < EVENTS; i++) {
    await publish(mode, port, i);
    await sleep(1000 / 100);
  }
  const want = STREAMS * EVENTS;
  const end = Date.now() + 60000;
  while (got < want && Date.now() < end) await sleep(50);
  const after = proc(child.pid);
  console.log(`${mode.padEnd(7)} ${STREAMS} streams: ${((held.rss - idle.rss) / STREAMS / 1024).toFixed(1)} KiB RSS per stream; ` +
    `${(((after.cpu - before.cpu) / got) * 1e6).toFixed(2)} us hub CPU per delivery (${got}/${want} delivered)`);
  child.kill("SIGKILL");
  await sleep(300);
}
process.exit(0);
