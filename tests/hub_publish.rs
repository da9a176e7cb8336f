//! `POST /publish`, `/notify/{user}` and `/broadcast`: the replies, the ids, and that every
//! subscriber receives exactly what was published.

mod support;

use support::{
    events_path, is_compact_json, json, Hub, Item, MessageEvent, Req, SseStream, Token, Value,
    PUBLISH_KEY, WAIT,
};

fn hub() -> Hub {
    Hub::standard(&[])
}

async fn anonymous(hub: &Hub, topics: &[&str]) -> SseStream {
    hub.subscribe(Req::get(&events_path(topics))).await
}

async fn user(hub: &Hub, name: &str) -> SseStream {
    let token = Token::new().sub(name).sign();
    hub.subscribe(Req::get("/events").bearer(&token)).await
}

fn id_of(reply: &Value) -> String {
    reply["id"]
        .as_str()
        .unwrap_or_else(|| panic!("reply without an id string: {reply}"))
        .to_owned()
}

#[tokio::test]
async fn a_publish_replies_with_its_id_and_the_connections_it_was_queued_to() {
    let hub = hub();
    let mut a = anonymous(&hub, &["orders/*"]).await;
    let mut b = anonymous(&hub, &["orders/42"]).await;
    let _elsewhere = anonymous(&hub, &["news"]).await;
    let reply = hub
        .post_ok(
            "/publish",
            &json!({"topic": "orders/42", "event": "order.updated", "data": {"state": "paid"}}),
        )
        .await;
    assert_eq!(reply["delivered"], 2, "reply {reply}");
    let id = id_of(&reply);
    for stream in [&mut a, &mut b] {
        let event = stream.next_event(WAIT).await;
        assert_eq!(
            event,
            MessageEvent {
                event: "order.updated".into(),
                data: r#"{"state":"paid"}"#.into(),
                id: id.clone()
            }
        );
    }
}

#[tokio::test]
async fn delivered_counts_only_matching_connections() {
    let hub = hub();
    let mut streams = Vec::new();
    for topic in ["t", "t", "t/*", "u"] {
        streams.push(anonymous(&hub, &[topic]).await);
    }
    let reply = hub
        .post_ok("/publish", &json!({"topic": "t", "text": "x"}))
        .await;
    assert_eq!(reply["delivered"], 2);
    let reply = hub
        .post_ok("/publish", &json!({"topic": "nobody/listens", "text": "x"}))
        .await;
    assert_eq!(reply["delivered"], 0);
    // One connection matched by two targets is one delivery.
    let reply = hub
        .post_ok("/publish", &json!({"topics": ["t", "t/1"], "text": "x"}))
        .await;
    assert_eq!(reply["delivered"], 3);
}

#[tokio::test]
async fn data_is_sent_as_compact_json_on_one_line() {
    let hub = hub();
    let mut stream = anonymous(&hub, &["j"]).await;
    let values = [
        json!({"nested": {"list": [1, 2.5, -3, {"deep": [null, true, false]}], "s": "two words"}}),
        json!("a string with \"quotes\", a \\ backslash and a\nnewline"),
        json!(42),
        json!(null),
        json!([]),
        json!({"unicode": "héllo wörld ✓ 日本", "emoji": "🚀"}),
    ];
    // A body written with lots of whitespace: the wire must still carry compact JSON.
    for value in &values {
        let body = format!(
            r#"{{ "topic" : "j" ,  "data" :  {} }}"#,
            serde_json::to_string_pretty(value).unwrap()
        );
        let reply = hub
            .send(
                Req::post("/publish")
                    .bearer(PUBLISH_KEY)
                    .header("Content-Type", "application/json")
                    .body(body),
            )
            .await;
        reply.expect_status(200);
    }
    for value in &values {
        let event = stream.next_event(WAIT).await;
        assert!(
            !event.data.contains('\n'),
            "data spans lines: {:?}",
            event.data
        );
        assert!(
            is_compact_json(&event.data),
            "not compact JSON: {:?}",
            event.data
        );
        let back: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(&back, value);
    }
}

