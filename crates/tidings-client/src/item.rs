//! What the stream yields: events, and everything else a caller may want to see happen.

use std::time::Duration;

use http::{HeaderMap, StatusCode, Uri};
use serde::de::DeserializeOwned;

use crate::Error;

/// One thing that happened on an [`EventStream`](crate::EventStream), in order.
///
/// A typical life: `Open`, then `Event`s (with `Comment`s and `Retry`s between them), then
/// `Error { will_retry: true, .. }`, `Reconnecting`, `Open` again, and so on; the stream ends
/// with `Closed`, after which it yields `None`.
#[derive(Debug)]
#[non_exhaustive]
pub enum SseItem {
    /// A connection is open and its response is an event stream.
    Open(Open),
    /// An event was dispatched.
    Event(Event),
    /// The Tidings hub could not resume from the `Last-Event-ID` it was given: events may have
    /// been missed, so the caller should reload its state. See [`Reset`].
    Reset(Reset),
    /// A comment line, without its colon and one leading space. Servers send these as
    /// heartbeats. Off with [`Builder::comments`](crate::Builder::comments).
    Comment(String),
    /// The server set the reconnection time with a `retry:` field.
    Retry(Duration),
    /// A connection failed or ended. `will_retry` says whether the client reconnects (then a
    /// [`SseItem::Reconnecting`] follows) or stops (then a [`SseItem::Closed`] follows).
    Error {
        /// What went wrong.
        error: Error,
        /// Whether the client will reconnect.
        will_retry: bool,
    },
    /// The client waits `delay`, then makes connection attempt number `attempt` of the
    /// current run (see [`Builder::max_attempts`](crate::Builder::max_attempts)).
    Reconnecting {
        /// How long the client waits before connecting.
        delay: Duration,
        /// The number of the coming attempt since the stream was last healthy.
        attempt: u32,
    },
    /// The stream is over; nothing follows.
    Closed(CloseReason),
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The caller asked, with [`Handle::close`](crate::Handle::close).
    Requested,
    /// The server answered `204 No Content`: the standard way to say "do not reconnect".
    NoContent,
    /// An error that retrying cannot fix (see [the rule](crate::Error#the-retry-rule)).
    Fatal,
    /// [`Builder::max_attempts`](crate::Builder::max_attempts) connection attempts in a row
    /// failed.
    AttemptsExhausted,
}

/// A connection that opened: where it ended up after redirects, and the response head.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Open {
    /// The URL that answered, after any redirects.
    pub url: Uri,
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
}

/// A dispatched event, as a browser's `MessageEvent` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type; `"message"` when the server sent none.
    pub event: String,
    /// The data lines, joined with `\n`.
    pub data: String,
    /// The last event ID at dispatch: the latest `id:` seen, possibly in an earlier event, or
    /// empty. This is what the client sends back as `Last-Event-ID` when it reconnects.
    pub id: String,
}

impl Event {
    /// Decodes the data as JSON.
    ///
    /// ```
    /// # use tidings_client::Event;
    /// #[derive(serde::Deserialize)]
    /// struct Order { id: u32 }
    /// let event = Event { event: "order".into(), data: r#"{"id": 42}"#.into(), id: "7".into() };
    /// assert_eq!(event.json::<Order>()?.id, 42);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

impl From<tidings_wire::MessageEvent> for Event {
    fn from(e: tidings_wire::MessageEvent) -> Self {
        Event {
            event: e.event,
            data: e.data,
            id: e.id,
        }
    }
}

/// The Tidings hub's `reset` event: the `Last-Event-ID` given on reconnect was older than the
/// hub's history, or unknown, so the events in between cannot be replayed. The stream goes on
/// with live events from the newest id; the caller should reload whatever state it built
/// from earlier events.
///
/// The client recognises an event of type `reset` whose data is a JSON object with a string
/// `reason`; any other `reset` event is an ordinary [`SseItem::Event`]. The original event is
/// kept in [`Reset::event`], so code that treats every event alike loses nothing. Turn the
/// recognition off with [`Builder::recognise_reset`](crate::Builder::recognise_reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// Why the hub could not resume.
    pub reason: ResetReason,
    /// The `Last-Event-ID` the hub was given.
    pub last_event_id: String,
    /// The event as it arrived.
    pub event: Event,
}

impl Reset {
    /// The newest id at the hub: the stream continues after it.
    pub fn id(&self) -> &str {
        &self.event.id
    }

    /// Reads a hub `reset` event; `None` for any other event.
    pub(crate) fn recognise(event: Event) -> Result<Reset, Event> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            reason: String,
            #[serde(default)]
            last_event_id: String,
        }
        if event.event != "reset" {
            return Err(event);
        }
        match event.json::<Data>() {
            Ok(data) => Ok(Reset {
                reason: ResetReason::from(data.reason),
                last_event_id: data.last_event_id,
                event,
            }),
            Err(_) => Err(event),
        }
    }
}

/// Why the hub sent a [`Reset`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetReason {
    /// The id was older than the retained history.
    HistoryGap,
    /// The hub never issued that id.
    UnknownId,
    /// A reason this version of the client does not know.
    Other(String),
}

impl From<String> for ResetReason {
    fn from(reason: String) -> Self {
        match reason.as_str() {
            "history-gap" => ResetReason::HistoryGap,
            "unknown-id" => ResetReason::UnknownId,
            _ => ResetReason::Other(reason),
        }
    }
}

impl std::fmt::Display for ResetReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResetReason::HistoryGap => "history-gap",
            ResetReason::UnknownId => "unknown-id",
            ResetReason::Other(reason) => reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: &str) -> Event {
        Event {
            event: kind.into(),
            data: data.into(),
            id: "9".into(),
        }
    }

    #[test]
    fn hub_reset_event_is_recognised_with_its_reason_and_ids() {
        let raw = event("reset", r#"{"reason":"history-gap","lastEventId":"3"}"#);
        let reset = Reset::recognise(raw.clone()).expect("a hub reset");
        assert_eq!(reset.reason, ResetReason::HistoryGap);
        assert_eq!(reset.last_event_id, "3");
        assert_eq!(reset.id(), "9");
        assert_eq!(reset.event, raw);
    }

    #[test]
    fn other_reset_events_stay_ordinary_events() {
        for raw in [event("reset", "not json"), event("reset", r#"{"x":1}"#)] {
            assert_eq!(Reset::recognise(raw.clone()), Err(raw));
        }
        let other = event("message", r#"{"reason":"history-gap"}"#);
        assert_eq!(Reset::recognise(other.clone()), Err(other));
    }

    #[test]
    fn unknown_reset_reasons_are_kept_verbatim() {
        let raw = event("reset", r#"{"reason":"moved","lastEventId":"1"}"#);
        let reset = Reset::recognise(raw).expect("a hub reset");
        assert_eq!(reset.reason, ResetReason::Other("moved".into()));
        assert_eq!(reset.reason.to_string(), "moved");
    }
}
