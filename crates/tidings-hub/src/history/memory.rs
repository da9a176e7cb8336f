//! The bounded in-memory history: a ring of shared events, oldest first.
//!
//! Bounded by count and bytes when events are pushed, and by age whenever it is looked at
//! (every read, `bounds` and `size` first drops what has grown too old), so the floor an
//! observer sees is always the one the limits imply.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use super::{Bounds, HistoryStore, OnDurable, ReplayFilter, StoreError};
use crate::event::{EventId, StoredEvent};

/// Keeps at most `max_events` events and `max_bytes` of frames, and none older than
/// `max_age`; the oldest go first.
#[derive(Debug)]
pub struct MemoryStore {
    inner: RwLock<Ring>,
    max_events: usize,
    max_bytes: usize,
    max_age_ms: Option<u64>,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<StoredEvent>>,
    bytes: usize,
    floor: EventId,
    newest: EventId,
}

impl MemoryStore {
    /// An empty store whose history starts after `start` (ids at or below it are "too old").
    pub fn new(start: EventId, max_events: usize, max_bytes: usize) -> Self {
        Self {
            inner: RwLock::new(Ring {
                events: VecDeque::new(),
                bytes: 0,
                floor: start,
                newest: start,
            }),
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            max_age_ms: None,
        }
    }

    /// Also drops events published more than `max_age` ago (`None`: no age limit).
    pub fn with_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age_ms = max_age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Drops the events published before `now_ms - max_age`.
    pub fn expire(&self, now_ms: u64) {
        let Some(cutoff) = self.max_age_ms.map(|age| now_ms.saturating_sub(age)) else {
            return;
        };
        // The common case (nothing old) takes only the shared lock.
        let front_is_old =
            |ring: &Ring| ring.events.front().is_some_and(|e| e.published_ms < cutoff);
        if !front_is_old(&self.inner.read()) {
            return;
        }
        let mut ring = self.inner.write();
        while front_is_old(&ring) {
            if let Some(old) = ring.events.pop_front() {
                ring.bytes -= old.size();
                ring.floor = old.id;
            }
        }
    }

    /// Adds events and drops the oldest past the bounds.
    pub fn push(&self, events: &[Arc<StoredEvent>]) {
        let mut ring = self.inner.write();
        for event in events {
            debug_assert!(event.id > ring.newest, "ids must grow");
            ring.newest = event.id;
            ring.bytes += event.size();
            ring.events.push_back(Arc::clone(event));
        }
        while ring.events.len() > self.max_events
            || (ring.bytes > self.max_bytes && ring.events.len() > 1)
        {
            let Some(old) = ring.events.pop_front() else {
                break;
            };
            ring.bytes -= old.size();
            ring.floor = old.id;
        }
    }
}

impl HistoryStore for MemoryStore {
    fn append(&self, events: Vec<Arc<StoredEvent>>, on_durable: OnDurable) {
        self.push(&events);
        on_durable(Ok(()));
    }

    fn read(
        &self,
        after: EventId,
        upto: EventId,
        filter: &ReplayFilter<'_>,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, StoreError> {
        self.expire(super::unix_ms());
        let ring = self.inner.read();
        if after < ring.floor {
            return Err(StoreError::Gap(after));
        }
        // Ids grow along the ring, so the start is a binary search, not a scan.
        let start = ring.events.partition_point(|e| e.id <= after);
        Ok(ring
            .events
            .range(start..)
            .take_while(|e| e.id <= upto)
            .filter(|e| filter.accepts(e))
            .take(limit)
            .cloned()
            .collect())
    }

    fn reads_block(&self) -> bool {
        false
    }

    fn bounds(&self) -> Bounds {
        self.expire(super::unix_ms());
        let ring = self.inner.read();
        Bounds {
            floor: ring.floor,
            newest: ring.newest,
        }
    }

    fn size(&self) -> (usize, usize) {
        self.expire(super::unix_ms());
        let ring = self.inner.read();
        (ring.events.len(), ring.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Pattern;
    use bytes::Bytes;

    fn event(id: u64, topic: &str) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            id: EventId(id),
            topics: vec![Arc::from(topic)].into(),
            users: Box::new([]),
            broadcast: false,
            published_ms: crate::history::unix_ms(),
            frame: Bytes::from(format!("id: {id}\ndata: x\n\n")),
        })
    }

    fn all() -> Vec<Pattern> {
        vec![Pattern::parse("**").unwrap()]
    }

    #[test]
    fn reads_only_after_the_position_and_up_to_the_seam() {
        let store = MemoryStore::new(EventId(10), 100, 1 << 20);
        store.push(&(11..=20).map(|i| event(i, "a")).collect::<Vec<_>>());
        let patterns = all();
        let filter = ReplayFilter {
            patterns: &patterns,
            user: None,
        };
        let got = store.read(EventId(14), EventId(17), &filter, 100).unwrap();
        assert_eq!(
            got.iter().map(|e| e.id.0).collect::<Vec<_>>(),
            vec![15, 16, 17]
        );
    }

    #[test]
    fn retention_by_count_moves_the_floor_and_reports_a_gap() {
        let store = MemoryStore::new(EventId(0), 5, 1 << 20);
        store.push(&(1..=20).map(|i| event(i, "a")).collect::<Vec<_>>());
        assert_eq!(
            store.bounds(),
            Bounds {
                floor: EventId(15),
                newest: EventId(20)
            }
        );
        let patterns = all();
        let filter = ReplayFilter {
            patterns: &patterns,
            user: None,
        };
        assert!(matches!(
            store.read(EventId(3), EventId(20), &filter, 10),
            Err(StoreError::Gap(_))
        ));
        assert_eq!(
            store
                .read(EventId(15), EventId(20), &filter, 10)
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn retention_by_bytes_keeps_the_newest_event() {
        let store = MemoryStore::new(EventId(0), 100, 1);
        store.push(&[event(1, "a"), event(2, "a")]);
        assert_eq!(store.size().0, 1);
        assert_eq!(store.bounds().floor, EventId(1));
    }

    #[test]
    fn filter_skips_other_topics() {
        let store = MemoryStore::new(EventId(0), 100, 1 << 20);
        store.push(&[event(1, "a"), event(2, "b"), event(3, "a")]);
        let patterns = vec![Pattern::parse("a").unwrap()];
        let filter = ReplayFilter {
            patterns: &patterns,
            user: None,
        };
        let got = store.read(EventId(0), EventId(3), &filter, 10).unwrap();
        assert_eq!(got.iter().map(|e| e.id.0).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn retention_by_age_drops_old_events_and_reports_a_gap() {
        let store =
            MemoryStore::new(EventId(0), 100, 1 << 20).with_max_age(Some(Duration::from_secs(60)));
        let now = crate::history::unix_ms();
        let aged = |id: u64, ms: u64| {
            let mut e = Arc::try_unwrap(event(id, "a")).unwrap();
            e.published_ms = ms;
            Arc::new(e)
        };
        store.push(&[aged(1, now - 120_000), aged(2, now - 61_000), aged(3, now)]);
        assert_eq!(store.bounds().floor, EventId(2));
        assert_eq!(store.size().0, 1);
        let patterns = all();
        let filter = ReplayFilter {
            patterns: &patterns,
            user: None,
        };
        assert!(matches!(
            store.read(EventId(1), EventId(3), &filter, 10),
            Err(StoreError::Gap(_))
        ));
        let got = store.read(EventId(2), EventId(3), &filter, 10).unwrap();
        assert_eq!(got.iter().map(|e| e.id.0).collect::<Vec<_>>(), vec![3]);
    }
}
