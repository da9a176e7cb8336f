//! An open `GET /events` response: the body is de-chunked and fed to `tidings_wire::Parser`
//! (comments on), and the items come out one at a time, each wait bounded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tidings_wire::{Item, MessageEvent, Parser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::http::{connect, find_header, read_head, Framing, Req, Response};
use super::WAIT;

/// Why no next item came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The hub ended the stream (end of body, connection closed or reset).
    Closed,
    /// Nothing came within the wait.
    TimedOut,
    /// The bytes were not a valid chunked body or event stream.
    Broken(String),
}

/// One subscriber connection.
#[derive(Debug)]
pub struct SseStream {
    io: TcpStream,
    framing: Framing,
    parser: Parser,
    items: VecDeque<Item>,
    closed: bool,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The `clientId` of the `connected` event, once [`SseStream::expect_preamble`] read it.
    pub client_id: Option<String>,
    /// Every body byte received so far (after de-chunking), for failure messages.
    received: usize,
    /// The id of the last event handed to the test. Not the parser's: the parser may have
    /// dispatched events the test has not taken yet, and resuming from those would skip them.
    last_id: String,
}

impl SseStream {
    /// Sends `req` (a `GET /events…`) and waits for the response head. A non-200 reply is read
    /// in full and returned as `Err`.
    pub async fn open(addr: SocketAddr, req: &Req) -> Result<SseStream, Response> {
        let deadline = Instant::now() + WAIT;
        let mut io = connect(addr, req)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        io.write_all(&req.to_bytes(addr))
            .await
            .unwrap_or_else(|e| panic!("send {}: {e}", req.target));
        let head = read_head(&mut io, deadline)
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e}", req.method, req.target));
        if head.status != 200 {
            let mut framing = Framing::of(head.status, &head.headers, &req.method);
            let mut body = Vec::new();
            let done = framing.decode(&head.rest, &mut body).unwrap_or(true)
                || matches!(framing, Framing::Length(0));
            if !done {
                let more = read_response_body(&mut io, &mut framing, &mut body, deadline).await;
                if let Err(e) = more {
                    panic!("{} {}: {} reply: {e}", req.method, req.target, head.status);
                }
            }
            return Err(Response {
                status: head.status,
                headers: head.headers,
                body,
            });
        }
        let framing = Framing::of(head.status, &head.headers, &req.method);
        let mut stream = SseStream {
            io,
            framing,
            parser: Parser::new().with_comments(true),
            items: VecDeque::new(),
            closed: false,
            status: head.status,
            headers: head.headers,
            client_id: None,
            received: 0,
            last_id: String::new(),
        };
        stream.absorb(&head.rest);
        Ok(stream)
    }

    /// The first response header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The last event ID of the events taken so far: what this client would send as
    /// `Last-Event-ID` if it reconnected now.
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    fn absorb(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.closed {
            return;
        }
        let mut body = Vec::with_capacity(bytes.len());
        match self.framing.decode(bytes, &mut body) {
            Ok(done) => self.closed |= done,
            Err(e) => panic!("the hub sent a broken chunked body: {e}"),
        }
        self.received += body.len();
        let mut out = Vec::new();
        if let Err(e) = self.parser.feed(&body, &mut out) {
            panic!("the hub sent an unparsable event stream: {e}");
        }
        self.items.extend(out);
    }

    /// The next item, or why none came within `wait`.
    pub async fn try_next_item(&mut self, wait: Duration) -> Result<Item, End> {
        let deadline = Instant::now() + wait;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(item) = self.items.pop_front() {
                if let Item::Event(event) = &item {
                    self.last_id.clone_from(&event.id);
                }
                return Ok(item);
            }
            if self.closed {
                return Err(End::Closed);
            }
            match timeout_at(deadline, self.io.read(&mut chunk)).await {
                Err(_) => return Err(End::TimedOut),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.closed = true;
                    self.parser.finish();
                }
                Ok(Ok(n)) => {
                    let bytes = chunk[..n].to_vec();
                    self.absorb(&bytes);
                }
            }
        }
    }

    /// The next item; fails the test if the stream ends or nothing comes within `wait`.
    pub async fn next_item(&mut self, wait: Duration) -> Item {
        match self.try_next_item(wait).await {
            Ok(item) => item,
            Err(end) => panic!(
                "expected an item on the stream, got {end:?} after {} bytes",
                self.received
            ),
        }
    }

    /// The next dispatched event, skipping comments and `retry` items, or why none came.
    pub async fn try_next_event(&mut self, wait: Duration) -> Result<MessageEvent, End> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Item::Event(event) = self.try_next_item(left).await? {
                return Ok(event);
            }
        }
    }

    /// The next dispatched event, skipping comments and `retry` items; fails the test if none
    /// comes within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> MessageEvent {
        match self.try_next_event(wait).await {
            Ok(event) => event,
            Err(end) => panic!(
                "expected an event on the stream, got {end:?} after {} bytes",
                self.received
            ),
        }
    }

    /// Reads the documented start of every stream: `retry: <ms>` then the `connected` event
    /// with `{"clientId": "..."}` and no `id:`. Returns the announced retry in ms.
    pub async fn expect_preamble(&mut self) -> u64 {
        let retry = match self.next_item(WAIT).await {
            Item::Retry(ms) => ms,
            other => panic!("a stream must start with `retry:`, it started with {other:?}"),
        };
        let connected = self.next_item(WAIT).await;
        let Item::Event(connected) = connected else {
            panic!("after `retry:` a stream must send the `connected` event, got {connected:?}");
        };
        assert_eq!(
            connected.event, "connected",
            "second item of the stream: {connected:?}"
        );
        assert_eq!(
            connected.id, "",
            "`connected` must not carry an id: {connected:?}"
        );
        let data: Value = serde_json::from_str(&connected.data)
            .unwrap_or_else(|e| panic!("`connected` data is not JSON ({e}): {:?}", connected.data));
        let client_id = data
            .get("clientId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| panic!("`connected` data has no clientId string: {data}"));
        self.client_id = Some(client_id.to_owned());
        retry
    }

    /// Waits for the hub to end the stream and returns the items that came before the end.
    /// Fails the test if the stream is still open after `wait`.
    pub async fn expect_closed(&mut self, wait: Duration) -> Vec<Item> {
        let deadline = Instant::now() + wait;
        let mut items = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next_item(left).await {
                Ok(item) => items.push(item),
                Err(End::Closed) => return items,
                Err(end) => panic!(
                    "expected the hub to end the stream, got {end:?}; items before: {items:?}"
                ),
            }
        }
    }

    /// Reads events until one satisfies `pred`, returning the events before it and that one.
    pub async fn events_until(
        &mut self,
        wait: Duration,
        mut pred: impl FnMut(&MessageEvent) -> bool,
    ) -> (Vec<MessageEvent>, MessageEvent) {
        let deadline = Instant::now() + wait;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.try_next_event(left).await {
                Ok(event) => event,
                Err(end) => panic!(
                    "stream gave {end:?} before the awaited event; events before: {before:?}"
                ),
            };
            if pred(&event) {
                return (before, event);
            }
            before.push(event);
        }
    }

    /// Asserts that the next event is the one whose data is `sentinel`, i.e. that nothing
    /// else was delivered before it. Events arrive in publish order, so publishing a sentinel
    /// after a forbidden event proves the forbidden one never came, without waiting on time.
    pub async fn expect_next_data(&mut self, sentinel: &str) -> MessageEvent {
        let event = self.next_event(WAIT).await;
        assert_eq!(
            event.data, sentinel,
            "expected the event {sentinel:?} next, got {event:?}"
        );
        event
    }
}

async fn read_response_body(
    io: &mut TcpStream,
    framing: &mut Framing,
    body: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), String> {
    let mut chunk = [0u8; 8192];
    loop {
        match timeout_at(deadline, io.read(&mut chunk)).await {
            Err(_) => return Err("timed out reading the body".into()),
            Ok(Ok(0)) if framing.ends_at_close() => return Ok(()),
            Ok(Ok(0)) => return Err("connection closed inside the body".into()),
            Ok(Err(e)) => return Err(format!("read error: {e}")),
            Ok(Ok(n)) => {
                if framing.decode(&chunk[..n], body)? {
                    return Ok(());
                }
            }
        }
    }
}
