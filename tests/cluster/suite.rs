//! The cluster suite, run on every broker (`tests/cluster_redis.rs`, `tests/cluster_nats.rs`):
//! a real broker on a free port with its own directory, and several `tidings serve --cluster`
//! processes on it. Every promise of the single node must hold across nodes: every subscriber
//! on every node gets every matching event once, in log order, with the same ids;
//! `Last-Event-ID` works on any node; nothing acknowledged is lost when a node or the broker is
//! killed; a loss the broker suffers is announced with `reset`, never skipped silently; an
//! outage is answered with 503, never with 200 and a lost event.
//!
//! (The broker variable is called `redis` for history; it is whichever broker runs.)

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use crate::support::broker::Broker;
use crate::support::redis::{node, nodes};
use crate::support::{events_path, json, Hub, Req, Rng, SseStream, Token, Value};
use crate::support::{End, MessageEvent, PUBLISH_KEY, WAIT};

/// Opens `GET /events?topic=…` on `hub`, resuming from `last` if given.
pub(crate) async fn open(hub: &Hub, topics: &[&str], last: Option<&str>) -> SseStream {
    let mut req = Req::get(&events_path(topics));
    if let Some(id) = last {
        req = req.header("Last-Event-ID", id);
    }
    hub.subscribe(req).await
}

/// `POST /publish` once; `Ok(id)` on 200, `Err(status)` otherwise (0: no answer).
pub(crate) async fn try_publish(
    hub_addr: std::net::SocketAddr,
    body: &Value,
    key: Option<&str>,
) -> Result<String, u16> {
    let mut req = Req::post("/publish").bearer(PUBLISH_KEY).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let reply =
        match tokio::time::timeout(WAIT, crate::support::http::try_send(hub_addr, &req)).await {
            Ok(Ok(reply)) => reply,
            _ => return Err(0),
        };
    if reply.status != 200 {
        return Err(reply.status);
    }
    let v: Value = serde_json::from_str(&reply.text()).map_err(|_| 0u16)?;
    v["id"].as_str().map(str::to_owned).ok_or(0)
}

/// Reads `n` events (skipping comments), failing the test on a close or a stall.
pub(crate) async fn take(stream: &mut SseStream, n: usize) -> Vec<MessageEvent> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(stream.next_event(WAIT).await);
    }
    out
}

/// Asserts ids strictly increase (as numbers and as strings).
pub(crate) fn assert_increasing(events: &[MessageEvent]) {
    for pair in events.windows(2) {
        let (a, b) = (&pair[0].id, &pair[1].id);
        assert!(
            a.len() == b.len() && a < b,
            "ids must grow in log order: {a} then {b}"
        );
    }
}

pub(crate) fn data(event: &MessageEvent) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("not JSON ({e}): {event:?}"))
}

pub async fn every_subscriber_on_every_node_gets_every_event_once_in_log_order<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 3, &[]);
    let mut all = Vec::new();
    let mut only_a = Vec::new();
    for hub in &hubs {
        all.push(open(hub, &["t/**"], None).await);
        only_a.push(open(hub, &["t/a"], None).await);
    }
    // Three publishers, one per node, at once.
    let mut tasks = Vec::new();
    for (p, hub) in hubs.iter().enumerate() {
        let addr = hub.addr();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..60u64 {
                let topic = if i % 3 == 0 { "t/a" } else { "t/b" };
                let body = json!({"topic": topic, "data": {"p": p, "i": i, "topic": topic}});
                ids.push(
                    try_publish(addr, &body, None)
                        .await
                        .expect("publish acknowledged"),
                );
            }
            ids
        }));
    }
    let mut acked = BTreeSet::new();
    for t in tasks {
        acked.extend(t.await.expect("publisher"));
    }
    assert_eq!(acked.len(), 180, "every publish got its own id");
    let mut reference: Option<Vec<(String, String)>> = None;
    for stream in &mut all {
        let events = take(stream, 180).await;
        assert_increasing(&events);
        let got: Vec<(String, String)> = events
            .iter()
            .map(|e| (e.id.clone(), e.data.clone()))
            .collect();
        let ids: BTreeSet<String> = got.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            ids, acked,
            "a subscriber got exactly the acknowledged events"
        );
        // Each publisher's events in its own order.
        for p in 0..3 {
            let seq: Vec<u64> = events
                .iter()
                .map(data)
                .filter(|d| d["p"] == p)
                .map(|d| d["i"].as_u64().expect("i"))
                .collect();
            assert_eq!(seq, (0..60).collect::<Vec<_>>(), "publisher {p}'s order");
        }
        match &reference {
            None => reference = Some(got),
            Some(r) => assert_eq!(
                &got, r,
                "every node delivers the same events, same ids, same order"
            ),
        }
    }
    let reference = reference.expect("three subscribers");
    let expected_a: Vec<(String, String)> = reference
        .iter()
        .filter(|(_, d)| d.contains("\"topic\":\"t/a\""))
        .cloned()
        .collect();
    for stream in &mut only_a {
        let events = take(stream, expected_a.len()).await;
        let got: Vec<(String, String)> = events
            .iter()
            .map(|e| (e.id.clone(), e.data.clone()))
            .collect();
        assert_eq!(
            got, expected_a,
            "a filtered subscriber sees the log's order too"
        );
    }
}

