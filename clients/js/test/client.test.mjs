// The client against a real local HTTP server that answers each connection from a script:
// the status table, token refresh, Retry-After, resume with Last-Event-ID, reset, close.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Tidings } from "../dist/tidings.js";

/** A server answering the n-th request with `script[n]` (the last one repeats). */
async function serve(script) {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push({ url: req.url, headers: req.headers });
    const step = script[Math.min(requests.length - 1, script.length - 1)];
    step(req, res);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(r))),
  };
}

const stream = (body, { end = true } = {}) => (req, res) => {
  res.writeHead(200, { "content-type": "text/event-stream" });
  res.write(body);
  if (end) res.end();
};
const status = (code, headers = {}, body = "") => (req, res) => {
  res.writeHead(code, { "content-type": "application/json", ...headers });
  res.end(body);
};
const hang = () => () => {};

/** Resolves with the first `n` values `fn` is called with. */
function collect(hub, name, n) {
  return new Promise((resolve) => {
    const seen = [];
    const off = hub.on(name, (v) => {
      seen.push(v);
      if (seen.length === n) {
        off();
        resolve(seen);
      }
    });
  });
}

test("events arrive with parsed data, and a clean end resumes with Last-Event-ID after retry:", async () => {
  const server = await serve([
    stream('retry: 10\nevent: connected\ndata: {"clientId":"c1"}\n\nid: 1\nevent: order.paid\ndata: {"n":1}\n\n'),
    stream("id: 2\nevent: order.paid\ndata: plain text\n\n", { end: false }),
  ]);
  const hub = new Tidings({ url: server.url, topics: ["orders/*", "a b"] });
  const paid = collect(hub, "order.paid", 2);
  const opened = collect(hub, "open", 1);
  const [first, second] = await paid;
  assert.deepEqual(first, { event: "order.paid", data: { n: 1 }, text: '{"n":1}', id: "1" });
  assert.equal(second.data, "plain text");
  assert.deepEqual(await opened, [{ clientId: "c1" }]);
  assert.equal(hub.lastEventId, "2");
  assert.equal(server.requests[0].url, "/events?topic=orders%2F*&topic=a+b");
  assert.equal(server.requests[0].headers["last-event-id"], undefined);
  assert.equal(server.requests[1].headers["last-event-id"], "1");
  assert.equal(server.requests[0].headers.accept, "text/event-stream");
  hub.close();
  assert.equal(hub.state, "closed");
  await server.close();
});

test("a token goes in the Authorization header and a 401 refreshes it once", async () => {
  const server = await serve([status(401), stream("data: ok\n\n", { end: false })]);
  const reasons = [];
  const hub = new Tidings({
    url: server.url,
    topics: ["t"],
    token: (reason) => (reasons.push(reason), `tok-${reasons.length}`),
  });
  await collect(hub, "message", 1);
  assert.deepEqual(reasons, ["initial", "unauthorized"]);
  assert.equal(server.requests[0].headers.authorization, "Bearer tok-1");
  assert.equal(server.requests[1].headers.authorization, "Bearer tok-2");
  hub.close();
  await server.close();
});

test("a second 401 in a row, and 400/403/404/413, stop for good with the hub's error", async () => {
  for (const [script, code] of [
    [[status(401), status(401)], 401],
    [[status(403, {}, '{"error":{"code":"forbidden","message":"no"}}')], 403],
    [[status(400)], 400],
    [[status(404)], 404],
    [[status(413)], 413],
  ]) {
    const server = await serve(script);
    const hub = new Tidings({ url: server.url, topics: ["t"], token: "x" });
    const closed = new Promise((r) => hub.on("state", (s) => s === "closed" && r()));
    const errors = [];
    hub.on("error", (e) => errors.push(e));
    await closed;
    const last = errors.at(-1);
    assert.equal(last.status, code);
    assert.equal(last.fatal, true);
    if (code === 403) assert.equal(last.code, "forbidden");
    await server.close();
  }
});

test("429 and 503 wait Retry-After; 204 stops", async () => {
  const server = await serve([status(503, { "retry-after": "0" }), status(429, { "retry-after": "0" }), status(204)]);
  const hub = new Tidings({ url: server.url, topics: ["t"], retry: 5 });
  const errors = collect(hub, "error", 2);
  await new Promise((r) => hub.on("state", (s) => s === "closed" && r()));
  assert.deepEqual((await errors).map((e) => e.status), [503, 429]);
  assert.equal(server.requests.length, 3);
  await server.close();
});

