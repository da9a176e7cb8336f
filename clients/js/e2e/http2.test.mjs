// Ten tabs' worth of streams to one origin in real headless Chromium, over HTTPS with HTTP/2:
// over HTTP/1.1 a browser holds at most six connections per origin, so the seventh stream
// would wait; over HTTP/2 all ten share one connection and all receive.
//
//   TIDINGS_BIN=target/debug/tidings node --test clients/js/e2e/   (scripts/test runs it)
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, freePort, until } from "./support.mjs";

const BIN = process.env.TIDINGS_BIN;
const KEY = "h2-e2e-publish-key-0123456789";
if (!BIN || !existsSync(BIN)) throw new Error(`set TIDINGS_BIN to the tidings binary (got ${BIN})`);

const children = new Set();
let browser;
after(async () => {
  for (const c of children) c.kill("SIGKILL");
  await browser?.close();
});

test("ten tabs stream from one origin over HTTP/2", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tidings-h2-"));
  const cert = join(dir, "cert.pem"), key = join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"], { stdio: "ignore" });
  const port = await freePort();
  const origin = `https://127.0.0.1:${port}`;
  const child = spawn(BIN, ["serve", "--memory", "--listen", `127.0.0.1:${port}`, "--tls-cert", cert, "--tls-key", key,
    "--publish-key", KEY, "--public-topic", "public/**", "--jwt-secret", "h2-e2e-secret-0123456789"],
    { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  await new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => String(d).includes("listening on https://") && resolve());
    child.on("exit", (code) => reject(new Error(`tidings serve exited ${code}`)));
  });

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--ignore-certificate-errors"] });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const tabs = [];
  for (let i = 0; i < 10; i++) {
    const tab = await context.newPage();
    await tab.goto(`${origin}/client/tidings.js`); // any page of the origin
    await tab.evaluate((i) => {
      window.got = [];
      window.open = false;
      const es = new EventSource(`/events?topic=public/tabs&topic=public/tab/${i}`);
      es.addEventListener("connected", () => (window.open = true));
      es.onmessage = (e) => window.got.push(e.data);
    }, i);
    tabs.push(tab);
  }
  for (const [i, tab] of tabs.entries()) await until(() => tab.evaluate(() => window.open), `tab ${i} to open`);
  const res = await fetch(`${origin}/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ topic: "public/tabs", data: "to every tab" }),
  }).catch((e) => e);
  // Node's fetch refuses the self-signed certificate; publish from a tab instead.
  if (!(res instanceof Response)) {
    await tabs[0].evaluate(async (key) => {
      await fetch("/publish", { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ topic: "public/tabs", data: "to every tab" }) });
    }, KEY);
  }
  for (const [i, tab] of tabs.entries()) {
    await until(() => tab.evaluate(() => window.got.includes('"to every tab"')), `tab ${i} to receive`);
  }
  const protocol = await tabs[9].evaluate(() => performance.getEntriesByType("navigation")[0]?.nextHopProtocol);
  assert.equal(protocol, "h2", "the origin is served over HTTP/2");
});