pub async fn a_last_event_id_from_one_node_resumes_on_every_node<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 3, &[]);
    let mut first = open(&hubs[0], &["orders/*"], None).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            hubs[i % 3]
                .publish(&json!({"topic": "orders/1", "data": i}))
                .await,
        );
    }
    let seen = take(&mut first, 10).await;
    let last = seen.last().expect("ten events").id.clone();
    assert_eq!(last, ids[9]);
    drop(first);
    for hub in &hubs {
        let mut resumed = open(hub, &["orders/*"], Some(&last)).await;
        let rest: Vec<String> = take(&mut resumed, 10)
            .await
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(
            rest,
            ids[10..].to_vec(),
            "resume on {} from a foreign id",
            hub.addr()
        );
    }
    // A node started after the events has none of them in memory: it replays from the log.
    let late = node(&redis.url(), &[]);
    let mut resumed = open(&late, &["orders/*"], Some(&ids[4])).await;
    let rest: Vec<String> = take(&mut resumed, 15)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(rest, ids[5..].to_vec(), "a late node replays from Redis");
    late.publish(&json!({"topic": "orders/1", "data": "live"}))
        .await;
    assert_eq!(
        resumed.next_event(WAIT).await.data,
        "\"live\"",
        "then live, no gap"
    );
}

/// The `reset` event's reason.
pub(crate) async fn reset_reason(stream: &mut SseStream) -> String {
    let event = stream.next_event(WAIT).await;
    assert_eq!(event.event, "reset", "expected a reset, got {event:?}");
    data(&event)["reason"]
        .as_str()
        .expect("a reason")
        .to_owned()
}

pub async fn unknown_and_trimmed_ids_are_reset_never_skipped<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 2, &["--history-max-events", "10"]);
    let first = hubs[0].publish(&json!({"topic": "t", "data": 0})).await;
    for i in 1..400 {
        hubs[i % 2].publish(&json!({"topic": "t", "data": i})).await;
    }
    for hub in &hubs {
        let mut s = open(hub, &["t"], Some(&first)).await;
        assert_eq!(
            reset_reason(&mut s).await,
            "history-gap",
            "a trimmed position"
        );
        let mut s = open(hub, &["t"], Some("99999999999999999999")).await;
        assert_eq!(reset_reason(&mut s).await, "unknown-id", "not an id at all");
        // Well formed, but an hour ahead of every clock: never issued.
        let future = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64
            + 3_600_000)
            << 20;
        let mut s = open(hub, &["t"], Some(&future.to_string())).await;
        assert_eq!(
            reset_reason(&mut s).await,
            "unknown-id",
            "an id from the future"
        );
    }
    if let Some(len) = redis.log_len() {
        assert!(len < 400, "retention trims the log");
    }
}

