//! The NATS JetStream side of cluster mode (`--cluster nats://…`).
//!
//! - The log is one stream, `P` (the prefix, `-`/`.` folded to `_`), on one subject `P.log`,
//!   file storage. A publish batch is **in one message** (so it is atomic and consecutive): its
//!   payload is the batch's entries (see `entry`), each prefixed with its length; the header
//!   `Tidings-Origin` names the node and batch. Concurrent publishes without an
//!   `Idempotency-Key` share a message (group commit, `commit`): then `Tidings-Origins` lists
//!   each publish's origin and event count, in order. Event ids are `sequence << 12 | index in
//!   the message`, so a message holds at most [`MAX_BATCH`] events.
//! - `Idempotency-Key`: the message id (`Nats-Msg-Id`) is the key's digest, and the stream's
//!   duplicate window is `--idempotency-window`: a retry within it is answered by the server
//!   with the first message's sequence, whose `Tidings-Fingerprint` header tells a retry from
//!   another request under the same key.
//! - Every node tails the stream with one unfiltered ordered consumer from the sequence after
//!   the last it applied.
//! - The log's epoch is the stream's creation time: a stream recreated (the server lost its
//!   store) or behind what a node applied (rolled back) is a loss, announced with one gap
//!   marker (a message with the header `Tidings-Gap`, deduplicated by message id).
//! - Leases and counts live in two small streams that keep the last message per subject:
//!   `P_nodes` (subject `P.nodes.<node>`: each node's snapshot, expiring after the lease) and
//!   `P_users` (subject `P.users.<hex of the user>`: the streams each node holds, updated by
//!   compare-and-set with `Nats-Expected-Last-Subject-Sequence`). Plain streams rather than
//!   the client's key-value API, which needs a newer server than Debian's (2.9).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::{BufMut, Bytes, BytesMut};

use tokio::sync::mpsc;

use super::broker::BrokerError;
use super::commit;
use super::log::Appended;
use super::LogEntry;

mod leases;
use crate::config::DurabilityMode;
use crate::event::EventId;

/// Bits of an event id below the message sequence.
const INDEX_BITS: u32 = 12;
/// Bits of the message sequence (a trillion messages per epoch).
const SEQ_BITS: u32 = 40;
/// Most events in one publish batch on NATS.
pub(crate) const MAX_BATCH: usize = 1 << INDEX_BITS;
/// The stream's description, which carries its epoch: the number of times the log was
/// created again after a server lost it. Ids are `epoch << 52 | sequence << 12 | index`, so
/// they keep growing across a loss although a new stream numbers its messages from 1 again
/// (Debian's nats-server 2.9 cannot start a stream at a given sequence).
const EPOCH_PREFIX: &str = "tidings log, epoch ";
/// How long a publish may wait for the server's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// The event id of the `index`-th event of message `seq` in epoch `epoch`.
pub(crate) fn event_id(epoch: u64, seq: u64, index: usize) -> EventId {
    EventId::from_u64(epoch << (SEQ_BITS + INDEX_BITS) | seq << INDEX_BITS | index as u64)
}

fn seq_of(id: EventId) -> u64 {
    (id.as_u64() >> INDEX_BITS) & ((1 << SEQ_BITS) - 1)
}

fn epoch_of(id: EventId) -> u64 {
    id.as_u64() >> (SEQ_BITS + INDEX_BITS)
}

