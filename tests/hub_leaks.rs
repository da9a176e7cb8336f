//! No leaks: thousands of subscribers come and go (cleanly, abruptly, mid-request, while
//! events flow) and the hub ends with no connection counted and its memory back near where
//! it started.

mod support;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use support::http::{connect, send};
use support::{json, Hub, Req, SseStream, PUBLISH_KEY, WAIT};
use tokio::io::AsyncWriteExt;

const WORKERS: usize = 50;

/// One connect/disconnect cycle of a few kinds, chosen by `i`.
async fn cycle(addr: std::net::SocketAddr, i: usize) {
    let source = Ipv4Addr::new(127, 0, 3, (i % 250 + 1) as u8);
    let req = Req::get(&format!("/events?topic=t/{}", i % 100)).source_ip(source);
    match i % 4 {
        // Gone before the response head: the request is sent, the socket dropped.
        0 => {
            let mut io = connect(addr, &req).await.expect("connect");
            let _ = io.write_all(&req.to_bytes(addr)).await;
        }
        // Gone right after the head.
        1 => {
            SseStream::open(addr, &req).await.expect("subscribe");
        }
        // Gone after the stream started, with or without an event read.
        _ => {
            let mut stream = SseStream::open(addr, &req).await.expect("subscribe");
            stream.expect_preamble().await;
        }
    }
}

async fn run_cycles(addr: std::net::SocketAddr, total: usize) {
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while i < total {
                cycle(addr, i).await;
                i += WORKERS;
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a cycle worker failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_disconnect_cycles_leave_no_connection_and_no_memory_behind() {
    // A short heartbeat makes the hub write to idle streams, which is how any server learns
    // that a peer vanished; the history is capped so its growth is not mistaken for a leak.
    let hub = Hub::start(&[
        "--publish-key",
        PUBLISH_KEY,
        "--public-topic",
        "**",
        "--heartbeat",
        "1",
        "--history-max-events",
        "1000",
    ]);
    let addr = hub.addr();

    // Events flow the whole time, so streams close with queued data as well as idle.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"topic": format!("t/{}", n % 100), "data": {"n": n, "pad": "p".repeat(200)}});
                send(addr, &Req::post("/publish").bearer(PUBLISH_KEY).json(&body))
                    .await
                    .expect_status(200);
                n += 1;
            }
            n
        })
    };

    // Warm-up: allocator arenas, buffers and the history reach their steady size.
    run_cycles(addr, 2_000).await;
    hub.wait_metric("tidings_connections", WAIT, |v| v == 0.0)
        .await;
    let baseline = hub.rss_bytes();

    run_cycles(addr, 10_000).await;
    stop.store(true, Ordering::Relaxed);
    let published = publisher.await.expect("publisher");
    assert!(
        published > 100,
        "the publisher barely ran ({published} events)"
    );

    hub.wait_metric("tidings_connections", WAIT, |v| v == 0.0)
        .await;
    let metrics = hub.metrics().await;
    for gauge in [
        "tidings_subscriptions",
        "tidings_users_connected",
        "tidings_queue_bytes",
    ] {
        assert_eq!(metrics.get(gauge), 0.0, "{gauge} after every stream closed");
    }
    let clients = hub
        .send(Req::get("/clients").bearer(PUBLISH_KEY))
        .await
        .ok_json();
    assert_eq!(clients["total"], 0, "{clients}");
    assert_eq!(clients["topics"], json!({}), "{clients}");

    let after = hub.rss_bytes();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "RSS: baseline {:.1} MiB, after 10,000 cycles {:.1} MiB",
        mib(baseline),
        mib(after)
    );
    assert!(
        after < baseline + 30 * 1024 * 1024,
        "RSS grew from {:.1} MiB to {:.1} MiB over 10,000 cycles",
        mib(baseline),
        mib(after)
    );
    // And the hub is as good as new.
    let mut stream = hub.subscribe(Req::get("/events?topic=fresh")).await;
    hub.publish(&json!({"topic": "fresh", "text": "still here"}))
        .await;
    assert_eq!(stream.next_event(WAIT).await.data, "still here");
}
