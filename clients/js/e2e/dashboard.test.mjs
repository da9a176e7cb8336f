// The dashboard (GET /dashboard) in real headless Chromium against a real `tidings serve`:
// it renders with a pasted admin token, its counts move as clients connect, its live tail shows
// a publish made from its own form, and its disconnect button ends that stream.
//
//   TIDINGS_BIN=target/debug/tidings node --test clients/js/e2e/   (scripts/test runs it)
//   DASHBOARD_SCREENSHOT=docs/dashboard.png ...   also writes the screenshot the docs show.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { CHROMIUM, freePort, until } from "./support.mjs";

const BIN = process.env.TIDINGS_BIN;
const SECRET = "dashboard-e2e-secret-0123456789";
const KEY = "dashboard-e2e-publish-key-01234";
if (!BIN || !existsSync(BIN)) throw new Error(`set TIDINGS_BIN to the tidings binary (got ${BIN})`);

const children = new Set();
const aborts = [];
let browser;
after(async () => {
  for (const a of aborts) a.abort();
  for (const c of children) c.kill("SIGKILL");
  await browser?.close();
});

/** A stream held open from Node; resolves `ended` when the hub ends it. */
function listen(hub, topic, user) {
  const ac = new AbortController();
  aborts.push(ac);
  const headers = user
    ? { authorization: `Bearer ${execFileSync(BIN, ["token", "--secret", SECRET, "--sub", user, "--subscribe", "**"]).toString().trim()}` }
    : {};
  let clientId;
  const ended = (async () => {
    const res = await fetch(`${hub}/events?topic=${topic}`, { headers, signal: ac.signal });
    const reader = res.body.getReader();
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return true;
      text += Buffer.from(value).toString();
      clientId ??= /"clientId":"([^"]+)"/.exec(text)?.[1];
    }
  })().catch(() => false);
  return { ended, id: () => clientId };
}

test("the dashboard shows the hub live and acts on it", async () => {
  const port = await freePort();
  const hub = `http://127.0.0.1:${port}`;
  const child = spawn(BIN, ["serve", "--memory", "--listen", `127.0.0.1:${port}`, "--jwt-secret", SECRET,
    "--publish-key", KEY, "--public-topic", "public/**"], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  await new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => String(d).includes("listening on") && resolve());
    child.on("exit", (code) => reject(new Error(`tidings serve exited ${code}`)));
  });

  // The page is small and self-contained.
  const html = await (await fetch(`${hub}/dashboard`)).text();
  const js = await (await fetch(`${hub}/client/tidings.js`)).text();
  const gz = gzipSync(html).length + gzipSync(js).length;
  assert.ok(gz <= 30 * 1024, `dashboard ${gz} bytes gzipped`);
  assert.ok(!/https?:\/\//.test(html), "no outside origin");

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  // Script errors only: before a token is pasted the hub answers 401/403, which the page shows.
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(`${hub}/dashboard`);
  const admin = execFileSync(BIN, ["token", "--secret", SECRET, "--sub", "ops", "--admin", "--subscribe", "**", "--publish", "**"]).toString().trim();
  await page.fill("#token", admin);
  await page.click("#token-save");
  await until(() => page.evaluate(() => document.body.dataset.state === "open"), "the page's stream to open");
  const connections = () => page.evaluate(() => Number(document.querySelector("#tile-connections .value").textContent));
  await until(async () => (await connections()) === 1, "the connections tile to count the page");

  // Counts move as clients connect.
  const a = listen(hub, "public/news", "alice");
  const b = listen(hub, "public/news", "bob");
  await until(async () => (await connections()) === 3, "the tile to count two more streams");
  await until(() => page.evaluate(() => document.querySelectorAll("#connections tr").length === 3), "the connections table");
  await until(() => page.evaluate(() => document.getElementById("topics").textContent.includes("public/news")), "the topics table");

  // A publish from the form shows in the tail.
  await page.fill("#publish-form [name=topic]", "public/news");
  await page.fill("#publish-form [name=data]", '{"headline":"from the dashboard"}');
  await page.click("#publish-form button");
  await until(() => page.evaluate(() => document.getElementById("publish-reply").textContent.startsWith("200")), "the publish reply");
  await until(() => page.evaluate(() => document.getElementById("tail").textContent.includes("from the dashboard")), "the tail to show the publish");

  // The token inspector reads a token without sending it.
  await page.fill("#inspect", admin);
  assert.match(await page.textContent("#inspected"), /admin: true/);

  if (process.env.DASHBOARD_SCREENSHOT) await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });

  // Disconnect bob's stream from the table.
  await until(() => b.id(), "bob's client id");
  await page.click(`button.disconnect[data-id="${b.id()}"]`);
  assert.equal(await b.ended, true, "the stream ended");
  await until(async () => (await connections()) === 2, "the tile to drop");
  assert.deepEqual(problems, [], "no script errors");
  void a;
});
