//! The shared log behind one interface, whichever broker holds it: Redis Streams (`broker`) or
//! NATS JetStream (`nats`). Ids, ranges, floors and epochs are the hub's here; each side maps
//! them onto its broker.

use std::sync::Arc;
use std::time::Duration;

use super::broker::{Broker, BrokerError};
use super::nats::NatsLog;
use super::{entry, LogEntry};
use crate::event::EventId;

/// What a publish did, in event ids.
#[derive(Debug)]
pub(crate) enum Appended {
    /// Appended now.
    Fresh(Vec<EventId>),
    /// The `Idempotency-Key` was used before: its request's fingerprint and ids.
    Prior {
        fingerprint: String,
        ids: Vec<EventId>,
    },
}

/// The broker of the cluster.
pub(crate) enum Log {
    Redis(Arc<Broker>),
    Nats(Arc<NatsLog>),
}

fn ids(stream_ids: &[String]) -> Vec<EventId> {
    stream_ids
        .iter()
        .filter_map(|s| entry::id_of_stream(s))
        .collect()
}

impl Log {
    pub fn name(&self) -> &'static str {
        match self {
            Log::Redis(_) => "Redis",
            Log::Nats(_) => "NATS",
        }
    }

    pub fn is_up(&self) -> bool {
        match self {
            Log::Redis(b) => b.is_up(),
            Log::Nats(n) => n.is_up(),
        }
    }

    /// Changes when the broker connection was made again (NATS reconnects by itself; the
    /// Redis tail notices a reconnect on its own connection).
    pub fn generation(&self) -> u64 {
        match self {
            Log::Redis(_) => 0,
            Log::Nats(n) => n.connects(),
        }
    }

    /// Whether `id` can have been issued (a Redis id carries its millisecond; an id further
    /// ahead of this node's clock than clocks drift was never issued).
    pub fn plausible(&self, id: EventId, now_ms: u64, skew_ms: u64) -> bool {
        match self {
            Log::Redis(_) => entry::millis_of(id) <= now_ms.saturating_add(skew_ms),
            Log::Nats(_) => true,
        }
    }

    pub async fn append(
        &self,
        origin: &str,
        events: Vec<Vec<u8>>,
        max_len: usize,
        idem: Option<(&str, &str, u64)>,
    ) -> Result<Appended, BrokerError> {
        match self {
            Log::Redis(b) => Ok(match b.append(origin, events, max_len, idem).await? {
                super::broker::Appended::Fresh(s) => Appended::Fresh(ids(&s)),
                super::broker::Appended::Prior {
                    fingerprint,
                    ids: s,
                } => Appended::Prior {
                    fingerprint,
                    ids: ids(&s),
                },
            }),
            Log::Nats(n) => {
                if events.len() > super::nats::MAX_BATCH {
                    return Err(BrokerError {
                        down: false,
                        message: format!(
                            "a batch of {} events; at most {} in NATS cluster mode",
                            events.len(),
                            super::nats::MAX_BATCH
                        ),
                    });
                }
                n.append(origin, events, idem.map(|(k, f, _)| (k, f))).await
            }
        }
    }

    /// Entries with `after < id <= upto`, about `count` of them.
    pub async fn range(
        &self,
        after: EventId,
        upto: EventId,
        count: usize,
    ) -> Result<Vec<LogEntry>, BrokerError> {
        match self {
            Log::Redis(b) => {
                let raw = b
                    .range(
                        &entry::stream_of_id(after),
                        &entry::stream_of_id(upto),
                        count,
                    )
                    .await?;
                Ok(raw.into_iter().filter_map(LogEntry::from_redis).collect())
            }
            Log::Nats(n) => n.range(after, upto, count).await,
        }
    }

    /// The newest entries of the log (about `count`), oldest first: what a node that starts
    /// reads to learn the tasks of the cluster.
    pub async fn recent(&self, count: usize) -> Result<Vec<LogEntry>, BrokerError> {
        match self {
            Log::Redis(b) => {
                let mut raw = b.recent(count).await?;
                raw.reverse();
                Ok(raw.into_iter().filter_map(LogEntry::from_redis).collect())
            }
            // One read per message: a shorter look back.
            Log::Nats(n) => n.recent((count / 50).max(1) as u64).await,
        }
    }

    /// Every entry above this is still in the log.
    pub async fn floor(&self) -> Result<EventId, BrokerError> {
        match self {
            Log::Redis(b) => Ok(b
                .info()
                .await?
                .map(|i| super::trimmed_floor(&i))
                .unwrap_or_default()),
            Log::Nats(n) => Ok(n.state().await?.0),
        }
    }

    /// The newest entry's id (where a new node starts tailing).
    pub async fn newest(&self) -> Result<EventId, BrokerError> {
        match self {
            Log::Redis(b) => Ok(b
                .last_id()
                .await?
                .as_deref()
                .and_then(entry::id_of_stream)
                .unwrap_or_default()),
            Log::Nats(n) => {
                // The last message's last possible index: the tail starts after the message.
                let (_, newest, _) = n.state().await?;
                Ok(newest)
            }
        }
    }

    /// The log's epoch now, and whether it lost what a node that knew `known` applied up to
    /// `applied`.
    pub async fn continuity(
        &self,
        known: Option<&str>,
        applied: EventId,
        fresh: &str,
    ) -> Result<(String, bool), BrokerError> {
        match self {
            Log::Redis(b) => {
                let current = b.epoch().await?;
                match (known, current) {
                    (None, _) => Ok((b.init_epoch(fresh).await?, false)),
                    (Some(k), Some(c)) if k == c => {
                        let last = b
                            .info()
                            .await?
                            .and_then(|i| entry::id_of_stream(&i.last_generated))
                            .unwrap_or_default();
                        Ok((c, last < applied))
                    }
                    (Some(_), other) => Ok((other.unwrap_or_default(), true)),
                }
            }
            Log::Nats(n) => {
                let (_, newest, epoch) = n.state().await?;
                let lost = match known {
                    None => false,
                    Some(k) => k != epoch || newest < applied,
                };
                Ok((epoch, lost))
            }
        }
    }

    /// Writes the gap marker of a loss seen under epoch `seen` (once across the cluster);
    /// the epoch in force afterwards.
    pub async fn mark_gap(&self, seen: &str, fresh: &str) -> Result<String, BrokerError> {
        match self {
            Log::Redis(b) => b.mark_gap(seen, fresh).await,
            Log::Nats(n) => {
                let (_, _, epoch) = n.state().await?;
                n.mark_gap(&epoch).await?;
                Ok(epoch)
            }
        }
    }

    /// Trims entries published before `min_ms` (`--history-max-age`; NATS does it itself).
    pub async fn trim_before(&self, min_ms: u64) -> Result<(), BrokerError> {
        match self {
            Log::Redis(b) => b.trim_before(min_ms).await,
            Log::Nats(_) => Ok(()),
        }
    }

    pub async fn heartbeat(
        &self,
        node: &str,
        lease: Duration,
        snapshot: &str,
    ) -> Result<Vec<String>, BrokerError> {
        match self {
            Log::Redis(b) => b.heartbeat(node, lease, snapshot).await,
            Log::Nats(n) => n.heartbeat(node, snapshot).await,
        }
    }

    pub async fn leave(&self, node: &str) -> Result<(), BrokerError> {
        match self {
            Log::Redis(b) => b.leave(node).await,
            Log::Nats(n) => n.leave(node).await,
        }
    }

    pub async fn acquire(&self, node: &str, user: &str, limit: usize) -> Result<bool, BrokerError> {
        match self {
            Log::Redis(b) => b.acquire(node, user, limit).await,
            Log::Nats(n) => n.acquire(node, user, limit).await,
        }
    }

    pub async fn release(&self, node: &str, user: &str) -> Result<(), BrokerError> {
        match self {
            Log::Redis(b) => b.release(node, user).await,
            Log::Nats(n) => n.release(node, user).await,
        }
    }
}
