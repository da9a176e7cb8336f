// The Tidings client: one stream from a hub, kept open through failures by one documented
// status table, with headers (so tokens need not go in the URL), token refresh, resume with
// `Last-Event-ID` and the hub's `reset` event. Runs in browsers, workers and Node >= 18; touches
// no `window` or `document` at import.

import { Parser, type StreamEvent } from "./parser.js";

/** Why the client asks for a token. */
export type TokenReason = "initial" | "reconnect" | "unauthorized" | "expired";

/** Where the token goes. */
export type TokenIn = "header" | "query" | "cookie";

/** The connection's state. */
export type State = "connecting" | "open" | "waiting" | "closed";

/** Where the last event id is kept across page reloads. */
export type ResumeStore = "session" | "local" | Pick<Storage, "getItem" | "setItem">;

export interface Options {
  /** The hub's base URL (`https://hub.example.com`); the client builds `/events?topic=...`. */
  url: string;
  /** A whole stream URL to use as it is instead (any SSE server); `topics` are added to it. */
  stream?: string;
  /** Topics or patterns to subscribe to. */
  topics?: string[];
  /** A token, or a function called before every connect with the reason. */
  token?: string | ((reason: TokenReason) => string | undefined | Promise<string | undefined>);
  /** Where the token goes: `header` (default, `Authorization: Bearer`), `query` or `cookie`. */
  tokenIn?: TokenIn;
  /** Resume after this id. */
  lastEventId?: string;
  /** Keep the last event id across page reloads. */
  resume?: ResumeStore;
  /** Base reconnection delay in ms before the server says otherwise (default 1000). */
  retry?: number;
  /** Reconnect when nothing, not even a heartbeat, arrives for this long (ms, default 45000). */
  idleTimeout?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** The request method (default `GET`), for servers that stream a `POST`'s answer. */
  method?: string;
  /** The request body, sent on every connect. */
  body?: BodyInit;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
  /** Closes the client when aborted. */
  signal?: AbortSignal;
}

/** An event as handlers see it. */
export interface TidingsEvent<T = unknown> {
  /** The event type. */
  event: string;
  /** The data, parsed as JSON when it parses, else the text. */
  data: T;
  /** The raw data text. */
  text: string;
  /** The event id. */
  id: string;
}

/** The hub's `reset`: events were missed; refetch the state. */
export interface ResetInfo {
  reason: string;
  lastEventId: string;
  id: string;
}

/** Why the client stopped or is waiting. */
export class TidingsError extends Error {
  constructor(
    message: string,
    /** HTTP status, 0 for a network error. */
    readonly status: number,
    /** The hub's error code, when it gave one. */
    readonly code?: string,
    /** True when the client stopped for good. */
    readonly fatal = false,
  ) {
    super(message);
    this.name = "TidingsError";
  }
}

type Handler = (arg: any) => void;

const MAX_DELAY = 30_000;
const HEALTHY_AFTER = 30_000;

function parseData(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Waits `ms`, or until `signal` aborts. */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((done) => {
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), done()), { once: true });
  });

export class Tidings {
  #opts: Options;
  #topicSet: Set<string>;
  #handlers = new Map<string, Set<Handler>>();
  #parser: Parser;
  #life = new AbortController();
  #attempt?: AbortController;
  #wake?: AbortController;
  #retryMs: number;
  #failures = 0;
  #lastStatus = 0;
  #pendingChange = false;
  #announced = false;
  #lastToken?: string;
  /** Why the next connect asks for a token. */
  #why: TokenReason = "initial";
  #storage?: Pick<Storage, "getItem" | "setItem">;
  #storageKey: string;
  #unlisten: Array<() => void> = [];
  /** The connection's state. */
  state: State = "connecting";
  /** The hub's id for this connection (from its `connected` event). */
  clientId = "";

