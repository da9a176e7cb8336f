//! What the parser hands back: dispatched events, reconnection times and comments.

/// One thing the parser found in the stream, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An event was dispatched (a blank line ended an event with data).
    Event(MessageEvent),
    /// A valid `retry` field set the reconnection time, in milliseconds. It is reported when
    /// its line is read, before the event it belongs to is dispatched, as the standard applies
    /// it at once.
    Retry(u64),
    /// A comment line (reported only with [`Parser::with_comments`](crate::Parser::with_comments)),
    /// without the colon and without one leading space.
    Comment(String),
}

/// A dispatched event, as a browser's `MessageEvent` would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    /// The event type; `"message"` when the stream set none.
    pub event: String,
    /// The data lines joined with LF.
    pub data: String,
    /// The last event ID at dispatch: the latest `id` field, possibly from an earlier event,
    /// or empty if there was none.
    pub id: String,
}
