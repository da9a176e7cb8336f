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
export declare class TidingsError extends Error {
    /** HTTP status, 0 for a network error. */
    readonly status: number;
    /** The hub's error code, when it gave one. */
    readonly code?: string | undefined;
    /** True when the client stopped for good. */
    readonly fatal: boolean;
    constructor(message: string, 
    /** HTTP status, 0 for a network error. */
    status: number, 
    /** The hub's error code, when it gave one. */
    code?: string | undefined, 
    /** True when the client stopped for good. */
    fatal?: boolean);
}
export declare class Tidings {
    #private;
    /** The connection's state. */
    state: State;
    /** The hub's id for this connection (from its `connected` event). */
    clientId: string;
    constructor(options: Options);
    /** The id of the last event dispatched (sent as `Last-Event-ID` on reconnect). */
    get lastEventId(): string;
    /**
     * Calls `fn` for events of this type (`message` for untyped ones), or for the client's own
     * notifications: `open`, `reset`, `error`, `state`, `comment`. Returns its unsubscribe.
     */
    on(event: "open", fn: (info: {
        clientId: string;
    }) => void): () => void;
    on(event: "reset", fn: (info: ResetInfo) => void): () => void;
    on(event: "error", fn: (err: TidingsError) => void): () => void;
    on(event: "state", fn: (state: State) => void): () => void;
    on(event: "comment", fn: (text: string) => void): () => void;
    on<T = unknown>(event: string, fn: (e: TidingsEvent<T>) => void): () => void;
    /** Adds a topic; changes made together cause one reconnect. */
    subscribe(topic: string): void;
    /** Removes a topic; changes made together cause one reconnect. */
    unsubscribe(topic: string): void;
    /** Drops the current connection (if any) and connects again now. */
    reconnect(): void;
    /** Stops for good: no request, timer or listener is left behind. */
    close(): void;
    /** Every event, as an async iterator (ends when the client closes or `signal` aborts). */
    events<T = unknown>(options?: {
        signal?: AbortSignal;
    }): AsyncGenerator<TidingsEvent<T>>;
}
