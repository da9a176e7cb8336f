//! A published event as the hub keeps it: its id, its targets, and its wire frame.
//!
//! The frame is encoded once at publish time and shared (`Bytes` is reference counted) by the
//! history and by every connection it is queued to.

use std::sync::Arc;

use bytes::Bytes;

use crate::topic::Pattern;

/// The hub's event id: a number that only grows, shown to clients as a fixed-width decimal.
///
/// Ids start from the wall clock in microseconds when a hub starts (or above the newest id its
/// durable history holds), so a restarted hub never issues an id it issued before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId(pub(crate) u64);

impl EventId {
    /// Parses an id a client echoed back; `None` when it cannot be one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().map(EventId)
    }

    /// The id with this number (a store reading back what it kept).
    pub const fn from_u64(n: u64) -> Self {
        EventId(n)
    }

    /// Its number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The next id.
    pub fn next(self) -> Self {
        EventId(self.0 + 1)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Fixed width keeps string order equal to numeric order (until the year 2286).
        write!(f, "{:016}", self.0)
    }
}

/// One event in the hub: who it is for and its encoded frame. Built by the hub's publish
/// path; a [`crate::HistoryStore`] keeps it and gives it back (or rebuilds it with
/// [`StoredEvent::new`] from what it wrote).
#[derive(Debug)]
pub struct StoredEvent {
    pub(crate) id: EventId,
    pub(crate) topics: Box<[Arc<str>]>,
    pub(crate) users: Box<[Arc<str>]>,
    pub(crate) broadcast: bool,
    pub(crate) published_ms: u64,
    pub(crate) frame: Bytes,
}

impl StoredEvent {
    /// An event as a store read it back: `frame` must be the frame the hub encoded for `id`.
    pub fn new(
        id: EventId,
        topics: Box<[Arc<str>]>,
        users: Box<[Arc<str>]>,
        broadcast: bool,
        published_ms: u64,
        frame: Bytes,
    ) -> Self {
        Self {
            id,
            topics,
            users,
            broadcast,
            published_ms,
            frame,
        }
    }

    /// Its id.
    pub fn id(&self) -> EventId {
        self.id
    }

    /// Topics it was published to.
    pub fn topics(&self) -> &[Arc<str>] {
        &self.topics
    }

    /// Users it was addressed to.
    pub fn users(&self) -> &[Arc<str>] {
        &self.users
    }

    /// Whether it goes to every connection.
    pub fn is_broadcast(&self) -> bool {
        self.broadcast
    }

    /// When it was published, Unix milliseconds (for `--history-max-age`).
    pub fn published_ms(&self) -> u64 {
        self.published_ms
    }

    /// The complete SSE frame (`id:`, `event:`, `data:` lines and the blank line).
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// What the event costs to keep, as `--max-event-bytes` and the history's byte limits count
    /// it: its frame plus the bytes of its target names.
    pub fn size(&self) -> usize {
        let names: usize = self
            .topics
            .iter()
            .chain(self.users.iter())
            .map(|n| n.len())
            .sum();
        self.frame.len() + names
    }

    /// Whether a connection with these subscriptions and this user may see the event.
    pub fn visible_to(&self, patterns: &[Pattern], user: Option<&str>) -> bool {
        if self.broadcast {
            return true;
        }
        if let Some(user) = user {
            if self.users.iter().any(|u| &**u == user) {
                return true;
            }
        }
        self.topics
            .iter()
            .any(|t| patterns.iter().any(|p| p.matches(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_strings_and_as_numbers() {
        let a = EventId(1_790_000_000_000_000);
        let b = EventId(1_790_000_000_000_001);
        assert!(a.to_string() < b.to_string());
        assert_eq!(EventId::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn foreign_ids_do_not_parse() {
        for s in ["", "abc", "-1", "1.5", "99999999999999999999999", " 12"] {
            assert_eq!(EventId::parse(s), None, "{s:?}");
        }
    }
}
