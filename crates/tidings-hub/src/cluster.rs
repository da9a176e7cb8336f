//! Cluster mode: many hub processes, one hub, on a shared log in Redis.
//!
//! The log is one Redis Stream. A publish, on any node, is one script call that appends the
//! batch (and records its `Idempotency-Key`) atomically; it is acknowledged once Redis has
//! answered, which with `appendfsync always` is after Redis's fsync. Event ids are the stream's
//! ids, so they grow in log order on every node. Every node *tails* the whole log from the last
//! id it applied and fans out only what it read back, in log order: every node delivers the
//! same events in the same order, and no guarantee rests on pub/sub. The tail keeps a recent
//! window in memory (a [`MemoryStore`]); a resume from further back reads the log itself.
//!
//! - The seam is the single node's: the tail queues a batch to the hub's fan-out, and a
//!   subscriber registers under the fan-out lock, so its replay ends exactly where its live
//!   queue starts. A `Last-Event-ID` a little ahead of this node (issued by a faster node) is
//!   waited for, briefly, instead of being called unknown.
//! - Lost data (Redis restarted empty, or rolled back to an older AOF) is detected by the
//!   log's *epoch* key and its last id: the first node to see it writes one gap marker; every
//!   node's tail reads the marker, raises its replay floor to it and sends every open stream a
//!   `reset` `history-gap`. No node waits for an id that will never come.
//! - While Redis is unreachable, publishes fail at once with 503 (never 200 and then lost),
//!   `/readyz` says not ready, open streams stay open with heartbeats, and the tail resumes
//!   from its last id when Redis is back.
//! - Connection counts are shared through per-node snapshots renewed with the node's lease
//!   (every [`HEARTBEAT`], expiring after [`LEASE`]); `--max-connections-per-user` is enforced
//!   on counts kept in Redis, ignoring nodes whose lease expired.
//!
//! `docs/CLUSTER.md` gives the design, the guarantees with their tests, and the failure modes.

mod broker;
mod commit;
pub(crate) mod entry;
mod heartbeat;
mod log;
mod nats;
mod options;
mod reply;
mod scripts;
mod store;
mod tail;

pub(crate) use self::entry::LoggedKey;
use self::heartbeat::heartbeat;
pub use self::options::ClusterOptions;
pub(crate) use self::store::ClusterStore;
use self::tail::{learn_tasks, tail};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::{Mutex, RwLock};

use self::broker::{Broker, RawEntry};
use self::log::{Appended, Log};
use crate::event::{EventId, StoredEvent};
use crate::history::{unix_ms, HistoryStore, MemoryStore, ReplayFilter, StoreError};
use crate::hub::Inner;
use crate::publish::{Prepared, PublishError, Published};

/// How often a node renews its lease and shares its counts.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node's lease lasts: a node that stops (or is killed) stops counting after this.
pub const LEASE: Duration = Duration::from_secs(5);
/// Most events the in-memory window keeps (fewer if `--history-max-events` says so).
const WINDOW_EVENTS: usize = 100_000;
/// Most entries one tail read takes.
const TAIL_COUNT: usize = 1024;
/// How long a publish waits for its own node's tail to fan it out, to report `delivered`.
/// Past it the publish is still acknowledged (it is in the log), with `delivered` 0.
const APPLY_WAIT: Duration = Duration::from_secs(2);
/// How long a subscriber resuming from an id this node has not applied yet waits for it.
pub(crate) const CATCH_UP_WAIT: Duration = Duration::from_secs(2);
/// How far the log's clock (Redis's) may run ahead of this node's, for [`Cluster::catch_up`].
const CLOCK_SKEW_MS: u64 = 5_000;
/// Entries per read when a replay reads the log itself.
const RANGE_PAGE: usize = 512;

type Reply = tokio::sync::oneshot::Sender<Result<Vec<Published>, PublishError>>;

/// The start of a batch held back for its rest: its origin and its events so far.
type Carried = (Vec<u8>, Vec<Arc<StoredEvent>>);

/// The other live nodes' connection counts, as of their last heartbeat.
#[derive(Debug, Default)]
pub(crate) struct Others {
    pub nodes: usize,
    pub total: usize,
    pub users: HashMap<String, usize>,
    pub topics: HashMap<String, usize>,
}

/// What a publish in cluster mode came to.
pub(crate) enum Outcome {
    /// Appended now.
    Fresh(Vec<Published>),
    /// The `Idempotency-Key` was used before (on any node): the ids it published.
    Replayed(Vec<Published>),
    /// The `Idempotency-Key` was used before for another request.
    Conflict,
}

