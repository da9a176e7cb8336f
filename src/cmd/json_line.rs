//! The one JSON line per stream item printed by `tidings parse` and `tidings tail --json`:
//! `{"event","data","id"}`, `{"retry": ms}` or `{"comment": text}`.

use serde::Serialize;

/// One printed line.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum JsonLine<'a> {
    /// A dispatched event; `id` is the last event ID at dispatch (empty when none).
    Event {
        event: &'a str,
        data: &'a str,
        id: &'a str,
    },
    /// A valid `retry:` field, in milliseconds.
    Retry { retry: u128 },
    /// A comment line, without its colon.
    Comment { comment: &'a str },
}

impl<'a> JsonLine<'a> {
    /// The line for an event.
    pub fn event(event: &'a str, data: &'a str, id: &'a str) -> Self {
        JsonLine::Event { event, data, id }
    }
}
