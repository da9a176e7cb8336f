//! The Tidings hub engine: topics, delivery, history and auth, served as an axum `Router`.
//!
//! Embed it in an axum application in a few lines:
//!
//! ```no_run
//! use tidings_hub::{Hub, HubConfig, Publish};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::new(HubConfig { dev: true, ..Default::default() })?;
//! let app = axum::Router::new().merge(tidings_hub::router(hub.clone()));
//! hub.publish(Publish::to_topic("orders/42").event("order.paid").json(&42)?).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: every tunable, its default and its validation.
//! - [`topic`]: topics, subscription patterns (`*`, `**`) and user ids.
//! - [`auth`]: tokens (JWT HS256/RS256/ES256), publish keys, and what a principal may do.
//! - [`publish`]: what a publisher asks for; validated before an id is assigned.
//! - `hub`: the engine: the publish sequencer, fan-out after durability, admission,
//!   housekeeping (heartbeats, expiry), drain.
//! - `registry`: who is connected and the index the fan-out walks.
//! - `conn`: one subscriber's bounded queue and the response body that drains it (the hot path).
//! - [`history`]: the replay log behind the [`HistoryStore`] trait: bounded in memory, or
//!   durable on disk (fjall, group commit, per-topic and per-user indexes).
//! - `http`, `body`, `error`: routes, request bodies, the JSON error shape.
//! - [`server`]: the accept loop with header timeouts and graceful shutdown.
//! - `http_conns`: the bound on connections that are not event streams
//!   (`--max-http-connections`): the oldest idle one makes room for a newcomer.
//! - `native`: `GET /events` served straight on the socket (the stream path of [`serve`]):
//!   no HTTP buffers at rest, one write per wake-up (`send`, or `writev` for several frames),
//!   on a writer runtime of its own.
//!
//! Embedded through [`router`], streams go through hyper (`conn::SseBody`), which is heavier
//! per connection but needs nothing from the host application beyond axum.
//! - `metrics`: counters rendered for `/metrics`.
//! - `fuzzing` (feature `fuzzing`): entry points of the fuzz targets in `fuzz/`.

pub mod auth;
#[doc(hidden)]
pub mod bench_support;
mod body;
pub mod config;
mod conn;
mod error;
pub mod event;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
mod http;
mod http_conns;
mod hub;
mod metrics;
mod native;
pub mod publish;
mod registry;
pub mod server;
pub mod topic;

pub use config::{ConfigError, HubConfig};
pub use history::{HistoryStore, MemoryStore};
pub use http::router;
pub use hub::{Hub, HubError};
pub use publish::{Payload, Publish, PublishError, Published};
pub use server::serve;
