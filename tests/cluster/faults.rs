//! The cluster suite's failure cases, on every broker: a node killed or paused, the broker
//! killed, restarted empty, down, or behind a link that stalls or is cut. Nothing acknowledged
//! is lost, a loss is announced with `reset`, an outage is a 503.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::suite::{data, open, reset_reason, take, try_publish};
use crate::support::broker::Broker;
use crate::support::proxy::{FaultProxy, Flow};
use crate::support::redis::{node, nodes};
use crate::support::{json, Hub, Req};
use crate::support::{End, Item, PUBLISH_KEY, WAIT};

pub async fn a_node_killed_mid_stream_loses_no_acknowledged_event<B: Broker>() {
    let redis = B::start();
    let mut hubs = nodes(&redis.url(), 2, &[]);
    let mut stream = open(&hubs[0], &["k"], None).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        acked.push(hubs[0].publish(&json!({"topic": "k", "data": i})).await);
    }
    let mut got: Vec<String> = take(&mut stream, 20)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    hubs[0].kill9();
    for i in 50..100 {
        acked.push(hubs[1].publish(&json!({"topic": "k", "data": i})).await);
    }
    // The client finds its node gone and resumes on the other one.
    loop {
        match stream.try_next_event(WAIT).await {
            Ok(e) => got.push(e.id),
            Err(End::Closed | End::Broken(_)) => break,
            Err(End::TimedOut) => panic!("the killed node's stream neither ended nor delivered"),
        }
    }
    let last = got.last().cloned();
    let mut resumed = open(&hubs[1], &["k"], last.as_deref()).await;
    while got.len() < acked.len() {
        got.push(resumed.next_event(WAIT).await.id);
    }
    assert_eq!(
        got, acked,
        "every acknowledged event, once, in order, across the crash"
    );
}

pub async fn redis_killed_mid_publish_loses_nothing_acknowledged_and_retries_do_not_duplicate<
    B: Broker,
>() {
    let mut redis = B::start();
    let hubs = nodes(&redis.url(), 2, &["--heartbeat", "1s"]);
    let addrs: Vec<_> = hubs.iter().map(Hub::addr).collect();
    let mut streams = [
        open(&hubs[0], &["r"], None).await,
        open(&hubs[1], &["r"], None).await,
    ];
    const N: usize = 120;
    let publisher = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut failures = 0usize;
        for i in 0..N {
            let key = format!("retry-key-{i}");
            let body = json!({"topic": "r", "data": i});
            let mut attempt = 0usize;
            loop {
                match try_publish(addrs[(i + attempt) % 2], &body, Some(&key)).await {
                    Ok(id) => {
                        acked.push((i, id));
                        break;
                    }
                    Err(status) => {
                        assert!(
                            status == 503 || status == 0,
                            "an outage is a 503, got {status}"
                        );
                        failures += 1;
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
            }
        }
        (acked, failures)
    });
    // Let some publishes through, then crash Redis and bring it back from its AOF.
    let _ = take(&mut streams[0], 30).await;
    redis.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    let (acked, failures) = publisher.await.expect("publisher");
    eprintln!("publishes refused during the outage: {failures}");
    for (n, stream) in streams.iter_mut().enumerate() {
        let skip = if n == 0 { 30 } else { 0 };
        let mut seen: Vec<(String, u64)> = Vec::new();
        let want = N - skip;
        while seen.len() < want {
            match stream.try_next_event(WAIT).await {
                Ok(e) => {
                    assert_ne!(
                        e.event, "reset",
                        "an AOF-always restart loses nothing: {e:?}"
                    );
                    seen.push((e.id.clone(), data(&e).as_u64().expect("i")));
                }
                Err(end) => {
                    panic!("the stream on node {n} must stay open through the outage: {end:?}")
                }
            }
        }
        let values: Vec<u64> = seen.iter().map(|(_, v)| *v).collect();
        assert_eq!(
            values,
            (skip as u64..N as u64).collect::<Vec<_>>(),
            "node {n}: each publish once, in order"
        );
        let ids: HashSet<&String> = seen.iter().map(|(id, _)| id).collect();
        for (i, id) in &acked {
            if *i >= skip {
                assert!(
                    ids.contains(id),
                    "acknowledged event {i} ({id}) was delivered on node {n}"
                );
            }
        }
    }
    if let Some(len) = redis.log_len() {
        assert_eq!(len, N as u64, "the log holds each publish exactly once");
    }
}

pub async fn redis_restarted_empty_sends_one_reset_then_new_events<B: Broker>() {
    let mut redis = B::start();
    let hubs = nodes(&redis.url(), 2, &[]);
    let mut streams = vec![
        open(&hubs[0], &["e"], None).await,
        open(&hubs[1], &["e"], None).await,
    ];
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(hubs[i % 2].publish(&json!({"topic": "e", "data": i})).await);
    }
    for s in &mut streams {
        take(s, 5).await;
    }
    redis.restart_empty();
    // Publish once the cluster is ready again (retrying through the outage).
    let deadline = Instant::now() + WAIT;
    let new_id = loop {
        match try_publish(hubs[1].addr(), &json!({"topic": "e", "data": "new"}), None).await {
            Ok(id) => break id,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("the cluster never took a publish after the restart: {s}"),
        }
    };
    for s in &mut streams {
        assert_eq!(
            reset_reason(s).await,
            "history-gap",
            "the loss is announced"
        );
        let next = s.next_event(WAIT).await;
        assert_eq!(
            (next.id.as_str(), next.data.as_str()),
            (new_id.as_str(), "\"new\""),
            "then new events, no second reset"
        );
    }
    for hub in &hubs {
        let mut s = open(hub, &["e"], Some(&old[2])).await;
        assert_eq!(
            reset_reason(&mut s).await,
            "history-gap",
            "an id from before the loss"
        );
    }
    assert_eq!(
        hubs[0]
            .metrics()
            .await
            .sum("tidings_cluster_gap_markers_total"),
        Some(1.0),
        "one marker, whichever node wrote it"
    );
}

