//! Bad input of every kind gets the documented status and JSON error, and never stops the hub
//! from serving everyone else.

mod support;

use std::time::Duration;

use support::http::{connect, raw_exchange, raw_status, read_until_close};
use support::{json, q, Hub, Req, Response, Token, Value, PUBLISH_KEY, SECRET, WAIT};
use tokio::io::AsyncWriteExt;

fn hub(extra: &[&str]) -> Hub {
    Hub::standard(extra)
}

async fn post_raw(hub: &Hub, path: &str, body: &[u8]) -> Response {
    let req = Req::post(path)
        .bearer(PUBLISH_KEY)
        .header("Content-Type", "application/json");
    hub.send(req.body(body.to_vec())).await
}

async fn post(hub: &Hub, path: &str, body: &Value) -> Response {
    hub.send(Req::post(path).bearer(PUBLISH_KEY).json(body))
        .await
}

/// The hub still answers a health check and delivers a publish to a fresh subscriber.
async fn still_serving(hub: &Hub) {
    let health = hub.send(Req::get("/healthz")).await;
    assert_eq!(
        health.status,
        200,
        "healthz after bad input: {}",
        health.text()
    );
    let mut stream = hub.subscribe(Req::get("/events?topic=alive")).await;
    hub.publish(&json!({"topic": "alive", "text": "yes"})).await;
    assert_eq!(stream.next_event(WAIT).await.data, "yes");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_malformed_json() {
    let hub = hub(&[]);
    let bodies: [&[u8]; 8] = [
        b"",
        b"{",
        b"not json",
        b"{\"topic\": \"t\", \"text\": \"x\",}",
        b"{\"topic\": \"t\", \"text\": \"x\"} trailing",
        b"{'topic': 't'}",
        b"\xff\xfe{}",
        b"[{\"topic\": \"t\", \"text\": \"x\"}",
    ];
    let mut wrong = Vec::new();
    for body in bodies {
        for path in ["/publish", "/notify/alice", "/broadcast"] {
            let reply = post_raw(&hub, path, body).await;
            let code = reply.json()["error"]["code"].as_str().map(str::to_owned);
            if reply.status != 400 || code.as_deref() != Some("malformed_json") {
                wrong.push(format!(
                    "{path} {:?}: {} {}",
                    String::from_utf8_lossy(body),
                    reply.status,
                    reply.text()
                ));
            } else {
                reply.expect_error(400, "malformed_json");
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "not answered 400 malformed_json:\n{}",
        wrong.join("\n")
    );
    still_serving(&hub).await;
}

#[tokio::test]
async fn wrong_shapes_and_field_types_are_invalid_request() {
    let hub = hub(&[]);
    let publishes = [
        json!({"topic": 5, "text": "x"}),
        json!({"topics": "t", "text": "x"}),
        json!({"topics": [1], "text": "x"}),
        json!({"user": ["alice"], "text": "x"}),
        json!({"users": "alice", "text": "x"}),
        json!({"topic": "t", "event": 5, "text": "x"}),
        json!({"topic": "t", "event": "a\nb", "text": "x"}),
        json!({"topic": "t", "event": "a\rb", "text": "x"}),
        json!({"topic": "t", "text": 5}),
        json!({"topic": "t", "text": ["x"]}),
        json!({"topic": "t", "retry": "5", "text": "x"}),
        json!({"topic": "t", "retry": -1, "text": "x"}),
        json!({"topic": "t", "retry": 1.5, "text": "x"}),
        json!({"topic": "t", "data": 1, "text": "both"}),
        json!({"topic": "t"}),
        json!({"text": "no target"}),
        json!({"topics": [], "text": "no target"}),
        json!({"users": [], "text": "no target"}),
        json!({"topic": "t", "text": "x", "topik": "typo"}),
        json!("a string"),
        json!(42),
        json!(null),
        json!([1, 2]),
    ];
    for body in publishes {
        post(&hub, "/publish", &body)
            .await
            .expect_error(400, "invalid_request");
    }
    for path in ["/notify/alice", "/broadcast"] {
        let bodies = [
            json!({}),
            json!({"data": 1, "text": "both"}),
            json!({"text": 5}),
            json!({"event": "a\nb", "text": "x"}),
            json!({"retry": "soon", "text": "x"}),
            json!({"text": "x", "extra": true}),
            json!([{"text": "x"}]),
        ];
        for body in bodies {
            let reply = post(&hub, path, &body).await;
            assert_eq!(reply.status, 400, "{path} {body}: {}", reply.text());
            reply.expect_error(400, "invalid_request");
        }
    }
    still_serving(&hub).await;
}

/// Topics that break the rules, as published topics.
fn bad_topics() -> Vec<String> {
    let mut bad: Vec<String> = [
        "", "/", "a//b", "/a", "a/", "a/*", "*", "**", "a/**", "a/*b", "ord*", "a/b**", "a\u{1}b",
        "a\nb", "a\tb", "a\u{7f}b", "a\u{0}b",
    ]
    .iter()
    .map(|t| (*t).to_owned())
    .collect();
    bad.push("x".repeat(257));
    bad.push(format!("{}/{}", "a".repeat(128), "b".repeat(128)));
    bad
}

#[tokio::test]
async fn invalid_topics_in_a_publish_are_invalid_topic() {
    let hub = hub(&[]);
    for topic in bad_topics() {
        let reply = post(&hub, "/publish", &json!({"topic": topic, "text": "x"})).await;
        assert_eq!(reply.status, 400, "topic {topic:?}: {}", reply.text());
        reply.expect_error(400, "invalid_topic");
        let reply = post(
            &hub,
            "/publish",
            &json!({"topics": ["ok", topic], "text": "x"}),
        )
        .await;
        reply.expect_error(400, "invalid_topic");
    }
    // The limits themselves are fine.
    hub.publish(&json!({"topic": "x".repeat(256), "text": "x"}))
        .await;
    hub.publish(&json!({"topic": "ünï/cödé ✓/a b", "text": "x"}))
        .await;
    still_serving(&hub).await;
}

#[tokio::test]
async fn invalid_subscription_patterns_are_invalid_topic() {
    let hub = hub(&[]);
    let token = Token::new().sub("alice").subscribe(&["**"]).sign();
    let bad = [
        "", "/", "a//b", "/a", "a/", "a/*b", "ord*", "**/a", "a/**/b", "a\u{1}b", "a\nb",
        "a\u{7f}b",
    ];
    let long = "x".repeat(257);
    for pattern in bad.iter().copied().chain([long.as_str()]) {
        for req in [
            Req::get(&format!("/events?topic={}", q(pattern))).bearer(&token),
            Req::get(&format!("/events?topic=ok&topic={}", q(pattern))).bearer(&token),
        ] {
            let reply = hub.refused(req).await;
            assert_eq!(reply.status, 400, "pattern {pattern:?}: {}", reply.text());
            reply.expect_error(400, "invalid_topic");
        }
    }
    hub.subscribe(Req::get(&format!("/events?topic={}", "x".repeat(256))).bearer(&token))
        .await;
    still_serving(&hub).await;
}

#[tokio::test]
async fn a_stream_without_topics_needs_a_subject() {
    let hub = hub(&[]);
    let no_sub = Token::new().subscribe(&["**"]).sign();
    hub.refused(Req::get("/events").bearer(&no_sub))
        .await
        .expect_error(400, "invalid_request");
    let with_sub = Token::new().sub("alice").sign();
    hub.subscribe(Req::get("/events").bearer(&with_sub)).await;
}

#[tokio::test]
async fn invalid_user_ids_are_invalid_user() {
    let hub = hub(&[]);
    let long = "u".repeat(257);
    for user in ["%01", "a%0Ab", "a%7Fb", long.as_str()] {
        let reply = post(&hub, &format!("/notify/{user}"), &json!({"text": "x"})).await;
        assert_eq!(reply.status, 400, "notify {user:?}: {}", reply.text());
        reply.expect_error(400, "invalid_user");
    }
    for user in ["", "a\u{1}b", "a\nb", long.as_str()] {
        let reply = post(&hub, "/publish", &json!({"user": user, "text": "x"})).await;
        reply.expect_error(400, "invalid_user");
        let reply = post(
            &hub,
            "/publish",
            &json!({"users": ["ok", user], "text": "x"}),
        )
        .await;
        reply.expect_error(400, "invalid_user");
    }
    // Any printable id up to 256 bytes is fine, percent-encoded or not.
    hub.post_ok(
        &format!("/notify/{}", "u".repeat(256)),
        &json!({"text": "x"}),
    )
    .await;
    hub.post_ok(
        &format!("/notify/{}", q("jane doe@example.com")),
        &json!({"text": "x"}),
    )
    .await;
    still_serving(&hub).await;
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_too_large() {
    let hub = hub(&["--max-body-bytes", "1KiB"]);
    let big = json!({"topic": "t", "text": "x".repeat(2000)});
    post(&hub, "/publish", &big)
        .await
        .expect_error(413, "too_large");
    post(&hub, "/broadcast", &json!({"text": "x".repeat(2000)}))
        .await
        .expect_error(413, "too_large");
    // A body announced as huge is refused without being read.
    let req = Req::post("/publish")
        .bearer(PUBLISH_KEY)
        .header("Content-Type", "application/json")
        .header("Content-Length", "1073741824")
        .body(b"{".to_vec());
    hub.send(req).await.expect_error(413, "too_large");
    // Chunked bodies are counted too.
    let chunk = format!("{{\"topic\":\"t\",\"text\":\"{}\"}}", "y".repeat(3000));
    let chunked = format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let req = Req::post("/publish")
        .bearer(PUBLISH_KEY)
        .header("Content-Type", "application/json")
        .header("Transfer-Encoding", "chunked")
        .body(chunked.into_bytes());
    hub.send(req).await.expect_error(413, "too_large");
    hub.publish(&json!({"topic": "t", "text": "x".repeat(500)}))
        .await;
    still_serving(&hub).await;
}

#[tokio::test]
async fn an_event_over_max_event_bytes_is_too_large_and_not_published() {
    let hub = hub(&["--max-event-bytes", "1KiB"]);
    let mut stream = hub.subscribe(Req::get("/events?topic=t")).await;
    let big = "x".repeat(2000);
    post(&hub, "/publish", &json!({"topic": "t", "text": big}))
        .await
        .expect_error(413, "too_large");
    post(&hub, "/notify/alice", &json!({"data": {"big": big}}))
        .await
        .expect_error(413, "too_large");
    let batch = json!([{"topic": "t", "text": "small"}, {"topic": "t", "text": big}]);
    post(&hub, "/publish", &batch)
        .await
        .expect_error(413, "too_large");
    hub.publish(&json!({"topic": "t", "text": "sentinel"}))
        .await;
    stream.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn a_publish_body_that_is_not_json_content_is_unsupported_media_type() {
    let hub = hub(&[]);
    let body = serde_json::to_vec(&json!({"topic": "t", "text": "x"})).unwrap();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "////",
    ] {
        for path in ["/publish", "/notify/alice", "/broadcast"] {
            let req = Req::post(path)
                .bearer(PUBLISH_KEY)
                .header("Content-Type", content_type);
            let reply = hub.send(req.body(body.clone())).await;
            assert_eq!(
                reply.status,
                415,
                "{path} with {content_type}: {}",
                reply.text()
            );
            reply.expect_error(415, "unsupported_media_type");
        }
    }
    // JSON with parameters is read as JSON; no content type at all is refused (a cross-site
    // "simple" request sends none).
    let req = Req::post("/publish")
        .bearer(PUBLISH_KEY)
        .header("Content-Type", "application/json; charset=utf-8");
    hub.send(req.body(body.clone())).await.expect_status(200);
    hub.send(Req::post("/publish").bearer(PUBLISH_KEY).body(body))
        .await
        .expect_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn unknown_routes_are_not_found() {
    let hub = hub(&[]);
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/events/extra"),
        ("POST", "/publishx"),
        ("POST", "/notify"),
        ("POST", "/notify/a/b"),
        ("GET", "/../etc/passwd"),
    ] {
        let reply = hub.send(Req::new(method, path).bearer(PUBLISH_KEY)).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text());
        reply.expect_error(404, "not_found");
    }
}

#[tokio::test]
async fn a_known_route_with_another_method_is_method_not_allowed() {
    let hub = hub(&[]);
    for (method, path) in [
        ("GET", "/publish"),
        ("PUT", "/publish"),
        ("POST", "/events"),
        ("DELETE", "/events"),
        ("GET", "/notify/alice"),
        ("DELETE", "/broadcast"),
        ("POST", "/healthz"),
        ("POST", "/metrics"),
        ("PATCH", "/clients"),
    ] {
        let reply = hub.send(Req::new(method, path).bearer(PUBLISH_KEY)).await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
        reply.expect_error(405, "method_not_allowed");
    }
}

#[tokio::test]
async fn a_request_body_on_get_events_is_invalid_request() {
    let hub = hub(&[]);
    let req = Req::get("/events?topic=t").body(b"hello".to_vec());
    hub.refused(req).await.expect_error(400, "invalid_request");
    let chunked = Req::get("/events?topic=t")
        .header("Transfer-Encoding", "chunked")
        .body(b"5\r\nhello\r\n0\r\n\r\n".to_vec());
    hub.refused(chunked)
        .await
        .expect_error(400, "invalid_request");
    still_serving(&hub).await;
}

#[tokio::test]
async fn odd_credentials_headers_are_unauthorized() {
    let hub = Hub::start(&["--jwt-secret", SECRET, "--publish-key", PUBLISH_KEY]);
    let body = json!({"topic": "t", "text": "x"});
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "bearer",
        PUBLISH_KEY,
        "Token abc",
        "Bearer a b",
    ] {
        let reply = hub
            .send(
                Req::post("/publish")
                    .header("Authorization", value)
                    .json(&body),
            )
            .await;
        assert_eq!(
            reply.status,
            401,
            "Authorization {value:?}: {}",
            reply.text()
        );
        reply.expect_error(401, "unauthorized");
        let reply = hub
            .refused(Req::get("/events?topic=t").header("Authorization", value))
            .await;
        reply.expect_error(401, "unauthorized");
    }
    for cookie in [
        "tidings_token=",
        "tidings_token",
        "other=1",
        ";;;;",
        "tidings_token=a=b",
    ] {
        let reply = hub
            .refused(Req::get("/events?topic=t").header("Cookie", cookie))
            .await;
        assert_eq!(reply.status, 401, "Cookie {cookie:?}: {}", reply.text());
        reply.expect_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn malformed_http_is_refused_and_others_are_still_served() {
    let hub = hub(&["--header-timeout", "2"]);
    // Every well-formed head asks for `Connection: close`, so a closed connection is the
    // expected end in every case, whatever the status.
    let host = format!("Host: {}\r\nConnection: close\r\n", hub.addr());
    let big = "a".repeat(1_000_000);
    let cases: Vec<(&str, String)> = vec![
        (
            "conflicting content lengths",
            format!("POST /publish HTTP/1.1\r\n{host}Content-Length: 5\r\nContent-Length: 7\r\n\r\nhello"),
        ),
        ("a header without a colon", format!("GET /healthz HTTP/1.1\r\n{host}NoColonHere\r\n\r\n")),
        ("a bad request line", "GET\r\n\r\n".to_owned()),
        ("an unknown HTTP version", format!("GET /healthz HTTP/9.9\r\n{host}\r\n")),
        ("a control byte in a header", format!("GET /healthz HTTP/1.1\r\n{host}X-Odd: a\x01b\r\n\r\n")),
        (
            "a bad chunk size",
            format!("POST /publish HTTP/1.1\r\n{host}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ),
        ("a megabyte header", format!("GET /healthz HTTP/1.1\r\n{host}X-Big: {big}\r\n\r\n")),
    ];
    for (name, bytes) in cases {
        let (reply, closed) = raw_exchange(hub.addr(), bytes.as_bytes(), WAIT).await;
        let status = raw_status(&reply);
        assert!(closed, "{name}: the hub kept the connection open");
        assert!(
            status.is_none_or(|s| s >= 400),
            "{name}: answered {status:?}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    still_serving(&hub).await;
}

#[tokio::test]
async fn garbage_bytes_instead_of_http_are_refused() {
    // Bytes that could still be the start of a request are ended by the header timeout.
    // The header timeout is `serve`'s (axum::serve has none).
    let hub = Hub::standard_binary(&["--header-timeout", "2"]);
    let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 random bytes of a client hello";
    let mut noise = Vec::new();
    let mut rng = support::Rng::new(7);
    noise.extend((0..4096).map(|_| rng.next_u64() as u8));
    for bytes in [
        &tls_hello[..],
        &noise,
        b"\r\n\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ] {
        let (reply, closed) = raw_exchange(hub.addr(), bytes, WAIT).await;
        assert!(closed, "garbage left the connection open");
        let status = raw_status(&reply);
        assert!(
            status.is_none_or(|s| s >= 400),
            "garbage answered {status:?}"
        );
    }
    still_serving(&hub).await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_timed_out_while_others_are_served() {
    // The header timeout is `serve`'s (axum::serve has none).
    let hub = Hub::standard_binary(&["--header-timeout", "1"]);
    let mut slow = Vec::new();
    for i in 0..20 {
        let mut io = connect(hub.addr(), &Req::get("/")).await.expect("connect");
        let partial = format!(
            "GET /events?topic=t HTTP/1.1\r\nHost: {}\r\nX-Slow-{i}: ",
            hub.addr()
        );
        if i % 2 == 0 {
            io.write_all(partial.as_bytes())
                .await
                .expect("write a partial head");
        }
        // Odd ones connect and send nothing at all.
        slow.push(io);
    }
    // Everyone else is served meanwhile.
    for _ in 0..3 {
        still_serving(&hub).await;
    }
    for (i, io) in slow.iter_mut().enumerate() {
        let (reply, closed) = read_until_close(io, Duration::from_secs(10)).await;
        assert!(
            closed,
            "slow client {i} was not disconnected within 10 s of a 1 s header timeout"
        );
        let status = raw_status(&reply);
        assert!(
            status.is_none_or(|s| s == 408 || s == 400),
            "slow client {i} got {status:?}"
        );
    }
    still_serving(&hub).await;
}

#[tokio::test]
async fn a_huge_last_event_id_or_query_is_handled() {
    let hub = hub(&[]);
    hub.publish(&json!({"topic": "t", "text": "first"})).await;
    let req = Req::get("/events?topic=t").header("Last-Event-ID", &"9".repeat(5000));
    let mut stream = hub.subscribe(req).await;
    assert_eq!(stream.next_event(WAIT).await.event, "reset");
    let many_topics: String = (0..5000).map(|i| format!("&x{i}=y")).collect();
    let reply = hub.send(Req::get(&format!("/healthz?{many_topics}"))).await;
    assert!(
        reply.status == 200 || (400..500).contains(&reply.status),
        "got {}",
        reply.status
    );
    still_serving(&hub).await;
}
