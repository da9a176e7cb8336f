//! Operating the hub: health, readiness, metrics, presence, CORS and graceful shutdown.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::http::try_send;
use support::{events_path, json, Hub, Item, Req, Token, Value, PUBLISH_KEY, WAIT};
use tokio::time::Instant;

fn hub(extra: &[&str]) -> Hub {
    Hub::standard(extra)
}

#[tokio::test]
async fn healthz_and_readyz_answer_while_running() {
    let hub = hub(&[]);
    assert_eq!(
        hub.send(Req::get("/healthz")).await.ok_json(),
        json!({"status": "ok"})
    );
    assert_eq!(
        hub.send(Req::get("/readyz")).await.ok_json(),
        json!({"status": "ready"})
    );
}

#[tokio::test]
async fn metrics_count_connections_and_events() {
    let hub = hub(&[]);
    let reply = hub.send(Req::get("/metrics")).await;
    reply.expect_status(200);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "Content-Type {content_type:?}"
    );
    let text = reply.text();
    // Every kind of figure the contract lists is exposed, with HELP and TYPE lines.
    for kind in [
        "connections",
        "subscriptions",
        "published",
        "delivered",
        "bytes",
        "slow_consumer",
        "queue",
        "replay",
        "history",
        "latency",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("# TYPE tidings_") && l.contains(kind)),
            "no metric about {kind:?} in /metrics:\n{text}"
        );
    }

    let start = hub.metrics().await;
    let published = start.get("tidings_events_published_total");
    let delivered = start.get("tidings_events_delivered_total");
    assert_eq!(start.get("tidings_connections"), 0.0);
    let mut a = hub.subscribe(Req::get("/events?topic=t")).await;
    let mut b = hub.subscribe(Req::get("/events?topic=t")).await;
    assert_eq!(hub.metrics().await.get("tidings_connections"), 2.0);
    for i in 0..3 {
        hub.publish(&json!({"topic": "t", "data": i})).await;
    }
    for stream in [&mut a, &mut b] {
        for _ in 0..3 {
            stream.next_event(WAIT).await;
        }
    }
    let now = hub.metrics().await;
    assert_eq!(now.get("tidings_events_published_total") - published, 3.0);
    assert_eq!(now.get("tidings_events_delivered_total") - delivered, 6.0);
    drop((a, b));
    hub.wait_metric("tidings_connections", WAIT, |v| v == 0.0)
        .await;
}

#[tokio::test]
async fn clients_lists_connections_per_user_and_per_pattern() {
    let hub = hub(&[]);
    let admin = Token::new().sub("root").admin().sign();
    let alice = Token::new().sub("alice").subscribe(&["orders/*"]).sign();
    let bob = Token::new().sub("bob").subscribe(&["news"]).sign();
    let mut alices = vec![
        hub.subscribe(Req::get("/events?topic=orders/*").bearer(&alice))
            .await,
        hub.subscribe(Req::get("/events?topic=orders/*").bearer(&alice))
            .await,
    ];
    let _bob = hub
        .subscribe(Req::get("/events?topic=news").bearer(&bob))
        .await;
    let _anonymous = hub.subscribe(Req::get("/events?topic=news")).await;

    let all = hub
        .send(Req::get("/clients").bearer(&admin))
        .await
        .ok_json();
    assert_eq!(all["total"], 4, "{all}");
    assert_eq!(all["users"], json!({"alice": 2, "bob": 1}), "{all}");
    assert_eq!(all["topics"], json!({"orders/*": 2, "news": 2}), "{all}");

    let listed = hub
        .send(Req::get("/clients?user=alice").bearer(&admin))
        .await
        .ok_json();
    assert_eq!(listed["user"], "alice");
    let listed: BTreeSet<String> = serde_json::from_value(listed["connections"].clone())
        .unwrap_or_else(|e| panic!("connections is not a list of strings ({e}): {listed}"));
    let expected: BTreeSet<String> = alices
        .iter()
        .map(|s| s.client_id.clone().unwrap())
        .collect();
    assert_eq!(listed, expected);

    // The publish key is an admin credential too; and closed streams leave the lists.
    alices.clear();
    let deadline = Instant::now() + WAIT;
    loop {
        let all = hub
            .send(Req::get("/clients").bearer(PUBLISH_KEY))
            .await
            .ok_json();
        if all["total"] == 2 && all["users"].get("alice").is_none_or(|n| *n == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed streams still listed: {all}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_cors(headers: &[(String, String)], origin: &str, what: &str) {
    let header = |name| support::http::find_header(headers, name);
    assert_eq!(
        header("access-control-allow-origin"),
        Some(origin),
        "{what}: {headers:?}"
    );
    assert_eq!(
        header("access-control-allow-credentials"),
        Some("true"),
        "{what}"
    );
    let vary = header("vary").unwrap_or_default().to_ascii_lowercase();
    assert!(vary.contains("origin"), "{what}: Vary {vary:?}");
}

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let hub = hub(&[
        "--cors-origin",
        "https://app.example",
        "--cors-origin",
        "https://admin.example",
    ]);
    for origin in ["https://app.example", "https://admin.example"] {
        let reply = hub
            .send(Req::get("/healthz").header("Origin", origin))
            .await;
        assert_cors(&reply.headers, origin, "GET /healthz");
        let stream = hub
            .open(Req::get("/events?topic=t").header("Origin", origin))
            .await
            .expect("200");
        assert_cors(&stream.headers, origin, "GET /events");
        let body = json!({"topic": "t", "text": "x"});
        let req = Req::post("/publish")
            .bearer(PUBLISH_KEY)
            .json(&body)
            .header("Origin", origin);
        assert_cors(&hub.send(req).await.headers, origin, "POST /publish");
        // Errors carry CORS headers too, or a browser could not read them.
        let reply = hub
            .send(Req::post("/publish").header("Origin", origin).json(&body))
            .await;
        reply.expect_error(401, "unauthorized");
        assert_cors(&reply.headers, origin, "a 401");
    }
    for origin in [
        "https://evil.example",
        "https://app.example.evil",
        "http://app.example",
        "null",
    ] {
        let reply = hub
            .send(Req::get("/healthz").header("Origin", origin))
            .await;
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "origin {origin} was allowed"
        );
    }
}

#[tokio::test]
async fn cors_preflights_get_204_with_methods_and_headers() {
    let hub = hub(&["--cors-origin", "https://app.example"]);
    for (path, method) in [
        ("/publish", "POST"),
        ("/events", "GET"),
        ("/notify/alice", "POST"),
    ] {
        let req = Req::new("OPTIONS", path)
            .header("Origin", "https://app.example")
            .header("Access-Control-Request-Method", method)
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type, last-event-id",
            );
        let reply = hub.send(req).await;
        assert_eq!(reply.status, 204, "preflight {path}: {}", reply.text());
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        let methods = reply
            .header("access-control-allow-methods")
            .unwrap_or_default()
            .to_ascii_uppercase();
        assert!(
            methods.contains(method),
            "{path}: allowed methods {methods:?}"
        );
        let headers = reply
            .header("access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        for needed in ["authorization", "content-type", "last-event-id"] {
            assert!(
                headers.contains(needed),
                "{path}: allowed headers {headers:?} lack {needed}"
            );
        }
    }
    let req = Req::new("OPTIONS", "/publish")
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST");
    let reply = hub.send(req).await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        None,
        "a foreign preflight was allowed"
    );
}

