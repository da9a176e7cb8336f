//! `GET /events`: what a subscriber sees — the headers, the stream's start, topic patterns,
//! every way to present credentials, heartbeats, per-user delivery and the token's expiry.

mod support;

use std::time::Duration;

use support::{events_path, json, q, Hub, Item, Req, Token, PUBLISH_KEY, SECRET, WAIT};

fn auth_hub(extra: &[&str]) -> Hub {
    let mut args = vec!["--jwt-secret", SECRET, "--publish-key", PUBLISH_KEY];
    args.extend_from_slice(extra);
    Hub::start(&args)
}

#[tokio::test]
async fn stream_headers_arrive_before_any_event_is_published() {
    let hub = auth_hub(&["--public-topic", "news"]);
    // Nothing is ever published: the head must still arrive, flushed at once.
    let stream = hub
        .open(Req::get("/events?topic=news"))
        .await
        .expect("200 for a public topic");
    let content_type = stream.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/event-stream"),
        "Content-Type {content_type:?}"
    );
    let cache = stream.header("cache-control").unwrap_or_default();
    assert!(cache.contains("no-cache"), "Cache-Control {cache:?}");
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
}

#[tokio::test]
async fn stream_starts_with_retry_then_a_connected_event_without_id() {
    let hub = auth_hub(&["--public-topic", "news"]);
    let mut stream = hub.open(Req::get("/events?topic=news")).await.expect("200");
    // expect_preamble checks the order, the event name, the missing id and the clientId.
    let retry = stream.expect_preamble().await;
    assert_eq!(retry, 3000, "the default --retry is 3s");

    let mut other = hub.subscribe(Req::get("/events?topic=news")).await;
    assert_ne!(
        stream.client_id, other.client_id,
        "each connection gets its own clientId"
    );
    // The preamble must not have moved the client's last event id.
    assert_eq!(other.last_event_id(), "");
    let id = hub.publish(&json!({"topic": "news", "data": 1})).await;
    assert_eq!(other.next_event(WAIT).await.id, id);
}

#[tokio::test]
async fn retry_announced_at_the_start_follows_the_retry_option() {
    let hub = auth_hub(&["--public-topic", "news", "--retry", "1500ms"]);
    let mut stream = hub.open(Req::get("/events?topic=news")).await.expect("200");
    assert_eq!(stream.expect_preamble().await, 1500);
}

/// Subscribes anonymously (every topic is public) to `pattern`, publishes each of `topics`
/// with its index as text, then a sentinel on `sentinel_topic`; returns the texts received
/// before the sentinel.
async fn received_for(pattern: &str, topics: &[&str], sentinel_topic: &str) -> Vec<String> {
    let hub = auth_hub(&["--public-topic", "**"]);
    let mut stream = hub.subscribe(Req::get(&events_path(&[pattern]))).await;
    for topic in topics {
        hub.publish(&json!({"topic": topic, "text": topic})).await;
    }
    hub.publish(&json!({"topic": sentinel_topic, "text": "sentinel"}))
        .await;
    let (before, _) = stream.events_until(WAIT, |e| e.data == "sentinel").await;
    before.into_iter().map(|e| e.data).collect()
}

#[tokio::test]
async fn an_exact_topic_receives_only_that_topic() {
    let got = received_for(
        "orders/1",
        &["orders/2", "orders/1", "orders", "orders/1/x"],
        "orders/1",
    )
    .await;
    assert_eq!(got, ["orders/1"]);
}

#[tokio::test]
async fn a_star_matches_exactly_one_segment() {
    let got = received_for(
        "orders/*",
        &[
            "orders",
            "orders/1",
            "orders/1/items",
            "other/1",
            "orders/two",
        ],
        "orders/9",
    )
    .await;
    assert_eq!(got, ["orders/1", "orders/two"]);
}

#[tokio::test]
async fn a_star_in_the_middle_matches_one_segment_there() {
    let got = received_for(
        "t/*/x",
        &["t/1/x", "t/1/y", "t/x", "t/1/2/x", "t/abc/x"],
        "t/s/x",
    )
    .await;
    assert_eq!(got, ["t/1/x", "t/abc/x"]);
}

#[tokio::test]
async fn a_trailing_double_star_matches_one_or_more_segments() {
    let got = received_for(
        "tenant/7/**",
        &[
            "tenant/7",
            "tenant/7/a",
            "tenant/8/a",
            "tenant/7/a/b/c",
            "tenant/70/a",
        ],
        "tenant/7/z",
    )
    .await;
    assert_eq!(got, ["tenant/7/a", "tenant/7/a/b/c"]);
}

#[tokio::test]
async fn a_lone_double_star_matches_every_topic() {
    let got = received_for("**", &["a", "a/b", "x/y/z"], "s").await;
    assert_eq!(got, ["a", "a/b", "x/y/z"]);
}

#[tokio::test]
async fn several_topics_receive_the_union_once_each() {
    let hub = auth_hub(&["--public-topic", "**"]);
    let mut stream = hub
        .subscribe(Req::get(&events_path(&["a", "b", "b/*", "a"])))
        .await;
    hub.publish(&json!({"topic": "a", "text": "a"})).await;
    hub.publish(&json!({"topic": "c", "text": "c"})).await;
    hub.publish(&json!({"topic": "b", "text": "b"})).await;
    hub.publish(&json!({"topic": "b/1", "text": "b/1"})).await;
    // One event on two topics that both match: delivered once.
    hub.publish(&json!({"topics": ["a", "b"], "text": "ab"}))
        .await;
    hub.publish(&json!({"topic": "a", "text": "sentinel"}))
        .await;
    let (before, _) = stream.events_until(WAIT, |e| e.data == "sentinel").await;
    let got: Vec<String> = before.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["a", "b", "b/1", "ab"]);
}

