//! The on-disk layout: keys of the three keyspaces and the encoding of one event. No I/O.
//!
//! - `log`: key = the id, 8 bytes big-endian (so key order is id order); value = a record.
//! - `index`: key = kind byte, name, `0x00`, id (8 bytes big-endian). Kinds: `T` an exact
//!   topic, `P` a topic prefix ending in `/` (the first 1 to [`PREFIX_DEPTH`] segments), `U` a
//!   user, `B` broadcast (empty name). Topics and user ids never contain a byte below 0x20, so
//!   the `0x00` separator keeps one name's ids contiguous and in id order. For an event with at
//!   most [`COVERING_MAX_TOPICS`] topics a `T` entry's value is the event's record (a covering
//!   index: the most common replay, one topic, never reads the log); every other entry is
//!   empty and points into `log`. So the bytes written for one event are linear in its size:
//!   the record once in `log`, at most [`COVERING_MAX_TOPICS`] copies, and one key per target
//!   name and prefix (an event naming thousands of topics must not write thousands of copies
//!   of a record that itself lists them all).
//! - [`STATE_KEY`] in `index` holds the floor, the count and the bytes retained, written in
//!   the same atomic batch as every change to them. It lives in `index` rather than a keyspace
//!   of its own because fjall can drop a journal only once every keyspace written in it has
//!   flushed: a tiny keyspace that never fills its memtable would pin every journal, and
//!   start-up would replay up to the journal limit (64 MiB) instead of a few memtables.
//!
//! A record: version (1), flags (bit 0: broadcast), `published_ms` (u64), topic count (u16),
//! user count (u16), each topic and user as a u16 length and its bytes, then the SSE frame.
//! Integers are little-endian.

use std::sync::Arc;

use bytes::Bytes;

use crate::event::{EventId, StoredEvent};
use crate::topic::Pattern;

/// Topic prefixes are indexed down to this many segments: `tenant/7/orders/**` scans the
/// `tenant/7/orders/` prefix index, `a/b/c/d/*` scans `a/b/c/` and filters.
pub const PREFIX_DEPTH: usize = 3;

/// The key of the retained state in `index`; `0x00` sorts before every index kind.
pub const STATE_KEY: &[u8] = b"\0state";

/// Events with at most this many topics get covering `T` entries.
pub const COVERING_MAX_TOPICS: usize = 4;

const RECORD_VERSION: u8 = 1;
const FLAG_BROADCAST: u8 = 1;

/// A stored value could not be decoded: the store is corrupt (or from a newer version).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("corrupt history record: {0}")]
pub struct Corrupt(pub &'static str);

/// The `log` key of an id.
pub fn log_key(id: EventId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// The id of a `log` key, or of an `index` key (its last 8 bytes).
pub fn id_of_key(key: &[u8]) -> Result<EventId, Corrupt> {
    let tail = key
        .len()
        .checked_sub(8)
        .map(|at| &key[at..])
        .ok_or(Corrupt("key shorter than an id"))?;
    let mut id = [0u8; 8];
    id.copy_from_slice(tail);
    Ok(EventId(u64::from_be_bytes(id)))
}

/// Where a replay finds candidate events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The whole log (a pattern with no literal first segment, like `**` or `*/x`).
    Log,
    /// The index entries under this key prefix (kind, name, `0x00`).
    Index(Vec<u8>),
}

fn index_prefix(kind: u8, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 10);
    key.push(kind);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key
}

/// The index prefix of one exact topic.
pub fn topic_prefix(topic: &str) -> Vec<u8> {
    index_prefix(b'T', topic)
}

/// The index prefix of one user.
pub fn user_prefix(user: &str) -> Vec<u8> {
    index_prefix(b'U', user)
}

/// The index prefix of broadcasts.
pub fn broadcast_prefix() -> Vec<u8> {
    index_prefix(b'B', "")
}

/// Whether an event's exact-topic index entries carry its record.
pub fn covers(event: &StoredEvent) -> bool {
    event.topics.len() <= COVERING_MAX_TOPICS
}

/// Whether an index key is an exact-topic entry (which may carry the record).
pub fn is_topic_key(key: &[u8]) -> bool {
    key.first() == Some(&b'T')
}

