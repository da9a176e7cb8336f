//! The JSON lines printed by `tidings parse` and `tidings tail --json`.
//!
//! `parse` prints one line per item in stream order: `{"event","data","id"}`,
//! `{"retry": ms}`, `{"comment": text}`. `tail --json` prints one object per event,
//! `{"event","data","id","retry"?}`, where `retry` is the reconnection time the server set
//! since the previous event (the contract's format for scripts), plus comments when asked.

use serde::Serialize;

/// One printed line.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum JsonLine<'a> {
    /// A dispatched event; `id` is the last event ID at dispatch (empty when none); `retry`
    /// (ms) when the server set one since the previous event (`tail --json` only).
    Event {
        event: &'a str,
        data: &'a str,
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry: Option<u128>,
    },
    /// A valid `retry:` field, in milliseconds.
    Retry { retry: u128 },
    /// A comment line, without its colon.
    Comment { comment: &'a str },
}

impl<'a> JsonLine<'a> {
    /// The line for an event.
    pub fn event(event: &'a str, data: &'a str, id: &'a str) -> Self {
        JsonLine::Event {
            event,
            data,
            id,
            retry: None,
        }
    }

    /// The same line carrying the reconnection time the server set before it.
    pub fn with_retry(self, retry: Option<u128>) -> Self {
        match self {
            JsonLine::Event {
                event, data, id, ..
            } => JsonLine::Event {
                event,
                data,
                id,
                retry,
            },
            other => other,
        }
    }
}
