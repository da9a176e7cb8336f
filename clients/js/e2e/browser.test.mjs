// End to end in real headless Chromium (Debian's /usr/bin/chromium via playwright-core) against
// a real `tidings serve` on loopback, the page served from another origin.
//
//   TIDINGS_BIN=target/debug/tidings node --test clients/js/e2e/   (scripts/test runs it)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM, freePort, until } from "./support.mjs";
import { build } from "esbuild";

const BIN = process.env.TIDINGS_BIN;
const SECRET = "e2e-secret-0123456789abcdef";
const KEY = "e2e-publish-key-0123456789";

if (!BIN || !existsSync(BIN)) throw new Error(`set TIDINGS_BIN to the tidings binary (got ${BIN})`);

let page, browser, pageServer, pageOrigin;
/** Every hub started, killed at the end whatever happened. */
const hubs = new Set();

/** A hub process on `port` with a data dir; resolves once it listens. */
function startHub(port, dir, extra = []) {
  const child = spawn(
    BIN,
    ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir, "--jwt-secret", SECRET,
      "--publish-key", KEY, "--public-topic", "public/**", "--cors-origin", pageOrigin, ...extra],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  hubs.add(child);
  child.on("exit", () => hubs.delete(child));
  return new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => String(d).includes("listening on") && resolve(child));
    child.on("exit", (code) => reject(new Error(`tidings serve exited ${code}`)));
  });
}

async function stopHub(child) {
  const exited = new Promise((r) => child.on("exit", r));
  child.kill("SIGTERM");
  await exited;
}

async function publish(hub, body) {
  const res = await fetch(`${hub}/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

const token = (sub, extra = []) =>
  execFileSync(BIN, ["token", "--sub", sub, "--subscribe", "**", ...extra], {
    env: { ...process.env, TIDINGS_JWT_SECRET: SECRET },
  })
    .toString()
    .trim();

/** A React page using `tidings/react`, bundled with React for the browser. */
async function reactApp() {
  const result = await build({
    stdin: {
      contents: `
        import { createElement as h } from "react";
        import { createRoot } from "react-dom/client";
        import { TidingsProvider, useEventStream } from "tidings/react";
        function Feed() {
          const n = useEventStream(["public/h"], {
            initial: 0,
            reduce: (count) => count + 1,
            onReset: (info) => window.hookResets.push(info.reason),
          });
          return h("b", { id: "count" }, String(n));
        }
        window.startApp = (url, lastEventId) => {
          window.hookResets = [];
          const root = createRoot(document.body.appendChild(document.createElement("div")));
          root.render(h(TidingsProvider, { url, lastEventId }, h(Feed)));
        };`,
      resolveDir: fileURLToPath(new URL("..", import.meta.url)),
    },
    bundle: true,
    format: "esm",
    write: false,
    define: { "process.env.NODE_ENV": '"production"' },
  });
  return result.outputFiles[0].text;
}

before(async () => {
  const app = await reactApp();
  pageServer = http.createServer((req, res) => {
    if (req.url === "/app.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      return res.end(app);
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>tidings e2e</title>");
  });
  await new Promise((r) => pageServer.listen(0, "127.0.0.1", r));
  pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  page = await browser.newPage();
  await page.goto(pageOrigin);
});

after(async () => {
  for (const child of hubs) child.kill("SIGKILL");
  await browser?.close();
  pageServer?.close();
});

test("native EventSource receives cross-origin and resumes with Last-Event-ID after a hub restart", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-e2e-"));
  const hubUrl = `http://127.0.0.1:${port}`;
  let hub = await startHub(port, dir, ["--retry", "200ms"]);
  await page.evaluate((url) => {
    window.got = [];
    window.es = new EventSource(`${url}/events?topic=public/news`);
    window.es.addEventListener("news", (e) => window.got.push([e.lastEventId, e.data]));
  }, hubUrl);
  await until(() => page.evaluate(() => window.es.readyState === 1), "the stream to open");
  const first = await publish(hubUrl, { topic: "public/news", event: "news", data: 1 });
  await until(async () => (await page.evaluate(() => window.got.length)) === 1, "the first event");
  await stopHub(hub);
  hub = await startHub(port, dir, ["--retry", "200ms"]);
  const second = await publish(hubUrl, { topic: "public/news", event: "news", data: 2 });
  await until(async () => (await page.evaluate(() => window.got.length)) === 2, "the event after the restart");
  assert.deepEqual(await page.evaluate(() => window.got), [[first.id, "1"], [second.id, "2"]]);
  await page.evaluate(() => window.es.close());
  await stopHub(hub);
});