/// A private topic, reachable only with a token that allows it, presented by `req`.
async fn receives_private_topic_with(hub: &Hub, req: Req) {
    let mut stream = hub.subscribe(req).await;
    let id = hub
        .publish(&json!({"topic": "private/x", "data": {"k": "v"}}))
        .await;
    let event = stream.next_event(WAIT).await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (id.as_str(), r#"{"k":"v"}"#)
    );
}

fn private_token() -> String {
    Token::new().sub("alice").subscribe(&["private/*"]).sign()
}

#[tokio::test]
async fn credentials_in_the_authorization_header_are_accepted() {
    let hub = auth_hub(&[]);
    receives_private_topic_with(
        &hub,
        Req::get("/events?topic=private/x").bearer(&private_token()),
    )
    .await;
}

#[tokio::test]
async fn credentials_in_the_access_token_query_parameter_are_accepted() {
    let hub = auth_hub(&[]);
    let path = format!(
        "/events?topic=private/x&access_token={}",
        q(&private_token())
    );
    receives_private_topic_with(&hub, Req::get(&path)).await;
}

#[tokio::test]
async fn credentials_in_the_tidings_token_cookie_are_accepted() {
    let hub = auth_hub(&[]);
    let cookie = format!("theme=dark; tidings_token={}; other=1", private_token());
    receives_private_topic_with(
        &hub,
        Req::get("/events?topic=private/x").header("Cookie", &cookie),
    )
    .await;
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeat_comments() {
    let hub = auth_hub(&["--public-topic", "news", "--heartbeat", "0.2"]);
    let mut stream = hub.subscribe(Req::get("/events?topic=news")).await;
    for _ in 0..2 {
        match stream.next_item(WAIT).await {
            Item::Comment(text) => assert_eq!(text, "heartbeat"),
            other => panic!("an idle stream should only carry heartbeats, got {other:?}"),
        }
    }
    // Heartbeats do not disturb delivery.
    let id = hub
        .publish(&json!({"topic": "news", "text": "after"}))
        .await;
    let event = stream.next_event(WAIT).await;
    assert_eq!((event.id, event.data), (id, "after".to_owned()));
}

#[tokio::test]
async fn a_token_with_a_subject_receives_its_user_events_without_any_topic() {
    let hub = auth_hub(&[]);
    let alice = Token::new().sub("alice").sign();
    let mut stream = hub.subscribe(Req::get("/events").bearer(&alice)).await;
    hub.post_ok(
        "/notify/alice",
        &json!({"event": "ping", "text": "notified"}),
    )
    .await;
    hub.publish(&json!({"user": "alice", "text": "published"}))
        .await;
    hub.publish(&json!({"users": ["bob", "alice"], "text": "listed"}))
        .await;
    hub.publish(&json!({"topic": "users/alice", "text": "a topic, not the user"}))
        .await;
    hub.publish(&json!({"user": "bob", "text": "for bob"}))
        .await;
    hub.post_ok("/notify/alice", &json!({"text": "sentinel"}))
        .await;
    let (before, _) = stream.events_until(WAIT, |e| e.data == "sentinel").await;
    let got: Vec<(String, String)> = before.into_iter().map(|e| (e.event, e.data)).collect();
    assert_eq!(
        got,
        [
            ("ping".to_owned(), "notified".to_owned()),
            ("message".to_owned(), "published".to_owned()),
            ("message".to_owned(), "listed".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_token_with_a_subject_receives_its_user_events_beside_its_topics() {
    let hub = auth_hub(&[]);
    let alice = Token::new().sub("alice").subscribe(&["news"]).sign();
    let mut stream = hub
        .subscribe(Req::get("/events?topic=news").bearer(&alice))
        .await;
    hub.publish(&json!({"topic": "news", "text": "news"})).await;
    hub.post_ok("/notify/alice", &json!({"text": "personal"}))
        .await;
    // Addressed both ways: still one event.
    hub.publish(&json!({"topic": "news", "user": "alice", "text": "both"}))
        .await;
    hub.publish(&json!({"topic": "news", "text": "sentinel"}))
        .await;
    let (before, _) = stream.events_until(WAIT, |e| e.data == "sentinel").await;
    let got: Vec<String> = before.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["news", "personal", "both"]);
}

#[tokio::test]
async fn the_stream_ends_when_the_token_expires() {
    let hub = auth_hub(&["--heartbeat", "0.5"]);
    let token = Token::new()
        .sub("alice")
        .subscribe(&["news"])
        .expires_in(2)
        .sign();
    let mut stream = hub
        .subscribe(Req::get("/events?topic=news").bearer(&token))
        .await;
    // Heartbeats keep flowing until then; the end must come at exp, not at the next write
    // failure or never.
    stream.expect_closed(Duration::from_secs(10)).await;
    // The same token, now expired, is refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    hub.refused(Req::get("/events?topic=news").bearer(&token))
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn anonymous_clients_may_subscribe_to_public_topics_only() {
    let hub = auth_hub(&["--public-topic", "news/*", "--public-topic", "status"]);
    let mut stream = hub
        .subscribe(Req::get(&events_path(&["news/*", "status"])))
        .await;
    let id = hub
        .publish(&json!({"topic": "news/today", "text": "hello"}))
        .await;
    assert_eq!(stream.next_event(WAIT).await.id, id);

    for private in ["secret", "news", "news/**", "**", "status/x"] {
        hub.refused(Req::get(&events_path(&[private])))
            .await
            .expect_error(401, "unauthorized");
    }
}