#[tokio::test]
async fn a_wildcard_cors_origin_allows_any_origin_without_credentials() {
    let hub = hub(&["--cors-origin", "*"]);
    let reply = hub
        .send(Req::get("/healthz").header("Origin", "https://anything.example"))
        .await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert_eq!(reply.header("access-control-allow-credentials"), None);
}

#[tokio::test]
async fn sigterm_tells_subscribers_to_come_back_closes_streams_and_exits_zero() {
    let mut hub = hub(&[]);
    let mut streams = Vec::new();
    for topic in ["a", "b", "c", "d", "e"] {
        streams.push(hub.subscribe(Req::get(&events_path(&[topic]))).await);
    }
    hub.sigterm();
    // Readiness drops, if the hub still answers at all.
    if let Ok(reply) = try_send(hub.addr(), &Req::get("/readyz")).await {
        if reply.status != 200 {
            reply.expect_error(503, "draining");
            reply.retry_after();
        }
    }
    let mut retries = Vec::new();
    for stream in &mut streams {
        let items = stream.expect_closed(WAIT).await;
        let retry = items.iter().find_map(|item| match item {
            Item::Retry(ms) => Some(*ms),
            _ => None,
        });
        retries
            .push(retry.unwrap_or_else(|| panic!("a drained stream got no `retry:`: {items:?}")));
    }
    let status = hub.wait_exit(WAIT).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(retries.iter().all(|ms| *ms > 0), "retries {retries:?}");
    // Jitter per subscriber, so they do not all come back at once. Five equal draws from any
    // real jitter range are vanishingly unlikely.
    let distinct: BTreeSet<u64> = retries.iter().copied().collect();
    assert!(
        distinct.len() > 1,
        "every subscriber was told the same retry: {retries:?}"
    );
}

#[tokio::test]
async fn sigint_drains_like_sigterm() {
    let mut hub = hub(&[]);
    let mut stream = hub.subscribe(Req::get("/events?topic=t")).await;
    hub.signal("INT");
    let items = stream.expect_closed(WAIT).await;
    assert!(
        items.iter().any(|i| matches!(i, Item::Retry(_))),
        "no retry before close: {items:?}"
    );
    assert!(hub.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn shutdown_is_bounded_even_with_a_subscriber_that_never_reads() {
    let mut hub = hub(&["--shutdown-timeout", "2"]);
    let _stuck = hub
        .subscribe(Req::get("/events?topic=t").recv_buffer(4096))
        .await;
    let _idle = hub.subscribe(Req::get("/events?topic=t")).await;
    for _ in 0..40 {
        hub.publish(&json!({"topic": "t", "text": "z".repeat(16 * 1024)}))
            .await;
    }
    hub.sigterm();
    assert!(
        hub.wait_exit(WAIT).await.success(),
        "stderr:\n{}",
        hub.stderr()
    );
}

#[tokio::test]
async fn json_replies_say_so() {
    let hub = hub(&[]);
    for reply in [
        hub.send(Req::get("/healthz")).await,
        hub.send(
            Req::post("/publish")
                .bearer(PUBLISH_KEY)
                .json(&json!({"topic": "t", "text": "x"})),
        )
        .await,
        hub.send(Req::get("/clients").bearer(PUBLISH_KEY)).await,
    ] {
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "Content-Type {content_type:?}"
        );
        let _: Value = reply.json();
    }
}
