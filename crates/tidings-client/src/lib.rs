//! A Server-Sent Events client for Rust: it opens a `text/event-stream` over HTTP and yields
//! what a browser's `EventSource` would see, as an async [`Stream`](futures_util::Stream),
//! and reconnects by itself the way a browser does, only more carefully.
//!
//! It works with any SSE server (an LLM API, a hand-written endpoint) and knows one thing
//! about the Tidings hub: its `reset` event, surfaced as [`SseItem::Reset`] so the caller
//! knows to reload state.
//!
//! ```no_run
//! use tidings_client::{EventStream, SseItem};
//! # #[derive(serde::Deserialize)] struct Order { id: u64 }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut stream = EventStream::builder("http://127.0.0.1:8080/events?topic=orders/*")
//!     .bearer_token("eyJ…")
//!     .build()?;
//! while let Some(item) = stream.next().await {
//!     if let SseItem::Event(event) = item {
//!         let order: Order = event.json()?;
//!         println!("order {} (event id {})", order.id, event.id);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What it gets right
//! - **Parsing** is the WHATWG algorithm, from the `tidings-wire` crate: a BOM, CR, LF or
//!   CRLF line ends cut anywhere by the network, invalid UTF-8 (replaced, not fatal), `id`
//!   with NUL ignored, `retry` digits only. An event cut off by a dropped connection is
//!   discarded, never delivered half.
//! - **Reconnection**: after the current reconnection time (initial delay, then the server's
//!   `retry:`), growing exponentially with jitter up to a cap while failures continue, and
//!   starting over once a stream has been healthy for a while. An optional limit on attempts
//!   really stops. `Last-Event-ID` is sent whenever an id is known, never empty.
//! - **HTTP**: custom headers, any method with a body, redirects followed with a bound (and
//!   credentials dropped across origins), `Accept: text/event-stream` and
//!   `Cache-Control: no-cache` on every request, `204` as "stop", and a typed error for
//!   everything else, retried or not by [one documented rule](Error#the-retry-rule).
//! - **Control and visibility**: [`Handle::restart`] and [`Handle::close`]; comments,
//!   errors and reconnections are items of the stream, not hidden in logs.
//!
//! # Layout
//! - [`builder`](Builder): every setting, and its validation.
//! - `config`: the validated settings the driver reads, and their defaults.
//! - `stream`: [`EventStream`] and its [`Handle`].
//! - `driver`: the state machine (connect, read, wait) and the one retry decision.
//! - `connect`: one HTTP exchange: the request, redirects, status and content-type checks.
//! - `redirect`, `backoff`: pure rules (where a redirect goes; how long to wait), unit-tested.
//! - `item`: [`SseItem`] and what it carries ([`Event`], [`Reset`], [`Open`]).
//! - `error`: [`Error`] with the retry rule, and [`BuildError`].
//! - `testing` (feature `testing`): a scripted server on loopback for tests.
//!
//! Plain `http://` only: put TLS in front (a local proxy) or use a client with TLS for
//! `https://`. It runs on tokio.

mod backoff;
mod builder;
mod config;
mod connect;
mod driver;
mod error;
mod item;
mod redirect;
mod stream;

#[cfg(feature = "testing")]
pub mod testing;

pub use builder::Builder;
pub use error::{BoxError, BuildError, Error};
pub use item::{CloseReason, Event, Open, Reset, ResetReason, SseItem};
pub use stream::{EventStream, Handle};
