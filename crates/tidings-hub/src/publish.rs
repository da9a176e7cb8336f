//! What a publisher asks for, checked and encoded: the one place events are built.
//!
//! [`Publish`] is the host application's way in (through [`crate::Hub`]); the HTTP layer turns
//! JSON bodies into the same type. `Publish::prepare` validates targets and payload before the
//! publish sequencer assigns an id, so a bad batch publishes nothing.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::BytesMut;
use serde::Serialize;

use crate::event::{EventId, StoredEvent};
use crate::topic::{validate_topic, validate_user, TopicError};

/// The data of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// JSON, already serialized compactly (one `data:` line).
    Json(String),
    /// Text sent as-is, one `data:` line per line.
    Text(String),
}

/// One event to publish and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Topics it is published to.
    pub topics: Vec<String>,
    /// Users it is addressed to.
    pub users: Vec<String>,
    /// To every connection.
    pub broadcast: bool,
    /// The SSE event type; `None` means `message`.
    pub event: Option<String>,
    /// Its data.
    pub payload: Payload,
    /// A `retry:` to send with it, in milliseconds.
    pub retry: Option<u64>,
}

impl Publish {
    fn new() -> Self {
        Self {
            topics: Vec::new(),
            users: Vec::new(),
            broadcast: false,
            event: None,
            payload: Payload::Text(String::new()),
            retry: None,
        }
    }

    /// An event for a topic.
    pub fn to_topic(topic: impl Into<String>) -> Self {
        Self::new().topic(topic)
    }

    /// An event for a user's connections.
    pub fn to_user(user: impl Into<String>) -> Self {
        Self::new().user(user)
    }

    /// An event for every connection.
    pub fn to_everyone() -> Self {
        Self {
            broadcast: true,
            ..Self::new()
        }
    }

    /// Adds a topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Adds a user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.users.push(user.into());
        self
    }

    /// Sets the event type.
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Sets text data.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.payload = Payload::Text(text.into());
        self
    }

    /// Sets JSON data from any serializable value.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, PublishError> {
        let json =
            serde_json::to_string(value).map_err(|e| PublishError::Invalid(e.to_string()))?;
        self.payload = Payload::Json(json);
        Ok(self)
    }

    /// Sets a `retry:` in milliseconds.
    pub fn retry(mut self, ms: u64) -> Self {
        self.retry = Some(ms);
        self
    }

    /// Validates targets and fields and measures the event: its encoded frame plus the bytes
    /// of its target names (what the history keeps of it).
    pub(crate) fn prepare(self, limits: &PublishLimits) -> Result<Prepared, PublishError> {
        self.prepare_checked(limits, false)
    }

    /// An event of the hub's own (`progress`): its event type may be a reserved one, and it
    /// also goes to the system topic `system` (which no client subscribes to: it indexes the
    /// hub's own events in the history).
    pub(crate) fn prepare_system(
        self,
        limits: &PublishLimits,
        system: &str,
    ) -> Result<Prepared, PublishError> {
        let mut prepared = self.prepare_checked(limits, true)?;
        let mut topics = std::mem::take(&mut prepared.topics).into_vec();
        topics.push(Arc::from(system));
        prepared.topics = topics.into();
        Ok(prepared)
    }

    fn prepare_checked(
        self,
        limits: &PublishLimits,
        system: bool,
    ) -> Result<Prepared, PublishError> {
        if self.topics.is_empty() && self.users.is_empty() && !self.broadcast {
            return Err(PublishError::NoTarget);
        }
        let targets = self.topics.len() + self.users.len();
        if targets > limits.max_targets {
            return Err(PublishError::TooManyTargets {
                count: targets,
                limit: limits.max_targets,
            });
        }
        let topics = dedup(self.topics, validate_topic, PublishError::Topic)?;
        let users = dedup(self.users, validate_user, PublishError::User)?;
        let event = match self.event {
            Some(e) if e.is_empty() || e == "message" => None,
            Some(e) if system => Some(e),
            Some(e) => {
                check_event_name(&e)?;
                Some(e)
            }
            None => None,
        };
        if let Some(retry) = self.retry {
            if retry > MAX_RETRY_MS {
                return Err(PublishError::Invalid(format!(
                    "retry is {retry} ms, over the limit of {MAX_RETRY_MS} (one day)"
                )));
            }
        }
        let data = match &self.payload {
            Payload::Json(s) | Payload::Text(s) => s.as_str(),
        };
        // Encoded here, once, outside the sequencer's lock, with a stand-in id the sequencer
        // overwrites in place. Ids have 16 digits, so the size measured now is the size sent.
        let wire = wire_event(ID_PLACEHOLDER, event.as_deref(), data, self.retry);
        let mut frame = BytesMut::new();
        wire.encode_into(&mut frame)
            .map_err(|e| PublishError::Invalid(e.to_string()))?;
        let names: usize = topics.iter().chain(users.iter()).map(|n| n.len()).sum();
        let size = frame.len() + names;
        if size > limits.max_event_bytes {
            return Err(PublishError::TooLarge {
                size,
                limit: limits.max_event_bytes,
            });
        }
        Ok(Prepared {
            topics,
            users,
            broadcast: self.broadcast,
            frame,
        })
    }
}

