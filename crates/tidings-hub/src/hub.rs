//! The engine: the publish sequencer, subscription admission, housekeeping and draining.
//!
//! Two locks order what must be ordered. The *sequencer* assigns ids and appends to history, so
//! ids grow in publish order. The *fan-out* lock queues events to subscribers once the store
//! says they are durable (the store reports batches in append order) and registers new
//! subscribers: a resuming subscriber's replay ends exactly at the newest event fanned out when
//! it was registered, and every later event reaches its queue live: no gap, no duplicate.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};

use crate::auth::{AuthConfig, Authenticator};
use crate::cluster::{Cluster, ClusterOptions, ClusterStore, LoggedKey, Outcome};
use crate::config::{ConfigError, HubConfig};
use crate::conn::{CloseReason, Conn};
use crate::event::{EventId, StoredEvent};
use crate::history::{HistoryStore, MemoryStore};
use crate::metrics::{Gauges, Metrics};
use crate::publish::{Prepared, Publish, PublishError, PublishLimits, Published};
use crate::registry::{Limit, Limits, Registry};
use crate::shutdown::OpenStreams;
use crate::stream::Stream;
use crate::subscription::Subscription;
use crate::tasks::{NewTask, TaskError, TaskInfo, TaskUpdate, Tasks};
use crate::topic::Pattern;

/// The hub: cheap to clone, every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .finish()
    }
}

pub(crate) struct Inner {
    pub config: HubConfig,
    pub auth: Authenticator,
    pub history: Arc<dyn HistoryStore>,
    pub metrics: Metrics,
    /// Publishes answered by `Idempotency-Key` (see `idempotency`).
    pub idempotency: Arc<crate::idempotency::Idempotency>,
    sequencer: Mutex<EventId>,
    /// The newest event queued to subscribers.
    fanned_out: Mutex<EventId>,
    /// Open streams with an expiring token: (expiry in Unix seconds, connection key). A stream
    /// leaves it when it closes, so it never holds more entries than there are streams.
    expiring: Mutex<BTreeSet<(u64, u64)>>,
    registry: RwLock<Registry>,
    /// The registry's size, watched (see `shutdown`).
    open_streams: OpenStreams,
    draining: AtomicBool,
    /// Told when draining starts (idle keep-alive connections then close).
    drain_started: tokio::sync::Notify,
    next_key: AtomicU64,
    heartbeat_frame: Bytes,
    /// Durable batches waiting to be fanned out (see `fanout`).
    fanout: fanout::FanoutQueue,
    /// Where the streams' writers run, if not on the caller's runtime.
    writers: RwLock<Option<tokio::runtime::Handle>>,
    /// The non-stream connections of `serve`, while it runs (for `/metrics`).
    pub http_conns: RwLock<Option<Arc<crate::http_conns::HttpConns>>>,
    /// The shared log and this node's part in it, in cluster mode.
    pub cluster: Option<Arc<Cluster>>,
    /// Long tasks and their progress (see `tasks`).
    pub tasks: Tasks,
    /// System topics and presence lists (see `system`).
    pub system: crate::system::System,
    /// `--webhook` notifications.
    pub webhooks: crate::webhooks::Webhooks,
    /// `--trusted-proxy`, parsed.
    pub trusted_proxies: Vec<crate::proxy::Cidr>,
    /// `fanned_out`, watched (a cluster subscriber resuming from an id this node has not
    /// reached yet waits on it).
    fanned_watch: tokio::sync::watch::Sender<EventId>,
}

/// Why a hub could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A configuration value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The token keys are unusable.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
    /// The cluster's broker is unreachable or unfit (`--cluster`).
    #[error("--cluster: {0}")]
    Cluster(String),
}

type PublishReceiver = tokio::sync::oneshot::Receiver<Result<Vec<Published>, PublishError>>;

/// What a subscriber asked for, already authorised.
#[derive(Debug)]
pub(crate) struct SubscribeSpec {
    pub patterns: Vec<Pattern>,
    pub user: Option<Arc<str>>,
    pub ip: Option<IpAddr>,
    pub exp: Option<u64>,
    pub last_event_id: Option<String>,
    /// `http/1.1`, `h2`, `http/1.1+tls`, `h2+tls`.
    pub protocol: &'static str,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Hub {
    /// A hub with a bounded in-memory history. Must be called inside a tokio runtime (it
    /// starts the housekeeping task that sends heartbeats and ends expired streams).
    pub fn new(config: HubConfig) -> Result<Self, HubError> {
        // Start above any id an earlier process could have issued from the same clock.
        let start = EventId(u64::try_from(unix_now().as_micros()).unwrap_or(u64::MAX));
        let store = MemoryStore::new(start, config.history_max_events, config.history_max_bytes)
            .with_max_age(config.history_max_age);
        Self::with_history(config, Arc::new(store))
    }

