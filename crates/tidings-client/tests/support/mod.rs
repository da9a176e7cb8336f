//! Helpers shared by this crate's integration tests: a stream polled in its own task whose
//! items are read with a deadline, and a builder tuned for fast, deterministic reconnections.
//!
//! Every wait has a deadline, so a client that hangs fails its test instead of the suite.
#![allow(dead_code)]

use std::time::Duration;

use tidings_client::{Builder, Event, EventStream, Handle, SseItem};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest any single step may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A builder that reconnects after 10 ms, with no jitter, so delays are exact values.
pub fn fast(url: &str) -> Builder {
    EventStream::builder(url)
        .initial_delay(Duration::from_millis(10))
        .jitter(0.0)
}

/// A stream running in its own task, as a real consumer would run it, so that it keeps
/// connecting and reading while the test plays the server. Its items queue up for the test.
pub struct Client {
    items: mpsc::UnboundedReceiver<SseItem>,
    /// The stream's handle, to restart or close it.
    pub handle: Handle,
    task: JoinHandle<()>,
}

/// Builds the stream and starts polling it.
pub fn start(builder: Builder) -> Client {
    let mut stream = builder.build().expect("valid settings");
    let handle = stream.handle();
    let (tx, items) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            if tx.send(item).is_err() {
                return;
            }
        }
    });
    Client {
        items,
        handle,
        task,
    }
}

impl Client {
    /// The next item; fails the test if none comes within [`WAIT`] or the stream ended.
    pub async fn next(&mut self) -> SseItem {
        tokio::time::timeout(WAIT, self.items.recv())
            .await
            .expect("an item within the deadline")
            .expect("the stream has not ended")
    }

    /// Whether the stream has ended (yields nothing more) within [`WAIT`].
    pub async fn ended(&mut self) -> bool {
        tokio::time::timeout(WAIT, self.items.recv())
            .await
            .expect("the stream ends within the deadline")
            .is_none()
    }

    /// The next event, skipping `Open`, `Comment` and `Retry`; fails on anything else.
    pub async fn next_event(&mut self) -> Event {
        loop {
            match self.next().await {
                SseItem::Event(event) => return event,
                SseItem::Open(_) | SseItem::Comment(_) | SseItem::Retry(_) => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// Items up to and including the first that `stop` accepts.
    pub async fn until(&mut self, mut stop: impl FnMut(&SseItem) -> bool) -> Vec<SseItem> {
        let mut items = Vec::new();
        loop {
            let item = self.next().await;
            let done = stop(&item);
            items.push(item);
            if done {
                return items;
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A compact description of an item, for comparing sequences in assertions.
pub fn describe(item: &SseItem) -> String {
    match item {
        SseItem::Open(open) => format!("open {}", open.status.as_u16()),
        SseItem::Event(e) => format!("event {}|{}|{}", e.event, e.data, e.id),
        SseItem::Reset(r) => format!("reset {}|{}|{}", r.reason, r.last_event_id, r.id()),
        SseItem::Comment(c) => format!("comment {c}"),
        SseItem::Retry(d) => format!("retry {}", d.as_millis()),
        SseItem::Error { error, will_retry } => format!("error retry={will_retry} {error}"),
        SseItem::Reconnecting { delay, attempt } => {
            format!("reconnecting {}ms #{attempt}", delay.as_millis())
        }
        SseItem::Closed(reason) => format!("closed {reason:?}"),
        other => format!("{other:?}"),
    }
}

/// A port on loopback where nothing listens: connections to it are refused.
pub async fn refused_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    port
}
