//! Resuming with `Last-Event-ID`: replay in order, then live, with no gap and no duplicate at
//! the seam, even while publishes race the reconnect; and the in-band `reset` event when the
//! given id cannot be resumed from.

mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use support::http::send;
use support::{
    events_path, json, q, Hub, MessageEvent, Req, Rng, SseStream, Value, PUBLISH_KEY, WAIT,
};
use tokio::sync::Mutex;

fn hub(extra: &[&str]) -> Hub {
    let mut args = vec!["--publish-key", PUBLISH_KEY, "--public-topic", "**"];
    args.extend_from_slice(extra);
    Hub::start(&args)
}

/// Publishes `n` events on `topic` with data `{"seq": i}` and returns their ids.
async fn publish_seq(hub: &Hub, topic: &str, range: std::ops::Range<u64>) -> Vec<String> {
    let mut ids = Vec::new();
    for seq in range {
        ids.push(
            hub.publish(&json!({"topic": topic, "data": {"seq": seq}}))
                .await,
        );
    }
    ids
}

fn seq_of(event: &MessageEvent) -> u64 {
    let data: Value = serde_json::from_str(&event.data)
        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {event:?}"));
    data["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {event:?}"))
}

async fn expect_ids(stream: &mut SseStream, ids: &[String]) {
    for want in ids {
        let event = stream.next_event(WAIT).await;
        assert_eq!(
            &event.id, want,
            "replay out of order or with a gap: got {event:?}"
        );
    }
}

/// The `reset` event's `(reason, lastEventId)`, after checking its shape and id.
async fn expect_reset(stream: &mut SseStream, newest: &str) -> (String, String) {
    let event = stream.next_event(WAIT).await;
    assert_eq!(
        event.event, "reset",
        "expected a reset event first, got {event:?}"
    );
    assert_eq!(event.id, newest, "a reset carries the newest id: {event:?}");
    let data: Value = serde_json::from_str(&event.data).expect("reset data is JSON");
    let field = |name: &str| {
        data[name]
            .as_str()
            .unwrap_or_else(|| panic!("reset data without {name}: {data}"))
            .to_owned()
    };
    (field("reason"), field("lastEventId"))
}

#[tokio::test]
async fn last_event_id_header_replays_retained_events_in_order_then_live() {
    let hub = hub(&[]);
    let ids = publish_seq(&hub, "t", 0..6).await;
    let req = Req::get("/events?topic=t").header("Last-Event-ID", &ids[1]);
    let mut stream = hub.subscribe(req).await;
    expect_ids(&mut stream, &ids[2..]).await;
    let live = publish_seq(&hub, "t", 6..8).await;
    expect_ids(&mut stream, &live).await;
}

#[tokio::test]
async fn last_event_id_query_parameter_resumes_too() {
    let hub = hub(&[]);
    let ids = publish_seq(&hub, "t", 0..4).await;
    let path = format!("/events?topic=t&last_event_id={}", q(&ids[0]));
    let mut stream = hub.subscribe(Req::get(&path)).await;
    expect_ids(&mut stream, &ids[1..]).await;
}

#[tokio::test]
async fn the_last_event_id_header_wins_over_the_query_parameter() {
    let hub = hub(&[]);
    let ids = publish_seq(&hub, "t", 0..5).await;
    let path = format!("/events?topic=t&last_event_id={}", q(&ids[0]));
    let mut stream = hub
        .subscribe(Req::get(&path).header("Last-Event-ID", &ids[2]))
        .await;
    expect_ids(&mut stream, &ids[3..]).await;
}