#[tokio::test]
async fn text_is_received_exactly_as_sent_line_by_line() {
    let hub = hub();
    let mut stream = anonymous(&hub, &["t"]).await;
    let texts = [
        "one line",
        "line 1\nline 2\n\nline 4",
        "trailing newline\n",
        "\nleading newline",
        "",
        " leading space",
        ": looks like a comment",
        "data: looks like a field",
        "id: 999",
        "tab\tand unicode ✓",
    ];
    for text in texts {
        hub.publish(&json!({"topic": "t", "text": text})).await;
    }
    for text in texts {
        assert_eq!(stream.next_event(WAIT).await.data, text);
    }
    // CR and CRLF are line ends too: they come back as LF, as for any SSE client.
    hub.publish(&json!({"topic": "t", "text": "a\r\nb\rc"}))
        .await;
    assert_eq!(stream.next_event(WAIT).await.data, "a\nb\nc");
}

#[tokio::test]
async fn event_type_defaults_to_message_and_retry_is_sent() {
    let hub = hub();
    let mut stream = anonymous(&hub, &["t"]).await;
    hub.publish(&json!({"topic": "t", "data": 1})).await;
    let event = stream.next_event(WAIT).await;
    assert_eq!(event.event, "message");

    let id = hub
        .publish(&json!({"topic": "t", "event": "tick", "data": 2, "retry": 1234}))
        .await;
    assert_eq!(stream.next_item(WAIT).await, Item::Retry(1234));
    assert_eq!(
        stream.next_item(WAIT).await,
        Item::Event(MessageEvent {
            event: "tick".into(),
            data: "2".into(),
            id
        })
    );
}

#[tokio::test]
async fn a_batch_gets_consecutive_increasing_ids_and_an_array_reply_in_order() {
    let hub = hub();
    let mut stream = anonymous(&hub, &["b/*"]).await;
    let batch = json!([
        {"topic": "b/1", "text": "first"},
        {"topic": "b/2", "data": {"n": 2}},
        {"topic": "elsewhere", "text": "not for this subscriber"},
        {"topic": "b/3", "event": "last", "text": "third"},
    ]);
    let reply = hub.post_ok("/publish", &batch).await;
    let replies = reply
        .as_array()
        .unwrap_or_else(|| panic!("a batch reply must be an array: {reply}"));
    assert_eq!(replies.len(), 4);
    let ids: Vec<String> = replies.iter().map(id_of).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "batch ids not increasing: {ids:?}"
    );
    let delivered: Vec<&Value> = replies.iter().map(|r| &r["delivered"]).collect();
    assert_eq!(delivered, [&json!(1), &json!(1), &json!(0), &json!(1)]);
    for (i, data) in [(0, "first"), (1, r#"{"n":2}"#), (3, "third")] {
        let event = stream.next_event(WAIT).await;
        assert_eq!(
            (event.id.as_str(), event.data.as_str()),
            (ids[i].as_str(), data)
        );
    }
}

#[tokio::test]
async fn no_other_publish_gets_an_id_inside_a_batch() {
    let hub = hub();
    // Single publishes race batches; a batch's ids must form one block with no foreign id in it.
    let addr = hub.addr();
    let racer = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..60 {
            let reply = support::http::send(
                addr,
                &Req::post("/publish")
                    .bearer(PUBLISH_KEY)
                    .json(&json!({"topic": "single", "data": i})),
            )
            .await;
            ids.push(id_of(&reply.ok_json()));
        }
        ids
    });
    let mut batches = Vec::new();
    for _ in 0..20 {
        let items: Vec<Value> = (0..5)
            .map(|i| json!({"topic": "batch", "data": i}))
            .collect();
        let reply = hub.post_ok("/publish", &Value::Array(items)).await;
        batches.push(
            reply
                .as_array()
                .unwrap()
                .iter()
                .map(id_of)
                .collect::<Vec<_>>(),
        );
    }
    let singles = racer.await.unwrap();
    for batch in &batches {
        let (first, last) = (&batch[0], &batch[batch.len() - 1]);
        assert!(
            batch.windows(2).all(|w| w[0] < w[1]),
            "batch ids not increasing: {batch:?}"
        );
        let inside: Vec<&String> = singles
            .iter()
            .filter(|id| *id > first && *id < last)
            .collect();
        assert!(
            inside.is_empty(),
            "ids {inside:?} fall inside the batch {batch:?}"
        );
    }
}

