//! The hub's own live events through the real hub: `$sys/connections`, `$sys/stats`,
//! `$sys/tap` (admin only, never reached by `**`, no ids), `presence/{topic}` lists, and
//! `DELETE /clients/{id}`.

mod support;

use std::time::Duration;

use support::{json, End, Hub, Req, SseStream, Token, Value, PUBLISH_KEY, WAIT};

fn hub() -> Hub {
    Hub::standard(&[])
}

fn admin() -> String {
    Token::new().sub("ops").admin().subscribe(&["**"]).sign()
}

async fn next_of(stream: &mut SseStream, event: &str) -> Value {
    let (_, e) = stream.events_until(WAIT, |e| e.event == event).await;
    assert_eq!(e.id, "", "a system event carries no id: {e:?}");
    serde_json::from_str(&e.data).expect("JSON data")
}

#[tokio::test]
async fn connections_come_and_go_on_sys_connections() {
    let hub = hub();
    let mut ops = hub
        .subscribe(Req::get("/events?topic=$sys/connections").bearer(&admin()))
        .await;
    let bob = Token::new().sub("bob").subscribe(&["rooms/*"]).sign();
    let mut s = hub
        .subscribe(Req::get("/events?topic=rooms/1").bearer(&bob))
        .await;
    let (_, connect) = ops
        .events_until(WAIT, |e| e.event == "connect" && e.data.contains("\"bob\""))
        .await;
    let connect: Value = serde_json::from_str(&connect.data).unwrap();
    assert_eq!(connect["connection"]["user"], "bob");
    assert_eq!(connect["connection"]["topics"], json!(["rooms/1"]));
    let client_id = connect["connection"]["clientId"]
        .as_str()
        .unwrap()
        .to_owned();

    // An admin ends that stream; the watcher sees it go.
    let reply = hub
        .send(Req::new("DELETE", &format!("/clients/{client_id}")).bearer(PUBLISH_KEY))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    s.expect_closed(WAIT).await;
    let gone = next_of(&mut ops, "disconnect").await;
    assert_eq!(gone["connection"]["clientId"], client_id.as_str());
    let again = hub
        .send(Req::new("DELETE", &format!("/clients/{client_id}")).bearer(PUBLISH_KEY))
        .await;
    assert_eq!(again.status, 404);
    let denied = hub
        .send(Req::new("DELETE", "/clients/x").bearer(&bob))
        .await;
    assert_eq!(denied.status, 403);
}

#[tokio::test]
async fn system_topics_are_for_admins_and_never_reached_by_wildcards() {
    let hub = hub();
    let user = Token::new().sub("u").subscribe(&["**"]).sign();
    for topic in ["$sys/stats", "$sys/connections", "$sys/tap", "$sys/**"] {
        let r = hub
            .refused(Req::get(&format!("/events?topic={topic}")).bearer(&user))
            .await;
        assert_eq!(r.status, 403, "{topic}");
    }
    let mut everything = hub
        .subscribe(Req::get("/events?topic=**").bearer(&user))
        .await;
    let _ops = hub
        .subscribe(Req::get("/events?topic=$sys/**").bearer(&admin()))
        .await;
    hub.publish(&json!({"topic": "x", "data": "sentinel"}))
        .await;
    // Connect events, stats and the tap of that publish all went to `$sys/…`; `**` saw only
    // the publish.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    everything.expect_next_data("\"sentinel\"").await;
    let reply = hub
        .send(
            Req::post("/publish")
                .bearer(PUBLISH_KEY)
                .json(&json!({"topic": "$sys/stats", "data": 1})),
        )
        .await;
    assert_eq!(
        reply.status,
        400,
        "nobody publishes to a system topic, not even with a publish-everything key: {}",
        reply.text()
    );
}

#[tokio::test]
async fn stats_tick_and_the_tap_shows_publishes_cut_short() {
    let hub = hub();
    let mut ops = hub
        .subscribe(Req::get("/events?topic=$sys/stats&topic=$sys/tap").bearer(&admin()))
        .await;
    let stats = next_of(&mut ops, "stats").await;
    assert_eq!(stats["connections"], 1, "{stats}");
    assert!(
        stats["uptimeS"].is_u64() && stats["mode"] == "memory",
        "{stats}"
    );
    let big = "x".repeat(1000);
    hub.publish(&json!({"topic": "orders/1", "event": "big", "text": big}))
        .await;
    let tap = next_of(&mut ops, "tap").await;
    assert_eq!(tap["topics"], json!(["orders/1"]));
    assert_eq!(tap["event"], "big");
    assert_eq!(tap["data"].as_str().unwrap().len(), 300, "cut to 300 bytes");
    assert_eq!(tap["cut"], true);
    // Over 50 a second the tap skips, and says how many.
    let batch: Vec<Value> = (0..120).map(|i| json!({"topic": "t", "data": i})).collect();
    hub.post_ok("/publish", &Value::Array(batch)).await;
    // Keep publishing one more until a tap arrives that reports the skipped ones (the next
    // second's first).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the tap never reported skipping"
        );
        match ops.try_next_event(Duration::from_millis(300)).await {
            Ok(e) if e.event == "tap" => {
                let t: Value = serde_json::from_str(&e.data).unwrap();
                if t["skipped"].as_u64().unwrap_or(0) > 0 {
                    break;
                }
            }
            Ok(_) => {}
            Err(End::TimedOut) => {
                hub.publish(&json!({"topic": "t", "data": "more"})).await;
            }
            Err(e) => panic!("the admin stream ended: {e:?}"),
        }
    }
}

#[tokio::test]
async fn presence_lists_follow_the_subscribers_of_a_topic() {
    let hub = hub();
    let mut watcher = hub.subscribe(Req::get("/events?topic=presence/room")).await;
    let first = next_of(&mut watcher, "presence").await;
    assert_eq!(first, json!({"topic": "room", "users": [], "count": 0}));
    let alice = Token::new().sub("alice").subscribe(&["room"]).sign();
    let bob = Token::new().sub("bob").subscribe(&["room"]).sign();
    let a = hub
        .subscribe(Req::get("/events?topic=room").bearer(&alice))
        .await;
    let _b = hub
        .subscribe(Req::get("/events?topic=room").bearer(&bob))
        .await;
    let mut list = next_of(&mut watcher, "presence").await;
    while list["count"] != 2 {
        list = next_of(&mut watcher, "presence").await;
    }
    assert_eq!(list["users"], json!(["alice", "bob"]));
    drop(a);
    let mut list = next_of(&mut watcher, "presence").await;
    while list["count"] != 1 {
        list = next_of(&mut watcher, "presence").await;
    }
    assert_eq!(list["users"], json!(["bob"]));
    // The watcher's own position never moved.
    assert_eq!(watcher.last_event_id(), "");
    match watcher.try_next_event(Duration::from_millis(10)).await {
        Ok(_) | Err(End::TimedOut) => {}
        Err(e) => panic!("the watcher's stream ended: {e:?}"),
    }
}