#[tokio::test]
async fn a_replay_holds_only_events_the_connection_may_see() {
    let hub = hub(&[]);
    let first = hub.publish(&json!({"topic": "a", "text": "start"})).await;
    hub.publish(&json!({"topic": "b", "text": "other topic"}))
        .await;
    let mine = hub.publish(&json!({"topic": "a/1", "text": "mine"})).await;
    hub.publish(&json!({"user": "alice", "text": "for a user"}))
        .await;
    hub.publish(&json!({"topic": "a/1/deeper", "text": "not matched by a/*"}))
        .await;
    let req = Req::get(&events_path(&["a/*"])).header("Last-Event-ID", &first);
    let mut stream = hub.subscribe(req).await;
    expect_ids(&mut stream, std::slice::from_ref(&mine)).await;
    hub.publish(&json!({"topic": "a/2", "text": "sentinel"}))
        .await;
    stream.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn resuming_from_the_newest_id_gets_only_live_events() {
    let hub = hub(&[]);
    let ids = publish_seq(&hub, "t", 0..3).await;
    let req = Req::get("/events?topic=t").header("Last-Event-ID", &ids[2]);
    let mut stream = hub.subscribe(req).await;
    let live = publish_seq(&hub, "t", 3..4).await;
    expect_ids(&mut stream, &live).await;
}

#[tokio::test]
async fn an_id_older_than_the_history_gets_a_history_gap_reset_then_live_events() {
    let hub = hub(&["--history-max-events", "5"]);
    let ids = publish_seq(&hub, "t", 0..20).await;
    let req = Req::get("/events?topic=t").header("Last-Event-ID", &ids[0]);
    let mut stream = hub.subscribe(req).await;
    let (reason, given) = expect_reset(&mut stream, &ids[19]).await;
    assert_eq!(
        (reason.as_str(), given.as_str()),
        ("history-gap", ids[0].as_str())
    );
    let live = publish_seq(&hub, "t", 20..21).await;
    expect_ids(&mut stream, &live).await;
}

#[tokio::test]
async fn an_id_inside_the_history_window_still_resumes_without_reset() {
    let hub = hub(&["--history-max-events", "5"]);
    let ids = publish_seq(&hub, "t", 0..20).await;
    // The five retained are 15..20; resuming after 15 needs 16..20 only.
    let req = Req::get("/events?topic=t").header("Last-Event-ID", &ids[15]);
    let mut stream = hub.subscribe(req).await;
    expect_ids(&mut stream, &ids[16..]).await;
}

#[tokio::test]
async fn the_history_byte_cap_also_leads_to_a_history_gap_reset() {
    let hub = hub(&["--history-max-bytes", "8KiB"]);
    let pad = "p".repeat(1024);
    let mut ids = Vec::new();
    for seq in 0..40 {
        ids.push(
            hub.publish(&json!({"topic": "t", "data": {"seq": seq, "pad": pad}}))
                .await,
        );
    }
    let req = Req::get("/events?topic=t").header("Last-Event-ID", &ids[0]);
    let mut stream = hub.subscribe(req).await;
    let (reason, given) = expect_reset(&mut stream, &ids[39]).await;
    assert_eq!(
        (reason.as_str(), given.as_str()),
        ("history-gap", ids[0].as_str())
    );
    // The newest events are still there to resume from.
    let req = Req::get("/events?topic=t").header("Last-Event-ID", &ids[38]);
    let mut stream = hub.subscribe(req).await;
    expect_ids(&mut stream, &ids[39..]).await;
}

#[tokio::test]
async fn a_resume_on_a_hub_with_no_events_yet_still_streams() {
    let hub = hub(&[]);
    let req = Req::get("/events?topic=t").header("Last-Event-ID", "garbage");
    let mut stream = hub.subscribe(req).await;
    let id = hub.publish(&json!({"topic": "t", "text": "first"})).await;
    let (_, event) = stream.events_until(WAIT, |e| e.event != "reset").await;
    assert_eq!((event.id, event.data), (id, "first".to_owned()));
}

#[tokio::test]
async fn an_id_from_a_previous_hub_process_is_reset_not_misread() {
    let old = hub(&[]);
    let old_id = old.publish(&json!({"topic": "t", "text": "old"})).await;
    drop(old);
    let hub = hub(&[]);
    let ids = publish_seq(&hub, "t", 0..3).await;
    assert!(
        ids[0] > old_id,
        "a new process must start above old ids: {old_id} then {}",
        ids[0]
    );
    let req = Req::get("/events?topic=t").header("Last-Event-ID", &old_id);
    let mut stream = hub.subscribe(req).await;
    let (reason, given) = expect_reset(&mut stream, &ids[2]).await;
    assert!(
        reason == "history-gap" || reason == "unknown-id",
        "reason {reason:?}"
    );
    assert_eq!(given, old_id);
}

#[tokio::test]
async fn a_resume_replays_the_events_addressed_to_the_tokens_user() {
    let hub = Hub::start(&[
        "--jwt-secret",
        support::SECRET,
        "--publish-key",
        PUBLISH_KEY,
    ]);
    let alice = support::Token::new()
        .sub("alice")
        .subscribe(&["news"])
        .sign();
    let mut stream = hub
        .subscribe(Req::get("/events?topic=news").bearer(&alice))
        .await;
    let first = hub.publish(&json!({"topic": "news", "text": "seen"})).await;
    assert_eq!(stream.next_event(WAIT).await.id, first);
    drop(stream);
    // While alice is away: her events, other users' events, and her topic.
    let mut missed = Vec::new();
    missed.push(hub.post_ok("/notify/alice", &json!({"text": "a"})).await["id"].clone());
    hub.post_ok("/notify/bob", &json!({"text": "not hers"}))
        .await;
    missed.push(json!(
        hub.publish(&json!({"topic": "news", "text": "b"})).await
    ));
    missed.push(json!(
        hub.publish(&json!({"users": ["bob", "alice"], "text": "c"}))
            .await
    ));
    hub.publish(&json!({"topic": "other", "text": "not hers either"}))
        .await;
    let req = Req::get("/events?topic=news")
        .bearer(&alice)
        .header("Last-Event-ID", &first);
    let mut stream = hub.subscribe(req).await;
    for (want, data) in missed.iter().zip(["a", "b", "c"]) {
        let event = stream.next_event(WAIT).await;
        assert_eq!((json!(event.id), event.data.as_str()), (want.clone(), data));
    }
    hub.post_ok("/notify/alice", &json!({"text": "sentinel"}))
        .await;
    stream.expect_next_data("sentinel").await;
}

/// An id of the hub's form that it has not issued yet.
fn far_future(newest: &str) -> String {
    assert!(
        newest.bytes().all(|b| b.is_ascii_digit()),
        "ids are documented as fixed-width decimal today; got {newest:?}"
    );
    "9".repeat(newest.len())
}

#[tokio::test]
async fn an_id_the_hub_never_issued_gets_an_unknown_id_reset() {
    let hub = hub(&[]);
    let ids = publish_seq(&hub, "t", 0..3).await;
    let mut newest = ids[2].clone();
    let (long, future) = ("x".repeat(1000), far_future(&newest));
    for given in ["garbage", "-1", long.as_str(), future.as_str()] {
        let req = Req::get("/events?topic=t").header("Last-Event-ID", given);
        let mut stream = hub.subscribe(req).await;
        let (reason, echoed) = expect_reset(&mut stream, &newest).await;
        assert_eq!(reason, "unknown-id", "for Last-Event-ID {given:?}");
        assert_eq!(echoed, given);
        newest = hub
            .publish(&json!({"topic": "t", "text": "sentinel"}))
            .await;
        stream.expect_next_data("sentinel").await;
    }
}

/// One subscriber that reconnects every few events with its last id, while a publisher
/// publishes without pause: the concatenation of its connections must be exactly the
/// publisher's sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_racing_live_publishes_has_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 600;
    let hub = hub(&[]);
    let addr = hub.addr();
    let mut stream = hub.subscribe(Req::get("/events?topic=race")).await;
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        for seq in 0..TOTAL {
            let body = json!({"topic": "race", "data": {"seq": seq}});
            let reply = send(addr, &Req::post("/publish").bearer(PUBLISH_KEY).json(&body)).await;
            ids.push(reply.ok_json()["id"].as_str().expect("id").to_owned());
        }
        ids
    });
    let mut rng = Rng::from_env_or_clock("resume race");
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut reconnects = 0;
    while seen.last().map(|(s, _)| *s) != Some(TOTAL - 1) {
        for _ in 0..rng.range(1, 25) {
            let event = stream.next_event(WAIT).await;
            seen.push((seq_of(&event), event.id.clone()));
            if seq_of(&event) == TOTAL - 1 {
                break;
            }
        }
        let last = stream.last_event_id().to_owned();
        drop(stream);
        reconnects += 1;
        let req = Req::get("/events?topic=race").header("Last-Event-ID", &last);
        stream = hub.subscribe(req).await;
    }
    let acked = publisher.await.expect("publisher task");
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (0..TOTAL).collect::<Vec<_>>(),
        "after {reconnects} reconnects"
    );
    let ids: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, acked, "received ids differ from the acknowledged ones");
    assert!(reconnects > 20, "the test must actually reconnect often");
}

