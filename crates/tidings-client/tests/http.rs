//! HTTP behaviour: the request the client sends, the statuses and content types it accepts or
//! refuses, and redirects.

mod support;

use std::time::Duration;

use http::Method;
use support::{describe, fast, start};
use tidings_client::testing::ScriptServer;
use tidings_client::{BuildError, CloseReason, Error, EventStream, ResetReason, SseItem};

fn is_closed(item: &SseItem) -> bool {
    matches!(item, SseItem::Closed(_))
}

#[tokio::test]
async fn every_request_asks_for_an_uncached_event_stream_with_the_callers_headers() {
    let server = ScriptServer::bind().await.expect("bind");
    let _client = start(
        fast(&server.url("/events?topic=a"))
            .header("X-Tenant", "7")
            .header("Accept", "text/html")
            .bearer_token("secret"),
    );
    for _ in 0..2 {
        let conn = server.accept().await.expect("connection");
        let request = conn.request();
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/events?topic=a");
        assert_eq!(request.header_values("accept"), ["text/event-stream"]);
        assert_eq!(request.header_values("cache-control"), ["no-cache"]);
        assert_eq!(request.header("x-tenant"), Some("7"));
        assert_eq!(request.header("authorization"), Some("Bearer secret"));
        // Dropped without an answer: the client reconnects, with the same headers.
        drop(conn);
    }
}

#[tokio::test]
async fn method_and_body_are_sent_on_every_connection() {
    for method in ["POST", "REPORT"] {
        let server = ScriptServer::bind().await.expect("bind");
        let _client = start(
            fast(&server.url("/"))
                .method(Method::from_bytes(method.as_bytes()).expect("valid method"))
                .header("content-type", "application/json")
                .body(r#"{"hello":"world"}"#),
        );
        for _ in 0..2 {
            let conn = server.accept().await.expect("connection");
            let request = conn.request();
            assert_eq!(request.method, method);
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert_eq!(request.body, br#"{"hello":"world"}"#);
        }
    }
}

#[tokio::test]
async fn no_content_stops_without_reconnecting() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let conn = server.accept().await.expect("connection");
    conn.respond(204, &[], b"").await.expect("204");
    assert!(matches!(
        client.next().await,
        SseItem::Closed(CloseReason::NoContent)
    ));
    assert!(client.ended().await);
    let again = server.accept_within(Duration::from_millis(300)).await;
    assert!(again.is_err(), "no reconnection after 204");
}

#[tokio::test]
async fn unauthorized_stops_with_a_typed_error() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let conn = server.accept().await.expect("connection");
    conn.respond(401, &[("Content-Type", "application/json")], b"{}")
        .await
        .expect("401");
    let items = client.until(is_closed).await;
    assert!(matches!(
        &items[0],
        SseItem::Error { error: Error::Status { status, .. }, will_retry: false } if status.as_u16() == 401
    ));
    assert!(matches!(items[1], SseItem::Closed(CloseReason::Fatal)));
    let again = server.accept_within(Duration::from_millis(300)).await;
    assert!(again.is_err(), "no reconnection after 401");
}

#[tokio::test]
async fn a_response_that_is_not_an_event_stream_is_fatal() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let conn = server.accept().await.expect("connection");
    conn.respond(200, &[("Content-Type", "text/html")], b"<html>")
        .await
        .expect("200");
    let items = client.until(is_closed).await;
    assert!(matches!(
        &items[0],
        SseItem::Error { error: Error::ContentType { found: Some(found) }, will_retry: false }
            if found == "text/html"
    ));
}

