//! The naive baseline of `scripts/bench-compare`: an SSE hub written the way a tutorial
//! would write it, so that comparing Tidings with "just use axum" is honest.
//!
//! Nothing here is tuned on purpose: `axum::response::Sse` with the default keep-alive, one
//! `tokio::sync::broadcast` channel per topic created on first use, a `Mutex<HashMap>` to find
//! it, and the default multi-threaded runtime.
//!
//! - `GET /events?topic=T` streams every message published to `T` from now on.
//! - `POST /publish?topic=T` with any body sends that body as the data of one event and
//!   answers `{"delivered": <receivers>}`.
//!
//! Usage: `naive-axum [ADDR]` (default `127.0.0.1:8090`); it prints `listening on http://ADDR`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// How many messages a slow subscriber may fall behind before it misses some (the channel
/// then reports `Lagged`, and this baseline, like most tutorials, skips ahead).
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Clone, Default)]
struct AppState {
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>,
}

impl AppState {
    fn channel(&self, topic: &str) -> broadcast::Sender<String> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .clone()
    }
}

#[derive(serde::Deserialize)]
struct TopicQuery {
    topic: String,
}

async fn events(
    State(state): State<AppState>,
    Query(query): Query<TopicQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.channel(&query.topic).subscribe();
    let stream = BroadcastStream::new(receiver).filter_map(|message| async move {
        message.ok().map(|data| Ok(Event::default().data(data)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn publish(
    State(state): State<AppState>,
    Query(query): Query<TopicQuery>,
    body: String,
) -> Json<HashMap<&'static str, usize>> {
    let delivered = state.channel(&query.topic).send(body).unwrap_or(0);
    Json(HashMap::from([("delivered", delivered)]))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let app = Router::new()
        .route("/events", get(events))
        .route("/publish", post(publish))
        .with_state(AppState::default());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
