//! One event as the shared log holds it, and the log's ids as the hub's ids.
//!
//! An entry has two fields: `o`, the origin (`<node>:<batch>`, so the publishing node can
//! answer its publisher once its own tail has fanned the batch out), and `e`, the event in a
//! small binary form: flags, publish time, topics, users and the frame the publishing node
//! encoded with the id stand-in. Every node stamps the frame with the entry's id when it reads
//! it back, so no node re-encodes an event. A gap marker (see `cluster`) has one field `gap`.
//!
//! The layout is written by hand: it is six fields read on every node for every event, and a
//! general serializer would add a dependency and a copy for no gain.

use sha2::Digest as _;
use std::sync::Arc;

use bytes::BytesMut;

use crate::event::EventId;
use crate::publish::Prepared;

/// Bits of an event id below the log's millisecond: a Redis stream id `ms-seq` is the event
/// id `ms << SEQ_BITS | seq`. A million entries in one millisecond is beyond any broker here.
const SEQ_BITS: u32 = 20;

/// The event id of a Redis stream id (`1700000000000-3`); `None` if it is not one.
pub(crate) fn id_of_stream(text: &str) -> Option<EventId> {
    let (ms, seq) = text.split_once('-')?;
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    if seq >> SEQ_BITS != 0 || ms >> (64 - SEQ_BITS) != 0 {
        return None;
    }
    Some(EventId::from_u64(ms << SEQ_BITS | seq))
}

/// The millisecond (of the log's clock) an event id was issued at.
pub(crate) fn millis_of(id: EventId) -> u64 {
    id.as_u64() >> SEQ_BITS
}

/// The Redis stream id of an event id.
pub(crate) fn stream_of_id(id: EventId) -> String {
    let n = id.as_u64();
    format!("{}-{}", n >> SEQ_BITS, n & ((1 << SEQ_BITS) - 1))
}

const BROADCAST: u8 = 1;

/// The `e` field of a prepared event.
pub(crate) fn encode(event: &Prepared, published_ms: u64) -> Vec<u8> {
    let crate::publish::Parts {
        topics,
        users,
        broadcast,
        frame,
    } = event.parts();
    let names: usize = topics.iter().chain(users).map(|n| n.len() + 2).sum();
    let mut out = Vec::with_capacity(1 + 8 + 4 + names + frame.len());
    out.push(if broadcast { BROADCAST } else { 0 });
    out.extend_from_slice(&published_ms.to_le_bytes());
    for list in [topics, users] {
        // Targets are at most --max-targets and names at most 256 bytes (topic rules), so
        // both fit a u16.
        out.extend_from_slice(&(list.len() as u16).to_le_bytes());
        for name in list {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(frame);
    out
}

/// A decoded `e` field.
pub(crate) struct Decoded {
    pub event: Prepared,
    pub published_ms: u64,
}

/// Reads an `e` field; `None` if it is not one this version wrote.
pub(crate) fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let part = bytes.get(at..at.checked_add(n)?)?;
        at += n;
        Some(part)
    };
    let flags = take(1)?[0];
    let published_ms = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let mut lists: [Vec<Arc<str>>; 2] = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let n = u16::from_le_bytes(take(2)?.try_into().ok()?);
        for _ in 0..n {
            let len = u16::from_le_bytes(take(2)?.try_into().ok()?);
            let name = std::str::from_utf8(take(usize::from(len))?).ok()?;
            list.push(Arc::from(name));
        }
    }
    let frame = BytesMut::from(bytes.get(at..)?);
    if !frame.starts_with(b"id: ") {
        return None;
    }
    let [topics, users] = lists;
    Some(Decoded {
        event: Prepared::from_parts(topics.into(), users.into(), flags & BROADCAST != 0, frame),
        published_ms,
    })
}

/// An `Idempotency-Key` as the log records it: digests of the caller and key, and of the
/// request, and how long to remember it.
#[derive(Debug, Clone)]
pub(crate) struct LoggedKey {
    pub key: String,
    pub fingerprint: String,
    pub window_ms: u64,
}

impl LoggedKey {
    pub fn new(
        scope: &str,
        key: &str,
        endpoint: &str,
        body: &[u8],
        window: std::time::Duration,
    ) -> Self {
        let digest = |parts: &[&[u8]]| {
            let mut h = sha2::Sha256::new();
            for p in parts {
                h.update((p.len() as u64).to_le_bytes());
                h.update(p);
            }
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        Self {
            key: digest(&[scope.as_bytes(), key.as_bytes()]),
            fingerprint: digest(&[endpoint.as_bytes(), body]),
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::{Publish, PublishLimits};

    const LIMITS: PublishLimits = PublishLimits {
        max_event_bytes: 1 << 20,
        max_targets: 64,
    };

    #[test]
    fn stream_ids_map_to_event_ids_in_order_and_back() {
        let a = id_of_stream("1790000000000-0").expect("an id");
        let b = id_of_stream("1790000000000-1").expect("an id");
        let c = id_of_stream("1790000000001-0").expect("an id");
        assert!(a < b && b < c);
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
        for id in [a, b, c] {
            assert_eq!(id_of_stream(&stream_of_id(id)), Some(id));
        }
        for bad in ["", "1", "a-1", "1-a", "1-2-3", "1-1048576", "-1-0"] {
            assert_eq!(id_of_stream(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_entry_decodes_to_the_event_it_encoded() {
        let prepared = Publish::to_topic("orders/42")
            .topic("audit")
            .user("u1")
            .event("order.paid")
            .text("two\nlines")
            .prepare(&LIMITS)
            .expect("valid");
        let id = id_of_stream("1790000000000-7").expect("an id");
        let bytes = encode(&prepared, 1_790_000_000_000);
        let expected = prepared.stamp(id, 1_790_000_000_000);
        let decoded = decode(&bytes).expect("decodes");
        assert_eq!(decoded.published_ms, 1_790_000_000_000);
        let event = decoded.event.stamp(id, decoded.published_ms);
        assert_eq!(event.frame(), expected.frame());
        assert_eq!(event.topics(), expected.topics());
        assert_eq!(event.users(), expected.users());
        assert!(!event.is_broadcast());
    }

    #[test]
    fn truncated_or_foreign_entries_are_refused() {
        let prepared = Publish::to_everyone()
            .text("x")
            .prepare(&LIMITS)
            .expect("valid");
        let bytes = encode(&prepared, 5);
        assert!(decode(&bytes).expect("decodes").event.parts().broadcast);
        // Flags, time, two empty name lists, then the frame's `id: `.
        let header = 1 + 8 + 2 + 2;
        for n in 0..header + 4 {
            assert!(decode(&bytes[..n]).is_none(), "a prefix of {n} bytes");
        }
        assert!(decode(b"garbage that is long enough to read").is_none());
    }
}
