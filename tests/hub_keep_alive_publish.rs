//! `POST /publish` on keep-alive connections, as HTTP clients send it: many requests on one
//! connection, pipelined requests, bodies that arrive late or never, refusals that end the
//! connection, `Connection: close`, CORS, another kind of request after publishes, and an idle
//! connection when the hub drains. `serve` answers plain publishes natively; these promises
//! hold the same on the hyper path (the embedded run).

mod support;

use std::time::Duration;

use support::http::{connect, find_header, read_head, Head};
use support::{Hub, Req, Value, PUBLISH_KEY, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn publish_request(host: &str, body: &str, extra: &str) -> String {
    format!(
        "POST /publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {PUBLISH_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// Reads one response (head and `Content-Length` body); `carry` holds bytes read past the
/// previous response.
async fn response(io: &mut TcpStream, carry: &mut Vec<u8>) -> (Head, String) {
    let mut head = if carry.is_empty() {
        read_head(io, Instant::now() + WAIT).await.expect("a head")
    } else {
        // A pipelined answer may already be in `carry`: put it back in front.
        let mut probe = std::mem::take(carry);
        loop {
            let mut storage = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut storage);
            if let Ok(httparse::Status::Complete(len)) = parsed.parse(&probe) {
                let headers = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break Head {
                    status: parsed.code.unwrap_or(0),
                    headers,
                    rest: probe[len..].to_vec(),
                };
            }
            let mut more = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, io.read(&mut more))
                .await
                .expect("in time")
                .expect("read");
            assert!(n > 0, "closed before a head");
            probe.extend_from_slice(&more[..n]);
        }
    };
    let length: usize = find_header(&head.headers, "content-length")
        .expect("a length")
        .parse()
        .expect("a number");
    while head.rest.len() < length {
        let mut more = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, io.read(&mut more))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed mid-body");
        head.rest.extend_from_slice(&more[..n]);
    }
    *carry = head.rest.split_off(length);
    let body = String::from_utf8(std::mem::take(&mut head.rest)).expect("utf-8");
    (head, body)
}