#[tokio::test]
async fn a_relative_redirect_is_followed_and_the_final_url_reported() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/a/events")));
    let conn = server.accept().await.expect("connection");
    conn.respond(307, &[("Location", "../moved?x=1")], b"")
        .await
        .expect("307");
    let mut conn = server.accept().await.expect("redirected");
    assert_eq!(conn.request().target, "/moved?x=1");
    assert_eq!(conn.request().header("accept"), Some("text/event-stream"));
    conn.start_stream().await.expect("head");
    match client.next().await {
        SseItem::Open(open) => assert_eq!(
            open.url.path_and_query().map(|p| p.as_str()),
            Some("/moved?x=1")
        ),
        other => panic!("expected open, got {other:?}"),
    }
    // A reconnection starts again from the URL the caller gave.
    conn.close().await.expect("close");
    let again = server.accept().await.expect("reconnection");
    assert_eq!(again.request().target, "/a/events");
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_limit() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/loop")).max_redirects(3));
    for _ in 0..4 {
        let conn = server.accept().await.expect("connection");
        conn.respond(302, &[("Location", "/loop")], b"")
            .await
            .expect("302");
    }
    let items = client.until(is_closed).await;
    let items: Vec<String> = items.iter().map(describe).collect();
    assert_eq!(
        items,
        [
            "error retry=false more than 3 redirects in a row",
            "closed Fatal"
        ]
    );
    let fifth = server.accept_within(Duration::from_millis(300)).await;
    assert!(fifth.is_err(), "no request past the limit");
}

#[tokio::test]
async fn see_other_turns_a_post_into_a_get_without_its_body() {
    let server = ScriptServer::bind().await.expect("bind");
    let _client = start(
        fast(&server.url("/"))
            .method(Method::POST)
            .header("content-type", "text/plain")
            .body("query"),
    );
    let conn = server.accept().await.expect("connection");
    assert_eq!(conn.request().method, "POST");
    conn.respond(303, &[("Location", "/result")], b"")
        .await
        .expect("303");
    let conn = server.accept().await.expect("redirected");
    let request = conn.request();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("GET", "/result")
    );
    assert!(request.body.is_empty());
    assert_eq!(request.header("content-type"), None);
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let first = ScriptServer::bind().await.expect("bind");
    let other = ScriptServer::bind().await.expect("bind");
    let _client = start(
        fast(&first.url("/"))
            .bearer_token("secret")
            .header("x-kept", "yes"),
    );
    let conn = first.accept().await.expect("connection");
    assert_eq!(
        conn.request().header("authorization"),
        Some("Bearer secret")
    );
    conn.respond(308, &[("Location", &other.url("/elsewhere"))], b"")
        .await
        .expect("308");
    let conn = other.accept().await.expect("redirected");
    assert_eq!(conn.request().header("authorization"), None);
    assert_eq!(conn.request().header("x-kept"), Some("yes"));
}

#[tokio::test]
async fn the_hub_reset_event_is_surfaced_and_can_be_left_generic() {
    const RESET: &[u8] =
        b"event: reset\nid: 12\ndata: {\"reason\":\"history-gap\",\"lastEventId\":\"3\"}\n\n";
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let mut conn = server.accept().await.expect("connection");
    conn.start_stream().await.expect("head");
    conn.send(RESET).await.expect("reset");
    let items = client.until(|i| matches!(i, SseItem::Reset(_))).await;
    let Some(SseItem::Reset(reset)) = items.last() else {
        unreachable!()
    };
    assert_eq!(reset.reason, ResetReason::HistoryGap);
    assert_eq!((reset.last_event_id.as_str(), reset.id()), ("3", "12"));

    let mut generic = start(fast(&server.url("/")).recognise_reset(false));
    let mut conn = server.accept().await.expect("connection");
    conn.start_stream().await.expect("head");
    conn.send(RESET).await.expect("reset");
    let event = generic.next_event().await;
    assert_eq!((event.event.as_str(), event.id.as_str()), ("reset", "12"));
}

#[tokio::test]
async fn an_unsupported_scheme_is_refused_before_connecting() {
    let err = EventStream::builder("ftp://example.invalid/").build().err();
    assert_eq!(err, Some(BuildError::UnsupportedScheme("ftp".into())));
    // https is supported (rustls; tests/hub_tls.rs connects to a real hub over it).
    assert!(EventStream::builder("https://example.invalid/")
        .build()
        .is_ok());
}
