//! The nginx configuration of docs/DEPLOY.md, tested: a real nginx (Debian's) on loopback in
//! front of a real hub, with the `upstream` and `server` blocks taken from the document itself
//! (only the ports, and for one test the timeouts, are changed).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::nginx::{documented_block, free_port, Nginx};
use support::{events_path, json, End, Hub, Item, Req, SseStream, PUBLISH_KEY, WAIT};

/// nginx with the documented config in front of `hub`, `read_timeout` replacing `1h`.
fn nginx(hub: &Hub, read_timeout: &str) -> Nginx {
    let port = free_port();
    let site = documented_block("DEPLOY.md", "upstream tidings")
        .replace("server 127.0.0.1:8080;", &format!("server {};", hub.addr()))
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace("1h;", &format!("{read_timeout};"));
    Nginx::start(&site, port)
}

async fn open(proxy: SocketAddr, req: Req) -> SseStream {
    let mut s = SseStream::open(proxy, &req)
        .await
        .unwrap_or_else(|r| panic!("through nginx: {} {}", r.status, r.text()));
    s.expect_preamble().await;
    s
}

#[tokio::test]
async fn events_pass_unbuffered_and_last_event_id_goes_through() {
    let hub = Hub::standard_binary(&[]);
    let proxy = nginx(&hub, "1h");
    let mut s = open(proxy.addr, Req::get(&events_path(&["n"]))).await;
    // nginx acts on the hub's `X-Accel-Buffering: no` and does not pass it on.
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    let started = Instant::now();
    let first = hub.publish(&json!({"topic": "n", "data": 1})).await;
    let e = s.next_event(WAIT).await;
    eprintln!("first event through nginx after {:?}", started.elapsed());
    assert_eq!(
        e.id, first,
        "a small event arrives alone: nothing buffers it"
    );
    let second = hub.publish(&json!({"topic": "n", "data": 2})).await;
    drop(s);
    // Publishing through the proxy works too.
    let reply = support::http::send(
        proxy.addr,
        &Req::post("/publish")
            .bearer(PUBLISH_KEY)
            .json(&json!({"topic": "n", "data": 3})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut resumed = open(
        proxy.addr,
        Req::get(&events_path(&["n"])).header("Last-Event-ID", &first),
    )
    .await;
    assert_eq!(
        resumed.next_event(WAIT).await.id,
        second,
        "Last-Event-ID reached the hub"
    );
}

#[tokio::test]
async fn heartbeats_keep_an_idle_stream_past_the_proxy_read_timeout() {
    let hub = Hub::standard_binary(&["--heartbeat", "1s"]);
    let proxy = nginx(&hub, "3s");
    let mut s = open(proxy.addr, Req::get(&events_path(&["idle"]))).await;
    let idle = Instant::now();
    let mut beats = 0;
    while idle.elapsed() < Duration::from_secs(7) {
        match s.try_next_item(WAIT).await {
            Ok(Item::Comment(_)) => beats += 1,
            other => panic!("an idle stream through nginx must only get heartbeats: {other:?}"),
        }
    }
    assert!(beats >= 5, "{beats} heartbeats in 7 s");
    hub.publish(&json!({"topic": "idle", "data": "still here"}))
        .await;
    let (_, e) = s.events_until(WAIT, |e| e.data == "\"still here\"").await;
    assert_eq!(e.event, "message");
}

#[tokio::test]
async fn forwarded_for_feeds_the_per_ip_limit_only_from_a_trusted_proxy() {
    let hub = Hub::standard_binary(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "2",
    ]);
    let proxy = nginx(&hub, "1h");
    let from = |last: u8| Req::get(&events_path(&["ip"])).source_ip(Ipv4Addr::new(127, 0, 0, last));
    let _a = open(proxy.addr, from(2)).await;
    let _b = open(proxy.addr, from(2)).await;
    let third = SseStream::open(proxy.addr, &from(2)).await;
    match third {
        Err(r) => assert_eq!(r.status, 429, "the third stream of 127.0.0.2: {}", r.text()),
        Ok(_) => panic!("the per-IP limit counted the proxy, not the client"),
    }
    let _c = open(proxy.addr, from(3)).await;

    // Without --trusted-proxy the header is ignored: everyone is the proxy.
    let hub = Hub::standard_binary(&["--max-connections-per-ip", "2"]);
    let proxy = nginx(&hub, "1h");
    let _a = open(proxy.addr, from(2)).await;
    let _b = open(proxy.addr, from(3)).await;
    let r = SseStream::open(proxy.addr, &from(4)).await;
    assert!(
        matches!(r, Err(ref r) if r.status == 429),
        "untrusted X-Forwarded-For was believed"
    );
}

#[tokio::test]
async fn a_draining_hub_reaches_clients_through_the_proxy() {
    let hub = Hub::standard_binary(&["--retry", "2s"]);
    let proxy = nginx(&hub, "1h");
    let mut s = open(proxy.addr, Req::get(&events_path(&["d"]))).await;
    hub.sigterm();
    let mut retry = None;
    loop {
        match s.try_next_item(WAIT).await {
            Ok(Item::Retry(ms)) => retry = Some(ms),
            Ok(_) => {}
            Err(End::Closed) => break,
            Err(e) => panic!("the drain never reached the client: {e:?}"),
        }
    }
    let retry = retry.expect("a jittered retry: before the end");
    assert!((2000..=6000).contains(&retry), "retry {retry} ms");
}
