//! The Redis side of cluster mode: connections, the scripts, and every command the hub sends.
//!
//! Keys, under `--cluster-prefix` (`P`):
//! - `P:log`: the stream, the one ordered log of events (see `entry`).
//! - `P:epoch`: the log's identity; a node that finds it missing or changed knows the log lost
//!   data (see `Cluster::check_continuity`).
//! - `P:idem:<digest>`: an `Idempotency-Key` and the ids it published, for the window.
//! - `P:nodes`: live nodes, a sorted set scored by lease expiry (Redis time, ms).
//! - `P:node:<id>`: a node's connection counts (JSON), refreshed with its lease.
//! - `P:user:<user>`: per node, that user's open streams (for `--max-connections-per-user`).
//!
//! One multiplexed connection carries publishes and reads; the tail has its own (a blocking
//! read would stall the others). When a command fails for want of Redis, the node is marked
//! down at once: publishes then fail in microseconds with 503 until a reconnect succeeds,
//! rather than each waiting for a timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Script, Value};
use tokio::sync::mpsc;

use super::commit;
use super::reply::split_ids;
pub(crate) use super::reply::{entries, read_entries, text, LogInfo, RawEntry};
use super::scripts::{ACQUIRE, HEARTBEAT, MARK_GAP, PUBLISH, RELEASE};

use crate::config::DurabilityMode;

/// How long a publish or a read may wait for Redis before the node calls it down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the tail's blocking read waits for new entries.
pub(crate) const TAIL_BLOCK: Duration = Duration::from_millis(1000);

/// Why a command failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct BrokerError {
    /// Redis is unreachable or not serving (the node is now marked down).
    pub down: bool,
    pub message: String,
}

impl BrokerError {
    pub(super) fn other(message: impl Into<String>) -> Self {
        Self {
            down: false,
            message: message.into(),
        }
    }
}

/// Whether an error means Redis is not there (as opposed to a command it refused).
fn is_outage(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error()
        || matches!(
            err.code(),
            Some("LOADING" | "MASTERDOWN" | "READONLY" | "BUSY" | "MISCONF")
        )
}

/// The key names under the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub prefix: String,
    pub log: String,
    pub epoch: String,
    pub nodes: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            log: format!("{prefix}:log"),
            epoch: format!("{prefix}:epoch"),
            nodes: format!("{prefix}:nodes"),
        }
    }
    pub fn idem(&self, digest: &str) -> String {
        format!("{}:idem:{digest}", self.prefix)
    }
    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
    pub fn user(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }
}

/// What a publish script did.
#[derive(Debug)]
pub(crate) enum Appended {
    /// New entries, with these stream ids.
    Fresh(Vec<String>),
    /// The idempotency key was used before: its fingerprint and stream ids.
    Prior {
        fingerprint: String,
        ids: Vec<String>,
    },
}

/// The node's way to Redis.
pub(crate) struct Broker {
    client: redis::Client,
    pub keys: Keys,
    conn: RwLock<Option<MultiplexedConnection>>,
    up: AtomicBool,
    reconnecting: AtomicBool,
    publish: Script,
    /// The group-commit task's queue, started by the first publish.
    commits: OnceLock<mpsc::UnboundedSender<commit::Request<Appended>>>,
    mark_gap: Script,
    acquire: Script,
    release: Script,
    heartbeat: Script,
}

fn config(response: Option<Duration>) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(response)
}