test("5xx, a wrong content type and a network error back off and recover", async () => {
  const server = await serve([
    status(500),
    (req, res) => (res.writeHead(200, { "content-type": "text/html" }), res.end("<html>")),
    stream("data: back\n\n", { end: false }),
  ]);
  const hub = new Tidings({ url: server.url, topics: ["t"], retry: 5 });
  await collect(hub, "message", 1);
  assert.equal(server.requests.length, 3);
  hub.close();
  await server.close();
});

test("the hub's reset surfaces with its reason, and its id becomes the last id", async () => {
  const server = await serve([
    stream('event: reset\nid: 99\ndata: {"reason":"history-gap","lastEventId":"3"}\n\n', { end: false }),
  ]);
  const hub = new Tidings({ url: server.url, topics: ["t"], lastEventId: "3" });
  const [reset] = await collect(hub, "reset", 1);
  assert.deepEqual(reset, { reason: "history-gap", lastEventId: "3", id: "99" });
  assert.equal(server.requests[0].headers["last-event-id"], "3");
  assert.equal(hub.lastEventId, "99");
  hub.close();
  await server.close();
});

test("an idle stream is dropped and reconnected; heartbeats keep it alive", async () => {
  const server = await serve([stream(": hb\n\n", { end: false }), stream("data: again\n\n", { end: false })]);
  const hub = new Tidings({ url: server.url, topics: ["t"], idleTimeout: 50, retry: 5 });
  const [err] = await collect(hub, "error", 1);
  assert.equal(err.message, "idle timeout");
  await collect(hub, "message", 1);
  hub.close();
  await server.close();
});

test("subscribe and unsubscribe made together cause one reconnect", async () => {
  const server = await serve([stream("data: 1\n\n", { end: false })]);
  const hub = new Tidings({ url: server.url, topics: ["a"] });
  await collect(hub, "message", 1);
  hub.subscribe("b");
  hub.subscribe("c");
  hub.unsubscribe("a");
  await collect(hub, "message", 1);
  assert.equal(server.requests.length, 2);
  assert.equal(server.requests[1].url, "/events?topic=b&topic=c");
  hub.close();
  await server.close();
});

test("events() iterates every event and ends when the client closes", async () => {
  const server = await serve([stream("data: 1\n\ndata: 2\n\ndata: 3\n\n", { end: false })]);
  const hub = new Tidings({ url: server.url, topics: ["t"] });
  const got = [];
  for await (const e of hub.events()) {
    got.push(e.data);
    if (got.length === 3) hub.close();
  }
  assert.deepEqual(got, [1, 2, 3]);
  await server.close();
});

test("resume keeps the last id in the given storage, written after the handlers ran", async () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const server = await serve([stream("id: 5\ndata: x\n\n", { end: false }), stream(": hi\n\n", { end: false })]);
  const first = new Tidings({ url: server.url, topics: ["t"], resume: storage });
  let storedDuringHandler;
  first.on("message", () => (storedDuringHandler = [...store.values()][0]));
  await collect(first, "message", 1);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(storedDuringHandler, undefined, "not before the handler returned");
  first.close();
  const second = new Tidings({ url: server.url, topics: ["t"], resume: storage });
  await collect(second, "open", 1);
  assert.equal(server.requests[1].headers["last-event-id"], "5");
  second.close();
  await server.close();
});

test("close() leaves nothing behind: a waiting client lets the process exit", async () => {
  const server = await serve([hang()]);
  const hub = new Tidings({ url: server.url, topics: ["t"] });
  await new Promise((r) => setTimeout(r, 20));
  hub.close();
  assert.equal(hub.state, "closed");
  await server.close();
});

test("a stream can be the answer to a POST with a body", async () => {
  let got;
  const server = await serve([
    (req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        got = { method: req.method, body };
        stream("data: streamed\n\n", { end: false })(req, res);
      });
    },
  ]);
  const hub = new Tidings({ url: server.url, stream: `${server.url}/chat`, method: "POST", body: '{"q":1}' });
  await collect(hub, "message", 1);
  assert.deepEqual(got, { method: "POST", body: '{"q":1}' });
  assert.equal(server.requests[0].url, "/chat");
  hub.close();
  await server.close();
});