/// Whether the hub closed the connection (EOF) within the wait.
async fn closed(io: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(WAIT, io.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn id_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).expect("JSON");
    v["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn many_publishes_one_connection_pipelined_or_not_then_another_request() {
    let hub = Hub::standard(&[]);
    let host = hub.addr().to_string();
    let mut stream = hub.subscribe(Req::get("/events?topic=k")).await;
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let mut carry = Vec::new();
    let mut ids = Vec::new();
    for n in 0..20 {
        let body = format!("{{\"topic\":\"k\",\"data\":{n}}}");
        io.write_all(publish_request(&host, &body, "").as_bytes())
            .await
            .expect("write");
        let (head, body) = response(&mut io, &mut carry).await;
        assert_eq!(head.status, 200, "{body}");
        assert_eq!(
            find_header(&head.headers, "content-type"),
            Some("application/json")
        );
        assert!(find_header(&head.headers, "date").is_some(), "a Date");
        ids.push(id_of(&body));
    }
    // Three pipelined in one write, the second a batch: three answers, in order.
    let pipelined = [
        publish_request(&host, r#"{"topic":"k","data":20}"#, ""),
        publish_request(
            &host,
            r#"[{"topic":"k","data":21},{"topic":"k","data":22}]"#,
            "",
        ),
        publish_request(&host, r#"{"topic":"k","data":23}"#, ""),
    ]
    .concat();
    io.write_all(pipelined.as_bytes()).await.expect("write");
    let (_, one) = response(&mut io, &mut carry).await;
    ids.push(id_of(&one));
    let (_, batch) = response(&mut io, &mut carry).await;
    let batch: Value = serde_json::from_str(&batch).expect("JSON");
    for answer in batch.as_array().expect("a batch answer") {
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    let (_, last) = response(&mut io, &mut carry).await;
    ids.push(id_of(&last));
    // The body of a request may come well after its head.
    let body = r#"{"topic":"k","data":24}"#;
    let request = publish_request(&host, body, "");
    let (head_part, body_part) = request.split_at(request.len() - body.len());
    io.write_all(head_part.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    io.write_all(&body_part.as_bytes()[..5])
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    io.write_all(&body_part.as_bytes()[5..])
        .await
        .expect("write");
    let (_, late) = response(&mut io, &mut carry).await;
    ids.push(id_of(&late));
    // Another kind of request on the same connection is still answered.
    io.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let (head, body) = response(&mut io, &mut carry).await;
    assert_eq!(head.status, 200, "{body}");
    for (n, id) in ids.iter().enumerate() {
        let event = stream.next_event(WAIT).await;
        assert_eq!(
            &event.id, id,
            "event {n} in order with the id it was answered"
        );
        assert_eq!(event.data, n.to_string());
    }
}

#[tokio::test]
async fn refusals_before_and_after_the_body_and_connection_close() {
    let hub = Hub::standard(&["--max-body-bytes", "1KiB"]);
    let host = hub.addr().to_string();
    // Too large: 413 without reading the body (natively the connection then ends).
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let big = format!("{{\"topic\":\"k\",\"data\":\"{}\"}}", "x".repeat(2000));
    io.write_all(publish_request(&host, &big, "").as_bytes())
        .await
        .expect("write");
    let (head, body) = response(&mut io, &mut Vec::new()).await;
    assert_eq!(head.status, 413, "{body}");
    // No credentials: 401, and the connection ends.
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let body = r#"{"topic":"k","data":1}"#;
    let request = format!(
        "POST /publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    io.write_all(request.as_bytes()).await.expect("write");
    let (head, answer) = response(&mut io, &mut Vec::new()).await;
    assert_eq!(head.status, 401, "{answer}");
    let error: Value = serde_json::from_str(&answer).expect("a JSON error");
    assert!(error["error"]["code"].is_string(), "{answer}");
    // A body read whole but refused (bad JSON, unknown field): 400, and the connection
    // takes the next request.
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let mut carry = Vec::new();
    for bad in [r#"{"topic":"k","data":"#, r#"{"topic":"k","nope":1}"#] {
        io.write_all(publish_request(&host, bad, "").as_bytes())
            .await
            .expect("write");
        let (head, body) = response(&mut io, &mut carry).await;
        assert_eq!(head.status, 400, "{body}");
    }
    io.write_all(publish_request(&host, r#"{"topic":"k","data":2}"#, "").as_bytes())
        .await
        .expect("write");
    let (head, body) = response(&mut io, &mut carry).await;
    assert_eq!(head.status, 200, "{body}");
    // Connection: close is honoured.
    io.write_all(
        publish_request(&host, r#"{"topic":"k","data":3}"#, "Connection: close\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let (head, body) = response(&mut io, &mut carry).await;
    assert_eq!(head.status, 200, "{body}");
    assert_eq!(find_header(&head.headers, "connection"), Some("close"));
    assert!(closed(&mut io).await, "closed as asked");
}

#[tokio::test]
async fn a_body_that_never_comes_is_answered_408_and_a_chunked_body_still_publishes() {
    let hub = Hub::standard(&["--body-timeout", "300ms"]);
    let host = hub.addr().to_string();
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let request = publish_request(&host, r#"{"topic":"k","data":1}"#, "");
    io.write_all(&request.as_bytes()[..request.len() - 4])
        .await
        .expect("write");
    let (head, body) = response(&mut io, &mut Vec::new()).await;
    assert_eq!(head.status, 408, "{body}");
    assert!(body.contains("body_timeout"), "{body}");
    // Chunked: not the native path, the same answer.
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let body = r#"{"topic":"k","data":5}"#;
    let request = format!(
        "POST /publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {PUBLISH_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    io.write_all(request.as_bytes()).await.expect("write");
    let (head, answer) = response(&mut io, &mut Vec::new()).await;
    assert_eq!(head.status, 200, "{answer}");
    id_of(&answer);
}

#[tokio::test]
async fn cors_and_replays_are_answered_on_keep_alive_publishes() {
    let hub = Hub::standard(&["--cors-origin", "https://app.example"]);
    let host = hub.addr().to_string();
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let mut carry = Vec::new();
    let extra = "Origin: https://app.example\r\nIdempotency-Key: keep-alive-1\r\n";
    let mut answers = Vec::new();
    for _ in 0..2 {
        io.write_all(publish_request(&host, r#"{"topic":"k","data":1}"#, extra).as_bytes())
            .await
            .expect("write");
        let (head, body) = response(&mut io, &mut carry).await;
        assert_eq!(head.status, 200, "{body}");
        assert_eq!(
            find_header(&head.headers, "access-control-allow-origin"),
            Some("https://app.example")
        );
        answers.push((
            find_header(&head.headers, "idempotent-replayed").map(str::to_owned),
            id_of(&body),
        ));
    }
    assert_eq!(answers[0].0, None);
    assert_eq!(
        answers[1].0.as_deref(),
        Some("true"),
        "the retry is a replay"
    );
    assert_eq!(answers[0].1, answers[1].1, "with the first id");
}

#[tokio::test]
async fn an_idle_keep_alive_publisher_does_not_hold_up_a_drain() {
    let mut hub = Hub::standard(&[]);
    let host = hub.addr().to_string();
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    io.write_all(publish_request(&host, r#"{"topic":"k","data":1}"#, "").as_bytes())
        .await
        .expect("write");
    let (head, _) = response(&mut io, &mut Vec::new()).await;
    assert_eq!(head.status, 200);
    hub.sigterm();
    assert!(closed(&mut io).await, "the idle connection is closed");
    let status = hub.wait_exit(WAIT).await;
    assert!(status.success(), "a clean exit: {status:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_publisher_is_closed_after_the_header_timeout() {
    // `serve`'s --header-timeout (an embedding app sets its own server's limits).
    let hub = Hub::standard_binary(&["--header-timeout", "300ms"]);
    let host = hub.addr().to_string();
    let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
    let mut carry = Vec::new();
    // Two publishes a little apart (each well within the timeout) keep the connection.
    for n in 0..2 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let body = format!("{{\"topic\":\"k\",\"data\":{n}}}");
        io.write_all(publish_request(&host, &body, "").as_bytes())
            .await
            .expect("write");
        let (head, _) = response(&mut io, &mut carry).await;
        assert_eq!(head.status, 200);
    }
    // Then silence: closed once --header-timeout has passed.
    let started = Instant::now();
    assert!(
        closed(&mut io).await,
        "an idle keep-alive connection is closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the timeout"
    );
}
