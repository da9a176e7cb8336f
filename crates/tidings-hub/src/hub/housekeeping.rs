//! Housekeeping: heartbeats, token expiry and the `$sys/stats` ticks, from one task.

use super::*;

impl Inner {
    /// Ends every stream whose token expired at or before `now` (Unix seconds).
    fn expire(&self, now: u64) {
        let mut due = Vec::new();
        {
            let mut expiring = self.expiring.lock();
            while expiring.first().is_some_and(|(exp, _)| *exp <= now) {
                if let Some((_, key)) = expiring.pop_first() {
                    due.push(key);
                }
            }
        }
        if due.is_empty() {
            return;
        }
        let registry = self.registry.read();
        for key in due {
            if let Some(conn) = registry.conns.get(&key) {
                if conn.is_open() {
                    conn.close(CloseReason::Expired);
                    self.metrics.expired_disconnects.inc();
                }
            }
        }
    }
}

/// Heartbeats and token expiry for all streams, from one task, so an idle stream has no timer.
///
/// Every `--heartbeat` each stream that had nothing queued during the last period gets a
/// heartbeat comment; between beats an idle stream costs nothing. Once a second, streams whose
/// token expired are ended (found through a heap ordered by expiry, not by a scan).
pub(super) async fn housekeeping(hub: Weak<Inner>) {
    let Some(heartbeat) = hub.upgrade().map(|h| h.config.heartbeat) else {
        return;
    };
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry = tokio::time::interval(Duration::from_millis(250).min(heartbeat));
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats = tokio::time::interval(Duration::from_secs(1));
    stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = beat.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                let registry = hub.registry.read();
                for conn in registry.conns.values() {
                    conn.beat(&hub.heartbeat_frame);
                }
            }
            _ = expiry.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                hub.expire(unix_now().as_secs());
                hub.tasks.expire(u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX));
                hub.flush_presence();
            }
            _ = stats.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                hub.send_stats();
            }
        }
    }
}
