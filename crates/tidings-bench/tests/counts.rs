//! `tidings bench` counts lost and duplicated events exactly.
//!
//! The hub here is a fake started in the test: a tokio `TcpListener` that speaks just enough
//! HTTP/1.1 and SSE, and misbehaves on purpose by a rule the test knows: subscriber `i` never
//! gets event `s` when `(s + i) % 7 == 0`, gets it twice when `(s + i) % 5 == 0`, and the
//! publish of one sequence number is refused with a 500 (so nobody may expect it). Events are
//! written with awkward chunk boundaries so the decoder is exercised too. The bench must
//! report exactly the loss and duplication the rule implies, in both parse modes.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

const BINARY: &str = env!("CARGO_BIN_EXE_tidings-bench");
const SUBSCRIBERS: u64 = 6;
const EVENTS: u64 = 60;
const REFUSED: u64 = 13;

fn dropped(seq: u64, subscriber: u64) -> bool {
    (seq + subscriber).is_multiple_of(7)
}

fn repeated(seq: u64, subscriber: u64) -> bool {
    (seq + subscriber).is_multiple_of(5)
}

type Subscribers = Arc<Mutex<Vec<OwnedWriteHalf>>>;

/// Reads one request (head and Content-Length body); `None` at a clean end of connection.
async fn read_request(
    stream: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            request
                .parse(&buf[..end + 4])
                .expect("the bench sends valid requests");
            let target = request.path.expect("a request target").to_owned();
            let length: usize = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .expect("ascii")
                        .parse()
                        .expect("a number")
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut more = [0u8; 4096];
                let n = stream.read(&mut more).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&more[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            return Some((target, body));
        }
        let mut more = [0u8; 4096];
        let n = stream.read(&mut more).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&more[..n]);
    }
}

/// One SSE event as HTTP chunks, cut in two unequal chunks to exercise the decoder.
fn chunked_event(seq: u64, ts: u64) -> Vec<u8> {
    let event = format!("id: {seq}\ndata: {{\"seq\":{seq},\"ts\":{ts}}}\n\n");
    let (a, b) = event.split_at(event.len() / 3);
    format!("{:x}\r\n{a}\r\n{:X}\r\n{b}\r\n", a.len(), b.len()).into_bytes()
}

fn seq_and_ts(body: &[u8]) -> (u64, u64) {
    let value: Value = serde_json::from_slice(body).expect("the body template is JSON");
    (
        value["seq"].as_u64().expect("a seq"),
        value["ts"].as_u64().expect("a ts"),
    )
}

async fn serve(stream: TcpStream, subscribers: Subscribers) {
    let (mut read, mut write) = stream.into_split();
    let mut buf = Vec::new();
    while let Some((target, body)) = read_request(&mut read, &mut buf).await {
        if target.starts_with("/events") {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
            let hello = "retry: 1000\n\nevent: connected\ndata: {}\n\n";
            let first = format!("{head}{:x}\r\n{hello}\r\n", hello.len());
            write.write_all(first.as_bytes()).await.expect("write head");
            subscribers.lock().await.push(write);
            // Keep the read half open until the bench hangs up.
            let mut sink = [0u8; 64];
            while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        let (seq, ts) = seq_and_ts(&body);
        let reply = if seq == REFUSED {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 7\r\n\r\nrefused".to_owned()
        } else {
            let mut subs = subscribers.lock().await;
            for (index, sub) in subs.iter_mut().enumerate() {
                let index = index as u64;
                if dropped(seq, index) {
                    continue;
                }
                let copies = if repeated(seq, index) { 2 } else { 1 };
                for _ in 0..copies {
                    sub.write_all(&chunked_event(seq, ts))
                        .await
                        .expect("write event");
                }
            }
            let json = format!("{{\"id\":\"{seq}\",\"delivered\":{}}}", subs.len());
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}", json.len())
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn start_fake_hub() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let subscribers: Subscribers = Arc::default();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&subscribers)));
        }
    });
    addr
}

fn expected_counts() -> (u64, u64, u64) {
    let (mut lost, mut duplicated, mut delivered) = (0, 0, 0);
    for subscriber in 0..SUBSCRIBERS {
        for seq in (0..EVENTS).filter(|seq| *seq != REFUSED) {
            if dropped(seq, subscriber) {
                lost += 1;
            } else if repeated(seq, subscriber) {
                duplicated += 1;
                delivered += 2;
            } else {
                delivered += 1;
            }
        }
    }
    (lost, duplicated, delivered)
}

async fn bench_against_fake(parse: &'static str) -> Value {
    let addr = start_fake_hub().await;
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .args(["fanout", "--preset", "naive-axum", "--quiet"])
            .args(["--url", &format!("http://{addr}")])
            .args(["-n", &SUBSCRIBERS.to_string(), "-k", &EVENTS.to_string()])
            .args([
                "--workers",
                "2",
                "--drain",
                "1s",
                "--timeout",
                "60s",
                "--parse",
                parse,
            ])
            .output()
            .expect("run tidings bench")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

fn assert_exact_counts(report: &Value) {
    let (lost, duplicated, delivered) = expected_counts();
    assert!(lost > 0 && duplicated > 0, "the rule must exercise both");
    assert_eq!(report["connected"], SUBSCRIBERS, "{report}");
    assert_eq!(report["sent"], EVENTS, "{report}");
    assert_eq!(report["publish_failed"], 1, "{report}");
    assert_eq!(report["lost"], lost, "{report}");
    assert_eq!(report["duplicated"], duplicated, "{report}");
    assert_eq!(report["deliveries"], delivered, "{report}");
    assert_eq!(
        report["expected_deliveries"],
        (EVENTS - 1) * SUBSCRIBERS,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_scan_counts_dropped_and_repeated_events_exactly() {
    let report = tokio::time::timeout(Duration::from_secs(90), bench_against_fake("fast"))
        .await
        .expect("bounded run");
    assert_exact_counts(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_parser_counts_dropped_and_repeated_events_exactly() {
    let report = tokio::time::timeout(Duration::from_secs(90), bench_against_fake("wire"))
        .await
        .expect("bounded run");
    assert_exact_counts(&report);
}