/// An index prefix followed by an id: a complete index key, or a scan bound.
pub fn with_id(prefix: &[u8], id: EventId) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

/// Where events matching `pattern` are found. Every topic a pattern with `k` literal leading
/// segments and a wildcard matches has more than `k` segments, so it was indexed under its
/// first `min(k, PREFIX_DEPTH)` segments.
pub fn pattern_source(pattern: &Pattern) -> Source {
    if pattern.is_literal() {
        return Source::Index(topic_prefix(pattern.as_str()));
    }
    let literal: Vec<&str> = pattern
        .as_str()
        .split('/')
        .take_while(|s| !s.contains('*'))
        .take(PREFIX_DEPTH)
        .collect();
    if literal.is_empty() {
        return Source::Log;
    }
    let mut name = literal.join("/");
    name.push('/');
    Source::Index(index_prefix(b'P', &name))
}

/// Every index key of an event (deduplicated, in first-seen order), for insertion and for
/// deletion. Linear in the number of names (a hash set, not a scan per key).
pub fn index_keys(event: &StoredEvent) -> Vec<Vec<u8>> {
    let mut prefixes: Vec<Vec<u8>> =
        Vec::with_capacity(event.topics.len() * (PREFIX_DEPTH + 1) + event.users.len() + 1);
    let mut seen: std::collections::HashSet<Vec<u8>> =
        std::collections::HashSet::with_capacity(prefixes.capacity());
    let mut push = |p: Vec<u8>| {
        if seen.insert(p.clone()) {
            prefixes.push(p);
        }
    };
    for topic in event.topics.iter() {
        push(topic_prefix(topic));
        // Every proper prefix ending at a `/`, down to PREFIX_DEPTH segments.
        let cuts = topic.match_indices('/').take(PREFIX_DEPTH);
        for (at, _) in cuts {
            push(index_prefix(b'P', &topic[..=at]));
        }
    }
    for user in event.users.iter() {
        push(user_prefix(user));
    }
    if event.broadcast {
        push(broadcast_prefix());
    }
    prefixes.iter().map(|p| with_id(p, event.id)).collect()
}

/// A record cannot represent an event: refused, never clamped (a clamped count would decode
/// as a different event).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("cannot store this event: {0}")]
pub struct Unrepresentable(pub &'static str);

/// Encodes an event's record (everything but its id, which is the key).
pub fn encode(event: &StoredEvent) -> Result<Vec<u8>, Unrepresentable> {
    let count = |n: usize, what| u16::try_from(n).map_err(|_| Unrepresentable(what));
    let topics = count(event.topics.len(), "more than 65535 topics")?;
    let users = count(event.users.len(), "more than 65535 users")?;
    let names = event.topics.iter().chain(event.users.iter());
    let names_len: usize = names.clone().map(|n| n.len() + 2).sum();
    let mut out = Vec::with_capacity(14 + names_len + event.frame.len());
    out.push(RECORD_VERSION);
    out.push(if event.broadcast { FLAG_BROADCAST } else { 0 });
    out.extend_from_slice(&event.published_ms.to_le_bytes());
    out.extend_from_slice(&topics.to_le_bytes());
    out.extend_from_slice(&users.to_le_bytes());
    for name in names {
        let len = count(name.len(), "a target name over 65535 bytes")?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&event.frame);
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("record truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn names(&mut self, n: u16) -> Result<Box<[Arc<str>]>, Corrupt> {
        (0..n)
            .map(|_| {
                let len = usize::from(self.u16()?);
                std::str::from_utf8(self.take(len)?)
                    .map(Arc::from)
                    .map_err(|_| Corrupt("target is not UTF-8"))
            })
            .collect()
    }
}

/// Decodes the record of event `id`.
pub fn decode(id: EventId, record: &[u8]) -> Result<StoredEvent, Corrupt> {
    let mut r = Reader(record);
    if r.take(1)?[0] != RECORD_VERSION {
        return Err(Corrupt("unknown record version"));
    }
    let flags = r.take(1)?[0];
    let published_ms = r.u64()?;
    let topic_count = r.u16()?;
    let user_count = r.u16()?;
    let topics = r.names(topic_count)?;
    let users = r.names(user_count)?;
    Ok(StoredEvent {
        id,
        topics,
        users,
        broadcast: flags & FLAG_BROADCAST != 0,
        published_ms,
        frame: Bytes::copy_from_slice(r.0),
    })
}

/// A record's size as retention counts it (frame plus target names, as
/// [`StoredEvent::size`]) and its `published_ms`, without copying anything.
pub fn size_and_time(record: &[u8]) -> Result<(usize, u64), Corrupt> {
    let mut r = Reader(record);
    if r.take(1)?[0] != RECORD_VERSION {
        return Err(Corrupt("unknown record version"));
    }
    r.take(1)?;
    let published_ms = r.u64()?;
    let names = usize::from(r.u16()?) + usize::from(r.u16()?);
    let mut names_len = 0;
    for _ in 0..names {
        let len = usize::from(r.u16()?);
        r.take(len)?;
        names_len += len;
    }
    Ok((r.0.len() + names_len, published_ms))
}

/// What [`STATE_KEY`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Every event above it is retained.
    pub floor: EventId,
    /// Events retained.
    pub count: u64,
    /// Bytes retained: frames plus target names ([`StoredEvent::size`]).
    pub bytes: u64,
}

