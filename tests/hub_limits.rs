//! Limits: connections in all, per user, per IP, topics per stream (429 with `Retry-After`
//! before the stream starts), and the slow subscriber that is cut off without delaying anyone.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::{events_path, json, Hub, Item, Req, SseStream, Token, Value, PUBLISH_KEY, WAIT};
use tokio::time::Instant;

fn hub(extra: &[&str]) -> Hub {
    Hub::standard(extra)
}

fn expect_limit(reply: &support::Response) {
    reply.expect_error(429, "limit_exceeded");
    reply.retry_after();
}

/// Retries `req` until it is accepted: a freed slot may take a moment to be noticed.
async fn subscribe_eventually(hub: &Hub, req: Req) -> SseStream {
    let deadline = Instant::now() + WAIT;
    loop {
        match hub.open(req.clone()).await {
            Ok(mut stream) => {
                stream.expect_preamble().await;
                return stream;
            }
            Err(reply) if Instant::now() < deadline => {
                assert_eq!(reply.status, 429, "unexpected refusal: {}", reply.text());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(reply) => panic!(
                "a freed slot was never reused: {} {}",
                reply.status,
                reply.text()
            ),
        }
    }
}

#[tokio::test]
async fn past_max_connections_a_stream_is_refused_with_429_and_retry_after() {
    let hub = hub(&["--max-connections", "3"]);
    let mut open = Vec::new();
    for topic in ["a", "b", "c"] {
        open.push(hub.subscribe(Req::get(&events_path(&[topic]))).await);
    }
    expect_limit(&hub.refused(Req::get("/events?topic=d")).await);
    let alice = Token::new().sub("alice").sign();
    expect_limit(&hub.refused(Req::get("/events").bearer(&alice)).await);
    // Non-stream requests are not connections in this sense.
    hub.send(Req::get("/healthz")).await.expect_status(200);
    hub.publish(&json!({"topic": "a", "text": "x"})).await;
    drop(open.pop());
    subscribe_eventually(&hub, Req::get("/events?topic=d")).await;
}

#[tokio::test]
async fn past_max_connections_per_user_only_that_user_is_refused() {
    let hub = hub(&["--max-connections-per-user", "2"]);
    let alice = Token::new().sub("alice").subscribe(&["**"]).sign();
    let bob = Token::new().sub("bob").sign();
    let mut alices = vec![
        hub.subscribe(Req::get("/events").bearer(&alice)).await,
        hub.subscribe(Req::get("/events?topic=x").bearer(&alice))
            .await,
    ];
    expect_limit(&hub.refused(Req::get("/events").bearer(&alice)).await);
    // Another user, and anonymous clients, are not affected.
    hub.subscribe(Req::get("/events").bearer(&bob)).await;
    hub.subscribe(Req::get("/events?topic=x")).await;
    hub.subscribe(Req::get("/events?topic=y")).await;
    hub.subscribe(Req::get("/events?topic=z")).await;
    // The refused attempt did not take a slot: one close makes room for one.
    drop(alices.pop());
    alices.push(subscribe_eventually(&hub, Req::get("/events").bearer(&alice)).await);
    expect_limit(&hub.refused(Req::get("/events").bearer(&alice)).await);
}

#[tokio::test]
async fn past_max_connections_per_ip_only_that_address_is_refused() {
    let hub = hub(&["--max-connections-per-ip", "2"]);
    let crowded = Ipv4Addr::new(127, 0, 0, 2);
    let mut from_crowded = Vec::new();
    for _ in 0..2 {
        from_crowded.push(
            hub.subscribe(Req::get("/events?topic=t").source_ip(crowded))
                .await,
        );
    }
    expect_limit(
        &hub.refused(Req::get("/events?topic=t").source_ip(crowded))
            .await,
    );
    let user = Token::new().sub("carol").sign();
    expect_limit(
        &hub.refused(Req::get("/events").bearer(&user).source_ip(crowded))
            .await,
    );
    // A forwarding header a client writes itself does not make it someone else.
    let spoofed = Req::get("/events?topic=t")
        .source_ip(crowded)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Real-IP", "203.0.113.9")
        .header("Forwarded", "for=203.0.113.9");
    expect_limit(&hub.refused(spoofed).await);
    // Other addresses are served; and publishing from the crowded one is not a stream.
    for last in 3..6 {
        hub.subscribe(Req::get("/events?topic=t").source_ip(Ipv4Addr::new(127, 0, 0, last)))
            .await;
    }
    let body = json!({"topic": "t", "text": "x"});
    let req = Req::post("/publish")
        .bearer(PUBLISH_KEY)
        .json(&body)
        .source_ip(crowded);
    hub.send(req).await.expect_status(200);
    drop(from_crowded.pop());
    subscribe_eventually(&hub, Req::get("/events?topic=t").source_ip(crowded)).await;
}

#[tokio::test]
async fn past_max_topics_a_stream_is_refused_with_429() {
    let hub = hub(&["--max-topics", "3"]);
    hub.subscribe(Req::get(&events_path(&["a", "b", "c"])))
        .await;
    expect_limit(
        &hub.refused(Req::get(&events_path(&["a", "b", "c", "d"])))
            .await,
    );
    let many: Vec<String> = (0..1000).map(|i| format!("t/{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    expect_limit(&hub.refused(Req::get(&events_path(&many))).await);
}

/// The default `--max-topics` (64) is a limit too, not just a flag.
#[tokio::test]
async fn the_default_topic_limit_applies() {
    let hub = hub(&[]);
    let topics: Vec<String> = (0..65).map(|i| format!("t/{i}")).collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    hub.subscribe(Req::get(&events_path(&topics[..64]))).await;
    expect_limit(&hub.refused(Req::get(&events_path(&topics))).await);
}

/// A subscriber that never reads, behind a tiny receive buffer, while large events pile up:
/// it is disconnected and counted, a hundred others get every event, and it catches up from
/// history with its last id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_cut_off_while_a_hundred_others_keep_up() {
    const FAST: usize = 100;
    const ROUNDS: u64 = 150;
    let hub = hub(&["--queue-bytes", "65536", "--max-event-bytes", "65536"]);
    let before = hub
        .metrics()
        .await
        .get("tidings_slow_consumer_disconnects_total");

    let topics = events_path(&["bulk", "tick", "hello"]);
    let mut slow = hub.subscribe(Req::get(&topics).recv_buffer(4096)).await;
    // One event read, so it has an id to come back with; then it never reads again.
    let hello = hub.publish(&json!({"topic": "hello", "text": "hi"})).await;
    assert_eq!(slow.next_event(WAIT).await.id, hello);
    let mut readers = Vec::new();
    for i in 0..FAST {
        let source = Ipv4Addr::new(127, 0, 2, (i % 250 + 1) as u8);
        let mut stream = hub
            .subscribe(Req::get("/events?topic=tick").source_ip(source))
            .await;
        readers.push(tokio::spawn(async move {
            for want in 0..ROUNDS {
                let event = stream.next_event(WAIT).await;
                let data: Value = serde_json::from_str(&event.data).expect("tick is JSON");
                assert_eq!(
                    data["n"], want,
                    "fast reader {i} missed or reordered a tick"
                );
            }
        }));
    }

    // 32 KiB per bulk event: ~5 MiB in all, far past what the kernel buffers and the
    // 64 KiB queue can hold for a reader that never reads.
    let bulk = "b".repeat(32 * 1024);
    let mut ids = Vec::new();
    for n in 0..ROUNDS {
        ids.push(hub.publish(&json!({"topic": "bulk", "text": bulk})).await);
        ids.push(
            hub.publish(&json!({"topic": "tick", "data": {"n": n}}))
                .await,
        );
    }
    for reader in readers {
        reader
            .await
            .expect("every fast reader gets every tick, in order");
    }
    hub.wait_metric("tidings_slow_consumer_disconnects_total", WAIT, |v| {
        v > before
    })
    .await;

    // Draining what the kernel held, the slow stream ends early: it was cut off.
    let items = slow.expect_closed(WAIT).await;
    let got = items
        .iter()
        .filter(|item| matches!(item, Item::Event(_)))
        .count();
    assert!(
        got < ids.len(),
        "the slow subscriber received everything; it was not cut off"
    );
    let last = slow.last_event_id().to_owned();
    let resume_at = match ids.iter().position(|id| *id == last) {
        Some(i) => i + 1,
        None => {
            assert_eq!(
                last, hello,
                "the slow stream's last id is not one that was published"
            );
            0
        }
    };

    // Coming back with its last id, it is replayed the rest, in order, without a gap.
    let mut back = hub
        .subscribe(Req::get(&topics).header("Last-Event-ID", &last))
        .await;
    for want in &ids[resume_at..] {
        let event = back.next_event(WAIT).await;
        assert_eq!(
            &event.id, want,
            "the replay after a slow-consumer disconnect has a gap"
        );
    }
}
