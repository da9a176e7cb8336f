//! `tidings-client` against the project's own hub: resuming after a dropped connection and
//! after a crash of a durable hub, coming back to an in-memory hub that lost its history, and
//! the hub's `reset` event surfaced as [`SseItem::Reset`].
//!
//! The client reaches the hub through a small TCP relay on a fixed port, as it would reach a
//! hub behind a load balancer: the relay can cut every connection (a network failure) or
//! point at a new hub process (a restart), while the client keeps one URL.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{json, Hub, Value, PUBLISH_KEY, WAIT};
use tidings_client::{Event, EventStream, ResetReason, SseItem};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The options of every hub here. A short `retry:` makes reconnections take milliseconds.
const ARGS: [&str; 6] = [
    "--publish-key",
    PUBLISH_KEY,
    "--public-topic",
    "**",
    "--retry",
    "50ms",
];

/// A hub with its history in memory.
fn hub(extra: &[&str]) -> Hub {
    let mut args = ARGS.to_vec();
    args.extend_from_slice(extra);
    Hub::start(&args)
}

/// A TCP relay from a fixed local port to the current hub.
struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let upstream = Arc::new(Mutex::new(upstream));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (to, registry) = (Arc::clone(&upstream), Arc::clone(&links));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = *to.lock().unwrap_or_else(|e| e.into_inner());
                let link = tokio::spawn(async move {
                    // No hub there (between a crash and a restart): the client sees a
                    // connection that closes at once, and retries.
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(link);
            }
        });
        Relay {
            addr,
            upstream,
            links,
            accept,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn point_to(&self, hub: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) = hub;
    }

    /// Cuts every open connection, as a network failure would.
    fn cut(&self) {
        for link in self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            link.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The client, polled in its own task; its items queue up for the test.
struct Client {
    items: mpsc::UnboundedReceiver<SseItem>,
    task: JoinHandle<()>,
}

impl Client {
    fn start(stream: EventStream) -> Client {
        let (tx, items) = mpsc::unbounded_channel();
        let mut stream = stream;
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        Client { items, task }
    }

    async fn next(&mut self) -> SseItem {
        tokio::time::timeout(WAIT, self.items.recv())
            .await
            .expect("an item within the deadline")
            .expect("the stream has not ended")
    }

    /// The next event the application would handle: the hub's `connected` greeting and
    /// connection bookkeeping are skipped; a reset is returned as `Err`.
    async fn next_event(&mut self) -> Result<Event, tidings_client::Reset> {
        loop {
            match self.next().await {
                SseItem::Event(event) if event.event == "connected" => {}
                SseItem::Event(event) => return Ok(event),
                SseItem::Reset(reset) => return Err(reset),
                SseItem::Closed(reason) => panic!("the stream closed: {reason:?}"),
                _ => {}
            }
        }
    }

    async fn expect_seqs(&mut self, seqs: std::ops::Range<u64>) -> Vec<String> {
        let mut ids = Vec::new();
        for want in seqs {
            let event = self
                .next_event()
                .await
                .unwrap_or_else(|reset| panic!("unexpected reset {reset:?}"));
            let data: Value = event.json().expect("JSON data");
            assert_eq!(
                data["seq"], want,
                "out of order, lost or duplicated: {event:?}"
            );
            ids.push(event.id);
        }
        ids
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn publish(hub: &Hub, seqs: std::ops::Range<u64>) -> Vec<String> {
    let mut ids = Vec::new();
    for seq in seqs {
        ids.push(
            hub.publish(&json!({"topic": "t", "data": {"seq": seq}}))
                .await,
        );
    }
    ids
}

fn subscribe(url: &str) -> EventStream {
    EventStream::builder(url)
        .initial_delay(Duration::from_millis(20))
        .build()
        .expect("valid settings")
}

/// Waits until the hub counts `n` open event streams, so a publish cannot race the
/// subscription.
async fn wait_subscribed(hub: &Hub, n: f64) {
    hub.wait_metric("tidings_connections", WAIT, |v| v >= n)
        .await;
}

#[tokio::test]
async fn after_a_dropped_connection_the_client_resumes_with_no_gap_and_no_duplicate() {
    let hub = hub(&[]);
    let relay = Relay::start(hub.addr()).await;
    let mut client = Client::start(subscribe(&relay.url("/events?topic=t")));
    wait_subscribed(&hub, 1.0).await;
    publish(&hub, 0..3).await;
    client.expect_seqs(0..3).await;

    relay.cut();
    // Published while the client is away: replayed on reconnect, before live events.
    publish(&hub, 3..6).await;
    client.expect_seqs(3..6).await;
    publish(&hub, 6..8).await;
    client.expect_seqs(6..8).await;
}

#[tokio::test]
async fn after_a_durable_hub_crashes_and_restarts_the_client_resumes_with_nothing_lost() {
    let dir = tempfile::tempdir().expect("a data directory");
    let mut first = Hub::start_on_disk(dir.path(), &ARGS);
    let relay = Relay::start(first.addr()).await;
    let mut client = Client::start(subscribe(&relay.url("/events?topic=t")));
    wait_subscribed(&first, 1.0).await;
    publish(&first, 0..3).await;
    client.expect_seqs(0..3).await;

    // A crash: no drain, no goodbye. The client keeps retrying while no hub answers.
    first.kill9();
    let second = Hub::start_on_disk(dir.path(), &ARGS);
    // Published before the client is back: the new process must replay them from disk.
    publish(&second, 3..6).await;
    relay.point_to(second.addr());
    client.expect_seqs(3..6).await;
    publish(&second, 6..8).await;
    client.expect_seqs(6..8).await;
}

#[tokio::test]
async fn after_an_in_memory_hub_restarts_the_client_comes_back_and_surfaces_the_reset() {
    let first = hub(&[]);
    let relay = Relay::start(first.addr()).await;
    let mut client = Client::start(subscribe(&relay.url("/events?topic=t")));
    wait_subscribed(&first, 1.0).await;
    publish(&first, 0..3).await;
    let seen = client.expect_seqs(0..3).await;

    // A crash (SIGKILL) of an in-memory hub loses its history: the new process cannot
    // replay from the client's last id, and says so in-band.
    drop(first);
    let second = hub(&[]);
    relay.point_to(second.addr());
    let reset = client
        .next_event()
        .await
        .expect_err("the restarted hub cannot resume the old id");
    assert!(
        matches!(
            reset.reason,
            ResetReason::UnknownId | ResetReason::HistoryGap
        ),
        "{reset:?}"
    );
    assert_eq!(reset.last_event_id, seen[2]);

    // The stream goes on with live events from the new hub.
    wait_subscribed(&second, 1.0).await;
    publish(&second, 10..12).await;
    client.expect_seqs(10..12).await;
}

#[tokio::test]
async fn a_resume_point_older_than_the_history_is_surfaced_as_a_history_gap() {
    let hub = hub(&["--history-max-events", "2"]);
    let ids = publish(&hub, 0..5).await;
    let stream = EventStream::builder(format!("http://{}/events?topic=t", hub.addr()))
        .last_event_id(&ids[0])
        .build()
        .expect("valid settings");
    let mut client = Client::start(stream);
    let reset = client
        .next_event()
        .await
        .expect_err("events 1 and 2 are gone from the history");
    assert_eq!(reset.reason, ResetReason::HistoryGap);
    assert_eq!(reset.last_event_id, ids[0]);
    assert_eq!(reset.id(), ids[4]);
    // The stream goes on with live events.
    publish(&hub, 5..6).await;
    client.expect_seqs(5..6).await;
}
