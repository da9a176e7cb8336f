// The parser against the WHATWG algorithm: every split point, every line ending, BOM, NUL ids,
// retry digits, UTF-8 across chunks, and an event cut off by the end of the stream.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Parser } from "../dist/tidings.js";

const enc = new TextEncoder();

/** Feeds `bytes` cut at every position in `cuts`; returns the items and the parser. */
function parse(bytes, cuts = []) {
  const p = new Parser();
  const items = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    items.push(...p.feed(bytes.slice(at, cut)));
    at = cut;
  }
  return { items, parser: p };
}

const events = (items) => items.filter((i) => i.type === "event").map((i) => i.event);

test("every split point of a stream gives the same events", () => {
  const text = "\uFEFFid: 1\nevent: order.paid\ndata: {\"é\":\"ü€😀\"}\r\n\r\n: hb\rdata: a\rdata: b\r\r";
  const bytes = enc.encode(text);
  const whole = parse(bytes).items;
  assert.deepEqual(events(whole), [
    { event: "order.paid", data: '{"é":"ü€😀"}', id: "1" },
    { event: "message", data: "a\nb", id: "1" },
  ]);
  for (let cut = 0; cut <= bytes.length; cut++) {
    assert.deepEqual(parse(bytes, [cut]).items, whole, `cut at ${cut}`);
  }
  const oneByOne = parse(bytes, [...bytes.keys()]).items;
  assert.deepEqual(oneByOne, whole, "one byte at a time");
});

test("the last id is committed when an event is dispatched, not at the id line", () => {
  const p = new Parser("5");
  p.feed("id: 6\ndata: x\n");
  assert.equal(p.lastEventId, "5", "the event is not complete");
  p.end();
  assert.equal(p.lastEventId, "5", "a cut-off event moves nothing");
  p.feed("id: 7\ndata: y\n\n");
  assert.equal(p.lastEventId, "7");
});

test("ids with NUL are ignored, an empty id clears, retry takes digits only", () => {
  const { items, parser } = parse(enc.encode("id: a\0b\ndata: 1\n\nid\ndata: 2\n\nretry: 250\nretry: 1x\nretry: -5\n\n"));
  assert.deepEqual(events(items).map((e) => e.id), ["", ""]);
  assert.deepEqual(items.filter((i) => i.type === "retry"), [{ type: "retry", ms: 250 }]);
  assert.equal(parser.lastEventId, "");
});

test("comments surface, unknown fields and a field without colon are handled", () => {
  const { items } = parse(enc.encode(": heartbeat\nfoo: bar\ndata\n\n"));
  assert.deepEqual(items, [
    { type: "comment", text: "heartbeat" },
    { type: "event", event: { event: "message", data: "", id: "" } },
  ]);
});

test("invalid UTF-8 becomes U+FFFD and does not stop the stream", () => {
  const bytes = new Uint8Array([...enc.encode("data: a"), 0xff, ...enc.encode("b\n\n")]);
  assert.deepEqual(events(parse(bytes).items), [{ event: "message", data: "a\uFFFDb", id: "" }]);
});

test("a BOM is dropped only at the start", () => {
  const { items } = parse(enc.encode("\uFEFFdata: \uFEFFx\n\n"));
  assert.equal(events(items)[0].data, "\uFEFFx");
});
