// What every end-to-end test needs: Debian's Chromium (checked once), a free loopback port,
// and a bounded wait. Not a test file itself (the runner picks `*.test.mjs`).
import assert from "node:assert/strict";
import net from "node:net";
import { existsSync } from "node:fs";

export const CHROMIUM = "/usr/bin/chromium";
if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);

/** A free loopback port (released for the caller to bind). */
export const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Polls `check` every 50 ms until it holds, failing the test after `ms`. */
export async function until(check, what, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}
