//! The node's tail: it reads the shared log from the last id it applied, in order, and hands
//! each read to the fan-out (`Cluster::apply`); and, at start, a look back at the log for the
//! tasks the cluster already has.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::broker::{self, Broker};
use super::log::Log;
use super::{entry, nats, Cluster, LogEntry, TAIL_COUNT, WINDOW_EVENTS};
use crate::hub::Inner;

/// Reads the log from the last applied id, forever (until the hub is dropped).
pub(super) async fn tail(cluster: Arc<Cluster>, hub: Weak<Inner>) {
    match &cluster.log {
        Log::Redis(broker) => tail_redis(Arc::clone(&cluster), Arc::clone(broker), hub).await,
        Log::Nats(nats) => tail_nats(Arc::clone(&cluster), Arc::clone(nats), hub).await,
    }
}

/// Hands entries read by a tail to the window and the fan-out: fanned out on the tail's own
/// task, in one run per read (no task spawned per batch), as a publisher's own task does on a
/// single node. False once the hub is gone.
fn deliver(cluster: &Cluster, hub: &Weak<Inner>, entries: Vec<LogEntry>) -> bool {
    let Some(hub) = hub.upgrade() else {
        return false;
    };
    if hub.append_inline(|| cluster.apply(&hub, entries)) {
        hub.run_fanout();
    }
    true
}

/// Notes a tail (re)connection, after the continuity check passed.
fn tail_resumed(cluster: &Cluster, first: &mut bool) {
    if !*first {
        cluster.tail_reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(applied = %cluster.applied(), "the tail resumed");
    }
    *first = false;
    cluster.tail_up.store(true, Ordering::Release);
}

/// Notes that the log's continuity was checked on the broker connection as it is now.
fn verified(cluster: &Cluster, generation: u64) {
    cluster.verified.store(generation, Ordering::Release);
}

async fn tail_redis(cluster: Arc<Cluster>, broker: Arc<Broker>, hub: Weak<Inner>) {
    let mut conn = None;
    let mut first = true;
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        let Some(c) = conn.as_mut() else {
            match broker.tail_connection().await {
                Ok(c) => {
                    if !broker.is_up() {
                        // The command connection is still reconnecting; wait for it, so the
                        // continuity check below can run.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        broker.mark_down();
                        continue;
                    }
                    if cluster.check_continuity().await.is_err() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    conn = Some(c);
                    tail_resumed(&cluster, &mut first);
                }
                Err(_) => {
                    cluster.tail_up.store(false, Ordering::Release);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        let from = entry::stream_of_id(cluster.applied());
        let read: Result<redis::Value, redis::RedisError> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(TAIL_COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(broker::TAIL_BLOCK.as_millis()).unwrap_or(1000))
            .arg("STREAMS")
            .arg(&broker.keys.log)
            .arg(&from)
            .query_async(c)
            .await;
        match read {
            Ok(reply) => {
                let entries: Vec<LogEntry> = broker::read_entries(reply)
                    .into_iter()
                    .filter_map(LogEntry::from_redis)
                    .collect();
                if !entries.is_empty() && !deliver(&cluster, &hub, entries) {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "the tail lost the broker; resuming from {from}");
                conn = None;
                cluster.tail_up.store(false, Ordering::Release);
                broker.mark_down();
            }
        }
    }
}

async fn tail_nats(cluster: Arc<Cluster>, nats: Arc<nats::NatsLog>, hub: Weak<Inner>) {
    use futures_util::{FutureExt as _, StreamExt as _};
    let mut first = true;
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        if !nats.is_up() {
            cluster.tail_up.store(false, Ordering::Release);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let generation = nats.connects();
        if let Err(err) = cluster.check_continuity().await {
            tracing::warn!(%err, "cannot check the cluster log; retrying");
            cluster.tail_up.store(false, Ordering::Release);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let following = tokio::time::timeout(Duration::from_secs(5), nats.tail(cluster.applied()));
        let mut messages = match following.await {
            Ok(Ok(m)) => m,
            Err(_) => {
                tracing::warn!("following the cluster log timed out; retrying");
                cluster.tail_up.store(false, Ordering::Release);
                continue;
            }
            Ok(Err(err)) => {
                tracing::warn!(%err, "cannot follow the cluster log; retrying");
                cluster.tail_up.store(false, Ordering::Release);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        verified(&cluster, generation);
        tail_resumed(&cluster, &mut first);
        let connects = generation;
        let epoch = nats.epoch();
        loop {
            // Wake at least every second to notice an outage (the ordered consumer itself
            // waits through one) and a dropped hub.
            let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
            if hub.strong_count() == 0 {
                return;
            }
            let message = match next {
                Err(_) => {
                    // A server that went away and came back (it may have come back empty), or
                    // a new epoch of the log: follow it with a new consumer, after the
                    // continuity check.
                    let up = nats.is_up();
                    let changed = nats.connects() != connects || nats.epoch() != epoch;
                    cluster.tail_up.store(up && !changed, Ordering::Release);
                    if up && changed {
                        break;
                    }
                    continue;
                }
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(err))) => {
                    tracing::warn!(%err, "the tail lost the broker");
                    break;
                }
                Ok(None) => break,
            };
            cluster.tail_up.store(true, Ordering::Release);
            let mut entries = Vec::new();
            let mut take = |m: async_nats::jetstream::Message| {
                if let Ok(info) = m.info() {
                    let seq = info.stream_sequence;
                    let headers = m.headers.clone().unwrap_or_default();
                    entries.extend(nats::entries_of(nats.epoch(), seq, &headers, &m.payload));
                }
            };
            take(message);
            // Whatever else is already here goes in the same run.
            for _ in 0..TAIL_COUNT {
                match messages.next().now_or_never() {
                    Some(Some(Ok(m))) => take(m),
                    _ => break,
                }
            }
            if !deliver(&cluster, &hub, entries) {
                return;
            }
        }
        cluster.tail_up.store(false, Ordering::Release);
    }
}

/// Learns the tasks of the cluster from the newest [`WINDOW_EVENTS`] entries of the log (a
/// node that starts knows the tasks updated since; the table ignores a state older than the
/// one the tail already applied).
pub(super) async fn learn_tasks(cluster: Arc<Cluster>, hub: Weak<Inner>) {
    let Ok(entries) = cluster.log.recent(WINDOW_EVENTS).await else {
        return;
    };
    let Some(inner) = hub.upgrade() else { return };
    for raw in entries {
        let Some(decoded) = raw.event.as_deref().and_then(entry::decode) else {
            continue;
        };
        // Only task events are stamped (the rest of the look back is skipped as read).
        let is_task = decoded
            .event
            .parts()
            .topics
            .last()
            .is_some_and(|t| &**t == crate::tasks::TASK_TOPIC);
        if is_task {
            inner
                .tasks
                .observe(&decoded.event.stamp(raw.id, decoded.published_ms));
        }
    }
}
