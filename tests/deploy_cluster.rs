//! docs/CLUSTER.md's example, run: three nodes on one real Redis behind a real nginx with the
//! documented configuration. A client follows a topic through nginx while a publisher
//! publishes through nginx with `Idempotency-Key`s; two of the three nodes are killed one
//! after the other; the client, reconnecting through nginx with `Last-Event-ID`, ends with
//! every acknowledged event once, in order.

mod support;

use std::time::{Duration, Instant};

use support::nginx::{documented_block, free_port, Nginx};
use support::redis::{nodes, Redis};
use support::{json, End, Req, SseStream, PUBLISH_KEY, WAIT};

#[tokio::test]
async fn three_nodes_behind_nginx_lose_nothing_when_two_die() {
    let redis = Redis::start();
    let mut hubs = nodes(&redis.url(), 3, &["--trusted-proxy", "127.0.0.1"]);
    let port = free_port();
    let site = documented_block("CLUSTER.md", "upstream tidings_cluster")
        .replace("10.0.0.11:8080", &hubs[0].addr().to_string())
        .replace("10.0.0.12:8080", &hubs[1].addr().to_string())
        .replace("10.0.0.13:8080", &hubs[2].addr().to_string())
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    let nginx = Nginx::start(&site, port);
    let proxy = nginx.addr;

    const EVENTS: usize = 150;
    let publisher = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..EVENTS {
            let key = format!("deploy-{i}");
            let deadline = Instant::now() + WAIT;
            loop {
                let req = Req::post("/publish")
                    .bearer(PUBLISH_KEY)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"topic": "deploy", "data": i}));
                match support::http::try_send(proxy, &req).await {
                    Ok(r) if r.status == 200 => {
                        acked.push(r.json()["id"].as_str().unwrap().to_owned());
                        break;
                    }
                    other => {
                        assert!(
                            Instant::now() < deadline,
                            "publish {i} never went through: {other:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    });

    // The client: follow, and on any end reconnect through nginx with the last id.
    let client = tokio::spawn(async move {
        let mut got: Vec<String> = Vec::new();
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < EVENTS {
            assert!(
                Instant::now() < deadline,
                "the client got {} of {EVENTS}",
                got.len()
            );
            let mut req = Req::get("/events?topic=deploy");
            if !last.is_empty() {
                req = req.header("Last-Event-ID", &last);
            }
            let Ok(mut stream) = SseStream::open(proxy, &req).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            loop {
                match stream.try_next_event(WAIT).await {
                    Ok(e) if e.event == "message" => {
                        last.clone_from(&e.id);
                        got.push(e.id);
                        if got.len() == EVENTS {
                            break;
                        }
                    }
                    Ok(e) => assert_ne!(e.event, "reset", "no reset: nothing was lost"),
                    Err(End::TimedOut) => panic!("the stream stalled"),
                    Err(_) => break,
                }
            }
        }
        got
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    hubs[0].kill9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    hubs[1].kill9();
    let acked = publisher.await.expect("the publisher");
    let got = client.await.expect("the client");
    assert_eq!(
        got, acked,
        "every acknowledged event, once, in order, through two node deaths"
    );
}