/// The id a frame is encoded with before it has one. Every frame starts with its id line.
const ID_PLACEHOLDER: &str = "0000000000000000";
/// Where the id's digits sit in a frame: after `id: `.
const ID_DIGITS: std::ops::Range<usize> = 4..4 + ID_PLACEHOLDER.len();

/// The bounds a publish is checked against (from [`crate::HubConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishLimits {
    /// Largest event: encoded frame plus target names (`--max-event-bytes`).
    pub max_event_bytes: usize,
    /// Most topics + users of one event (`--max-targets`).
    pub max_targets: usize,
}

/// Longest event type a publisher may set.
pub const MAX_EVENT_NAME: usize = 128;
/// Largest `retry` a publisher may set: one day, in milliseconds.
pub const MAX_RETRY_MS: u64 = 86_400_000;
/// Event types the hub sends in-band; a publisher may not forge them.
pub const RESERVED_EVENTS: &[&str] = &["connected", "reset", "progress"];

fn check_event_name(name: &str) -> Result<(), PublishError> {
    if name.len() > MAX_EVENT_NAME {
        return Err(PublishError::Invalid(format!(
            "event type is {} bytes, at most {MAX_EVENT_NAME}",
            name.len()
        )));
    }
    if RESERVED_EVENTS.contains(&name) {
        return Err(PublishError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// Validates names and drops repeats, keeping first-seen order, in O(n) expected time (a
/// hash set, not a scan per name: thousands of targets must not cost millions of compares).
fn dedup(
    names: Vec<String>,
    validate: fn(&str) -> Result<(), TopicError>,
    error: fn(String, TopicError) -> PublishError,
) -> Result<Box<[Arc<str>]>, PublishError> {
    let mut seen: HashSet<Arc<str>> = HashSet::with_capacity(names.len());
    let mut out: Vec<Arc<str>> = Vec::with_capacity(names.len());
    for name in names {
        validate(&name).map_err(|e| error(name.clone(), e))?;
        let name: Arc<str> = Arc::from(name);
        if seen.insert(Arc::clone(&name)) {
            out.push(name);
        }
    }
    Ok(out.into())
}

/// A publish that passed validation, encoded, waiting for its id.
#[derive(Debug)]
pub(crate) struct Prepared {
    topics: Box<[Arc<str>]>,
    users: Box<[Arc<str>]>,
    broadcast: bool,
    /// The frame, with [`ID_PLACEHOLDER`] for its id.
    frame: BytesMut,
}

/// A prepared event's fields, borrowed (see [`Prepared::parts`]).
pub(crate) struct Parts<'a> {
    pub topics: &'a [Arc<str>],
    pub users: &'a [Arc<str>],
    pub broadcast: bool,
    /// The frame with the id stand-in.
    pub frame: &'a [u8],
}

impl Prepared {
    /// A prepared event rebuilt from what another node logged (see `cluster::entry`):
    /// `frame` carries the id stand-in, as [`Prepared::parts`] gave it.
    pub(crate) fn from_parts(
        topics: Box<[Arc<str>]>,
        users: Box<[Arc<str>]>,
        broadcast: bool,
        frame: BytesMut,
    ) -> Self {
        Self {
            topics,
            users,
            broadcast,
            frame,
        }
    }

    /// Its targets and its frame with the id stand-in, for a shared log.
    pub(crate) fn parts(&self) -> Parts<'_> {
        Parts {
            topics: &self.topics,
            users: &self.users,
            broadcast: self.broadcast,
            frame: &self.frame,
        }
    }

    /// The event with its id: the sequencer's whole share of the work is writing the id's
    /// digits over the stand-in (no encoding, no allocation under its lock).
    pub fn stamp(self, id: EventId, published_ms: u64) -> StoredEvent {
        let mut frame = self.frame;
        let mut digits = [0u8; 20];
        let text = decimal(id.as_u64(), &mut digits);
        let frame = if text.len() <= ID_PLACEHOLDER.len() {
            let at = &mut frame[ID_DIGITS];
            at.fill(b'0');
            at[ID_PLACEHOLDER.len() - text.len()..].copy_from_slice(text);
            frame.freeze()
        } else {
            // Past 16 digits (the year 2286): splice a longer id line in.
            let mut longer = BytesMut::with_capacity(frame.len() + text.len());
            longer.extend_from_slice(b"id: ");
            longer.extend_from_slice(text);
            longer.extend_from_slice(&frame[ID_DIGITS.end..]);
            longer.freeze()
        };
        StoredEvent::new(
            id,
            self.topics,
            self.users,
            self.broadcast,
            published_ms,
            frame,
        )
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

fn wire_event<'a>(
    id: &'a str,
    event: Option<&'a str>,
    data: &'a str,
    retry: Option<u64>,
) -> tidings_wire::Event<'a> {
    let mut ev = tidings_wire::Event::new(data).with_id(id);
    if let Some(e) = event {
        ev = ev.with_event(e);
    }
    if let Some(r) = retry {
        ev = ev.with_retry(r);
    }
    ev
}

/// What happened to one published event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// Its id.
    pub id: String,
    /// Connections it was queued to.
    pub delivered: usize,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No topic, user or broadcast.
    #[error("an event needs a target: give topic, topics, user or users")]
    NoTarget,
    /// A topic breaks the topic rules.
    #[error("invalid topic {0:?}: {1}")]
    Topic(String, TopicError),
    /// A user id breaks the user rules.
    #[error("invalid user {0:?}: {1}")]
    User(String, TopicError),
    /// A field cannot be encoded (e.g. a newline in `event`).
    #[error("{0}")]
    Invalid(String),
    /// The event uses a type the hub sends in-band (`connected`, `reset`, `progress`).
    #[error("the event type {0:?} is reserved for the hub's own control events")]
    Reserved(String),
    /// More topics + users than `--max-targets`.
    #[error(
        "the event has {count} targets (topics + users), over the limit of {limit} (--max-targets)"
    )]
    TooManyTargets {
        /// Topics + users given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The event (encoded frame plus target names) is over `--max-event-bytes`.
    #[error("event is {size} bytes (encoded frame plus target names), over the limit of {limit} (--max-event-bytes)")]
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Draining,
    /// The history store refused the events.
    #[error(transparent)]
    History(#[from] crate::history::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PublishLimits = PublishLimits {
        max_event_bytes: 1 << 20,
        max_targets: 64,
    };

    /// The frame the wire crate encodes for this event with this id.
    fn encoded(id: &str, event: Option<&str>, data: &str, retry: Option<u64>) -> bytes::Bytes {
        wire_event(id, event, data, retry)
            .encode()
            .expect("a valid event")
    }

    #[test]
    fn a_stamped_frame_is_the_frame_encoded_with_its_id() {
        let prepared = Publish::to_topic("t")
            .event("order.paid")
            .text("line one\nline two")
            .retry(2500)
            .prepare(&LIMITS)
            .expect("valid");
        let id = EventId::from_u64(1_790_000_000_000_042);
        let event = prepared.stamp(id, 7);
        assert_eq!(
            event.frame(),
            &encoded(
                "1790000000000042",
                Some("order.paid"),
                "line one\nline two",
                Some(2500)
            )
        );
        assert_eq!(event.id(), id);
        assert_eq!(event.published_ms(), 7);
    }

    #[test]
    fn short_and_long_ids_are_stamped_as_the_id_displays() {
        for n in [
            0,
            1,
            42,
            9_999_999_999_999_999,
            10_000_000_000_000_000,
            u64::MAX,
        ] {
            let id = EventId::from_u64(n);
            let prepared = Publish::to_topic("t")
                .json(&1)
                .expect("json")
                .prepare(&LIMITS)
                .expect("valid");
            assert_eq!(
                prepared.stamp(id, 0).frame(),
                &encoded(&id.to_string(), None, "1", None),
                "{n}"
            );
        }
    }
}