#[derive(Debug, Default)]
struct Acked {
    /// Per topic, `(id, publisher, seq)` in acknowledgement order.
    by_topic: HashMap<usize, Vec<(String, usize, u64)>>,
}

async fn subscriber_run(
    addr: SocketAddr,
    topic: usize,
    expected: usize,
    source: Ipv4Addr,
    mut last: String,
    mut rng: Rng,
) -> Vec<(String, usize, u64)> {
    let path = format!("/events?topic=load/{topic}");
    let mut received = Vec::new();
    while received.len() < expected {
        let req = Req::get(&path)
            .source_ip(source)
            .header("Last-Event-ID", &last);
        let mut stream = SseStream::open(addr, &req).await.expect("subscribe");
        stream.expect_preamble().await;
        for _ in 0..rng.range(1, 40) {
            let event = stream.next_event(WAIT).await;
            assert_ne!(
                event.event, "reset",
                "no reset expected inside the window: {event:?}"
            );
            let data: Value = serde_json::from_str(&event.data).expect("JSON data");
            let publisher = data["p"].as_u64().expect("p") as usize;
            received.push((
                event.id.clone(),
                publisher,
                data["seq"].as_u64().expect("seq"),
            ));
            if received.len() == expected {
                break;
            }
        }
        last = stream.last_event_id().to_owned();
        drop(stream);
        if rng.range(0, 3) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(rng.range(0, 20))).await;
        }
    }
    received
}