test("the JS client from /client/tidings.js sends a Bearer token cross-origin; 1,000 events across a restart arrive once, in order", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-e2e-"));
  const hubUrl = `http://127.0.0.1:${port}`;
  let hub = await startHub(port, dir, ["--retry", "200ms"]);
  await page.evaluate(
    async ({ url, tok }) => {
      const { Tidings } = await import(`${url}/client/tidings.js`);
      window.seen = [];
      window.client = new Tidings({ url, topics: ["orders/*"], token: tok, retry: 200 });
      window.client.on("order", (e) => window.seen.push(e.data.n));
    },
    { url: hubUrl, tok: token("alice") },
  );
  await until(() => page.evaluate(() => window.client.state === "open"), "the client to open");
  for (let n = 0; n < 500; n++) await publish(hubUrl, { topic: "orders/1", event: "order", data: { n } });
  await stopHub(hub);
  hub = await startHub(port, dir, ["--retry", "200ms"]);
  for (let n = 500; n < 1000; n++) await publish(hubUrl, { topic: "orders/1", event: "order", data: { n } });
  await until(async () => (await page.evaluate(() => window.seen.length)) >= 1000, "1,000 events", 30000);
  const seen = await page.evaluate(() => window.seen);
  assert.deepEqual(seen, [...Array(1000).keys()], "each once, in order");
  await page.evaluate(() => window.client.close());
  await stopHub(hub);
});

test("a history gap fires reset in the browser", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-e2e-"));
  const hubUrl = `http://127.0.0.1:${port}`;
  const hub = await startHub(port, dir, ["--history-max-events", "5"]);
  const old = await publish(hubUrl, { topic: "public/a", data: 0 });
  for (let n = 1; n <= 10; n++) await publish(hubUrl, { topic: "public/a", data: n });
  await page.evaluate(
    async ({ url, last }) => {
      const { Tidings } = await import(`${url}/client/tidings.js`);
      window.resets = [];
      window.gap = new Tidings({ url, topics: ["public/a"], lastEventId: last });
      window.gap.on("reset", (r) => window.resets.push(r.reason));
    },
    { url: hubUrl, last: old.id },
  );
  await until(async () => (await page.evaluate(() => window.resets.length)) === 1, "reset");
  assert.deepEqual(await page.evaluate(() => window.resets), ["history-gap"]);
  await page.evaluate(() => window.gap.close());
  await stopHub(hub);
});

test("the cookie path: tokenIn cookie, sent cross-origin with credentials", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-e2e-"));
  const hubUrl = `http://127.0.0.1:${port}`;
  const hub = await startHub(port, dir);
  await page.evaluate(
    async ({ url, tok }) => {
      const { Tidings } = await import(`${url}/client/tidings.js`);
      window.cookieSeen = [];
      window.cookieClient = new Tidings({ url, topics: ["private/x"], token: tok, tokenIn: "cookie" });
      window.cookieClient.on("message", (e) => window.cookieSeen.push(e.data));
    },
    { url: hubUrl, tok: token("carol") },
  );
  await until(() => page.evaluate(() => window.cookieClient.state === "open"), "the cookie stream");
  await publish(hubUrl, { topic: "private/x", data: "secret" });
  await until(async () => (await page.evaluate(() => window.cookieSeen.length)) === 1, "the event");
  assert.deepEqual(await page.evaluate(() => window.cookieSeen), ["secret"]);
  await page.evaluate(() => {
    window.cookieClient.close();
    document.cookie = "tidings_token=; max-age=0; path=/";
  });
  await stopHub(hub);
});

test("a short-lived token is refreshed when the hub ends the stream, with no event lost", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-e2e-"));
  const hubUrl = `http://127.0.0.1:${port}`;
  const hub = await startHub(port, dir);
  const reasons = [];
  await page.exposeFunction("mintShortToken", (reason) => {
    reasons.push(reason);
    return token("dave", ["--ttl", "2s"]);
  });
  await page.evaluate(async (url) => {
    const { Tidings } = await import(`${url}/client/tidings.js`);
    window.fresh = [];
    window.freshClient = new Tidings({ url, topics: ["t/*"], token: (r) => window.mintShortToken(r), retry: 100 });
    window.freshClient.on("tick", (e) => window.fresh.push(e.data));
  }, hubUrl);
  await until(() => page.evaluate(() => window.freshClient.state === "open"), "the stream");
  // Publish across at least one expiry (2 s tokens, 5 s of ticks).
  for (let n = 0; n < 50; n++) {
    await publish(hubUrl, { topic: "t/1", event: "tick", data: n });
    await new Promise((r) => setTimeout(r, 100));
  }
  await until(async () => (await page.evaluate(() => window.fresh.length)) >= 50, "every tick");
  assert.deepEqual(await page.evaluate(() => window.fresh), [...Array(50).keys()]);
  assert.equal(reasons[0], "initial");
  assert.ok(reasons.includes("expired"), `a refresh for expiry: ${reasons}`);
  await page.evaluate(() => window.freshClient.close());
  await stopHub(hub);
});