pub async fn reconnects_to_random_nodes_while_publishing_at_full_rate_lose_nothing<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 3, &[]);
    let addrs: Vec<_> = hubs.iter().map(Hub::addr).collect();
    const CLIENTS: usize = 12;
    const EVENTS: usize = 600;
    // Every client is subscribed before the first publish, so each must see all of them.
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        clients.push(open(&hubs[c % 3], &["race"], None).await);
    }
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let addrs = addrs.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..EVENTS / 2 {
                    let addr = addrs[(i + p) % addrs.len()];
                    let body = json!({"topic": "race", "data": {"p": p, "i": i}});
                    ids.push(try_publish(addr, &body, None).await.expect("acknowledged"));
                }
                ids
            })
        })
        .collect();
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, mut stream)| {
            let addrs = addrs.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(c as u64 + 1);
                let mut got: Vec<String> = Vec::new();
                while got.len() < EVENTS {
                    let burst = rng.range(1, 60) as usize;
                    for _ in 0..burst.min(EVENTS - got.len()) {
                        let event = stream.next_event(WAIT).await;
                        got.push(event.id);
                    }
                    if got.len() < EVENTS {
                        let addr = addrs[rng.range(0, addrs.len() as u64) as usize];
                        let last = got.last().cloned();
                        let mut req = Req::get("/events?topic=race");
                        if let Some(id) = &last {
                            req = req.header("Last-Event-ID", id);
                        }
                        stream = SseStream::open(addr, &req)
                            .await
                            .expect("reconnect admitted");
                        stream.expect_preamble().await;
                    }
                }
                got
            })
        })
        .collect();
    let mut acked = Vec::new();
    for p in publishers {
        acked.extend(p.await.expect("publisher"));
    }
    acked.sort();
    for r in readers {
        let got = r.await.expect("reader");
        assert_eq!(
            got, acked,
            "a client moving between nodes saw every event once, in order"
        );
    }
}

pub async fn the_per_user_limit_holds_across_three_nodes<B: Broker>() {
    let redis = B::start();
    let mut hubs = nodes(&redis.url(), 3, &["--max-connections-per-user", "2"]);
    let token = Token::new().sub("alice").subscribe(&["**"]).sign();
    let req = || Req::get("/events?topic=x").bearer(&token);
    let a = hubs[0].subscribe(req()).await;
    let _b = hubs[1].subscribe(req()).await;
    let refused = hubs[2].refused(req()).await;
    assert_eq!(
        refused.status, 429,
        "a third stream anywhere is over the limit"
    );
    assert!(refused.text().contains("max-connections-per-user"));
    drop(a);
    let deadline = Instant::now() + WAIT;
    let c = loop {
        match hubs[2].open(req()).await {
            Ok(s) => break s,
            Err(r) if r.status == 429 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(r) => panic!("a closed stream's slot was not given back: {}", r.status),
        }
    };
    // A node that dies holding a slot: its lease runs out and the slot comes back.
    hubs[1].kill9();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match hubs[0].open(req()).await {
            Ok(_) => break,
            Err(r) if r.status == 429 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(r) => panic!("a dead node's slot never expired: {}", r.status),
        }
    }
    drop(c);
}

pub async fn counts_broadcast_and_notify_span_the_nodes<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 3, &[]);
    let bob = Token::new().sub("bob").subscribe(&["**"]).sign();
    let _b1 = hubs[0].subscribe(Req::get("/events").bearer(&bob)).await;
    let _b2 = hubs[0].subscribe(Req::get("/events").bearer(&bob)).await;
    let _b3 = hubs[1].subscribe(Req::get("/events").bearer(&bob)).await;
    let _anon = open(&hubs[2], &["x"], None).await;
    let admin = |hub: &Hub| {
        let addr = hub.addr();
        async move {
            crate::support::http::send(addr, &Req::get("/clients").bearer(PUBLISH_KEY))
                .await
                .ok_json()
        }
    };
    let deadline = Instant::now() + WAIT;
    let clients = loop {
        let c = admin(&hubs[2]).await;
        if c["total"] == 4 || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(clients["total"], 4, "{clients}");
    assert_eq!(clients["users"]["bob"], 3, "{clients}");
    assert_eq!(clients["nodes"], 3, "{clients}");
    let b = hubs[2].post_ok("/broadcast", &json!({"data": "all"})).await;
    assert_eq!(
        (b["sent"].as_u64(), b["total"].as_u64()),
        (Some(4), Some(4)),
        "{b}"
    );
    let n = hubs[2].post_ok("/notify/bob", &json!({"data": "hi"})).await;
    assert_eq!(n["sent"], 3, "{n}");
}