impl Broker {
    /// Connects (the first connection must succeed: a node does not start blind). `ca`: PEM
    /// certificates to trust for `rediss://` instead of the system's roots.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ca: Option<Vec<u8>>,
    ) -> Result<Arc<Self>, String> {
        let client = match ca {
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            ),
            None => redis::Client::open(url),
        }
        .map_err(|e| format!("--cluster {url:?}: {e}"))?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&config(Some(COMMAND_TIMEOUT)))
            .await
            .map_err(|e| format!("cannot reach Redis: {e}"))?;
        Ok(Arc::new(Self {
            client,
            keys: Keys::new(prefix),
            conn: RwLock::new(Some(conn)),
            up: AtomicBool::new(true),
            reconnecting: AtomicBool::new(false),
            publish: Script::new(PUBLISH),
            commits: OnceLock::new(),
            mark_gap: Script::new(MARK_GAP),
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
            heartbeat: Script::new(HEARTBEAT),
        }))
    }

    /// Whether the last command reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// A connection for a command, or an error at once while Redis is known to be down.
    fn conn(&self) -> Result<MultiplexedConnection, BrokerError> {
        if !self.is_up() {
            return Err(BrokerError {
                down: true,
                message: "the cluster broker (Redis) is unreachable".into(),
            });
        }
        self.conn.read().clone().ok_or_else(|| BrokerError {
            down: true,
            message: "the cluster broker (Redis) is unreachable".into(),
        })
    }

    /// Classifies a failed command, marking the node down (and reconnecting) on an outage.
    fn failed(self: &Arc<Self>, err: RedisError) -> BrokerError {
        let down = is_outage(&err);
        if down {
            self.mark_down();
        }
        BrokerError {
            down,
            message: format!("the cluster broker (Redis) failed: {err}"),
        }
    }

    /// Marks Redis down and starts one reconnect loop.
    pub fn mark_down(self: &Arc<Self>) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                "lost the cluster broker (Redis); publishes answer 503 until it is back"
            );
        }
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(50);
            loop {
                if let Ok(mut conn) = broker
                    .client
                    .get_multiplexed_async_connection_with_config(&config(Some(COMMAND_TIMEOUT)))
                    .await
                {
                    let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
                    if pong.is_ok() {
                        *broker.conn.write() = Some(conn);
                        broker.reconnecting.store(false, Ordering::Release);
                        broker.up.store(true, Ordering::Release);
                        tracing::info!("the cluster broker (Redis) is back");
                        return;
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        });
    }

    /// A connection of its own for the tail's blocking reads.
    pub async fn tail_connection(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&config(Some(
                TAIL_BLOCK + Duration::from_secs(2),
            )))
            .await
    }

    /// Refuses a Redis that does not persist writes as `--durability` requires.
    pub async fn check_durability(self: &Arc<Self>, mode: DurabilityMode) -> Result<(), String> {
        let conn = self.conn().map_err(|e| e.message)?;
        let get = |name: &'static str| {
            let mut conn = conn.clone();
            async move {
                let pair: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot read Redis's `{name}` setting to check durability ({e}); \
                             a Redis that hides CONFIG cannot be checked"
                        )
                    })?;
                Ok::<_, String>(pair.get(1).cloned().unwrap_or_default())
            }
        };
        let appendonly = get("appendonly").await?;
        let fsync = get("appendfsync").await?;
        if appendonly != "yes" {
            return Err(format!(
                "Redis has `appendonly {appendonly}`: an acknowledged publish would be lost on a \
                 Redis restart. Set `appendonly yes` and `appendfsync always` (for --durability \
                 sync) in redis.conf"
            ));
        }
        match (mode, fsync.as_str()) {
            (_, "always") | (DurabilityMode::Interval, "everysec") => Ok(()),
            (DurabilityMode::Interval, other) => Err(format!(
                "Redis has `appendfsync {other}`: --durability interval needs `appendfsync \
                 everysec` or `always`"
            )),
            (_, other) => Err(format!(
                "Redis has `appendfsync {other}`: --durability sync needs `appendfsync always` \
                 (or run with --durability interval, which may lose the last second of \
                 acknowledged publishes on a Redis crash)"
            )),
        }
    }

    /// Appends a batch (atomically); with `idem`, once per key within its window. Concurrent
    /// appends share one call (`commit`).
    pub async fn append(
        self: &Arc<Self>,
        origin: &str,
        events: Vec<Vec<u8>>,
        max_len: usize,
        idem: Option<(&str, &str, u64)>,
    ) -> Result<Appended, BrokerError> {
        // Fail in microseconds while Redis is known to be down.
        self.conn()?;
        let commits = self.commits.get_or_init(|| {
            commit::start(Publisher {
                broker: Arc::downgrade(self),
                max_len,
            })
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = commit::Request {
            origin: origin.to_owned(),
            events,
            idem: idem.map(|(key, fingerprint, window_ms)| commit::Idem {
                key: self.keys.idem(key),
                fingerprint: fingerprint.to_owned(),
                window_ms,
            }),
            reply,
        };
        if commits.send(request).is_err() {
            return Err(BrokerError::other("the node is shutting down"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(BrokerError::other("the node is shutting down")))
    }

    /// Entries with `after < id <= upto`, at most `count`.
    pub async fn range(
        self: &Arc<Self>,
        after: &str,
        upto: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, BrokerError> {
        let mut conn = self.conn()?;
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.keys.log)
            .arg(format!("({after}"))
            .arg(upto)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(entries(reply))
    }

    /// The newest entry's stream id, if the log has any.
    pub async fn last_id(self: &Arc<Self>) -> Result<Option<String>, BrokerError> {
        Ok(self.recent(1).await?.into_iter().next().map(|e| e.id))
    }

    /// The newest `count` entries, newest first.
    pub async fn recent(self: &Arc<Self>, count: usize) -> Result<Vec<RawEntry>, BrokerError> {
        let mut conn = self.conn()?;
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&self.keys.log)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(entries(reply))
    }

    /// `XINFO STREAM` of the log; `None` if it does not exist.
    pub async fn info(self: &Arc<Self>) -> Result<Option<LogInfo>, BrokerError> {
        let mut conn = self.conn()?;
        let reply: Result<Value, RedisError> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.keys.log)
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            Ok(v) => v,
            Err(e) if !is_outage(&e) && e.to_string().contains("no such key") => return Ok(None),
            Err(e) => return Err(self.failed(e)),
        };
        let mut info = LogInfo::default();
        let pairs: Vec<(String, &Value)> = match &reply {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|p| Some((text(&p[0])?, p.get(1)?)))
                .collect(),
            Value::Map(items) => items
                .iter()
                .filter_map(|(k, v)| Some((text(k)?, v)))
                .collect(),
            _ => return Err(BrokerError::other("unexpected reply to XINFO STREAM")),
        };
        for (name, value) in pairs {
            match name.as_str() {
                "last-generated-id" => info.last_generated = text(value).unwrap_or_default(),
                "max-deleted-entry-id" => info.max_deleted = text(value).unwrap_or_default(),
                "recorded-first-entry-id" => info.first = text(value).unwrap_or_default(),
                "length" | "entries-added" => {
                    let n = match value {
                        Value::Int(n) => u64::try_from(*n).unwrap_or_default(),
                        _ => 0,
                    };
                    if name == "length" {
                        info.length = n;
                    } else {
                        info.added = n;
                    }
                }
                _ => {}
            }
        }
        Ok(Some(info))
    }

    /// The log's epoch, if set.
    pub async fn epoch(self: &Arc<Self>) -> Result<Option<String>, BrokerError> {
        let mut conn = self.conn()?;
        redis::cmd("GET")
            .arg(&self.keys.epoch)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Sets the epoch if none is set; returns the one in force.
    pub async fn init_epoch(self: &Arc<Self>, fresh: &str) -> Result<String, BrokerError> {
        let mut conn = self.conn()?;
        let _: Value = redis::cmd("SET")
            .arg(&self.keys.epoch)
            .arg(fresh)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(self.epoch().await?.unwrap_or_else(|| fresh.to_owned()))
    }

    /// Writes a gap marker unless another node already did (see [`MARK_GAP`]); the epoch in
    /// force.
    pub async fn mark_gap(
        self: &Arc<Self>,
        seen: &str,
        fresh: &str,
    ) -> Result<String, BrokerError> {
        let mut conn = self.conn()?;
        self.mark_gap
            .key(&self.keys.epoch)
            .key(&self.keys.log)
            .arg(seen)
            .arg(fresh)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Trims entries published before `min_ms` (`--history-max-age`).
    pub async fn trim_before(self: &Arc<Self>, min_ms: u64) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let _: Value = redis::cmd("XTRIM")
            .arg(&self.keys.log)
            .arg("MINID")
            .arg("~")
            .arg(format!("{min_ms}-0"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Renews this node's lease with its snapshot; the other live nodes' snapshots.
    pub async fn heartbeat(
        self: &Arc<Self>,
        node: &str,
        lease: Duration,
        snapshot: &str,
    ) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.conn()?;
        self.heartbeat
            .key(&self.keys.nodes)
            .key(self.keys.node(node))
            .arg(node)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg(snapshot)
            .arg(&self.keys.prefix)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Leaves the live set (a clean stop).
    pub async fn leave(self: &Arc<Self>, node: &str) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let _: Value = redis::pipe()
            .cmd("ZREM")
            .arg(&self.keys.nodes)
            .arg(node)
            .cmd("DEL")
            .arg(self.keys.node(node))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Takes one of `user`'s `limit` slots across live nodes; `false` if none is free.
    pub async fn acquire(
        self: &Arc<Self>,
        node: &str,
        user: &str,
        limit: usize,
    ) -> Result<bool, BrokerError> {
        let mut conn = self.conn()?;
        let got: i64 = self
            .acquire
            .key(self.keys.user(user))
            .key(&self.keys.nodes)
            .arg(node)
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(got == 1)
    }

    /// Gives back a slot taken by [`Broker::acquire`].
    pub async fn release(self: &Arc<Self>, node: &str, user: &str) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let _: i64 = self
            .release
            .key(self.keys.user(user))
            .arg(node)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }
}

/// Redis as a group-commit sink: the group is one call of the publish script.
struct Publisher {
    broker: std::sync::Weak<Broker>,
    /// The stream's `MAXLEN` (one per node).
    max_len: usize,
}

impl commit::Sink for Publisher {
    type Appended = Appended;
    const MAX_EVENTS: usize = 1024;
    const MAX_BYTES: usize = 1 << 20;

    async fn append_group(
        &self,
        group: &[commit::Request<Appended>],
    ) -> Result<Vec<Appended>, BrokerError> {
        let Some(broker) = self.broker.upgrade() else {
            return Err(BrokerError::other("the node is shutting down"));
        };
        let mut conn = broker.conn()?;
        let mut call = broker.publish.prepare_invoke();
        call.key(&broker.keys.log);
        call.arg(self.max_len).arg(group.len());
        for request in group {
            match &request.idem {
                Some(idem) => {
                    call.key(idem.key.as_str())
                        .arg(request.origin.as_str())
                        .arg(idem.fingerprint.as_str())
                        .arg(idem.window_ms);
                }
                None => {
                    call.key("").arg(request.origin.as_str()).arg("").arg(0);
                }
            }
            call.arg(request.events.len());
            for e in &request.events {
                call.arg(e.as_slice());
            }
        }
        let reply: Value = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| broker.failed(e))?;
        let Value::Array(parts) = reply else {
            return Err(BrokerError::other("unexpected reply to a publish"));
        };
        Ok(parts
            .chunks(2)
            .map(|pair| {
                let fresh = matches!(pair.first(), Some(Value::Int(1)));
                let text = pair.get(1).and_then(text).unwrap_or_default();
                if fresh {
                    return Appended::Fresh(split_ids(&text));
                }
                let (fingerprint, ids) = text.split_once('|').unwrap_or(("", ""));
                Appended::Prior {
                    fingerprint: fingerprint.to_owned(),
                    ids: split_ids(ids),
                }
            })
            .collect())
    }
}
