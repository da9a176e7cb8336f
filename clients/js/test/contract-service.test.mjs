// contract-service.mjs speaks the contract-test protocol: capabilities, a stream whose events,
// comments and errors are POSTed in order to the callback, restart, delete, exit.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("../contract-service.mjs", import.meta.url));

async function listen(handler) {
  const server = http.createServer(handler);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

test("the service drives a client and reports what it sees, in order", async () => {
  const stream = await listen((req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end("\uFEFF: hello\nid: 1\nevent: greeting\ndata: hi\n\n");
  });
  const reports = [];
  let gotThree;
  const three = new Promise((r) => (gotThree = r));
  const callback = await listen((req, res) => {
    let text = "";
    req.on("data", (c) => (text += c));
    req.on("end", () => {
      reports.push([req.url, JSON.parse(text)]);
      res.end();
      if (reports.length === 3) gotThree();
    });
  });
  const child = spawn(process.execPath, [script, "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  const base = await new Promise((resolve) =>
    child.stdout.on("data", (d) => {
      const m = /listening on (\S+)/.exec(String(d));
      if (m) resolve(m[1]);
    }),
  );
  const caps = await (await fetch(base)).json();
  assert.ok(caps.capabilities.includes("last-event-id"));
  const created = await fetch(base, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ streamUrl: stream.url, callbackUrl: `${callback.url}/cb`, initialDelayMs: 50 }),
  });
  assert.equal(created.status, 201);
  const instance = created.headers.get("location");
  await three;
  assert.deepEqual(reports.slice(0, 2), [
    ["/cb/1", { kind: "comment", comment: "hello" }],
    ["/cb/2", { kind: "event", event: { type: "greeting", data: "hi", id: "1" } }],
  ]);
  assert.equal((await fetch(instance, { method: "POST", body: '{"command":"restart"}' })).status, 204);
  assert.equal((await fetch(instance, { method: "POST", body: '{"command":"dance"}' })).status, 400);
  assert.equal((await fetch(instance, { method: "DELETE" })).status, 204);
  assert.equal((await fetch(instance, { method: "DELETE" })).status, 404);
  assert.equal((await fetch(base, { method: "POST", body: "{}" })).status, 400);
  await fetch(base, { method: "DELETE" });
  await new Promise((r) => child.on("exit", r));
  stream.server.closeAllConnections();
  stream.server.close();
  callback.server.closeAllConnections();
  callback.server.close();
});
