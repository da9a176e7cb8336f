//! The hub's own live events: system topics for admins, and presence lists for subscribers.
//!
//! - `$sys/stats` (once a second): the node's counters, for the dashboard's tiles.
//! - `$sys/connections`: an event `connect` or `disconnect` per stream (id, user, topics,
//!   address, age).
//! - `$sys/tap`: the events being published (targets, type, the data cut to
//!   [`TAP_DATA_BYTES`]), at most [`TAP_PER_SECOND`] a second; the number skipped over that is
//!   reported with the next one.
//! - `presence/{topic}`: an event `presence` listing the users subscribed to `{topic}`, sent to
//!   the subscribers of `presence/{topic}` when it changes (debounced: at most four times a
//!   second per topic) and when they subscribe. Subscribing to `presence/{topic}` needs the
//!   ordinary permission for that topic, so an application opts in per topic through its tokens.
//!
//! These events are live only: they carry no `id:` (a client's resume position never moves
//! for them), they are not kept in the history, and they are built only while someone listens
//! (a stream subscribed to a `$sys/` topic, or to some `presence/…` topic).

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use serde_json::json;

use crate::conn::Conn;
use crate::event::StoredEvent;
use crate::hub::Inner;

/// The dashboard's once-a-second counters.
pub const SYS_STATS: &str = "$sys/stats";
/// Streams opening and closing.
pub const SYS_CONNECTIONS: &str = "$sys/connections";
/// Events being published.
pub const SYS_TAP: &str = "$sys/tap";
/// The prefix of presence topics.
pub const PRESENCE_PREFIX: &str = "presence/";
/// Most events `$sys/tap` shows per second.
pub const TAP_PER_SECOND: u64 = 50;
/// Most bytes of an event's data `$sys/tap` shows.
pub const TAP_DATA_BYTES: usize = 300;

/// The state behind the system events.
pub(crate) struct System {
    started: Instant,
    /// Streams subscribed to a `$sys/` topic.
    sys_watchers: AtomicUsize,
    /// Streams subscribed to a `presence/…` topic.
    presence_watchers: AtomicUsize,
    /// Topics whose presence list changed since the last flush.
    presence_due: Mutex<HashSet<Arc<str>>>,
    /// `$sys/tap`: (the second, events shown in it, events skipped since the last shown).
    tap: Mutex<(u64, u64, u64)>,
    tap_sequence: AtomicU64,
}

impl System {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            sys_watchers: AtomicUsize::new(0),
            presence_watchers: AtomicUsize::new(0),
            presence_due: Mutex::new(HashSet::new()),
            tap: Mutex::new((0, 0, 0)),
            tap_sequence: AtomicU64::new(0),
        }
    }

    /// Seconds since the hub started.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn watching_sys(&self) -> bool {
        self.sys_watchers.load(Ordering::Relaxed) > 0
    }
}

/// An event without an id.
fn frame(event: &str, data: &str) -> Bytes {
    let mut out = BytesMut::new();
    let _ = tidings_wire::Event::new(data)
        .with_event(event)
        .encode_into(&mut out);
    out.freeze()
}

fn conn_json(conn: &Conn) -> serde_json::Value {
    json!({
        "clientId": &*conn.client_id,
        "user": conn.user.as_deref(),
        "topics": conn.patterns.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "address": conn.ip.map(|ip| ip.to_string()),
        "openedAt": conn.opened_ms,
    })
}

impl Inner {
    /// Whether some stream listens to a `$sys/` topic.
    pub(crate) fn system_watched(&self) -> bool {
        self.system.watching_sys()
    }

    /// Queues a frame without an id to every stream subscribed to `topic` (once each).
    pub(crate) fn send_system(&self, topic: &str, frame: &Bytes) {
        let mut wakes = Vec::new();
        {
            let registry = self.registry();
            let mut seen = HashSet::new();
            registry.for_topic(topic, |conn| {
                if seen.insert(conn.key) && conn.enqueue_untracked(frame, &mut wakes) {
                    self.metrics.slow_consumer_disconnects.inc();
                }
            });
        }
        for w in wakes {
            w.wake();
        }
    }

    /// A stream was registered.
    pub(crate) fn system_connected(&self, conn: &Conn) {
        let sys = conn
            .patterns
            .iter()
            .filter(|p| p.as_str().starts_with("$sys/"))
            .count();
        if sys > 0 {
            self.system.sys_watchers.fetch_add(1, Ordering::Relaxed);
        }
        self.webhooks.notify(
            crate::webhooks::WebhookEvent::Connect,
            || json!({"connection": conn_json(conn)}),
        );
        if self.system.watching_sys() {
            let data = json!({"type": "connect", "connection": conn_json(conn)}).to_string();
            self.send_system(SYS_CONNECTIONS, &frame("connect", &data));
        }
        self.presence_changed(conn, true);
    }

    /// A stream was unregistered.
    pub(crate) fn system_disconnected(&self, conn: &Conn) {
        if conn
            .patterns
            .iter()
            .any(|p| p.as_str().starts_with("$sys/"))
        {
            self.system.sys_watchers.fetch_sub(1, Ordering::Relaxed);
        }
        self.webhooks.notify(
            crate::webhooks::WebhookEvent::Disconnect,
            || json!({"connection": conn_json(conn)}),
        );
        if self.system.watching_sys() {
            let data = json!({"type": "disconnect", "connection": conn_json(conn)}).to_string();
            self.send_system(SYS_CONNECTIONS, &frame("disconnect", &data));
        }
        self.presence_changed(conn, false);
    }

