//! `Idempotency-Key` on a publish: a retry with the same key gets the first answer and
//! publishes nothing new; the key is tied to its caller and its request.

mod support;

use support::{events_path, json, Hub, Req, Token, PUBLISH_KEY, WAIT};

fn publish(key: &str, body: &support::Value) -> Req {
    Req::post("/publish")
        .bearer(PUBLISH_KEY)
        .header("Idempotency-Key", key)
        .json(body)
}

#[tokio::test]
async fn a_retried_publish_is_answered_with_the_first_id_and_delivered_once() {
    let hub = Hub::standard(&[]);
    let mut stream = hub.subscribe(Req::get(&events_path(&["t"]))).await;
    let body = json!({"topic": "t", "data": {"order": 42}});
    let first = hub.send(publish("order-42-paid", &body)).await;
    first.expect_status(200);
    assert_eq!(first.header("idempotent-replayed"), None);
    for _ in 0..3 {
        let retry = hub.send(publish("order-42-paid", &body)).await;
        retry.expect_status(200);
        assert_eq!(
            retry.json(),
            first.json(),
            "the first answer, byte for byte"
        );
        assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    }
    let event = stream.next_event(WAIT).await;
    assert_eq!(event.id, first.json()["id"].as_str().unwrap());
    // Nothing else was published: the next event is the sentinel.
    hub.publish(&json!({"topic": "t", "data": "sentinel"}))
        .await;
    stream.expect_next_data("\"sentinel\"").await;
    let metrics = hub.metrics().await;
    assert_eq!(metrics.get("tidings_idempotent_replays_total"), 3.0);
}

#[tokio::test]
async fn the_same_key_for_another_request_is_refused_with_422() {
    let hub = Hub::standard(&[]);
    hub.send(publish("k1", &json!({"topic": "t", "data": 1})))
        .await
        .expect_status(200);
    let other = hub
        .send(publish("k1", &json!({"topic": "t", "data": 2})))
        .await;
    other.expect_status(422);
    assert_eq!(other.json()["error"]["code"], "idempotency_key_reused");
    // The same key on another endpoint is another request too.
    let broadcast = Req::post("/broadcast")
        .bearer(PUBLISH_KEY)
        .header("Idempotency-Key", "k1")
        .json(&json!({"data": 1}));
    hub.send(broadcast).await.expect_status(422);
}

#[tokio::test]
async fn keys_of_different_callers_do_not_meet() {
    let hub = Hub::standard(&[]);
    let alice = Token::new().sub("alice").publish(&["**"]).sign();
    let bob = Token::new().sub("bob").publish(&["**"]).sign();
    let body = json!({"topic": "t", "data": 1});
    let a = hub
        .send(
            Req::post("/publish")
                .bearer(&alice)
                .header("Idempotency-Key", "k")
                .json(&body),
        )
        .await;
    let b = hub
        .send(
            Req::post("/publish")
                .bearer(&bob)
                .header("Idempotency-Key", "k")
                .json(&body),
        )
        .await;
    a.expect_status(200);
    b.expect_status(200);
    assert_ne!(a.json()["id"], b.json()["id"], "two callers, two events");
    assert_eq!(b.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn a_failed_publish_leaves_its_key_free_and_bad_keys_are_refused() {
    let hub = Hub::standard(&[]);
    // Refused (reserved event type): nothing is remembered, a corrected retry publishes.
    let bad = json!({"topic": "t", "event": "reset", "data": 1});
    hub.send(publish("k", &bad)).await.expect_status(400);
    hub.send(publish("k", &json!({"topic": "t", "data": 1})))
        .await
        .expect_status(200);
    for key in ["", "has space", &"k".repeat(256)] {
        let res = hub
            .send(publish(key, &json!({"topic": "t", "data": 1})))
            .await;
        res.expect_status(400);
        assert!(
            res.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{key:?}"
        );
    }
}

#[tokio::test]
async fn notify_and_broadcast_take_a_key_too() {
    let hub = Hub::standard(&[]);
    for (path, key) in [("/notify/alice", "n-1"), ("/broadcast", "b-1")] {
        let req = || {
            Req::post(path)
                .bearer(PUBLISH_KEY)
                .header("Idempotency-Key", key)
                .json(&json!({"data": 1}))
        };
        let first = hub.send(req()).await;
        first.expect_status(200);
        let retry = hub.send(req()).await;
        assert_eq!(retry.json(), first.json(), "{path}");
        assert_eq!(retry.header("idempotent-replayed"), Some("true"), "{path}");
    }
}