pub async fn a_draining_node_sends_its_clients_to_the_others_without_loss<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 2, &[]);
    let mut stream = open(&hubs[0], &["d"], None).await;
    let addr = hubs[1].addr();
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..200 {
            ids.push(
                try_publish(addr, &json!({"topic": "d", "data": i}), None)
                    .await
                    .expect("acknowledged"),
            );
        }
        ids
    });
    let mut got: Vec<String> = take(&mut stream, 20)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    hubs[0].sigterm();
    loop {
        match stream.try_next_event(WAIT).await {
            Ok(e) => got.push(e.id),
            Err(End::Closed | End::Broken(_)) => break,
            Err(End::TimedOut) => panic!("the draining node did not close the stream"),
        }
    }
    let mut resumed = open(&hubs[1], &["d"], got.last().map(String::as_str)).await;
    let acked = publisher.await.expect("publisher");
    while got.len() < acked.len() {
        got.push(resumed.next_event(WAIT).await.id);
    }
    assert_eq!(
        got, acked,
        "drained to another node with no gap and no duplicate"
    );
}

pub async fn a_batch_larger_than_one_tail_read_is_answered_whole_and_in_order<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 2, &[]);
    let mut streams = [
        open(&hubs[0], &["b"], None).await,
        open(&hubs[1], &["b"], None).await,
    ];
    // More events than the tail takes per read (1024): the batch arrives in two reads.
    let batch: Vec<Value> = (0..1500)
        .map(|i| json!({"topic": "b", "data": i}))
        .collect();
    let reply = hubs[0].post_ok("/publish", &Value::Array(batch)).await;
    let answers = reply.as_array().expect("a batch answer is an array");
    assert_eq!(answers.len(), 1500, "one answer per event");
    assert!(
        answers.iter().all(|a| a["delivered"] == 1),
        "each event reached this node's subscriber"
    );
    let ids: Vec<String> = answers
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect();
    for stream in &mut streams {
        let got: Vec<String> = take(stream, 1500).await.into_iter().map(|e| e.id).collect();
        assert_eq!(
            got, ids,
            "the batch, consecutive and in order, on every node"
        );
    }
}