    /// A hub over the given history store.
    pub fn with_history(
        config: HubConfig,
        history: Arc<dyn HistoryStore>,
    ) -> Result<Self, HubError> {
        Self::build(config, history, None)
    }

    /// A node of a cluster on a shared log (`--cluster`): connects to the broker, checks
    /// that it persists writes as `options.durability` requires, and starts tailing the log.
    /// Must be called inside a tokio runtime.
    pub async fn clustered(config: HubConfig, options: ClusterOptions) -> Result<Self, HubError> {
        config.validate()?;
        let cluster = Cluster::connect(&options, &config)
            .await
            .map_err(HubError::Cluster)?;
        let store = Arc::new(ClusterStore(Arc::clone(&cluster)));
        let hub = Self::build(config, store, Some(Arc::clone(&cluster)))?;
        cluster.start(Arc::downgrade(&hub.inner));
        // Serve only once the tail reads: before that every publish would be refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cluster.is_ready() {
            if Instant::now() > deadline {
                return Err(HubError::Cluster(
                    "the node could not start tailing the shared log within 10 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(hub)
    }

    /// Leaves the cluster (if clustered) so the other nodes stop counting this one's
    /// connections at once rather than when its lease runs out. Called after a drain.
    pub async fn leave_cluster(&self) {
        if let Some(cluster) = &self.inner.cluster {
            cluster.leave().await;
        }
    }

    fn build(
        config: HubConfig,
        history: Arc<dyn HistoryStore>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Self, HubError> {
        config.validate()?;
        let public_topics = config
            .public_topics
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError {
                option: "public-topic",
                reason: e.to_string(),
            })?;
        let auth = Authenticator::new(AuthConfig {
            jwt_secret: config.jwt_secret.clone(),
            jwt_public_key_pem: config.jwt_public_key_pem.clone(),
            publish_keys: config.publish_keys.clone(),
            public_topics,
            dev: config.dev,
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
        })?;
        let clock = EventId(u64::try_from(unix_now().as_micros()).unwrap_or(u64::MAX));
        // A cluster's ids are the log's own, whatever the clock says (NATS numbers them from 1).
        let start = if cluster.is_some() {
            history.bounds().newest
        } else {
            history.bounds().newest.max(clock)
        };
        let inner = Arc::new(Inner {
            auth,
            history,
            metrics: Metrics::default(),
            idempotency: crate::idempotency::Idempotency::new(
                config.idempotency_window,
                config.idempotency_keys,
            ),
            sequencer: Mutex::new(start),
            fanned_out: Mutex::new(start),
            expiring: Mutex::new(BTreeSet::new()),
            registry: RwLock::new(Registry::default()),
            open_streams: OpenStreams::new(),
            draining: AtomicBool::new(false),
            drain_started: tokio::sync::Notify::new(),
            next_key: AtomicU64::new(1),
            heartbeat_frame: Bytes::from_static(b": heartbeat\n\n"),
            fanout: fanout::FanoutQueue::new(tokio::runtime::Handle::current()),
            writers: RwLock::new(None),
            http_conns: RwLock::new(None),
            cluster,
            tasks: Tasks::new(config.task_retention),
            system: crate::system::System::new(),
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|c| crate::proxy::Cidr::parse(c).ok())
                .collect(),
            webhooks: crate::webhooks::Webhooks::start(
                &config.webhooks,
                config.webhook_secret.clone(),
                config
                    .webhook_events
                    .iter()
                    .filter_map(|e| crate::webhooks::WebhookEvent::parse(e))
                    .collect(),
            ),
            fanned_watch: tokio::sync::watch::Sender::new(start),
            config,
        });
        if inner.cluster.is_none() {
            inner.recover_tasks();
        }
        tokio::spawn(housekeeping(Arc::downgrade(&inner)));
        Ok(Hub { inner })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Publishes one event; resolves once it is in the history at the configured durability
    /// and queued to its subscribers.
    pub async fn publish(&self, event: Publish) -> Result<Published, PublishError> {
        let mut out = self.publish_batch(vec![event]).await?;
        out.pop().ok_or(PublishError::NoTarget)
    }

    /// Publishes events in order with consecutive ids; all are validated first, so a bad one
    /// publishes none.
    pub async fn publish_batch(
        &self,
        events: Vec<Publish>,
    ) -> Result<Vec<Published>, PublishError> {
        let limits = PublishLimits {
            max_event_bytes: self.inner.config.max_event_bytes,
            max_targets: self.inner.config.max_targets,
        };
        let prepared = events
            .into_iter()
            .map(|e| e.prepare(&limits))
            .collect::<Result<Vec<_>, _>>()?;
        self.publish_prepared(prepared).await
    }

    /// Publishes validated events: through the shared log on a cluster node, else through the
    /// sequencer and the history store.
    async fn publish_prepared(
        &self,
        prepared: Vec<Prepared>,
    ) -> Result<Vec<Published>, PublishError> {
        let hook = crate::webhooks::WebhookEvent::Publish;
        let targets: Option<Vec<serde_json::Value>> = self.inner.webhooks.wants(hook).then(|| {
            prepared
                .iter()
                .map(|p| {
                    let parts = p.parts();
                    serde_json::json!({
                        "topics": parts.topics.iter().map(|t| &**t).collect::<Vec<_>>(),
                        "users": parts.users.iter().map(|u| &**u).collect::<Vec<_>>(),
                        "broadcast": parts.broadcast,
                    })
                })
                .collect()
        });
        let out = self.publish_prepared_quietly(prepared).await?;
        if let Some(mut targets) = targets {
            for (t, p) in targets.iter_mut().zip(&out) {
                t["id"] = p.id.clone().into();
            }
            self.inner
                .webhooks
                .notify(hook, || serde_json::json!({ "events": targets }));
        }
        Ok(out)
    }

    async fn publish_prepared_quietly(
        &self,
        prepared: Vec<Prepared>,
    ) -> Result<Vec<Published>, PublishError> {
        if self.inner.cluster.is_some() {
            return match self.publish_logged(prepared, None).await? {
                Outcome::Fresh(out) | Outcome::Replayed(out) => Ok(out),
                Outcome::Conflict => Err(PublishError::Invalid(
                    "the idempotency key was used for another request".into(),
                )),
            };
        }
        let started = Instant::now();
        let out = Arc::clone(&self.inner).publish(prepared)?.await;
        let out = out.map_err(|_| {
            PublishError::History(crate::history::StoreError::Unavailable(
                "the history store dropped the publish".into(),
            ))
        })??;
        self.inner
            .metrics
            .publish_latency
            .observe(started.elapsed());
        Ok(out)
    }

    /// A publish through the cluster's log, once per `key` across the cluster.
    async fn publish_logged(
        &self,
        prepared: Vec<Prepared>,
        key: Option<&LoggedKey>,
    ) -> Result<Outcome, PublishError> {
        let Some(cluster) = &self.inner.cluster else {
            return Err(PublishError::Invalid("not a cluster node".into()));
        };
        if self.inner.is_draining() {
            return Err(PublishError::Draining);
        }
        let started = Instant::now();
        let out = cluster.publish(prepared, key).await?;
        self.inner
            .metrics
            .publish_latency
            .observe(started.elapsed());
        Ok(out)
    }

    /// Publishes a batch for the HTTP layer: with an `Idempotency-Key` recorded in the shared
    /// log in cluster mode (so a retry on any node is answered, not published again).
    pub(crate) async fn publish_keyed(
        &self,
        events: Vec<Publish>,
        key: Option<&LoggedKey>,
    ) -> Result<Outcome, PublishError> {
        if self.inner.cluster.is_none() || key.is_none() {
            return self.publish_batch(events).await.map(Outcome::Fresh);
        }
        let limits = PublishLimits {
            max_event_bytes: self.inner.config.max_event_bytes,
            max_targets: self.inner.config.max_targets,
        };
        let prepared = events
            .into_iter()
            .map(|e| e.prepare(&limits))
            .collect::<Result<Vec<_>, _>>()?;
        self.publish_logged(prepared, key).await
    }

    /// Sends an event to every connection of `user`; returns its id and the number of
    /// connections it was queued to.
    pub async fn notify(&self, user: &str, event: Publish) -> Result<Published, PublishError> {
        let event = Publish {
            topics: Vec::new(),
            users: vec![user.to_owned()],
            broadcast: false,
            ..event
        };
        self.publish(event).await
    }

    /// Sends an event to every connection.
    pub async fn broadcast(&self, event: Publish) -> Result<Published, PublishError> {
        let event = Publish {
            topics: Vec::new(),
            users: Vec::new(),
            broadcast: true,
            ..event
        };
        self.publish(event).await
    }

    /// Ends the stream with this client id (`DELETE /clients/{id}`); false if none is open.
    pub fn disconnect(&self, client_id: &str) -> bool {
        let registry = self.inner.registry.read();
        match registry.by_client_id(client_id) {
            Some(conn) => {
                conn.close(CloseReason::Disconnected);
                true
            }
            None => false,
        }
    }

    /// Open event streams.
    pub fn connection_count(&self) -> usize {
        self.inner.registry.read().conns.len()
    }

    /// Starts draining: new streams and publishes are refused with 503, `/readyz` says so,
    /// and every stream is told to come back after a jittered `retry:` and then closed.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.drain_started.notify_waiters();
        let base = u64::try_from(self.inner.config.retry.as_millis())
            .unwrap_or(u64::MAX)
            .max(100);
        let registry = self.inner.registry.read();
        for conn in registry.conns.values() {
            // Spread the reconnects over [retry, 3 × retry] so a fleet does not stampede.
            let retry_ms = base + rand::random_range(0..=base.saturating_mul(2));
            conn.close(CloseReason::Shutdown { retry_ms });
        }
    }

    /// Whether [`Hub::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Resolves once [`Hub::drain`] is called (at once if it was).
    pub(crate) async fn draining_started(&self) {
        // Created before the check: `notify_waiters` reaches it even before its first poll.
        let notified = self.inner.drain_started.notified();
        if self.is_draining() {
            return;
        }
        notified.await;
    }

    /// Resolves once no stream is open: after [`Hub::drain`], when every stream has been told
    /// when to come back and has closed. An embedding app awaits this (with its own timeout)
    /// before it stops serving.
    pub async fn streams_closed(&self) {
        self.inner.open_streams.all_closed().await;
    }
}

impl Inner {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Assigns ids and hands the events to the store; the receiver resolves once they are
    /// durable and fanned out. Budget under the sequencer's lock: an id and 16 digits written
    /// per event, and the store's append (which only queues for the disk store).
    fn publish(self: Arc<Self>, batch: Vec<Prepared>) -> Result<PublishReceiver, PublishError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let published_ms = u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX);
        let mut last = self.sequencer.lock();
        if self.is_draining() {
            return Err(PublishError::Draining);
        }
        let mut id = *last;
        let events: Vec<Arc<StoredEvent>> = batch
            .into_iter()
            .map(|p| {
                id = id.next();
                Arc::new(p.stamp(id, published_ms))
            })
            .collect();
        *last = id;
        let hub = Arc::clone(&self);
        let fan_out = events.clone();
        let run_here = self.append_inline(|| {
            self.history.append(
                events,
                Box::new(move |result| match result {
                    Ok(()) => hub.durable(fan_out, tx),
                    Err(err) => {
                        let _ = tx.send(Err(PublishError::from(err)));
                    }
                }),
            )
        });
        drop(last);
        if run_here {
            self.run_fanout();
        }
        Ok(rx)
    }

