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
export type Item = {
    type: "event";
    event: StreamEvent;
} | {
    type: "retry";
    ms: number;
} | {
    type: "comment";
    text: string;
};
export declare class Parser {
    #private;
    /** The id committed by the last dispatch (what `Last-Event-ID` sends). */
    lastEventId: string;
    constructor(lastEventId?: string);
    /** Parses a piece of the stream; returns what it completed. */
    feed(chunk: Uint8Array | string): Item[];
    /** The stream ended: an event without its blank line is discarded, never dispatched. */
    end(): void;
}