/// 50 publishers and 50 subscribers over 10 topics; each subscriber disconnects at random and
/// resumes with its last id. Each must see its topic's events exactly as acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_publishers_and_subscribers_resuming_at_random_each_see_a_gap_free_sequence() {
    const TOPICS: usize = 10;
    const PUBLISHERS: usize = 50;
    const SUBSCRIBERS: usize = 50;
    const PER_PUBLISHER: u64 = 30;
    let hub = hub(&[]);
    let addr = hub.addr();
    let mut rng = Rng::from_env_or_clock("fifty publishers and subscribers");
    let per_topic = PUBLISHERS / TOPICS * PER_PUBLISHER as usize;

    // Every subscriber resumes from a marker published before any load event, even on its
    // first connection, so "all of its topic's events" is well defined whenever it connects.
    let marker = hub
        .publish(&json!({"topic": "marker", "text": "start"}))
        .await;
    let mut subscribers = Vec::new();
    for s in 0..SUBSCRIBERS {
        let topic = s % TOPICS;
        let source = Ipv4Addr::new(127, 0, 1, (s % 200 + 1) as u8);
        let (sub_rng, marker) = (Rng::new(rng.next_u64()), marker.clone());
        subscribers.push(tokio::spawn(async move {
            subscriber_run(addr, topic, per_topic, source, marker, sub_rng).await
        }));
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let acked = Arc::clone(&acked);
        publishers.push(tokio::spawn(async move {
            let topic = p % TOPICS;
            for seq in 0..PER_PUBLISHER {
                let body = json!({"topic": format!("load/{topic}"), "data": {"p": p, "seq": seq}});
                let req = Req::post("/publish").bearer(PUBLISH_KEY).json(&body);
                // Publishers race; the ids give the order, so the list is sorted afterwards.
                let id = send(addr, &req).await.ok_json()["id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
                acked
                    .lock()
                    .await
                    .by_topic
                    .entry(topic)
                    .or_default()
                    .push((id, p, seq));
            }
        }));
    }
    for publisher in publishers {
        publisher.await.expect("publisher task");
    }
    let mut acked = Arc::try_unwrap(acked)
        .expect("publishers done")
        .into_inner();
    for events in acked.by_topic.values_mut() {
        events.sort();
    }
    for (s, subscriber) in subscribers.into_iter().enumerate() {
        let received = subscriber.await.expect("subscriber task");
        let want = &acked.by_topic[&(s % TOPICS)];
        assert!(
            received.windows(2).all(|w| w[0].0 < w[1].0),
            "subscriber {s}: ids not strictly increasing"
        );
        assert_eq!(
            &received, want,
            "subscriber {s} saw a different sequence than was acknowledged"
        );
    }
}