/// One entry of the log as the hub reads it, whichever broker holds it.
#[derive(Debug)]
pub(crate) struct LogEntry {
    pub id: EventId,
    /// The publishing node and batch.
    pub origin: Option<Vec<u8>>,
    /// The event (see `entry`).
    pub event: Option<Vec<u8>>,
    /// A gap marker.
    pub gap: bool,
}

impl LogEntry {
    fn from_redis(raw: RawEntry) -> Option<Self> {
        Some(Self {
            id: entry::id_of_stream(&raw.id)?,
            origin: raw.origin,
            event: raw.event,
            gap: raw.gap,
        })
    }
}

/// A node of the cluster: its way to the broker, its tail's state and its window.
pub(crate) struct Cluster {
    pub node: String,
    log: Log,
    window: MemoryStore,
    /// Ids at or below this cannot be replayed (trimmed by retention, or before a gap).
    floor: AtomicU64,
    /// The newest id the tail applied (queued to the fan-out).
    applied: AtomicU64,
    tail_up: AtomicBool,
    /// The broker connection's generation the tail last checked continuity on.
    verified: AtomicU64,
    epoch: Mutex<Option<String>>,
    /// This node's publishes waiting for the tail: batch number -> (reply, event count).
    pending: Mutex<HashMap<u64, (Reply, usize)>>,
    /// The start of one of this node's batches whose rest the next read brings (a read ends
    /// after [`TAIL_COUNT`] entries, possibly mid-batch): its publisher is answered once, for
    /// the whole batch.
    carry: Mutex<Option<Carried>>,
    next_batch: AtomicU64,
    others: RwLock<Others>,
    max_len: usize,
    max_age: Option<Duration>,
    runtime: tokio::runtime::Handle,
    gaps: AtomicU64,
    tail_reconnects: AtomicU64,
    /// Streams holding one of their user's cluster-wide slots: connection key -> user.
    leases: Mutex<HashMap<u64, Arc<str>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("applied", &self.applied.load(Ordering::Relaxed))
            .finish()
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

impl Cluster {
    /// Connects, checks Redis's durability, adopts the log's epoch and finds where to tail
    /// from.
    pub async fn connect(
        options: &ClusterOptions,
        config: &crate::HubConfig,
    ) -> Result<Arc<Self>, String> {
        if options.prefix.is_empty()
            || options.prefix.len() > 64
            || !options.prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "--cluster-prefix {:?}: 1 to 64 visible characters",
                options.prefix
            ));
        }
        let log = if options.url.starts_with("nats://") {
            let nats = nats::NatsLog::connect(
                &options.url,
                &options.prefix,
                options.durability,
                (config.history_max_events, config.history_max_age),
                config.idempotency_window,
                LEASE,
            )
            .await?;
            Log::Nats(nats)
        } else {
            let ca = match &options.ca {
                Some(path) => Some(
                    std::fs::read(path)
                        .map_err(|e| format!("--cluster-ca {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let broker = Broker::connect(&options.url, &options.prefix, ca).await?;
            broker.check_durability(options.durability).await?;
            Log::Redis(broker)
        };
        let (epoch, _) = log
            .continuity(None, EventId::default(), &random_hex(8))
            .await
            .map_err(|e| e.message)?;
        let applied = log.newest().await.map_err(|e| e.message)?;
        let floor = log.floor().await.map_err(|e| e.message)?;
        let window = MemoryStore::new(
            applied,
            config.history_max_events.clamp(1, WINDOW_EVENTS),
            config.history_max_bytes,
        )
        .with_max_age(config.history_max_age);
        Ok(Arc::new(Self {
            node: random_hex(6),
            log,
            window,
            floor: AtomicU64::new(floor.as_u64()),
            applied: AtomicU64::new(applied.as_u64()),
            tail_up: AtomicBool::new(false),
            verified: AtomicU64::new(0),
            epoch: Mutex::new(Some(epoch)),
            pending: Mutex::new(HashMap::new()),
            carry: Mutex::new(None),
            next_batch: AtomicU64::new(1),
            others: RwLock::new(Others::default()),
            max_len: config.history_max_events,
            max_age: config.history_max_age,
            runtime: tokio::runtime::Handle::current(),
            gaps: AtomicU64::new(0),
            tail_reconnects: AtomicU64::new(0),
            leases: Mutex::new(HashMap::new()),
        }))
    }

    /// The node's tail and heartbeat, for as long as the hub lives; and a first look back
    /// at the log for the tasks the cluster already has.
    pub fn start(self: &Arc<Self>, hub: Weak<Inner>) {
        tokio::spawn(tail(Arc::clone(self), hub.clone()));
        tokio::spawn(learn_tasks(Arc::clone(self), hub.clone()));
        tokio::spawn(heartbeat(Arc::clone(self), hub));
    }

    /// Whether the node can publish and its tail is reading: `/readyz`. After a reconnect to
    /// the broker, not before the tail has checked the log's continuity again (a publish must
    /// never land before the gap marker of a loss).
    pub fn is_ready(&self) -> bool {
        self.log.is_up()
            && self.tail_up.load(Ordering::Acquire)
            && self.log.generation() == self.verified.load(Ordering::Acquire)
    }

    /// The newest id applied.
    pub fn applied(&self) -> EventId {
        EventId::from_u64(self.applied.load(Ordering::Acquire))
    }

    /// The other nodes' counts.
    pub fn others(&self) -> parking_lot::RwLockReadGuard<'_, Others> {
        self.others.read()
    }

    /// Appends a batch to the log; resolves once Redis acknowledged it and (up to
    /// [`APPLY_WAIT`]) this node fanned it out.
    pub async fn publish(
        &self,
        batch: Vec<Prepared>,
        key: Option<&LoggedKey>,
    ) -> Result<Outcome, PublishError> {
        // Not before the tail has (re)checked the log's continuity: a publish must never be
        // ordered before the gap marker of a loss this node has not noticed yet.
        if !self.is_ready() {
            return Err(PublishError::History(StoreError::Unavailable(
                "the cluster broker (Redis) is unreachable; retry shortly (with the same \
                 Idempotency-Key)"
                    .into(),
            )));
        }
        let published_ms = unix_ms();
        let encoded: Vec<Vec<u8>> = batch
            .iter()
            .map(|p| entry::encode(p, published_ms))
            .collect();
        let seq = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let origin = format!("{}:{seq}", self.node);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending.lock().insert(seq, (tx, batch.len()));
        let appended = self
            .log
            .append(
                &origin,
                encoded,
                self.max_len,
                key.map(|k| (k.key.as_str(), k.fingerprint.as_str(), k.window_ms)),
            )
            .await;
        let unanswered = |ids: &[EventId]| -> Vec<Published> {
            ids.iter()
                .map(|id| Published {
                    id: id.to_string(),
                    delivered: 0,
                })
                .collect()
        };
        match appended {
            Err(err) => {
                self.pending.lock().remove(&seq);
                if err.down {
                    Err(PublishError::History(StoreError::Unavailable(err.message)))
                } else {
                    Err(PublishError::Invalid(err.message))
                }
            }
            Ok(Appended::Prior { fingerprint, ids }) => {
                self.pending.lock().remove(&seq);
                if key.is_some_and(|k| k.fingerprint != fingerprint) {
                    return Ok(Outcome::Conflict);
                }
                Ok(Outcome::Replayed(unanswered(&ids)))
            }
            Ok(Appended::Fresh(ids)) => match tokio::time::timeout(APPLY_WAIT, rx).await {
                Ok(Ok(Ok(out))) => Ok(Outcome::Fresh(out)),
                _ => {
                    self.pending.lock().remove(&seq);
                    Ok(Outcome::Fresh(unanswered(&ids)))
                }
            },
        }
    }

    /// Takes one of `user`'s slots across the cluster for the stream `key`. While Redis is
    /// unreachable the node's own count is the only limit (streams are not refused for an
    /// outage).
    pub async fn acquire(&self, user: &str, limit: usize) -> bool {
        self.log
            .acquire(&self.node, user, limit)
            .await
            .unwrap_or(true)
    }

    /// Records that stream `key` holds a slot of `user`.
    pub fn hold(&self, key: u64, user: Arc<str>) {
        self.leases.lock().insert(key, user);
    }

    /// Gives back the slot of stream `key`, if it holds one.
    pub fn release(self: &Arc<Self>, key: u64) {
        let Some(user) = self.leases.lock().remove(&key) else {
            return;
        };
        self.release_user(user);
    }

    /// Gives back a slot of `user` (in the background).
    pub fn release_user(self: &Arc<Self>, user: Arc<str>) {
        let cluster = Arc::clone(self);
        self.runtime.spawn(async move {
            let _ = cluster.log.release(&cluster.node, &user).await;
        });
    }

    /// Waits (up to `wait`) until this node's fan-out passed `id`. An id from further in the
    /// future than clocks can disagree (its millisecond part is the log's clock) is not
    /// waited for: it was never issued.
    pub async fn catch_up(&self, inner: &Inner, id: EventId, wait: Duration) {
        if !self.log.plausible(id, unix_ms(), CLOCK_SKEW_MS) {
            return;
        }
        let mut watch = inner.fanned_out_watch();
        let _ = tokio::time::timeout(wait, watch.wait_for(|seen| *seen >= id)).await;
    }

    /// Before a resume from `id`: if it is older than the window, learns how far the log has
    /// been trimmed, so a trimmed position gets its `reset` at once rather than mid-replay.
    pub async fn refresh_floor(&self, id: EventId) {
        if id >= self.window.bounds().floor {
            return;
        }
        if let Ok(floor) = self.log.floor().await {
            self.floor.fetch_max(floor.as_u64(), Ordering::AcqRel);
        }
    }

    /// Leaves the live set (a clean stop): the other nodes stop counting this one at once.
    pub async fn leave(&self) {
        let _ = self.log.leave(&self.node).await;
    }

    /// Checks that the log still holds what this node applied; writes (or adopts) a gap
    /// marker if not.
    async fn check_continuity(&self) -> Result<(), broker::BrokerError> {
        let mine = self.epoch.lock().clone();
        let (current, lost) = self
            .log
            .continuity(mine.as_deref(), self.applied(), &random_hex(8))
            .await?;
        if !lost {
            *self.epoch.lock() = Some(current);
            return Ok(());
        }
        let seen = mine.unwrap_or_default();
        let adopted = self.log.mark_gap(&seen, &random_hex(8)).await?;
        tracing::warn!(
            applied = %self.applied(),
            broker = self.log.name(),
            "the cluster log lost events this node had applied (the broker restarted empty or \
             rolled back); streams get a `reset` history-gap"
        );
        *self.epoch.lock() = Some(adopted);
        Ok(())
    }

    /// Applies entries read by the tail: into the window, then to the fan-out, in log order,
    /// one batch per publish.
    fn apply(&self, hub: &Arc<Inner>, entries: Vec<LogEntry>) {
        let (mut batch_origin, mut batch) = match self.carry.lock().take() {
            Some((origin, events)) => (Some(origin), events),
            None => (None, Vec::new()),
        };
        let mut applied = self.applied();
        for raw in entries {
            let id = raw.id;
            if id <= applied {
                continue;
            }
            if raw.gap {
                self.flush(hub, &mut batch, batch_origin.take());
                self.floor.fetch_max(id.as_u64(), Ordering::AcqRel);
                self.gaps.fetch_add(1, Ordering::Relaxed);
                let reset = gap_reset(id, applied);
                self.flush(hub, &mut vec![Arc::new(reset)], None);
                applied = id;
                continue;
            }
            let Some(decoded) = raw.event.as_deref().and_then(entry::decode) else {
                tracing::warn!(%id, "skipped a log entry this version cannot read");
                applied = id;
                continue;
            };
            if batch_origin != raw.origin {
                self.flush(hub, &mut batch, batch_origin.take());
                batch_origin = raw.origin;
            }
            batch.push(Arc::new(decoded.event.stamp(id, decoded.published_ms)));
            applied = id;
        }
        match batch_origin {
            Some(origin) if self.expects_more(&origin, batch.len()) => {
                *self.carry.lock() = Some((origin, batch));
            }
            origin => self.flush(hub, &mut batch, origin),
        }
        self.applied.store(applied.as_u64(), Ordering::Release);
    }

    /// This node's batch number in an entry's origin, if the entry is this node's.
    fn own_batch(&self, origin: &[u8]) -> Option<u64> {
        let origin = std::str::from_utf8(origin).ok()?;
        let (node, seq) = origin.split_once(':')?;
        if node != self.node {
            return None;
        }
        seq.parse().ok()
    }

    /// Whether `have` events of this node's batch `origin` are fewer than it published.
    fn expects_more(&self, origin: &[u8], have: usize) -> bool {
        self.own_batch(origin).is_some_and(|seq| {
            self.pending
                .lock()
                .get(&seq)
                .is_some_and(|(_, count)| *count > have)
        })
    }

    /// Hands one publish's events to the window and the fan-out, answering its publisher if
    /// it was this node's.
    fn flush(&self, hub: &Arc<Inner>, batch: &mut Vec<Arc<StoredEvent>>, origin: Option<Vec<u8>>) {
        if batch.is_empty() {
            return;
        }
        let events = std::mem::take(batch);
        self.window.push(&events);
        let reply = origin
            .as_deref()
            .and_then(|o| self.own_batch(o))
            .and_then(|seq| self.pending.lock().remove(&seq))
            .map_or_else(|| tokio::sync::oneshot::channel().0, |(reply, _)| reply);
        hub.durable(events, reply);
    }

    /// A replay page from the log itself (the window no longer reaches back far enough).
    async fn read_log(
        &self,
        after: EventId,
        upto: EventId,
        filter: &ReplayFilter<'_>,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, StoreError> {
        let unavailable = |e: broker::BrokerError| StoreError::Unavailable(e.message);
        if after.as_u64() < self.floor.load(Ordering::Acquire) {
            return Err(StoreError::Gap(after));
        }
        let floor = self.log.floor().await.map_err(unavailable)?;
        self.floor.fetch_max(floor.as_u64(), Ordering::AcqRel);
        if after < floor {
            return Err(StoreError::Gap(after));
        }
        let mut out = Vec::new();
        let mut from = after;
        while out.len() < limit {
            let page = self
                .log
                .range(from, upto, RANGE_PAGE)
                .await
                .map_err(unavailable)?;
            let full = page.len() >= RANGE_PAGE;
            for raw in page {
                let id = raw.id;
                from = id;
                if raw.gap {
                    return Err(StoreError::Gap(after));
                }
                let Some(decoded) = raw.event.as_deref().and_then(entry::decode) else {
                    continue;
                };
                let event = decoded.event.stamp(id, decoded.published_ms);
                if filter.accepts(&event) {
                    out.push(Arc::new(event));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// The node's cluster metrics (Prometheus text).
    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let others = self.others.read();
        let _ = write!(
            out,
            "# HELP tidings_cluster_up Whether the cluster broker is reachable and the tail reads (1) or not (0).\n\
             # TYPE tidings_cluster_up gauge\ntidings_cluster_up {}\n\
             # HELP tidings_cluster_nodes Live nodes, this one included, as of the last heartbeat.\n\
             # TYPE tidings_cluster_nodes gauge\ntidings_cluster_nodes {}\n\
             # HELP tidings_cluster_gap_markers_total Gap markers read from the log (the log lost data).\n\
             # TYPE tidings_cluster_gap_markers_total counter\ntidings_cluster_gap_markers_total {}\n\
             # HELP tidings_cluster_tail_reconnects_total Times the tail reconnected to the broker.\n\
             # TYPE tidings_cluster_tail_reconnects_total counter\ntidings_cluster_tail_reconnects_total {}\n",
            u8::from(self.is_ready()),
            others.nodes + 1,
            self.gaps.load(Ordering::Relaxed),
            self.tail_reconnects.load(Ordering::Relaxed),
        );
    }
}

/// The replay floor the log's trimming implies: every entry above it is still in the log.
///
/// Retention trims from the front (`MAXLEN`, `MINID`), which Redis does not record as
/// `max-deleted-entry-id`; but once anything was trimmed (`entries-added` exceeds `length`),
/// everything from `recorded-first-entry-id` on is still there. A resume from just below it
/// may thus be told of a gap that holds nothing: a needless `reset` is safe, a silent skip
/// would not be.
pub(crate) fn trimmed_floor(info: &broker::LogInfo) -> EventId {
    let deleted = entry::id_of_stream(&info.max_deleted).unwrap_or_default();
    let trimmed = if info.added > info.length {
        entry::id_of_stream(&info.first)
            .map(|first| EventId::from_u64(first.as_u64().saturating_sub(1)))
            .unwrap_or_default()
    } else {
        EventId::default()
    };
    deleted.max(trimmed)
}

/// The `reset` every open stream gets when its node crosses a gap marker.
fn gap_reset(marker: EventId, before: EventId) -> StoredEvent {
    let data = serde_json::json!({ "reason": "history-gap", "lastEventId": before.to_string() })
        .to_string();
    let id = marker.to_string();
    let mut frame = BytesMut::new();
    let _ = tidings_wire::Event::new(&data)
        .with_event("reset")
        .with_id(&id)
        .encode_into(&mut frame);
    StoredEvent::new(
        marker,
        Box::new([]),
        Box::new([]),
        true,
        unix_ms(),
        frame.freeze(),
    )
}
