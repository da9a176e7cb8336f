//! The stream as the network delivers it: line endings cut anywhere, a BOM, invalid UTF-8, a
//! connection dropped in the middle of an event. Each test runs the real client against a
//! scripted server on loopback that writes exact bytes.

mod support;

use std::time::Duration;

use support::{describe, fast, start, Client};
use tidings_client::testing::ScriptServer;
use tidings_client::{Error, SseItem};

/// One stream of a comment and two events, with `end` as every line ending.
fn script(end: &str) -> Vec<u8> {
    format!(
        ": hi{end}id: 1{end}event: greet{end}data: a{end}data: b{end}{end}data: second{end}{end}"
    )
    .into_bytes()
}

const EXPECTED: [&str; 3] = ["comment hi", "event greet|a\nb|1", "event message|second|1"];

/// What the client yields for one connection, after its `Open`, up to the stream's end.
async fn items_of_one_connection(client: &mut Client) -> Vec<String> {
    let items = client.until(|i| matches!(i, SseItem::Error { .. })).await;
    let items: Vec<String> = items
        .iter()
        .filter(|i| !matches!(i, SseItem::Open(_) | SseItem::Reconnecting { .. }))
        .map(describe)
        .collect();
    // The last one is the end of the stream.
    assert!(
        items
            .last()
            .is_some_and(|l| l.contains("closed the stream")),
        "{items:?}"
    );
    items[..items.len() - 1].to_vec()
}

#[tokio::test]
async fn each_line_ending_cut_at_every_position_yields_the_same_items() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).initial_delay(Duration::ZERO));
    for end in ["\n", "\r", "\r\n"] {
        let bytes = script(end);
        for cut in 0..=bytes.len() {
            let (server, client) = (&server, &mut client);
            let serve = async {
                let mut conn = server.accept().await.expect("connection");
                conn.start_stream().await.expect("head");
                conn.send(&bytes[..cut]).await.expect("first part");
                tokio::time::sleep(Duration::from_millis(2)).await;
                conn.send(&bytes[cut..]).await.expect("second part");
                conn.close().await.expect("close");
            };
            let (_, items) = tokio::join!(serve, items_of_one_connection(client));
            assert_eq!(items, EXPECTED, "line end {end:?} cut at {cut}");
        }
    }
}

#[tokio::test]
async fn each_line_ending_sent_byte_by_byte_yields_the_same_items() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).initial_delay(Duration::ZERO));
    for end in ["\n", "\r", "\r\n"] {
        let bytes = script(end);
        let serve = async {
            let mut conn = server.accept().await.expect("connection");
            conn.start_stream().await.expect("head");
            conn.send_in_pieces(&bytes, 1, Duration::from_millis(1))
                .await
                .expect("pieces");
            conn.close().await.expect("close");
        };
        let (_, items) = tokio::join!(serve, items_of_one_connection(&mut client));
        assert_eq!(items, EXPECTED, "line end {end:?}");
    }
}

#[tokio::test]
async fn cr_only_event_is_dispatched_without_waiting_for_more_bytes() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let serve = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"data: now\r\r").await.expect("event");
        conn
    };
    // The connection stays open: the event must come from the CR alone.
    let (_conn, event) = tokio::join!(serve, client.next_event());
    assert_eq!(event.data, "now");
}

#[tokio::test]
async fn a_bom_is_skipped_at_the_start_of_every_connection_even_split_and_only_once() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).initial_delay(Duration::ZERO));
    for _ in 0..2 {
        let serve = async {
            let mut conn = server.accept().await.expect("connection");
            conn.start_stream().await.expect("head");
            let bytes = b"\xEF\xBB\xBFdata: \xEF\xBB\xBFkept\n\n";
            conn.send_in_pieces(bytes, 1, Duration::from_millis(1))
                .await
                .expect("pieces");
            conn.close().await.expect("close");
        };
        let (_, items) = tokio::join!(serve, client.until(|i| matches!(i, SseItem::Event(_))));
        assert!(
            matches!(items.last(), Some(SseItem::Event(e)) if e.data == "\u{FEFF}kept"),
            "{items:?}"
        );
    }
}

#[tokio::test]
async fn invalid_utf8_is_replaced_and_the_stream_goes_on() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let serve = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"data: \xFF\xFEok\n\ndata: next\n\n")
            .await
            .expect("events");
        conn
    };
    let (_conn, first) = tokio::join!(serve, client.next_event());
    assert_eq!(first.data, "\u{FFFD}\u{FFFD}ok");
    assert_eq!(client.next_event().await.data, "next");
}

#[tokio::test]
async fn an_event_cut_off_by_a_dropped_connection_is_discarded_with_its_id() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")));
    let first = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"id: 1\ndata: whole\n\nid: 2\ndata: cut")
            .await
            .expect("events");
        conn.close().await.expect("close");
    };
    let (_, items) = tokio::join!(
        first,
        client.until(|i| matches!(i, SseItem::Reconnecting { .. }))
    );
    let items: Vec<String> = items.iter().map(describe).collect();
    assert_eq!(items[1], "event message|whole|1");
    assert!(items[2].starts_with("error retry=true"), "{items:?}");
    assert_eq!(items.len(), 4, "nothing of the cut event: {items:?}");

    // The next connection resumes from the last complete event, and the cut data does not
    // leak into the next event.
    let second = async {
        let mut conn = server.accept().await.expect("reconnection");
        assert_eq!(conn.request().header("last-event-id"), Some("1"));
        conn.start_stream().await.expect("head");
        conn.send(b"data: fresh\n\n").await.expect("event");
        conn
    };
    let (_conn, event) = tokio::join!(second, client.next_event());
    assert_eq!((event.data.as_str(), event.id.as_str()), ("fresh", "1"));
}

#[tokio::test]
async fn a_line_over_the_limit_ends_the_stream_with_a_typed_error() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).max_line_len(16));
    let serve = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b"data: short\n\ndata: far too long for the limit\n\n")
            .await
            .expect("events");
        conn
    };
    let (_conn, items) = tokio::join!(serve, client.until(|i| matches!(i, SseItem::Closed(_))));
    assert!(matches!(&items[1], SseItem::Event(e) if e.data == "short"));
    assert!(matches!(
        &items[2],
        SseItem::Error {
            error: Error::LineTooLong { limit: 16 },
            will_retry: false
        }
    ));
    assert!(client.ended().await);
}

#[tokio::test]
async fn comments_can_be_turned_off() {
    let server = ScriptServer::bind().await.expect("bind");
    let mut client = start(fast(&server.url("/")).comments(false));
    let serve = async {
        let mut conn = server.accept().await.expect("connection");
        conn.start_stream().await.expect("head");
        conn.send(b": heartbeat\n\ndata: x\n\n")
            .await
            .expect("events");
        conn
    };
    let (_conn, items) = tokio::join!(serve, client.until(|i| matches!(i, SseItem::Event(_))));
    let items: Vec<String> = items.iter().map(describe).collect();
    assert_eq!(items, ["open 200", "event message|x|"]);
}