  constructor(options: Options) {
    this.#opts = options;
    this.#topicSet = new Set(options.topics ?? []);
    this.#retryMs = options.retry ?? 1000;
    this.#storageKey = `tidings:${options.url}:${[...this.#topicSet].sort().join(",")}`;
    this.#storage = resolveStorage(options.resume);
    const stored = this.#storage?.getItem(this.#storageKey) ?? "";
    this.#parser = new Parser(options.lastEventId ?? stored ?? "");
    if (options.signal) {
      if (options.signal.aborted) this.#life.abort();
      const stop = () => this.close();
      options.signal.addEventListener("abort", stop, { once: true });
      this.#unlisten.push(() => options.signal?.removeEventListener("abort", stop));
    }
    this.#listenToPage();
    void this.#run();
  }

  /** The id of the last event dispatched (sent as `Last-Event-ID` on reconnect). */
  get lastEventId(): string {
    return this.#parser.lastEventId;
  }

  /**
   * Calls `fn` for events of this type (`message` for untyped ones), or for the client's own
   * notifications: `open`, `reset`, `error`, `state`, `comment`. Returns its unsubscribe.
   */
  on(event: "open", fn: (info: { clientId: string }) => void): () => void;
  on(event: "reset", fn: (info: ResetInfo) => void): () => void;
  on(event: "error", fn: (err: TidingsError) => void): () => void;
  on(event: "state", fn: (state: State) => void): () => void;
  on(event: "comment", fn: (text: string) => void): () => void;
  on<T = unknown>(event: string, fn: (e: TidingsEvent<T>) => void): () => void;
  on(event: string, fn: Handler): () => void {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(fn);
    return () => void set?.delete(fn);
  }

  /** Adds a topic; changes made together cause one reconnect. */
  subscribe(topic: string): void {
    if (!this.#topicSet.has(topic)) {
      this.#topicSet.add(topic);
      this.#changed();
    }
  }

