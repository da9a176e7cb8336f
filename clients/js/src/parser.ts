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
  #decoder = new TextDecoder();
  /** The incomplete line after the last line end. */
  #rest = "";
  /** The last piece ended with CR: an LF starting the next one belongs to it. */
  #cr = false;
  #bom = true;
  #data: string[] | null = null;
  #type = "";
  #id: string;
  /** The id committed by the last dispatch (what `Last-Event-ID` sends). */
  lastEventId: string;

  constructor(lastEventId = "") {
    this.#id = this.lastEventId = lastEventId;
  }

  /** Parses a piece of the stream; returns what it completed. */
  feed(chunk: Uint8Array | string): Item[] {
    let text = typeof chunk == "string" ? chunk : this.#decoder.decode(chunk, { stream: true });
    const out: Item[] = [];
    if (!text) return out;
    if (this.#bom) {
      this.#bom = false;
      if (text[0] == "\uFEFF") text = text.slice(1);
    }
    if (this.#cr && text[0] == "\n") text = text.slice(1);
    const all = this.#rest + text;
    this.#cr = all.endsWith("\r");
    const lines = all.split(/\r\n?|\n/);
    this.#rest = lines.pop() as string;
    for (const line of lines) this.#line(line, out);
    return out;
  }

  /** The stream ended: an event without its blank line is discarded, never dispatched. */
  end(): void {
    this.#decoder = new TextDecoder();
    this.#rest = this.#type = "";
    this.#cr = false;
    this.#bom = true;
    this.#data = null;
    this.#id = this.lastEventId;
  }

  #line(line: string, out: Item[]): void {
    if (!line) {
      this.lastEventId = this.#id;
      if (this.#data) {
        const event = { event: this.#type || "message", data: this.#data.join("\n"), id: this.#id };
        out.push({ type: "event", event });
      }
      this.#data = null;
      this.#type = "";
      return;
    }
    const colon = line.indexOf(":");
    if (!colon) {
      out.push({ type: "comment", text: line.slice(1).replace(/^ /, "") });
      return;
    }
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] == " ") value = value.slice(1);
    if (field == "data") (this.#data ??= []).push(value);
    else if (field == "event") this.#type = value;
    else if (field == "id") {
      if (!value.includes("\0")) this.#id = value;
    } else if (field == "retry" && /^\d+$/.test(value)) out.push({ type: "retry", ms: +value });
  }
}