impl State {
    /// The [`STATE_KEY`] value.
    pub fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.floor.0.to_le_bytes());
        out[8..16].copy_from_slice(&self.count.to_le_bytes());
        out[16..].copy_from_slice(&self.bytes.to_le_bytes());
        out
    }

    /// Reads a [`STATE_KEY`] value.
    pub fn decode(value: &[u8]) -> Result<State, Corrupt> {
        let mut r = Reader(value);
        let state = State {
            floor: EventId(r.u64()?),
            count: r.u64()?,
            bytes: r.u64()?,
        };
        if !r.0.is_empty() {
            return Err(Corrupt("state has trailing bytes"));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topics: &[&str], users: &[&str], broadcast: bool) -> StoredEvent {
        StoredEvent {
            id: EventId(0x0102_0304_0506_0708),
            topics: topics.iter().map(|t| Arc::from(*t)).collect(),
            users: users.iter().map(|u| Arc::from(*u)).collect(),
            broadcast,
            published_ms: 1_790_000_000_123,
            frame: Bytes::from_static(b"id: 1\ndata: {\"a\":1}\n\n"),
        }
    }

    #[test]
    fn record_round_trips_every_field() {
        let e = event(&["orders/42", "audit"], &["alice", "https://id/x"], true);
        let back = decode(e.id, &encode(&e).unwrap()).unwrap();
        assert_eq!(back.id, e.id);
        assert_eq!(back.topics, e.topics);
        assert_eq!(back.users, e.users);
        assert!(back.broadcast);
        assert_eq!(back.published_ms, e.published_ms);
        assert_eq!(back.frame, e.frame);
        assert_eq!(
            size_and_time(&encode(&e).unwrap()).unwrap(),
            (e.size(), e.published_ms)
        );
    }

    #[test]
    fn every_truncation_of_a_record_is_reported_not_misread() {
        let e = event(&["orders/42"], &["alice"], false);
        let record = encode(&e).unwrap();
        let frame_starts = record.len() - e.frame.len();
        for cut in 0..frame_starts {
            assert!(decode(e.id, &record[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn counts_a_record_cannot_hold_are_refused_not_clamped() {
        let many: Vec<String> = (0..=65_535).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(encode(&event(&names, &[], false)).is_err());
        assert!(encode(&event(&[], &names, false)).is_err());
        assert!(encode(&event(&names[..65_535], &[], false)).is_ok());
        let long = "x".repeat(70_000);
        assert!(encode(&event(&[&long], &[], false)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn records_round_trip_at_the_limits(
            topics in proptest::collection::vec("[a-z/]{1,40}", 0..300),
            users in proptest::collection::vec("[a-z0-9]{1,256}", 0..100),
            broadcast: bool,
            published_ms: u64,
            frame in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            let e = StoredEvent {
                id: EventId(7),
                topics: topics.iter().map(|t| Arc::from(t.as_str())).collect(),
                users: users.iter().map(|u| Arc::from(u.as_str())).collect(),
                broadcast,
                published_ms,
                frame: Bytes::from(frame),
            };
            let record = encode(&e).unwrap();
            let back = decode(e.id, &record).unwrap();
            proptest::prop_assert_eq!(&back.topics, &e.topics);
            proptest::prop_assert_eq!(&back.users, &e.users);
            proptest::prop_assert_eq!(back.broadcast, e.broadcast);
            proptest::prop_assert_eq!(back.published_ms, e.published_ms);
            proptest::prop_assert_eq!(&back.frame, &e.frame);
            proptest::prop_assert_eq!(size_and_time(&record).unwrap(), (e.size(), published_ms));
        }
    }

    #[test]
    fn index_keys_are_linear_in_the_targets() {
        let many: Vec<String> = (0..20_000).map(|i| format!("a/b/c/{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let keys = index_keys(&event(&names, &[], false));
        // One exact key per topic, plus the shared prefixes a/, a/b/, a/b/c/.
        assert_eq!(keys.len(), 20_003);
    }

    #[test]
    fn log_keys_sort_in_id_order() {
        let ids = [0u64, 1, 255, 256, 1 << 40, u64::MAX];
        for pair in ids.windows(2) {
            assert!(log_key(EventId(pair[0])) < log_key(EventId(pair[1])));
        }
        assert_eq!(id_of_key(&log_key(EventId(77))).unwrap(), EventId(77));
    }

    #[test]
    fn an_event_is_indexed_by_topic_prefixes_user_and_broadcast() {
        let e = event(&["tenant/7/orders/9/x", "tenant/7/audit"], &["u1"], true);
        let keys: Vec<Vec<u8>> = index_keys(&e);
        let names: Vec<String> = keys
            .iter()
            .map(|k| String::from_utf8_lossy(&k[..k.len() - 9]).into_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                "Ttenant/7/orders/9/x",
                "Ptenant/",
                "Ptenant/7/",
                "Ptenant/7/orders/",
                "Ttenant/7/audit",
                "Uu1",
                "B",
            ]
        );
        assert!(keys.iter().all(|k| id_of_key(k).unwrap() == e.id));
    }

    #[test]
    fn patterns_scan_the_narrowest_index_that_holds_all_their_matches() {
        let source = |p: &str| pattern_source(&Pattern::parse(p).unwrap());
        assert_eq!(
            source("orders/42"),
            Source::Index(topic_prefix("orders/42"))
        );
        assert_eq!(source("orders/*"), Source::Index(b"Porders/\0".to_vec()));
        assert_eq!(
            source("tenant/7/**"),
            Source::Index(b"Ptenant/7/\0".to_vec())
        );
        assert_eq!(source("a/b/c/d/*"), Source::Index(b"Pa/b/c/\0".to_vec()));
        assert_eq!(source("**"), Source::Log);
        assert_eq!(source("*/x"), Source::Log);
    }

    #[test]
    fn every_topic_a_pattern_matches_is_under_its_index_prefix() {
        let topics = ["a/b", "a/b/c", "a/x/c", "a/b/c/d", "a/b/c/d/e", "z"];
        for p in [
            "a/*",
            "a/**",
            "a/b/*",
            "a/*/c",
            "a/b/c/*",
            "a/b/c/d/*",
            "a/b/**",
        ] {
            let pattern = Pattern::parse(p).unwrap();
            let Source::Index(prefix) = pattern_source(&pattern) else {
                panic!("{p} should use an index");
            };
            for t in topics.iter().filter(|t| pattern.matches(t)) {
                let keys = index_keys(&event(&[t], &[], false));
                assert!(
                    keys.iter().any(|k| k.starts_with(&prefix)),
                    "{t} matched by {p} but not under its prefix"
                );
            }
        }
    }

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let s = State {
            floor: EventId(9),
            count: 3,
            bytes: 300,
        };
        assert_eq!(State::decode(&s.encode()).unwrap(), s);
        assert!(State::decode(&s.encode()[..20]).is_err());
    }
}
