// The hooks in a DOM (happy-dom) against a real local server: one shared connection for every
// component of a provider, StrictMode's double mount opening one, the reducer seeing every
// event, reset, unmount closing, and no connection during server rendering.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { GlobalRegistrator } from "@happy-dom/global-registrator";

// A DOM for react-dom, with Node's own networking kept (happy-dom brings its own fetch).
const node = { fetch, AbortController, AbortSignal, TextDecoder, ReadableStream, Response };
GlobalRegistrator.register();
Object.assign(globalThis, node);
globalThis.IS_REACT_ACT_ENVIRONMENT = true;

const React = await import("react");
const { createRoot } = await import("react-dom/client");
const { renderToString } = await import("react-dom/server");
const { TidingsProvider, useTidingsEvent, useTidingsStatus, useEventStream } = await import(
  "../dist/react.js"
);
const h = React.createElement;
const { act, StrictMode } = React;

/** A server that holds every stream open; `send(text)` writes to all of them. */
async function hub() {
  const requests = [];
  const open = new Set();
  const server = http.createServer((req, res) => {
    requests.push(req.url);
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write('event: connected\ndata: {"clientId":"c"}\n\n');
    open.add(res);
    req.on("close", () => open.delete(res));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    open,
    send: (text) => open.forEach((res) => res.write(text)),
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(r))),
  };
}

const until = async (check, what) => {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await act(() => new Promise((r) => setTimeout(r, 10)));
  }
  assert.fail(`timed out waiting for ${what}`);
};

function mount(element) {
  const container = document.createElement("div");
  const root = createRoot(container);
  act(() => root.render(element));
  return { container, unmount: () => act(() => root.unmount()) };
}

test("components of one provider share one connection, StrictMode opens one, unmount closes it", async () => {
  const server = await hub();
  const seen = [];
  function Orders() {
    useTidingsEvent("order.paid", (e) => seen.push(["orders", e.data]), { topics: ["orders/*"] });
    return null;
  }
  function Status() {
    return h("span", null, useTidingsStatus());
  }
  function News() {
    useTidingsEvent("news", (e) => seen.push(["news", e.data]), { topics: ["news"] });
    return null;
  }
  const app = mount(
    h(StrictMode, null, h(TidingsProvider, { url: server.url }, h(Orders), h(Status), h(News))),
  );
  await until(() => app.container.textContent === "open", "the status to be open");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(server.open.size, 1, "one connection");
  assert.equal(server.requests.length, 1, `one request: ${server.requests}`);
  assert.equal(server.requests[0], "/events?topic=orders%2F*&topic=news");
  server.send('event: order.paid\ndata: {"n":1}\n\nevent: news\ndata: "hi"\n\n');
  await until(() => seen.length === 2, "both events");
  assert.deepEqual(seen, [["orders", { n: 1 }], ["news", "hi"]]);
  app.unmount();
  await until(() => server.open.size === 0, "the connection to close");
  await server.close();
});

test("the reducer of useEventStream sees every event, and onReset runs", async () => {
  const server = await hub();
  const resets = [];
  function Counter() {
    const count = useEventStream(["t"], {
      event: "tick",
      initial: 0,
      reduce: (n, e) => n + e.data,
      onReset: (info) => resets.push(info.reason),
    });
    return h("b", null, String(count));
  }
  const app = mount(h(TidingsProvider, { url: server.url }, h(Counter)));
  await until(() => server.open.size === 1, "the connection");
  await new Promise((r) => setTimeout(r, 20));
  let burst = "";
  for (let i = 1; i <= 100; i++) burst += `event: tick\ndata: ${i}\n\n`;
  server.send(burst + 'event: reset\nid: 9\ndata: {"reason":"history-gap","lastEventId":"1"}\n\n');
  await until(() => app.container.textContent === "5050", "every tick folded");
  await until(() => resets.length === 1, "onReset");
  assert.deepEqual(resets, ["history-gap"]);
  app.unmount();
  await server.close();
});

test("server rendering opens no connection", async () => {
  const server = await hub();
  function Orders() {
    useTidingsEvent("x", () => {}, { topics: ["t"] });
    return h("i", null, useTidingsStatus());
  }
  const html = renderToString(h(TidingsProvider, { url: server.url }, h(Orders)));
  assert.equal(html, "<i>connecting</i>");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(server.requests.length, 0);
  await server.close();
});
