//! `serve` answers a connection's first `GET /events` natively; a stream that cannot take that
//! path is served by hyper (chunked) with the same promises: a keep-alive connection whose
//! later request is `GET /events`, and a request with more headers than the native parser
//! reads. In the embedded run every stream takes the hyper path.

mod support;

use support::http::{connect, find_header, read_head, Framing};
use support::{json, Hub, Req, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Reads the (de-chunked) body of an open stream until it contains `needle`.
async fn read_until(io: &mut TcpStream, framing: &mut Framing, body: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + WAIT;
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(body).contains(needle) {
        let n = tokio::time::timeout_at(deadline, io.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(body)))
            .expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(body)
        );
        framing
            .decode(&chunk[..n], body)
            .expect("a valid chunked body");
    }
}

/// Sends `request` on `io` and reads an event stream from it: the head, then `connected`,
/// then a published event.
async fn stream_on(hub: &Hub, io: &mut TcpStream, request: String) {
    io.write_all(request.as_bytes()).await.expect("write");
    let head = read_head(io, Instant::now() + WAIT).await.expect("a head");
    assert_eq!(head.status, 200);
    assert_eq!(
        find_header(&head.headers, "content-type"),
        Some("text/event-stream")
    );
    assert_eq!(
        find_header(&head.headers, "transfer-encoding"),
        Some("chunked"),
        "served by hyper, not natively"
    );
    let mut framing = Framing::of(head.status, &head.headers, "GET");
    let mut body = Vec::new();
    framing.decode(&head.rest, &mut body).expect("a valid body");
    read_until(io, &mut framing, &mut body, "event: connected").await;
    hub.publish(&json!({"topic": "t", "data": {"n": 7}})).await;
    read_until(io, &mut framing, &mut body, "data: {\"n\":7}").await;
}

#[tokio::test]
async fn a_stream_asked_for_after_another_request_on_a_keep_alive_connection_works() {
    let hub = Hub::standard(&[]);
    let mut io = connect(hub.addr(), &Req::get("/healthz"))
        .await
        .expect("connect");
    let host = hub.addr();
    io.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let head = read_head(&mut io, Instant::now() + WAIT)
        .await
        .expect("a head");
    assert_eq!(head.status, 200);
    let length: usize = find_header(&head.headers, "content-length")
        .expect("a length")
        .parse()
        .expect("a number");
    let mut rest = head.rest;
    while rest.len() < length {
        let mut more = [0u8; 256];
        let n = io.read(&mut more).await.expect("read");
        rest.extend_from_slice(&more[..n]);
    }
    let request = format!("GET /events?topic=t HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream_on(&hub, &mut io, request).await;
    assert_eq!(
        hub.metrics().await.get("tidings_connections"),
        1.0,
        "the stream is registered like any other"
    );
}

#[tokio::test]
async fn a_stream_request_with_more_headers_than_the_native_parser_reads_works() {
    let hub = Hub::standard(&[]);
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let mut request = format!("GET /events?topic=t HTTP/1.1\r\nHost: {}\r\n", hub.addr());
    for i in 0..80 {
        request.push_str(&format!("X-Padding-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    stream_on(&hub, &mut io, request).await;
}