fn epoch_in(description: Option<&str>) -> u64 {
    description
        .and_then(|d| d.strip_prefix(EPOCH_PREFIX))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn down(message: impl Into<String>) -> BrokerError {
    BrokerError {
        down: true,
        message: message.into(),
    }
}

/// The node's way to NATS.
pub(crate) struct NatsLog {
    client: async_nats::Client,
    js: jetstream::Context,
    stream_name: String,
    subject: String,
    /// The name of the log stream; the others are `{name}_nodes` and `{name}_users`.
    name: String,
    /// The three streams' configurations: a server that lost its store gets them again.
    configs: Vec<stream::Config>,
    /// The log's epoch (see [`EPOCH_PREFIX`]) as last seen.
    epoch: std::sync::atomic::AtomicU64,
    /// The group-commit task's queue, started by the first publish without a key.
    commits: std::sync::OnceLock<mpsc::UnboundedSender<commit::Request<Appended>>>,
}

/// NATS as a group-commit sink: the group is one message, `Tidings-Origins` telling whose
/// events are where.
struct Publisher {
    log: std::sync::Weak<NatsLog>,
}

impl commit::Sink for Publisher {
    type Appended = Appended;
    const MAX_EVENTS: usize = MAX_BATCH;
    // Well under the server's default max_payload (1 MiB).
    const MAX_BYTES: usize = 512 << 10;

    async fn append_group(
        &self,
        group: &[commit::Request<Appended>],
    ) -> Result<Vec<Appended>, BrokerError> {
        let Some(log) = self.log.upgrade() else {
            return Err(down("the node is shutting down"));
        };
        if let [only] = group {
            return log
                .append_alone(&only.origin, &only.events, None)
                .await
                .map(|a| vec![a]);
        }
        let origins: Vec<(&str, usize)> = group
            .iter()
            .map(|r| (r.origin.as_str(), r.events.len()))
            .collect();
        let events = group
            .iter()
            .flat_map(|r| r.events.iter().map(Vec::as_slice));
        let (sequence, _) = log.publish_message(&origins, events, None).await?;
        let epoch = log.epoch();
        let mut at = 0;
        Ok(group
            .iter()
            .map(|r| {
                let ids = (at..at + r.events.len())
                    .map(|i| event_id(epoch, sequence, i))
                    .collect();
                at += r.events.len();
                Appended::Fresh(ids)
            })
            .collect())
    }
}

impl NatsLog {
    /// Connects and creates (or opens) the stream and the buckets.
    pub async fn connect(
        url: &str,
        prefix: &str,
        durability: DurabilityMode,
        retention: (usize, Option<Duration>),
        dedupe: Duration,
        lease: Duration,
    ) -> Result<Arc<Self>, String> {
        let _ = durability;
        let name: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(ACK_TIMEOUT))
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| format!("cannot reach NATS at {url}: {e}"))?;
        // The first connection must succeed: a node does not start blind.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("cannot reach NATS at {url}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let js = jetstream::new(client.clone());
        let (max_events, max_age) = retention;
        let max_age = max_age.unwrap_or_default();
        // The duplicate window may not exceed the age limit.
        let dedupe = if max_age.is_zero() {
            dedupe
        } else {
            dedupe.min(max_age)
        };
        let subject = format!("{name}.log");
        let mut configs = vec![stream::Config {
            name: name.clone(),
            description: Some(format!("{EPOCH_PREFIX}0")),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            max_messages: i64::try_from(max_events).unwrap_or(i64::MAX),
            max_age,
            duplicate_window: dedupe,
            allow_direct: true,
            num_replicas: 1,
            ..Default::default()
        }];
        for (suffix, max_age) in [("nodes", lease), ("users", Duration::ZERO)] {
            configs.push(stream::Config {
                name: format!("{name}_{suffix}"),
                subjects: vec![format!("{name}.{suffix}.*")],
                storage: stream::StorageType::File,
                max_messages_per_subject: 1,
                max_age,
                allow_direct: true,
                num_replicas: 1,
                ..Default::default()
            });
        }
        let mut epoch = 0;
        for config in &configs {
            let mut stream = js.get_or_create_stream(config.clone()).await.map_err(|e| {
                format!(
                    "cannot create the JetStream stream {:?} (is nats-server run with -js?): {e}",
                    config.name
                )
            })?;
            if config.name == name {
                let info = stream.info().await.map_err(|e| e.to_string())?;
                epoch = epoch_in(info.config.description.as_deref());
            }
        }
        Ok(Arc::new(Self {
            client,
            js,
            stream_name: name.clone(),
            subject,
            name,
            configs,
            epoch: std::sync::atomic::AtomicU64::new(epoch),
            commits: std::sync::OnceLock::new(),
        }))
    }

    /// Connections made so far (the first, then every reconnect).
    pub fn connects(&self) -> u64 {
        self.client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The log's epoch as last seen.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn is_up(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn check_up(&self) -> Result<(), BrokerError> {
        if self.is_up() {
            Ok(())
        } else {
            Err(down("the cluster broker (NATS) is unreachable"))
        }
    }

    /// A stream by name, created again if the server lost it (a store wiped by a restart:
    /// the new stream's creation time tells the nodes, see `Log::continuity`).
    async fn get(&self, name: &str) -> Result<stream::Stream, BrokerError> {
        self.check_up()?;
        let config = self.configs.iter().find(|c| c.name == name).cloned();
        match config {
            Some(mut config) => {
                if name == self.stream_name {
                    // Created again (if missing) one epoch on.
                    let next = self.epoch.load(std::sync::atomic::Ordering::Acquire) + 1;
                    config.description = Some(format!("{EPOCH_PREFIX}{next}"));
                }
                match self.js.get_stream(name).await {
                    Ok(stream) => Ok(stream),
                    Err(e)
                        if matches!(
                            e.kind(),
                            jetstream::context::GetStreamErrorKind::JetStream(_)
                        ) =>
                    {
                        self.js
                            .get_or_create_stream(config)
                            .await
                            .map_err(|e| down(format!("the cluster log is unavailable: {e}")))
                    }
                    Err(e) => Err(down(format!("the cluster log is unavailable: {e}"))),
                }
            }
            None => self
                .js
                .get_stream(name)
                .await
                .map_err(|e| down(format!("the cluster log is unavailable: {e}"))),
        }
    }

    async fn stream(&self) -> Result<stream::Stream, BrokerError> {
        self.get(&self.stream_name).await
    }

    /// Appends a batch as one message; with `idem`, once per key within the duplicate window.
    /// Concurrent publishes without a key share messages (`commit`); a keyed one goes alone,
    /// since the server deduplicates whole messages by their `Nats-Msg-Id`.
    pub async fn append(
        self: &Arc<Self>,
        origin: &str,
        events: Vec<Vec<u8>>,
        idem: Option<(&str, &str)>,
    ) -> Result<super::log::Appended, BrokerError> {
        self.check_up()?;
        if idem.is_some() {
            return self.append_alone(origin, &events, idem).await;
        }
        let commits = self.commits.get_or_init(|| {
            commit::start(Publisher {
                log: Arc::downgrade(self),
            })
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = commit::Request {
            origin: origin.to_owned(),
            events,
            idem: None,
            reply,
        };
        if commits.send(request).is_err() {
            return Err(down("the node is shutting down"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(down("the node is shutting down")))
    }

    /// Publishes one message: `events` with their `origins` (each origin's count of events,
    /// in order), and with `idem` a message id. Returns the message's sequence and whether the
    /// server took it as a duplicate.
    async fn publish_message(
        &self,
        origins: &[(&str, usize)],
        events: impl Iterator<Item = &[u8]>,
        idem: Option<(&str, &str)>,
    ) -> Result<(u64, bool), BrokerError> {
        self.check_up()?;
        let mut payload = BytesMut::new();
        for e in events {
            payload.put_u32(e.len() as u32);
            payload.extend_from_slice(e);
        }
        let mut headers = async_nats::HeaderMap::new();
        match origins {
            [(origin, _)] => headers.insert("Tidings-Origin", *origin),
            several => {
                let list: Vec<String> = several
                    .iter()
                    .map(|(origin, count)| format!("{origin}={count}"))
                    .collect();
                headers.insert("Tidings-Origins", list.join(",").as_str());
            }
        }
        if let Some((key, fingerprint)) = idem {
            headers.insert("Nats-Msg-Id", key);
            headers.insert("Tidings-Fingerprint", fingerprint);
        }
        let ack = self
            .js
            .publish_with_headers(self.subject.clone(), headers, payload.freeze())
            .await
            .map_err(|e| down(format!("the cluster broker (NATS) failed: {e}")))?;
        let ack = tokio::time::timeout(ACK_TIMEOUT, ack)
            .await
            .map_err(|_| down("the cluster broker (NATS) did not acknowledge in time"))?
            .map_err(|e| down(format!("the cluster broker (NATS) failed: {e}")))?;
        Ok((ack.sequence, ack.duplicate))
    }

    /// One publish in a message of its own.
    async fn append_alone(
        &self,
        origin: &str,
        events: &[Vec<u8>],
        idem: Option<(&str, &str)>,
    ) -> Result<super::log::Appended, BrokerError> {
        let (sequence, duplicate) = self
            .publish_message(
                &[(origin, events.len())],
                events.iter().map(Vec::as_slice),
                idem,
            )
            .await?;
        if !duplicate {
            return Ok(super::log::Appended::Fresh(
                (0..events.len())
                    .map(|i| event_id(self.epoch(), sequence, i))
                    .collect(),
            ));
        }
        let first = self
            .stream()
            .await?
            .direct_get(sequence)
            .await
            .map_err(|e| down(format!("cannot read the first publish of this key: {e}")))?;
        let fingerprint = first
            .headers
            .get("Tidings-Fingerprint")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let count = split(&first.payload).len();
        Ok(super::log::Appended::Prior {
            fingerprint,
            ids: (0..count)
                .map(|i| event_id(self.epoch(), sequence, i))
                .collect(),
        })
    }

    /// The entries with `after < id <= upto`, at most about `count`.
    pub async fn range(
        &self,
        after: EventId,
        upto: EventId,
        count: usize,
    ) -> Result<Vec<LogEntry>, BrokerError> {
        let stream = self.stream().await?;
        let mut out = Vec::new();
        let epoch = self.epoch();
        let first = if epoch_of(after) < epoch {
            1
        } else {
            seq_of(after).max(1)
        };
        for seq in first..=seq_of(upto) {
            let message = match stream.direct_get(seq).await {
                Ok(m) => m,
                // A deleted or never-written sequence (a gap in the stream) holds nothing.
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => continue,
                Err(e) => return Err(down(format!("cannot read the cluster log: {e}"))),
            };
            out.extend(
                entries_of(epoch, seq, &message.headers, &message.payload)
                    .into_iter()
                    .filter(|e| e.id > after && e.id <= upto),
            );
            if out.len() >= count {
                break;
            }
        }
        Ok(out)
    }

    /// The entries of the newest `messages` messages, oldest first.
    pub async fn recent(&self, messages: u64) -> Result<Vec<LogEntry>, BrokerError> {
        let mut stream = self.stream().await?;
        let info = stream
            .info()
            .await
            .map_err(|e| down(format!("cannot read the cluster log's state: {e}")))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let epoch = epoch_in(info.config.description.as_deref());
        let mut out = Vec::new();
        for seq in last.saturating_sub(messages).max(first).max(1)..=last {
            if let Ok(m) = stream.direct_get(seq).await {
                out.extend(entries_of(epoch, seq, &m.headers, &m.payload));
            }
        }
        Ok(out)
    }

    /// (the replay floor, the newest id, the epoch): what the stream says of itself.
    pub async fn state(&self) -> Result<(EventId, EventId, String), BrokerError> {
        let info = self
            .stream()
            .await?
            .get_info()
            .await
            .map_err(|e| down(format!("cannot read the cluster log's state: {e}")))?;
        let epoch = epoch_in(info.config.description.as_deref());
        self.epoch
            .store(epoch, std::sync::atomic::Ordering::Release);
        // Everything before this epoch, and before the stream's first message, is gone.
        let floor = if info.state.first_sequence > 1 || epoch > 0 {
            EventId::from_u64(
                event_id(epoch, info.state.first_sequence.max(1), 0)
                    .as_u64()
                    .saturating_sub(1),
            )
        } else {
            EventId::default()
        };
        let newest = event_id(epoch, info.state.last_sequence, MAX_BATCH - 1);
        Ok((
            floor,
            newest,
            info.created.unix_timestamp_nanos().to_string(),
        ))
    }

    /// Writes the gap marker of a loss seen under `epoch` (once, whichever node sees it).
    pub async fn mark_gap(&self, epoch: &str) -> Result<(), BrokerError> {
        self.check_up()?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Tidings-Gap", epoch);
        headers.insert("Nats-Msg-Id", format!("gap-{epoch}").as_str());
        let ack = self
            .js
            .publish_with_headers(self.subject.clone(), headers, Bytes::new())
            .await
            .map_err(|e| down(e.to_string()))?;
        ack.await.map_err(|e| down(e.to_string()))?;
        Ok(())
    }

    /// An ordered consumer of the whole stream from the entry after `applied`.
    pub async fn tail(&self, applied: EventId) -> Result<consumer::pull::Ordered, BrokerError> {
        // From the start of a newer epoch than the node applied, else after what it applied.
        let start = if epoch_of(applied) < self.epoch() {
            1
        } else {
            seq_of(applied) + 1
        };
        let consumer = self
            .stream()
            .await?
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| down(format!("cannot follow the cluster log: {e}")))?;
        consumer
            .messages()
            .await
            .map_err(|e| down(format!("cannot follow the cluster log: {e}")))
    }
}

/// The entries of one payload.
fn split(payload: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 4 <= payload.len() {
        let len = u32::from_be_bytes([
            payload[at],
            payload[at + 1],
            payload[at + 2],
            payload[at + 3],
        ]) as usize;
        at += 4;
        let Some(e) = payload.get(at..at + len) else {
            break;
        };
        out.push(e);
        at += len;
    }
    out
}

/// The log entries of message `seq`.
pub(crate) fn entries_of(
    epoch: u64,
    seq: u64,
    headers: &async_nats::HeaderMap,
    payload: &[u8],
) -> Vec<LogEntry> {
    if headers.get("Tidings-Gap").is_some() {
        return vec![LogEntry {
            id: event_id(epoch, seq, 0),
            origin: None,
            event: None,
            gap: true,
        }];
    }
    let events = split(payload);
    let origins = origins_of(headers, events.len());
    events
        .into_iter()
        .zip(origins)
        .enumerate()
        .map(|(i, (e, origin))| LogEntry {
            id: event_id(epoch, seq, i),
            origin,
            event: Some(e.to_vec()),
            gap: false,
        })
        .collect()
}

/// The origin of each of a message's `count` events: one `Tidings-Origin` for all, or the
/// `Tidings-Origins` list (`origin=count,...`) of a message that carries several publishes.
fn origins_of(headers: &async_nats::HeaderMap, count: usize) -> Vec<Option<Vec<u8>>> {
    if let Some(list) = headers.get("Tidings-Origins") {
        let mut out = Vec::with_capacity(count);
        for part in list.as_str().split(',') {
            let Some((origin, n)) = part.rsplit_once('=') else {
                continue;
            };
            let n: usize = n.parse().unwrap_or(0);
            out.extend(std::iter::repeat_n(Some(origin.as_bytes().to_vec()), n));
        }
        out.resize(count, None);
        return out;
    }
    let origin = headers
        .get("Tidings-Origin")
        .map(|v| v.as_str().as_bytes().to_vec());
    vec![origin; count]
}

#[cfg(test)]
mod tests;