#[tokio::test]
async fn a_batch_with_one_invalid_item_publishes_nothing() {
    let hub = hub();
    let mut stream = anonymous(&hub, &["**"]).await;
    let bad_items = [
        json!({"topic": "x", "data": 1, "text": "both"}),
        json!({"topic": "x"}),
        json!({"data": 1}),
        json!({"topic": "a//b", "data": 1}),
        json!({"topic": "x", "data": 1, "retry": -1}),
        json!("not an object"),
    ];
    for bad in bad_items {
        let batch = json!([{"topic": "x", "text": "ok 1"}, bad, {"topic": "x", "text": "ok 2"}]);
        let reply = hub
            .send(Req::post("/publish").bearer(PUBLISH_KEY).json(&batch))
            .await;
        assert_eq!(
            reply.status,
            400,
            "batch with {bad} got {}: {}",
            reply.status,
            reply.text()
        );
    }
    hub.publish(&json!({"topic": "x", "text": "sentinel"}))
        .await;
    stream.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn one_event_for_several_users_reaches_each_once() {
    let hub = hub();
    let mut alice = user(&hub, "alice").await;
    let mut alice2 = user(&hub, "alice").await;
    let mut bob = user(&hub, "bob").await;
    let mut carol = user(&hub, "carol").await;
    let reply = hub
        .post_ok(
            "/publish",
            &json!({"users": ["alice", "bob"], "text": "hi"}),
        )
        .await;
    assert_eq!(reply["delivered"], 3);
    for stream in [&mut alice, &mut alice2, &mut bob] {
        assert_eq!(stream.next_event(WAIT).await.data, "hi");
    }
    hub.publish(&json!({"users": ["carol", "alice"], "text": "sentinel"}))
        .await;
    carol.expect_next_data("sentinel").await;
    alice.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn topic_and_user_targets_combine_without_duplicates() {
    let hub = hub();
    let mut on_topic = anonymous(&hub, &["t"]).await;
    let mut alice = user(&hub, "alice").await;
    let alice_token = Token::new().sub("alice").subscribe(&["t"]).sign();
    let mut alice_on_topic = hub
        .subscribe(Req::get("/events?topic=t").bearer(&alice_token))
        .await;
    let reply = hub
        .post_ok(
            "/publish",
            &json!({"topic": "t", "user": "alice", "text": "both"}),
        )
        .await;
    assert_eq!(reply["delivered"], 3);
    for stream in [&mut on_topic, &mut alice, &mut alice_on_topic] {
        assert_eq!(stream.next_event(WAIT).await.data, "both");
    }
    hub.publish(&json!({"topic": "t", "user": "alice", "text": "sentinel"}))
        .await;
    alice_on_topic.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn notify_reaches_every_connection_of_the_user_and_replies_id_and_sent() {
    let hub = hub();
    let mut first = user(&hub, "alice").await;
    let mut second = user(&hub, "alice").await;
    let mut bob = user(&hub, "bob").await;
    let reply = hub
        .post_ok("/notify/alice", &json!({"event": "note", "data": {"n": 1}}))
        .await;
    assert_eq!(reply["sent"], 2, "reply {reply}");
    let id = id_of(&reply);
    for stream in [&mut first, &mut second] {
        let event = stream.next_event(WAIT).await;
        assert_eq!(
            event,
            MessageEvent {
                event: "note".into(),
                data: r#"{"n":1}"#.into(),
                id: id.clone()
            }
        );
    }
    let reply = hub.post_ok("/notify/nobody", &json!({"text": "x"})).await;
    assert_eq!(reply["sent"], 0);
    id_of(&reply);
    hub.post_ok("/notify/bob", &json!({"text": "sentinel"}))
        .await;
    bob.expect_next_data("sentinel").await;
}

#[tokio::test]
async fn notify_decodes_the_user_in_the_path() {
    let hub = hub();
    let mut odd = user(&hub, "jane doe@example.com/ü").await;
    let reply = hub
        .post_ok(
            "/notify/jane%20doe%40example.com%2F%C3%BC",
            &json!({"text": "found"}),
        )
        .await;
    assert_eq!(reply["sent"], 1, "reply {reply}");
    assert_eq!(odd.next_event(WAIT).await.data, "found");
}

#[tokio::test]
async fn broadcast_reaches_every_connection_and_replies_id_sent_and_total() {
    let hub = hub();
    let mut streams = vec![
        anonymous(&hub, &["a"]).await,
        anonymous(&hub, &["b/**"]).await,
        user(&hub, "alice").await,
        user(&hub, "bob").await,
    ];
    let reply = hub
        .post_ok(
            "/broadcast",
            &json!({"event": "maintenance", "text": "at noon", "retry": 5000}),
        )
        .await;
    assert_eq!(
        (&reply["sent"], &reply["total"]),
        (&json!(4), &json!(4)),
        "reply {reply}"
    );
    let id = id_of(&reply);
    for stream in &mut streams {
        assert_eq!(stream.next_item(WAIT).await, Item::Retry(5000));
        let event = stream.next_event(WAIT).await;
        assert_eq!(
            event,
            MessageEvent {
                event: "maintenance".into(),
                data: "at noon".into(),
                id: id.clone()
            }
        );
    }
}

#[tokio::test]
async fn ids_strictly_increase_in_publish_order() {
    let hub = hub();
    let mut stream = anonymous(&hub, &["**"]).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let reply = match i % 3 {
            0 => {
                hub.post_ok("/publish", &json!({"topic": format!("t/{i}"), "data": i}))
                    .await
            }
            1 => hub.post_ok("/notify/someone", &json!({"data": i})).await,
            _ => hub.post_ok("/broadcast", &json!({"data": i})).await,
        };
        ids.push(id_of(&reply));
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not strictly increasing: {ids:?}"
    );
    // The subscriber sees them in the same order (notify to another user excluded).
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 != 1) {
        let event = stream.next_event(WAIT).await;
        assert_eq!((&event.id, event.data.clone()), (id, i.to_string()));
    }
}

#[tokio::test]
async fn every_subscriber_receives_exactly_what_was_published() {
    let hub = hub();
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(anonymous(&hub, &["mix/**"]).await);
    }
    let bodies = [
        json!({"topic": "mix/a", "data": {"k": [1, 2, 3]}}),
        json!({"topic": "mix/b/c", "event": "custom.type", "text": "multi\nline\ntext"}),
        json!({"topic": "mix/a", "event": "e", "data": "just a string"}),
        json!({"topic": "mix/z", "text": ""}),
        json!({"topic": "mix/a", "data": 3.25}),
        json!({"topic": "mix/a", "event": "ünïcödé", "text": "ünïcödé ✓"}),
    ];
    let mut expected = Vec::new();
    for body in &bodies {
        let id = hub.publish(body).await;
        let event = body
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_owned();
        expected.push((
            event,
            id,
            body.get("data").cloned(),
            body.get("text").cloned(),
        ));
    }
    for stream in &mut streams {
        for (event, id, data, text) in &expected {
            let got = stream.next_event(WAIT).await;
            assert_eq!((&got.event, &got.id), (event, id));
            match (data, text) {
                (Some(data), None) => {
                    let back: Value = serde_json::from_str(&got.data).expect("data is JSON");
                    assert_eq!(&back, data);
                }
                (None, Some(text)) => assert_eq!(got.data, text.as_str().unwrap()),
                _ => unreachable!("each body has data or text"),
            }
        }
    }
}