pub async fn a_broker_outage_refuses_publishes_fast_keeps_streams_and_recovers<B: Broker>() {
    let mut redis = B::start();
    let hub = node(&redis.url(), &["--heartbeat", "1s"]);
    let mut stream = open(&hub, &["o"], None).await;
    hub.publish(&json!({"topic": "o", "data": "before"})).await;
    assert_eq!(stream.next_event(WAIT).await.data, "\"before\"");
    redis.kill9();
    // Once the node knows, every publish is refused at once, with Retry-After, never a 200.
    let deadline = Instant::now() + WAIT;
    while hub.send(Req::get("/readyz")).await.status == 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz never noticed the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let reply = hub
            .send(
                Req::post("/publish")
                    .bearer(PUBLISH_KEY)
                    .json(&json!({"topic": "o", "data": "lost?"})),
            )
            .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            reply.header("retry-after").is_some(),
            "a 503 says when to retry"
        );
    }
    eprintln!("slowest refusal while the broker is known down: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "refusals must not wait for a timeout: {slowest:?}"
    );
    // The open stream stays open: heartbeats keep coming.
    match stream.try_next_item(WAIT).await {
        Ok(Item::Comment(_)) => {}
        other => panic!("expected a heartbeat on the open stream during the outage, got {other:?}"),
    }
    redis.restart();
    let deadline = Instant::now() + WAIT;
    while hub.send(Req::get("/readyz")).await.status != 200 {
        assert!(Instant::now() < deadline, "/readyz never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.publish(&json!({"topic": "o", "data": "after"})).await;
    let next = stream.next_event(WAIT).await;
    assert_eq!(
        next.data, "\"after\"",
        "the same stream resumes, nothing refused was delivered"
    );
}

pub async fn a_node_paused_for_30s_catches_up_in_order<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 2, &[]);
    let mut stream = open(&hubs[0], &["p"], None).await;
    hubs[0].signal("STOP");
    let mut ids = Vec::new();
    let pause = Instant::now();
    while pause.elapsed() < Duration::from_secs(30) {
        ids.push(
            hubs[1]
                .publish(&json!({"topic": "p", "data": ids.len()}))
                .await,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its lease ran out meanwhile: the other node no longer counts it.
    let nodes_seen = hubs[1].metrics().await.sum("tidings_cluster_nodes");
    assert_eq!(
        nodes_seen,
        Some(1.0),
        "a paused node stops counting after its lease"
    );
    hubs[0].signal("CONT");
    let got: Vec<String> = take(&mut stream, ids.len())
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        got, ids,
        "the paused node delivers everything, in order, once"
    );
    hubs[0]
        .publish(&json!({"topic": "p", "data": "live"}))
        .await;
    assert_eq!(stream.next_event(WAIT).await.data, "\"live\"");
}

pub async fn a_stalled_or_cut_broker_link_is_survived<B: Broker>() {
    let redis = B::start();
    let proxy = FaultProxy::start(redis.addr()).await;
    let url = redis.url_at(proxy.addr());
    let hub = node(&url, &[]);
    let mut stream = open(&hub, &["f"], None).await;
    let before = hub.publish(&json!({"topic": "f", "data": "before"})).await;
    assert_eq!(stream.next_event(WAIT).await.id, before);

    // A cut: every connection to Redis drops; the tail reconnects by itself.
    proxy.cut();
    let deadline = Instant::now() + WAIT;
    let after_cut = loop {
        match try_publish(
            hub.addr(),
            &json!({"topic": "f", "data": "after-cut"}),
            Some("cut-1"),
        )
        .await
        {
            Ok(id) => break id,
            Err(503 | 0) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("no recovery from a cut: {s}"),
        }
    };
    let next = stream.next_event(WAIT).await;
    assert_eq!(
        (next.id.as_str(), next.data.as_str()),
        (after_cut.as_str(), "\"after-cut\""),
        "same stream, no gap"
    );

    // A stall: Redis answers nothing; the publish is refused, not acknowledged.
    proxy.set(Flow::Stall);
    let started = Instant::now();
    let reply = hub
        .send(
            Req::post("/publish")
                .bearer(PUBLISH_KEY)
                .header("Idempotency-Key", "stall-1")
                .json(&json!({"topic": "f", "data": "stalled"})),
        )
        .await;
    assert_eq!(
        reply.status,
        503,
        "a stalled broker is an outage: {}",
        reply.text()
    );
    eprintln!("refused after {:?} of stall", started.elapsed());
    proxy.set(Flow::Pass);
    // The retry with the same key publishes it once, whether or not the stalled one landed.
    let deadline = Instant::now() + WAIT;
    let id = loop {
        match try_publish(
            hub.addr(),
            &json!({"topic": "f", "data": "stalled"}),
            Some("stall-1"),
        )
        .await
        {
            Ok(id) => break id,
            Err(503 | 0) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("no recovery from a stall: {s}"),
        }
    };
    let next = stream.next_event(WAIT).await;
    assert_eq!(
        (next.id.as_str(), next.data.as_str()),
        (id.as_str(), "\"stalled\"")
    );
    hub.publish(&json!({"topic": "f", "data": "last"})).await;
    assert_eq!(
        stream.next_event(WAIT).await.data,
        "\"last\"",
        "nothing twice"
    );
}
