//! Reconnection: `Last-Event-ID`, `retry:`, backoff, attempts, timeouts, restart and close.
//! Delays are checked through the values the client reports in `Reconnecting`, never by
//! measuring wall time.

mod support;

use std::time::Duration;

use support::{describe, fast, refused_port, start};
use tidings_client::testing::ScriptServer;
use tidings_client::{CloseReason, Error, SseItem};

fn is_reconnecting(item: &SseItem) -> bool {
    matches!(item, SseItem::Reconnecting { .. })
}

#[tokio::test]
async fn reconnect_sends_the_last_event_id_and_the_first_request_sends_none() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let first = async {
        let mut conn = server.accept().await.expect("connection");
        assert!(conn.request().header_values("last-event-id").is_empty());
        conn.start_stream().await.expect("head");
        conn.send(b"id: 7\ndata: a\n\ndata: b\n\n")
            .await
            .expect("events");
        conn.close().await.expect("close");
    };
    let (_, items) = tokio::join!(first, client.until(is_reconnecting));
    let items: Vec<String> = items.iter().map(describe).collect();
    assert_eq!(items[1..3], ["event message|a|7", "event message|b|7"]);

    let second = server.accept().await.expect("reconnection");
    assert_eq!(second.request().header_values("last-event-id"), ["7"]);
}

#[tokio::test]
async fn an_empty_id_field_clears_the_last_event_id() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let first = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"id: 7\ndata: a\n\nid\ndata: b\n\n")
            .await
            .expect("events");
        conn.close().await.expect("close");
    };
    let (_, items) = tokio::join!(first, client.until(is_reconnecting));
    assert!(
        matches!(&items[2], SseItem::Event(e) if e.id.is_empty()),
        "{items:?}"
    );
    let second = server.accept().await.expect("reconnection");
    assert!(second.request().header_values("last-event-id").is_empty());
}

#[tokio::test]
async fn an_initial_last_event_id_is_sent_on_the_first_request() {
    let server = ScriptServer::bind().await.expect("bind");
    let _client = start(fast(&server.url("/")).last_event_id("41"));
    let conn = server.accept().await.expect("connection");
    assert_eq!(conn.request().header_values("last-event-id"), ["41"]);
}

#[tokio::test]
async fn retry_field_sets_the_reconnection_delay() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let first = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"retry: 40\ndata: x\n\n").await.expect("events");
        conn.close().await.expect("close");
    };
    let (_, items) = tokio::join!(first, client.until(is_reconnecting));
    let items: Vec<String> = items.iter().map(describe).collect();
    assert_eq!(items[1], "retry 40");
    assert_eq!(
        items.last().map(String::as_str),
        Some("reconnecting 40ms #2")
    );
}

#[tokio::test]
async fn failures_in_a_row_double_the_delay_up_to_the_cap_then_max_attempts_stops() {
    let url = format!("http://127.0.0.1:{}/", refused_port().await);
    let mut client = start(
        fast(&url)
            .max_delay(Duration::from_millis(40))
            .max_attempts(5),
    );
    let items = client.until(|i| matches!(i, SseItem::Closed(_))).await;
    let reconnects: Vec<String> = items
        .iter()
        .filter(|i| is_reconnecting(i))
        .map(describe)
        .collect();
    assert_eq!(
        reconnects,
        [
            "reconnecting 10ms #2",
            "reconnecting 20ms #3",
            "reconnecting 40ms #4",
            "reconnecting 40ms #5"
        ]
    );
    let errors: Vec<bool> = items
        .iter()
        .filter_map(|i| match i {
            SseItem::Error {
                error: Error::Connect(_),
                will_retry,
            } => Some(*will_retry),
            _ => None,
        })
        .collect();
    assert_eq!(errors, [true, true, true, true, false]);
    assert!(matches!(
        items.last(),
        Some(SseItem::Closed(CloseReason::AttemptsExhausted))
    ));
    assert!(client.ended().await);
}

#[tokio::test]
async fn max_attempts_counts_connections_that_open_and_then_drop() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).max_attempts(3));
    let serve = async {
        for _ in 0..3 {
            let mut conn = server.accept().await.expect("connection");
            conn.start_stream().await.expect("head");
            conn.send(b"data: hello\n\n").await.expect("event");
            conn.close().await.expect("close");
        }
    };
    let (_, items) = tokio::join!(serve, client.until(|i| matches!(i, SseItem::Closed(_))));
    let events = items
        .iter()
        .filter(|i| matches!(i, SseItem::Event(_)))
        .count();
    assert_eq!(events, 3);
    assert!(matches!(
        items.last(),
        Some(SseItem::Closed(CloseReason::AttemptsExhausted))
    ));
    let fourth = server.accept_within(Duration::from_millis(300)).await;
    assert!(fourth.is_err(), "no fourth connection");
}

