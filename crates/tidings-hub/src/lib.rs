//! The Tidings hub engine: topics, delivery, history and auth, served as an axum `Router`.
//!
//! Embed it in an axum application in a few lines:
//!
//! ```no_run
//! use tidings_hub::{Hub, HubConfig, Publish};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::new(HubConfig::dev())?;
//! let app = axum::Router::new().merge(tidings_hub::router(hub.clone()));
//! hub.publish(Publish::to_topic("orders/42").event("order.paid").json(&42)?).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Connect info gives requests their peer address, for --max-connections-per-ip.
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Configuration and the model:
//! - [`config`]: every tunable, its default and its validation.
//! - [`topic`]: topics, subscription patterns (`*`, `**`) and user ids.
//! - [`event`]: an event as the hub keeps it: its id, targets and encoded frame.
//! - [`publish`]: what a publisher asks for; validated and encoded before an id is assigned.
//! - [`auth`]: tokens (JWT HS256/RS256/ES256), publish keys, and what a principal may do.
//! - [`units`]: durations and sizes as users write them (`500ms`, `64KiB`).
//!
//! One event, publish to socket:
//! - `hub`: the engine: the publish sequencer, fan-out after durability, registration,
//!   housekeeping (heartbeats, expiry), drain.
//! - [`cluster`]: cluster mode (`--cluster redis://`): a shared, ordered log in Redis that
//!   every node appends to and tails; its window doubles as the node's history.
//! - [`history`]: the replay log behind the [`HistoryStore`] trait: bounded in memory, or
//!   durable on disk (fjall, group commit, per-topic and per-user indexes).
//! - `registry`: who is connected and the index the fan-out walks.
//! - `conn`: one subscriber's bounded queue: the one place that decides what a slow
//!   subscriber gets.
//!
//! One subscription, request to last byte:
//! - `admission`: who may do what: credentials, topic permission, limits, CORS, the `--dev`
//!   Host guard; the one way a stream is admitted, whichever sink serves it.
//! - `stream`: a stream's course (prelude, replay, live, retry-and-close) as a state machine
//!   with no I/O.
//! - `subscription`: a registered stream as a sink holds it: drives `stream`, reads replay
//!   pages off the worker threads, drains the queue, unregisters on drop.
//! - `sse_body`: the hyper sink (the embedded [`router`]).
//! - `native`: the socket sink of [`serve`]: `GET /events` straight on the socket, no HTTP
//!   buffers at rest, one write per wake-up (`send`, or `writev` for several frames), on a
//!   writer runtime of its own; and plain `POST /publish` requests answered on the socket,
//!   request after request on a keep-alive connection (`native/publish.rs`).
//!
//! Serving:
//! - `http`, `body`, `error`: routes, request bodies, the JSON error shape.
//! - `client_js`: `GET /client/tidings.js`, the JavaScript client (`clients/js`).
//! - `dashboard`: `GET /dashboard`, the live dashboard page (`dashboard.html`).
//! - `idempotency`: `Idempotency-Key` on a publish: a retry gets the first answer.
//! - `system`: the live system topics (`$sys/stats`, `$sys/connections`, `$sys/tap`) and
//!   `presence/{topic}` lists.
//! - [`webhooks`]: signed notifications to `--webhook` URLs, one bounded queue and worker per
//!   URL.
//! - [`tasks`]: progress of long tasks, kept in the history (`$tasks`), snapshots for late
//!   subscribers, `POST/GET /tasks`.
//! - [`server`]: the accept loop with header timeouts and graceful shutdown.
//! - [`tls`]: HTTPS on the hub (`--tls-cert`), HTTP/2 and HTTP/1.1 by ALPN, reloadable.
//! - `shutdown`: the "every stream has closed" signal a drain waits for.
//! - `http_conns`: the bound on connections that are not event streams
//!   (`--max-http-connections`): the oldest idle one makes room for a newcomer.
//! - `metrics`: counters rendered for `/metrics`.
//! - `fuzzing` (feature `fuzzing`): entry points of the fuzz targets in `fuzz/`.
//! - `bench_support` (feature `bench-support`): socket-less subscribers for `benches/fanout.rs`.

mod admission;
pub mod auth;
#[cfg(feature = "bench-support")]
pub mod bench_support;
mod body;
mod client_js;
pub mod cluster;
pub mod config;
mod conn;
mod dashboard;
mod error;
pub mod event;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
mod http;
mod http_conns;
mod hub;
mod idempotency;
mod metrics;
mod native;
pub mod proxy;
pub mod publish;
mod registry;
pub mod server;
mod shutdown;
mod sse_body;
mod stream;
mod subscription;
mod system;
pub mod tasks;
pub mod tls;
pub mod topic;
pub mod units;
pub mod webhooks;

pub use config::{ConfigError, HubConfig};
pub use history::{HistoryStore, MemoryStore};
pub use http::router;
pub use hub::{Hub, HubError};
pub use publish::{Payload, Publish, PublishError, Published};
pub use server::{serve, serve_with};