pub async fn tasks_span_the_nodes_also_one_started_later<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 2, &[]);
    let mut watcher = open(&hubs[1], &["jobs/*"], None).await;
    let created = hubs[0]
        .send(
            Req::post("/tasks")
                .bearer(PUBLISH_KEY)
                .json(&json!({"topic": "jobs/1"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["taskId"].as_str().unwrap().to_owned();
    hubs[0]
        .post_ok(&format!("/tasks/{id}"), &json!({"progress": 40}))
        .await;
    // Every node's subscribers get the progress, in order.
    for want in [0, 40] {
        let e = watcher.next_event(WAIT).await;
        assert_eq!(e.event, "progress");
        assert_eq!(data(&e)["progress"], want);
    }
    // A node started afterwards knows the task from the log, and serves its late joiners.
    let late = node(&redis.url(), &[]);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = late
            .send(Req::get(&format!("/tasks/{id}")).bearer(PUBLISH_KEY))
            .await;
        if r.status == 200 {
            assert_eq!(r.json()["progress"], 40);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late node never learned the task"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut joiner = open(&late, &["jobs/*"], None).await;
    let e = joiner.next_event(WAIT).await;
    assert_eq!((e.event.as_str(), e.id.as_str()), ("progress", ""));
    assert_eq!(data(&e)["progress"], 40);
    // An update through the late node reaches the first node's subscriber.
    late.post_ok(&format!("/tasks/{id}"), &json!({"status": "completed"}))
        .await;
    let e = watcher.next_event(WAIT).await;
    assert_eq!(data(&e)["status"], "completed");
}

/// `POST /publish` once with a raw body; the status and the parsed answer.
async fn publish_raw(addr: std::net::SocketAddr, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut req = Req::post("/publish").bearer(PUBLISH_KEY).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let reply = tokio::time::timeout(WAIT, crate::support::http::try_send(addr, &req))
        .await
        .expect("answered in time")
        .expect("answered");
    let answer = serde_json::from_str(&reply.text()).unwrap_or(Value::Null);
    (reply.status, answer)
}

/// Concurrent publishes share broker calls (group commit on Redis): each still gets its own
/// ids, its batch stays whole and consecutive, its `Idempotency-Key` is its own (a retry on
/// another node gets the first ids, a reuse with another body 422), and the log holds each
/// once.
pub async fn concurrent_publishes_each_keep_their_ids_batches_and_keys<B: Broker>() {
    let redis = B::start();
    let hubs = nodes(&redis.url(), 2, &[]);
    let addrs: Vec<_> = hubs.iter().map(Hub::addr).collect();
    let mut stream = open(&hubs[1], &["g"], None).await;
    const KEYED: usize = 120;
    const BATCHES: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..KEYED + BATCHES {
        let addr = addrs[0];
        tasks.push(tokio::spawn(async move {
            if i < KEYED {
                let body = json!({"topic": "g", "data": {"k": i}});
                let (status, answer) = publish_raw(addr, &body, Some(&format!("g-{i}"))).await;
                assert_eq!(status, 200, "{answer}");
                vec![answer["id"].as_str().expect("id").to_owned()]
            } else {
                let body: Vec<Value> = (0..3)
                    .map(|n| json!({"topic": "g", "data": {"b": i, "n": n}}))
                    .collect();
                let (status, answer) = publish_raw(addr, &Value::Array(body), None).await;
                assert_eq!(status, 200, "{answer}");
                answer
                    .as_array()
                    .expect("a batch answer")
                    .iter()
                    .map(|a| a["id"].as_str().expect("id").to_owned())
                    .collect()
            }
        }));
    }
    let mut answered = Vec::new();
    for task in tasks {
        answered.push(task.await.expect("publisher"));
    }
    let total = KEYED + 3 * BATCHES;
    let all: HashSet<&String> = answered.iter().flatten().collect();
    assert_eq!(all.len(), total, "every event has an id of its own");
    let got = take(&mut stream, total).await;
    assert_increasing(&got);
    let position: std::collections::HashMap<&str, usize> = got
        .iter()
        .enumerate()
        .map(|(n, e)| (e.id.as_str(), n))
        .collect();
    for ids in answered.iter().filter(|ids| ids.len() == 3) {
        let at: Vec<usize> = ids.iter().map(|id| position[id.as_str()]).collect();
        assert_eq!(
            at,
            vec![at[0], at[0] + 1, at[0] + 2],
            "a batch is consecutive in the log"
        );
    }
    // Retries on the other node, all at once: the first ids, nothing new; a key reused for
    // another body is refused.
    let mut retries = Vec::new();
    for i in 0..KEYED {
        let addr = addrs[1];
        retries.push(tokio::spawn(async move {
            let same = json!({"topic": "g", "data": {"k": i}});
            let (status, answer) = publish_raw(addr, &same, Some(&format!("g-{i}"))).await;
            assert_eq!(status, 200, "{answer}");
            let other = json!({"topic": "g", "data": {"k": i, "changed": true}});
            let (conflict, _) = publish_raw(addr, &other, Some(&format!("g-{i}"))).await;
            assert_eq!(conflict, 422, "a key reused for another body");
            answer["id"].as_str().expect("id").to_owned()
        }));
    }
    for (i, retry) in retries.into_iter().enumerate() {
        assert_eq!(
            retry.await.expect("retry"),
            answered[i][0],
            "a retry with the same key gets the first id"
        );
    }
    let marker = try_publish(addrs[0], &json!({"topic": "g", "data": "end"}), None)
        .await
        .expect("acknowledged");
    let next = stream.next_event(WAIT).await;
    assert_eq!(next.id, marker, "no event from the retries reached the log");
    if let Some(len) = redis.log_len() {
        assert_eq!(len, total as u64 + 1, "the log holds each publish once");
    }
}
