// The WHATWG event-stream parser (HTML § 9.2.6), fed in pieces of any size.
//
// Bytes are decoded as a UTF-8 stream (a character split across chunks is kept whole; invalid
// sequences become U+FFFD), a leading BOM is dropped once, and lines end at CR, LF or CRLF, even
// when a CR ends one chunk and its LF starts the next. The last event id is committed when an
// event is dispatched (at the blank line), never at the `id:` line, so a connection cut in the
// middle of an event cannot move it past an event that was never delivered.

/** One event of the stream. */
export interface StreamEvent {
  /** The event type (`message` when the stream named none). */
  event: string;
  /** The data lines, joined with `\n`. */
  data: string;
  /** The last event id as of this event. */
  id: string;
}

/** What the parser found in a piece of the stream. */
export type Item =
  | { type: "event"; event: StreamEvent }
  | { type: "retry"; ms: number }
  | { type: "comment"; text: string };

export class Parser {
  #decoder = new TextDecoder("utf-8");
  #pending = "";
  #started = false;
  #skipLf = false;
  #data = "";
  #hasData = false;
  #eventType = "";
  #idBuffer: string;
  /** The id committed by the last dispatch (what `Last-Event-ID` sends). */
  lastEventId: string;

  constructor(lastEventId = "") {
    this.#idBuffer = lastEventId;
    this.lastEventId = lastEventId;
  }

  /** Parses a piece of the stream; returns what it completed. */
  feed(chunk: Uint8Array | string): Item[] {
    let text = typeof chunk === "string" ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const out: Item[] = [];
    let start = 0;
    const buf = this.#pending + text;
    let i = this.#pending.length;
    if (this.#skipLf && buf.charCodeAt(0) === 10) {
      start = 1;
      i = Math.max(i, 1);
    }
    this.#skipLf = false;
    for (; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.#line(buf.slice(start, i), out);
      if (c === 13) {
        if (i + 1 < buf.length) {
          if (buf.charCodeAt(i + 1) === 10) i++;
        } else {
          this.#skipLf = true;
        }
      }
      start = i + 1;
    }
    this.#pending = buf.slice(start);
    return out;
  }

  /** The stream ended: an event without its blank line is discarded, never dispatched. */
  end(): void {
    this.#pending = "";
    this.#data = "";
    this.#hasData = false;
    this.#eventType = "";
    this.#skipLf = false;
    this.#idBuffer = this.lastEventId;
    this.#decoder = new TextDecoder("utf-8");
    this.#started = false;
  }

  #line(line: string, out: Item[]): void {
    if (line === "") {
      this.#dispatch(out);
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) {
      out.push({ type: "comment", text: line.slice(1).replace(/^ /, "") });
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case "event":
        this.#eventType = value;
        break;
      case "data":
        this.#data += value + "\n";
        this.#hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.#idBuffer = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) out.push({ type: "retry", ms: Number(value) });
        break;
      default:
        break;
    }
  }

  #dispatch(out: Item[]): void {
    this.lastEventId = this.#idBuffer;
    if (!this.#hasData) {
      this.#eventType = "";
      return;
    }
    const data = this.#data.endsWith("\n") ? this.#data.slice(0, -1) : this.#data;
    out.push({
      type: "event",
      event: { event: this.#eventType || "message", data, id: this.lastEventId },
    });
    this.#data = "";
    this.#hasData = false;
    this.#eventType = "";
  }
}
