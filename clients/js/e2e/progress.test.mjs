// The progress example (examples/progress.rs) in real headless Chromium: a page starts a long
// job, shows its progress live through the JavaScript client, shows the current state at once
// after a reload (late join), and carries on to the end after the backend is killed and
// started again on the same data directory.
//
//   PROGRESS_BIN=target/debug/examples/progress node --test clients/js/e2e/   (scripts/test runs it)
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, freePort, until } from "./support.mjs";

const BIN = process.env.PROGRESS_BIN;
if (!BIN || !existsSync(BIN)) {
  throw new Error(`set PROGRESS_BIN to the progress example (cargo build --example progress; got ${BIN})`);
}

const children = new Set();
let browser;
after(async () => {
  for (const c of children) c.kill("SIGKILL");
  await browser?.close();
});

function start(port, dir) {
  const child = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--data-dir", dir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => String(d).includes("listening on") && resolve(child));
    child.on("exit", (code) => reject(new Error(`the progress example exited ${code}`)));
  });
}

const progress = (page) => page.evaluate(() => Number(document.body.dataset.progress ?? -1));
const status = (page) => page.evaluate(() => document.body.dataset.status ?? "");

test("a long job's progress survives a page reload and a backend restart", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "tidings-progress-"));
  let app = await start(port, dir);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  await until(() => page.evaluate(() => document.body.dataset.connection === "open"), "the stream to open", 20000);
  await page.click("#start");
  await until(async () => (await progress(page)) >= 15, "progress to move", 20000);

  // A reload mid-job: the current state comes at once, before any new update.
  const before = await progress(page);
  const task = await page.evaluate(() => document.body.dataset.task);
  await page.reload();
  await until(async () => (await progress(page)) >= before, "the late-join snapshot after a reload", 20000);
  assert.equal(await page.evaluate(() => document.body.dataset.task), task, "the same task");
  assert.equal(await status(page), "running");

  // The backend dies mid-job and comes back on the same data directory.
  const atKill = await progress(page);
  assert.ok(atKill < 100, `the job finished too early to test a restart (${atKill}%)`);
  const exited = new Promise((r) => app.on("exit", r));
  app.kill("SIGKILL");
  await exited;
  app = await start(port, dir);
  await until(async () => (await status(page)) === "completed", "the job to complete after the restart", 40000);
  assert.equal(await progress(page), 100);
  assert.ok(await page.evaluate(() => document.getElementById("bar").style.width === "100%"));
});