    fn presence_changed(&self, conn: &Conn, opened: bool) {
        let mut due = Vec::new();
        for p in conn.patterns.iter() {
            if let Some(topic) = p.as_str().strip_prefix(PRESENCE_PREFIX) {
                // A new watcher gets the current list.
                if opened {
                    self.system
                        .presence_watchers
                        .fetch_add(1, Ordering::Relaxed);
                    due.push(Arc::from(topic));
                } else {
                    self.system
                        .presence_watchers
                        .fetch_sub(1, Ordering::Relaxed);
                }
            } else if conn.user.is_some() && p.is_literal() {
                due.push(Arc::from(p.as_str()));
            }
        }
        if due.is_empty() || self.system.presence_watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.system.presence_due.lock().extend(due);
    }

    /// Sends the presence lists that changed (from housekeeping, four times a second).
    pub(crate) fn flush_presence(&self) {
        let due: Vec<Arc<str>> = self.system.presence_due.lock().drain().collect();
        for topic in due {
            let watchers = format!("{PRESENCE_PREFIX}{topic}");
            let users: BTreeSet<String> = {
                let registry = self.registry();
                let mut users = BTreeSet::new();
                registry.for_topic(&topic, |c| {
                    if let Some(u) = &c.user {
                        users.insert(u.to_string());
                    }
                });
                users
            };
            let data = json!({"topic": &*topic, "users": users, "count": users.len()}).to_string();
            self.send_system(&watchers, &frame("presence", &data));
        }
    }

    /// `$sys/stats`, once a second from housekeeping.
    pub(crate) fn send_stats(&self) {
        if !self.system.watching_sys() {
            return;
        }
        let g = self.gauges();
        let m = &self.metrics;
        let topics = self.registry().pattern_counts().count();
        let mode = match &self.cluster {
            Some(_) => "cluster",
            None if self.history.reads_block() => "disk",
            None => "memory",
        };
        let data = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "node": self.cluster.as_ref().map(|c| c.node.clone()),
            "mode": mode,
            "uptimeS": self.system.uptime_s(),
            "ready": !g.draining && self.cluster.as_ref().is_none_or(|c| c.is_ready()),
            "draining": g.draining,
            "connections": g.connections,
            "subscriptions": g.subscriptions,
            "users": g.users,
            "topics": topics,
            "queueBytes": g.queue_bytes,
            "historyEvents": g.history_events,
            "tasks": g.tasks,
            "eventsPublished": m.events_published.get(),
            "eventsDelivered": m.events_delivered.get(),
            "bytesSent": m.bytes_sent.get(),
            "slowConsumerDisconnects": m.slow_consumer_disconnects.get(),
            "rejectedLimit": m.rejected_limit.get(),
            "rejectedAuth": m.rejected_auth.get(),
            "replays": m.replays.get(),
            "resets": m.resets_history_gap.get() + m.resets_unknown_id.get(),
            "at": crate::history::unix_ms(),
        })
        .to_string();
        self.send_system(SYS_STATS, &frame("stats", &data));
    }

    /// `$sys/tap`: one published event, within the rate limit. Called by the fan-out.
    pub(crate) fn tap(&self, event: &StoredEvent) {
        if !self.system.watching_sys() {
            return;
        }
        let now_s = crate::history::unix_ms() / 1000;
        let skipped = {
            let mut tap = self.system.tap.lock();
            if tap.0 != now_s {
                *tap = (now_s, 0, tap.2);
            }
            if tap.1 >= TAP_PER_SECOND {
                tap.2 += 1;
                return;
            }
            tap.1 += 1;
            std::mem::take(&mut tap.2)
        };
        let (event_type, data) = frame_parts(&event.frame);
        let cut = data.len() > TAP_DATA_BYTES;
        let mut end = data.len().min(TAP_DATA_BYTES);
        while !data.is_char_boundary(end) {
            end -= 1;
        }
        let json = json!({
            "id": event.id.to_string(),
            "topics": event.topics.iter().map(|t| &**t).collect::<Vec<_>>(),
            "users": event.users.iter().map(|u| &**u).collect::<Vec<_>>(),
            "broadcast": event.broadcast,
            "event": event_type,
            "data": &data[..end],
            "cut": cut,
            "skipped": skipped,
            "seq": self.system.tap_sequence.fetch_add(1, Ordering::Relaxed),
            "at": event.published_ms,
        })
        .to_string();
        self.send_system(SYS_TAP, &frame("tap", &json));
    }
}

/// The event type and the data (lines joined) of a frame the hub encoded.
fn frame_parts(frame: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(frame);
    let mut event = "message".to_owned();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v);
        } else if line == "data:" {
            data.push("");
        }
    }
    (event, data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_splits_into_its_type_and_data() {
        let f = tidings_wire::Event::new("a\nb")
            .with_id("1")
            .with_event("x")
            .encode()
            .unwrap();
        assert_eq!(frame_parts(&f), ("x".to_owned(), "a\nb".to_owned()));
        let f = tidings_wire::Event::new("{}")
            .with_id("1")
            .encode()
            .unwrap();
        assert_eq!(frame_parts(&f), ("message".to_owned(), "{}".to_owned()));
    }
}