    pub fn unregister(&self, conn: &Conn) {
        if let Some(cluster) = &self.cluster {
            cluster.release(conn.key);
        }
        if let Some(exp) = conn.exp {
            self.expiring.lock().remove(&(exp, conn.key));
        }
        let mut registry = self.registry.write();
        if registry.remove(conn) {
            self.open_streams.set(registry.conns.len());
            drop(registry);
            self.metrics.connections_closed.inc();
            self.system_disconnected(conn);
        }
    }

    /// A receiver of the newest id fanned out.
    pub fn fanned_out_watch(&self) -> tokio::sync::watch::Receiver<EventId> {
        self.fanned_watch.subscribe()
    }

    /// Notes a fan-out pass's newest id for [`Inner::fanned_out_watch`].
    pub(super) fn note_fanned_out(&self, newest: EventId) {
        self.fanned_watch.send_if_modified(|seen| {
            if newest > *seen {
                *seen = newest;
                true
            } else {
                false
            }
        });
    }

    pub fn gauges(&self) -> Gauges {
        let registry = self.registry.read();
        let (history_events, history_bytes) = self.history.size();
        Gauges {
            connections: registry.conns.len(),
            subscriptions: registry.subscriptions,
            users: registry.user_counts().count(),
            queue_bytes: registry.conns.values().map(|c| c.queued_bytes()).sum(),
            history_events,
            history_bytes,
            idempotency_keys: self.idempotency.len(),
            tasks: self.tasks.len(),
            draining: self.is_draining(),
        }
    }

    /// Streams the expiry index tracks (for tests: it must not outgrow the open streams).
    #[cfg(test)]
    pub fn expiring_len(&self) -> usize {
        self.expiring.lock().len()
    }

    pub fn registry(&self) -> parking_lot::RwLockReadGuard<'_, Registry> {
        self.registry.read()
    }
}

mod fanout;
mod housekeeping;
use self::housekeeping::housekeeping;
mod subscribe;
mod tasks;
#[cfg(test)]
mod tests;