test("resume after a page reload: the last id kept in sessionStorage, nothing lost", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-e2e-"));
  const hubUrl = `http://127.0.0.1:${port}`;
  const hub = await startHub(port, dir);
  const open = (url) =>
    page.evaluate(async (url) => {
      const { Tidings } = await import(`${url}/client/tidings.js`);
      window.kept = [];
      window.keptClient = new Tidings({ url, topics: ["public/r"], resume: "session" });
      window.keptClient.on("message", (e) => window.kept.push(e.data));
    }, url);
  await open(hubUrl);
  await until(() => page.evaluate(() => window.keptClient.state === "open"), "the stream");
  await publish(hubUrl, { topic: "public/r", data: 1 });
  await until(async () => (await page.evaluate(() => window.kept.length)) === 1, "the first event");
  await page.reload();
  await publish(hubUrl, { topic: "public/r", data: 2 });
  await open(hubUrl);
  await until(async () => (await page.evaluate(() => window.kept.length)) === 1, "the missed event");
  assert.deepEqual(await page.evaluate(() => window.kept), [2], "only what the reload missed");
  await page.evaluate(() => window.keptClient.close());
  await stopHub(hub);
});

test("offline then online, and a frozen then resumed page, reconnect at once in the browser", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-e2e-"));
  const hubUrl = `http://127.0.0.1:${port}`;
  const hub = await startHub(port, dir);
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(pageOrigin);
  // A one-minute backoff: only the page events can bring the client back within the test.
  await tab.evaluate(async (url) => {
    const { Tidings } = await import(`${url}/client/tidings.js`);
    window.opens = 0;
    window.life = new Tidings({ url, topics: ["public/l"], retry: 60000 });
    window.life.on("open", () => window.opens++);
  }, hubUrl);
  await until(() => tab.evaluate(() => window.opens === 1), "the first open");
  // Offline: the stream fails and the client waits out its backoff; online brings it back.
  await context.setOffline(true);
  await tab.evaluate(() => window.life.reconnect());
  await until(() => tab.evaluate(() => window.life.state === "waiting"), "the backoff while offline");
  await context.setOffline(false);
  await until(() => tab.evaluate(() => window.opens === 2), "the reconnect on `online`");
  // Frozen then resumed (Page Lifecycle): `resume` reconnects a client that is not open.
  await context.setOffline(true);
  await tab.evaluate(() => window.life.reconnect());
  await until(() => tab.evaluate(() => window.life.state === "waiting"), "the backoff");
  await context.setOffline(false);
  const cdp = await context.newCDPSession(tab);
  await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
  await cdp.send("Page.setWebLifecycleState", { state: "active" });
  await until(() => tab.evaluate(() => window.opens === 3), "the reconnect on `resume`");
  await tab.evaluate(() => window.life.close());
  await context.close();
  await stopHub(hub);
});

test("the React hook's onReset runs in the browser when history has a gap", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-e2e-"));
  const hubUrl = `http://127.0.0.1:${port}`;
  const hub = await startHub(port, dir, ["--history-max-events", "5"]);
  const old = await publish(hubUrl, { topic: "public/h", data: 0 });
  for (let n = 1; n <= 10; n++) await publish(hubUrl, { topic: "public/h", data: n });
  const tab = await browser.newPage();
  await tab.goto(pageOrigin);
  await tab.addScriptTag({ url: `${pageOrigin}/app.js`, type: "module" });
  await until(() => tab.evaluate(() => typeof window.startApp === "function"), "the app");
  await tab.evaluate(({ url, last }) => window.startApp(url, last), { url: hubUrl, last: old.id });
  await until(async () => (await tab.evaluate(() => window.hookResets.length)) === 1, "onReset");
  assert.deepEqual(await tab.evaluate(() => window.hookResets), ["history-gap"]);
  await publish(hubUrl, { topic: "public/h", data: 11 });
  await until(
    async () => (await tab.evaluate(() => document.getElementById("count")?.textContent)) === "1",
    "the hook's state after the reset",
  );
  await tab.close();
  await stopHub(hub);
});
