//! Counters and gauges for `/metrics`, rendered as Prometheus text.
//!
//! Hand-written on atomics rather than a metrics facade: the fan-out path bumps a counter per
//! publish, never per delivery, and a relaxed atomic add is all it costs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the publish latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Everything the hub counts.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub connections_opened: Counter,
    pub connections_closed: Counter,
    pub events_published: Counter,
    pub events_delivered: Counter,
    pub bytes_sent: Counter,
    pub slow_consumer_disconnects: Counter,
    pub expired_disconnects: Counter,
    pub replays: Counter,
    pub replayed_events: Counter,
    pub resets_history_gap: Counter,
    pub resets_unknown_id: Counter,
    pub rejected_limit: Counter,
    pub rejected_auth: Counter,
    pub idempotent_replays: Counter,
    pub publish_latency: Histogram,
}

/// Gauges read at render time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    pub connections: usize,
    pub subscriptions: usize,
    pub users: usize,
    pub queue_bytes: usize,
    pub history_events: usize,
    pub history_bytes: usize,
    pub idempotency_keys: usize,
    pub tasks: usize,
    pub draining: bool,
}

impl Metrics {
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let gauges: [(&str, &str, u64); 9] = [
            (
                "tidings_connections",
                "Open event streams.",
                g.connections as u64,
            ),
            (
                "tidings_subscriptions",
                "Topic subscriptions of open streams.",
                g.subscriptions as u64,
            ),
            (
                "tidings_users_connected",
                "Distinct users with an open stream.",
                g.users as u64,
            ),
            (
                "tidings_queue_bytes",
                "Bytes queued to subscribers, not yet written.",
                g.queue_bytes as u64,
            ),
            (
                "tidings_history_events",
                "Events retained for replay.",
                g.history_events as u64,
            ),
            (
                "tidings_history_bytes",
                "Bytes of events retained for replay.",
                g.history_bytes as u64,
            ),
            (
                "tidings_idempotency_keys",
                "Idempotency-Keys remembered (--idempotency-keys bounds them).",
                g.idempotency_keys as u64,
            ),
            (
                "tidings_tasks",
                "Tasks known (live, and finished ones within their retention).",
                g.tasks as u64,
            ),
            (
                "tidings_draining",
                "1 while the hub shuts down.",
                u64::from(g.draining),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let counters: [(&str, &str, &Counter); 12] = [
            (
                "tidings_connections_opened_total",
                "Event streams opened.",
                &self.connections_opened,
            ),
            (
                "tidings_connections_closed_total",
                "Event streams closed.",
                &self.connections_closed,
            ),
            (
                "tidings_events_published_total",
                "Events published.",
                &self.events_published,
            ),
            (
                "tidings_events_delivered_total",
                "Events queued to subscribers (one per connection).",
                &self.events_delivered,
            ),
            (
                "tidings_bytes_sent_total",
                "Bytes written to event streams.",
                &self.bytes_sent,
            ),
            (
                "tidings_slow_consumer_disconnects_total",
                "Streams closed because their queue passed --queue-bytes.",
                &self.slow_consumer_disconnects,
            ),
            (
                "tidings_expired_disconnects_total",
                "Streams closed at their token's expiry.",
                &self.expired_disconnects,
            ),
            (
                "tidings_replays_total",
                "Resumes that replayed history.",
                &self.replays,
            ),
            (
                "tidings_replayed_events_total",
                "Events sent from history on resume.",
                &self.replayed_events,
            ),
            (
                "tidings_rejected_limit_total",
                "Streams refused by a connection or topic limit.",
                &self.rejected_limit,
            ),
            (
                "tidings_rejected_auth_total",
                "Requests refused for missing or bad credentials.",
                &self.rejected_auth,
            ),
            (
                "tidings_idempotent_replays_total",
                "Publishes answered from an earlier attempt with the same Idempotency-Key.",
                &self.idempotent_replays,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        let name = "tidings_resets_total";
        let _ = writeln!(
            out,
            "# HELP {name} Reset events sent to resuming clients.\n# TYPE {name} counter\n{name}{{reason=\"history-gap\"}} {}\n{name}{{reason=\"unknown-id\"}} {}",
            self.resets_history_gap.get(),
            self.resets_unknown_id.get()
        );
        self.publish_latency.render(
            &mut out,
            "tidings_publish_latency_seconds",
            "Time from a publish request's arrival to its events being queued.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text_with_every_family() {
        let m = Metrics::default();
        m.events_published.add(3);
        m.publish_latency.observe(Duration::from_micros(300));
        let text = m.render(Gauges {
            connections: 2,
            ..Default::default()
        });
        assert!(text.contains("tidings_connections 2\n"));
        assert!(text.contains("tidings_events_published_total 3\n"));
        assert!(text.contains("tidings_publish_latency_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("tidings_publish_latency_seconds_count 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
