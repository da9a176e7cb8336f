// The SSE client contract-test service for the JavaScript client: the same REST protocol as
// `sse-contract-service` (crates/tidings-contract-service), driving `Tidings` instances.
//
//   node clients/js/contract-service.mjs --port 8000      (--port 0 picks a free port)
//
// GET / -> capabilities; DELETE / -> exit; POST / {streamUrl, callbackUrl, initialDelayMs?,
// readTimeoutMs?, lastEventId?, headers?, method?, body?} -> 201 with Location /streams/N; POST /streams/N
// {"command": "restart" | "listen"} -> 204; DELETE /streams/N -> 204. Everything a client sees
// is POSTed, one at a time and in order, to <callbackUrl>/1, /2, ...
import http from "node:http";
import { Tidings } from "./dist/tidings.js";

const CAPABILITIES = [
  "bom",
  "comments",
  "headers",
  "last-event-id",
  "post",
  "read-timeout",
  "restart",
  "server-directed-shutdown-request",
];

const port = Number(process.argv[process.argv.indexOf("--port") + 1] || 8000);
const instances = new Map();
let next = 1;

function reply(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(body === undefined ? "" : JSON.stringify(body));
}

function start(spec) {
  const id = next++;
  let n = 0;
  let chain = Promise.resolve();
  const report = (message) => {
    const seq = ++n;
    chain = chain.then(() =>
      fetch(`${spec.callbackUrl.replace(/\/$/, "")}/${seq}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(message),
      }).then((r) => r.arrayBuffer(), () => {}),
    );
  };
  const client = new Tidings({
    url: spec.streamUrl,
    stream: spec.streamUrl,
    headers: spec.headers ?? {},
    method: spec.method,
    body: spec.body,
    lastEventId: spec.lastEventId,
    retry: spec.initialDelayMs ?? 1000,
    idleTimeout: spec.readTimeoutMs,
  });
  client.on("*", (e) => report({ kind: "event", event: { type: e.event, data: e.text, id: e.id } }));
  client.on("comment", (comment) => report({ kind: "comment", comment }));
  client.on("error", (err) => report({ kind: "error", error: err.message }));
  instances.set(id, client);
  return id;
}

function body(req) {
  return new Promise((resolve) => {
    let text = "";
    req.on("data", (c) => (text += c));
    req.on("end", () => {
      try {
        resolve(JSON.parse(text || "null"));
      } catch {
        resolve(undefined);
      }
    });
  });
}

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  if (path === "/") {
    if (req.method === "GET") return reply(res, 200, { name: "tidings-js", capabilities: CAPABILITIES });
    if (req.method === "DELETE") {
      reply(res, 204);
      for (const c of instances.values()) c.close();
      server.close();
      return;
    }
    if (req.method === "POST") {
      const spec = await body(req);
      if (!spec || typeof spec.streamUrl !== "string" || typeof spec.callbackUrl !== "string") {
        return reply(res, 400, { error: "streamUrl and callbackUrl are required" });
      }
      const id = start(spec);
      return reply(res, 201, undefined, { location: `http://127.0.0.1:${server.address().port}/streams/${id}` });
    }
  }
  const match = /^\/streams\/(\d+)$/.exec(path);
  const client = match && instances.get(Number(match[1]));
  if (!client) return reply(res, 404, { error: "no such stream" });
  if (req.method === "DELETE") {
    client.close();
    instances.delete(Number(match[1]));
    return reply(res, 204);
  }
  const command = (await body(req))?.command;
  if (command === "restart") client.reconnect();
  else if (command !== "listen") return reply(res, 400, { error: `unknown command ${command}` });
  return reply(res, 204);
});

server.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