// On the paused clock: the 400 ms the stream stays open pass without waiting, and the delays
// the client reports are exact.
#[tokio::test(start_paused = true)]
async fn a_stream_that_stayed_healthy_starts_the_attempt_count_and_backoff_again() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).healthy_after(Duration::from_millis(50)));
    // Two quick failures grow the delay...
    for _ in 0..2 {
        let conn = server.accept().await.expect("connection");
        conn.respond(503, &[], b"").await.expect("503");
    }
    // ...then a stream that stays open past `healthy_after` resets it.
    let serve = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        tokio::time::sleep(Duration::from_millis(400)).await;
        conn.close().await.expect("close");
    };
    let collect = async {
        let mut items = Vec::new();
        for _ in 0..3 {
            items.extend(client.until(is_reconnecting).await);
        }
        items
    };
    let (_, items) = tokio::join!(serve, collect);
    let reconnects: Vec<String> = items
        .iter()
        .filter(|i| is_reconnecting(i))
        .map(describe)
        .collect();
    assert_eq!(
        reconnects,
        [
            "reconnecting 10ms #2",
            "reconnecting 20ms #3",
            "reconnecting 10ms #1"
        ]
    );
}

#[tokio::test]
async fn server_error_is_retried_and_the_stream_recovers() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let serve = async {
        let conn = server.accept().await.expect("connection");
        conn.respond(500, &[("Content-Type", "text/plain")], b"oops")
            .await
            .expect("500");
        let mut conn = server.accept().await.expect("reconnection");
        conn.start_stream().await.expect("head");
        conn.send(b"data: back\n\n").await.expect("event");
        conn
    };
    let (_conn, items) = tokio::join!(serve, client.until(|i| matches!(i, SseItem::Event(_))));
    let items: Vec<String> = items.iter().map(describe).collect();
    assert_eq!(
        items,
        [
            "error retry=true the server answered 500 Internal Server Error",
            "reconnecting 10ms #2",
            "open 200",
            "event message|back|"
        ]
    );
}

#[tokio::test]
async fn too_many_requests_waits_at_least_the_retry_after() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let serve = async {
        let conn = server.accept().await.expect("connection");
        conn.respond(429, &[("Retry-After", "3")], b"")
            .await
            .expect("429");
    };
    let (_, items) = tokio::join!(serve, client.until(is_reconnecting));
    assert!(matches!(
        &items[0],
        SseItem::Error { error, will_retry: true } if error.retry_after() == Some(Duration::from_secs(3))
    ));
    assert!(matches!(
        items[1],
        SseItem::Reconnecting { delay, .. } if delay >= Duration::from_secs(3)
    ));
}

#[tokio::test]
async fn read_timeout_reconnects_a_silent_connection() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).read_timeout(Duration::from_millis(100)));
    let serve = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"id: 1\ndata: then silence\n\n")
            .await
            .expect("event");
        // Silent, but open: only the timeout can notice.
        let closed_by_client = conn.client_closed_within(support::WAIT).await;
        let again = server.accept().await.expect("reconnection");
        (closed_by_client, again)
    };
    let ((closed_by_client, again), items) = tokio::join!(serve, client.until(is_reconnecting));
    assert!(matches!(
        &items[2],
        SseItem::Error {
            error: Error::ReadTimeout(_),
            will_retry: true
        }
    ));
    assert!(closed_by_client, "the dead connection is closed");
    assert_eq!(again.request().header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn bytes_that_complete_nothing_still_keep_the_read_timeout_away() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).read_timeout(Duration::from_millis(500)));
    let serve = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        // One byte every 25 ms for well over the timeout, then the end of the event.
        conn.send_in_pieces(b"data: slow but alive\n\n", 1, Duration::from_millis(25))
            .await
            .expect("pieces");
        conn
    };
    let (_conn, event) = tokio::join!(serve, client.next_event());
    assert_eq!(event.data, "slow but alive");
}

#[tokio::test]
async fn restart_reconnects_at_once_without_an_error() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).initial_delay(Duration::from_secs(60)));
    let handle = client.handle.clone();
    let first = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"id: 3\ndata: before\n\n").await.expect("event");
        conn
    };
    let (mut conn, event) = tokio::join!(first, client.next_event());
    assert_eq!(event.data, "before");

    handle.restart();
    let second = async {
        let closed = conn.client_closed_within(support::WAIT).await;
        let mut again = server.accept().await.expect("reconnection");
        again.start_stream().await.expect("head");
        again.send(b"data: after\n\n").await.expect("event");
        (closed, again)
    };
    let ((closed, again), items) =
        tokio::join!(second, client.until(|i| matches!(i, SseItem::Event(_))));
    assert!(closed, "the old connection is dropped");
    assert_eq!(again.request().header("last-event-id"), Some("3"));
    let items: Vec<String> = items.iter().map(describe).collect();
    assert_eq!(
        items,
        ["reconnecting 0ms #1", "open 200", "event message|after|3"]
    );
}

#[tokio::test]
async fn restart_cuts_a_long_wait_short() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).initial_delay(Duration::from_secs(60)));
    let first = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.close().await.expect("close");
    };
    let (_, items) = tokio::join!(first, client.until(is_reconnecting));
    assert_eq!(describe(&items[2]), "reconnecting 60000ms #2");
    client.handle.clone().restart();
    let (conn, item) = tokio::join!(server.accept(), client.next());
    conn.expect("reconnected long before the minute is up");
    assert_eq!(describe(&item), "reconnecting 0ms #1");
}

#[tokio::test]
async fn close_ends_the_stream_and_drops_the_connection() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let first = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"data: x\n\n").await.expect("event");
        conn
    };
    let (mut conn, _) = tokio::join!(first, client.next_event());
    client.handle.clone().close();
    assert!(matches!(
        client.next().await,
        SseItem::Closed(CloseReason::Requested)
    ));
    assert!(client.ended().await);
    assert!(conn.client_closed_within(support::WAIT).await);
}
