// Page lifecycle in a DOM (happy-dom): back online, back from the back/forward cache, resumed
// from a frozen tab: the client reconnects at once instead of waiting out its backoff.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { GlobalRegistrator } from "@happy-dom/global-registrator";

const node = { fetch, AbortController, AbortSignal, TextDecoder, ReadableStream, Response };
GlobalRegistrator.register();
Object.assign(globalThis, node);
const { Tidings } = await import("../dist/tidings.js");

/** Fails every request until `ok` is set, then holds a stream open. */
async function flaky() {
  const state = { ok: false, requests: 0 };
  const server = http.createServer((req, res) => {
    state.requests++;
    if (!state.ok) {
      res.writeHead(500);
      return res.end();
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write("data: up\n\n");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  state.url = `http://127.0.0.1:${server.address().port}`;
  state.close = () => new Promise((r) => (server.closeAllConnections(), server.close(r)));
  return state;
}

const waitFor = async (check, what) => {
  for (let i = 0; i < 300; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
};

for (const [name, fire] of [
  ["online", () => window.dispatchEvent(new Event("online"))],
  ["pageshow from the back/forward cache", () => {
    const e = new Event("pageshow");
    Object.defineProperty(e, "persisted", { value: true });
    window.dispatchEvent(e);
  }],
  ["resume after a freeze", () => document.dispatchEvent(new Event("resume"))],
]) {
  test(`${name}: a waiting client reconnects at once`, async () => {
    const server = await flaky();
    // A one-minute backoff: only the page event can bring the client back within the test.
    const hub = new Tidings({ url: server.url, topics: ["t"], retry: 60_000 });
    await waitFor(() => hub.state === "waiting", "the backoff");
    server.ok = true;
    const up = new Promise((r) => hub.on("message", r));
    fire();
    await up;
    assert.equal(server.requests, 2);
    hub.close();
    await server.close();
  });
}

test("a hidden tab keeps its stream", async () => {
  const server = await flaky();
  server.ok = true;
  const hub = new Tidings({ url: server.url, topics: ["t"] });
  await new Promise((r) => hub.on("message", r));
  Object.defineProperty(document, "visibilityState", { value: "hidden", configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(hub.state, "open");
  assert.equal(server.requests, 1);
  hub.close();
  await server.close();
});