  /** Removes a topic; changes made together cause one reconnect. */
  unsubscribe(topic: string): void {
    if (this.#topicSet.delete(topic)) this.#changed();
  }

  /** Drops the current connection (if any) and connects again now. */
  reconnect(): void {
    this.#failures = 0;
    this.#attempt?.abort();
    this.#wake?.abort();
  }

  /** Stops for good: no request, timer or listener is left behind. */
  close(): void {
    if (this.state === "closed" && this.#life.signal.aborted) return;
    this.#life.abort();
    this.#attempt?.abort();
    this.#wake?.abort();
    for (const off of this.#unlisten.splice(0)) off();
    this.#setState("closed");
  }

  /** Every event, as an async iterator (ends when the client closes or `signal` aborts). */
  async *events<T = unknown>(options: { signal?: AbortSignal } = {}): AsyncGenerator<TidingsEvent<T>> {
    const queue: TidingsEvent<T>[] = [];
    let wake = () => {};
    const offs = [
      this.on("*", (e: TidingsEvent<T>) => (queue.push(e), wake())),
      this.on("state", () => wake()),
    ];
    options.signal?.addEventListener("abort", () => wake());
    try {
      while (true) {
        while (queue.length) yield queue.shift() as TidingsEvent<T>;
        if (this.state === "closed" || options.signal?.aborted) return;
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      offs.forEach((off) => off());
    }
  }

  #emit(event: string, arg: unknown): void {
    for (const fn of [...(this.#handlers.get(event) ?? [])]) {
      try {
        fn(arg);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #setState(state: State): void {
    if (this.state !== state) {
      this.state = state;
      this.#emit("state", state);
    }
  }

  #changed(): void {
    if (this.#pendingChange) return;
    this.#pendingChange = true;
    queueMicrotask(() => {
      this.#pendingChange = false;
      this.reconnect();
    });
  }

  async #token(reason: TokenReason): Promise<string | undefined> {
    const t = this.#opts.token;
    if (reason === "reconnect" && expired(this.#lastToken)) reason = "expired";
    this.#lastToken = typeof t === "function" ? await t(reason) : t;
    return this.#lastToken;
  }

  #request(token: string | undefined): { url: string; init: RequestInit } {
    const base = this.#opts.stream ?? `${this.#opts.url.replace(/\/+$/, "")}/events`;
    const params = new URLSearchParams();
    for (const t of this.#topicSet) params.append("topic", t);
    const tokenIn = this.#opts.tokenIn ?? "header";
    if (token && tokenIn === "query") params.append("access_token", token);
    const headers: Record<string, string> = {
      ...this.#opts.headers,
      Accept: "text/event-stream",
      "Cache-Control": "no-cache",
    };
    if (token && tokenIn === "header") headers.Authorization = `Bearer ${token}`;
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    if (token && tokenIn === "cookie" && typeof document !== "undefined") {
      document.cookie = `tidings_token=${encodeURIComponent(token)}; path=/; SameSite=Lax`;
    }
    const query = params.toString();
    return {
      url: query ? `${base}${base.includes("?") ? "&" : "?"}${query}` : base,
      init: {
        method: this.#opts.method,
        body: this.#opts.body,
        headers,
        cache: "no-store",
        credentials: tokenIn === "cookie" ? "include" : "same-origin",
      },
    };
  }

  async #run(): Promise<void> {
    while (!this.#life.signal.aborted) {
      this.#setState("connecting");
      const ms = await this.#connectOnce();
      if (ms < 0 || this.#life.signal.aborted) break;
      if (ms > 0) {
        this.#setState("waiting");
        this.#wake = new AbortController();
        await sleep(ms, anySignal([this.#life.signal, this.#wake.signal]));
      }
    }
    this.close();
  }

  /** One connection, start to end; how long to wait before the next (-1: stop for good). */
  async #connectOnce(): Promise<number> {
    const attempt = new AbortController();
    this.#attempt = attempt;
    const signal = anySignal([this.#life.signal, attempt.signal]);
    const why = this.#why;
    this.#why = "reconnect";
    let opened = 0;
    try {
      const { url, init } = this.#request(await this.#token(why));
      const res = await (this.#opts.fetch ?? fetch)(url, { ...init, signal });
      const status = res.status;
      const previous = this.#lastStatus;
      this.#lastStatus = status;
      if (status == 200) {
        const type = res.headers.get("content-type") ?? "";
        if (!/^text\/event-stream/i.test(type) || !res.body) {
          void res.body?.cancel();
          return this.#fail(new TidingsError(`content-type ${type}`, status));
        }
        opened = Date.now();
        await this.#read(res.body, signal);
        // A clean end (token expiry, drain): come back after `retry:`.
        return this.#retryMs;
      }
      const hub = hubError(await res.text().catch(() => ""));
      const error = (fatal = false) =>
        new TidingsError(hub.message ?? `HTTP ${status}`, status, hub.code, fatal);
      if (status == 204) return -1;
      // 401: a fresh token once; a second 401 in a row is final. 400/403/404/413: final.
      const fatal = (status == 401 && previous == 401) || [400, 403, 404, 413].includes(status);
      if (fatal || status == 401) {
        this.#emit("error", error(fatal));
        this.#why = "unauthorized";
        return fatal ? -1 : 0;
      }
      const after = res.headers.get("retry-after");
      if ((status == 429 || status == 503) && after && +after >= 0) {
        this.#emit("error", error());
        this.#failures++;
        return Math.max(+after * 1000, this.#retryMs);
      }
      return this.#fail(error());
    } catch (e) {
      if (this.#life.signal.aborted) return -1;
      const idle = attempt.signal.reason == "idle";
      // `reconnect()` or a topic change: connect again at once.
      if (attempt.signal.aborted && !idle) return 0;
      return this.#fail(new TidingsError(idle ? "idle timeout" : String(e), 0));
    } finally {
      if (opened && Date.now() - opened >= HEALTHY_AFTER) this.#failures = 0;
    }
  }

  #fail(err: TidingsError): number {
    this.#emit("error", err);
    const ceiling = Math.min(MAX_DELAY, this.#retryMs * 2 ** Math.min(this.#failures++, 16));
    // Full jitter, never below a floor (no tight loop).
    return Math.max(Math.min(this.#retryMs, 250), Math.random() * ceiling);
  }

  async #read(body: ReadableStream<Uint8Array>, signal: AbortSignal): Promise<void> {
    const reader = body.getReader();
    const idle = this.#opts.idleTimeout ?? 45_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const attempt = this.#attempt;
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => attempt?.abort("idle"), idle);
    };
    const stop = () => void reader.cancel().catch(() => {});
    signal.addEventListener("abort", stop, { once: true });
    this.#setState("open");
    this.#announced = false;
    arm();
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        for (const item of this.#parser.feed(value)) {
          if (item.type === "retry") this.#retryMs = item.ms;
          else if (item.type === "comment") this.#emit("comment", item.text);
          else if (item.type === "event") {
            if (item.event.event !== "connected") this.#announce();
            this.#dispatch(item.event);
          }
        }
        // `open` once the first bytes are in: after the hub's `connected`, before any event.
        this.#announce();
      }
    } finally {
      if (timer) clearTimeout(timer);
      signal.removeEventListener("abort", stop);
      this.#parser.end();
    }
    if (signal.aborted) throw signal.reason ?? new Error("aborted");
  }

  #dispatch(e: StreamEvent): void {
    if (e.event === "connected") {
      const info = parseData(e.data) as { clientId?: string };
      this.clientId = info?.clientId ?? "";
      this.#announce();
      return;
    }
    if (e.event === "reset") {
      const info = parseData(e.data) as { reason?: string; lastEventId?: string };
      this.#emit("reset", { reason: info?.reason ?? "", lastEventId: info?.lastEventId ?? "", id: e.id });
    } else {
      const event: TidingsEvent = { event: e.event, data: parseData(e.data), text: e.data, id: e.id };
      this.#emit(e.event, event);
      this.#emit("*", event);
    }
    // Written after the handlers returned: a reload resumes after an event they have seen.
    if (this.#storage && e.id) {
      try {
        this.#storage.setItem(this.#storageKey, e.id);
      } catch {
        // Storage full or denied: resume is best effort.
      }
    }
  }

  /** `open`, once per connection: at the hub's `connected` event, or before the first event. */
  #announce(): void {
    if (this.#announced) return;
    this.#announced = true;
    this.#emit("open", { clientId: this.clientId });
  }

  #listenToPage(): void {
    const target = globalThis as unknown as {
      addEventListener?: (t: string, f: (e: any) => void) => void;
      removeEventListener?: (t: string, f: (e: any) => void) => void;
    };
    if (typeof target.addEventListener !== "function" || typeof document === "undefined") return;
    const now = () => {
      if (this.state !== "open") this.reconnect();
    };
    const pageshow = (e: { persisted?: boolean }) => {
      if (e.persisted) this.reconnect();
    };
    target.addEventListener("online", now);
    target.addEventListener("pageshow", pageshow);
    document.addEventListener("resume", now);
    this.#unlisten.push(() => {
      target.removeEventListener?.("online", now);
      target.removeEventListener?.("pageshow", pageshow);
      document.removeEventListener("resume", now);
    });
  }
}

function hubError(body: string): { code?: string; message?: string } {
  try {
    return JSON.parse(body).error ?? {};
  } catch {
    return {};
  }
}

/** Whether a JWT's `exp` has passed (the hub ends a stream when its token expires). */
function expired(token: string | undefined): boolean {
  const payload = token?.split(".")[1];
  if (!payload) return false;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json)?.exp;
    return typeof exp === "number" && exp * 1000 <= Date.now() + 1000;
  } catch {
    return false;
  }
}

/** Aborts when any of `signals` does (`AbortSignal.any`, or by hand where it is missing). */
function anySignal(signals: AbortSignal[]): AbortSignal {
  const any = (AbortSignal as unknown as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return any(signals);
  const c = new AbortController();
  for (const s of signals) s.addEventListener("abort", () => c.abort(s.reason), { once: true });
  if (signals.some((s) => s.aborted)) c.abort();
  return c.signal;
}

function resolveStorage(resume: ResumeStore | undefined): Pick<Storage, "getItem" | "setItem"> | undefined {
  try {
    const g = globalThis as unknown as { sessionStorage?: Storage; localStorage?: Storage };
    return resume === "session" ? g.sessionStorage : resume === "local" ? g.localStorage : resume || undefined;
  } catch {
    return undefined;
  }
}
