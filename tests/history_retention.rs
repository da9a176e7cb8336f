//! Retention of the durable history, through the real binary: each limit (`--history-max-events`,
//! `--history-max-bytes`, `--history-max-age`) drops the oldest events in the background, and a
//! resume sends `reset` exactly when its position was dropped: resuming from the newest
//! dropped event replays what is left; resuming from one before it is told about the gap.

mod support;

use std::time::Duration;

use support::{json, Hub, Req, SseStream, Value, PUBLISH_KEY, WAIT};

const ARGS: [&str; 4] = ["--publish-key", PUBLISH_KEY, "--public-topic", "r/**"];

async fn publish_n(hub: &Hub, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            hub.publish(&json!({"topic": "r/a", "data": {"n": i}}))
                .await,
        );
    }
    ids
}

async fn resume(hub: &Hub, last_event_id: &str) -> SseStream {
    hub.subscribe(Req::get("/events?topic=r%2Fa").header("Last-Event-ID", last_event_id))
        .await
}

/// Resuming from the newest dropped event replays exactly `retained`, with no reset.
async fn expect_replay_without_reset(hub: &Hub, floor: &str, retained: &[String]) {
    let mut stream = resume(hub, floor).await;
    for id in retained {
        let event = stream.next_event(WAIT).await;
        assert_eq!(
            event.event, "message",
            "no reset when resuming at the floor: {event:?}"
        );
        assert_eq!(&event.id, id);
    }
    // Nothing else was replayed: the next event is a fresh one.
    let sentinel = hub
        .publish(&json!({"topic": "r/a", "data": "sentinel"}))
        .await;
    assert_eq!(stream.next_event(WAIT).await.id, sentinel);
}

/// Resuming from before the newest dropped event gets `reset` (history-gap) first, whose id
/// is the newest event, then live events.
async fn expect_reset(hub: &Hub, given: &str, newest: &str) {
    let mut stream = resume(hub, given).await;
    let reset = stream.next_event(WAIT).await;
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert_eq!(&reset.id, newest, "reset carries the newest id");
    let data: Value = serde_json::from_str(&reset.data).expect("reset data is JSON");
    assert_eq!(data, json!({"reason": "history-gap", "lastEventId": given}));
    let sentinel = hub
        .publish(&json!({"topic": "r/a", "data": "after-reset"}))
        .await;
    assert_eq!(
        stream.next_event(WAIT).await.id,
        sentinel,
        "live events follow the reset"
    );
}

#[tokio::test]
async fn max_events_drops_the_oldest_and_resets_exactly_past_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ARGS.to_vec();
    args.extend(["--history-max-events", "5"]);
    let hub = Hub::start_on_disk(dir.path(), &args);
    let ids = publish_n(&hub, 12).await;
    hub.wait_metric("tidings_history_events", WAIT, |v| v == 5.0)
        .await;
    // Retained: the last five; the floor is the newest dropped event.
    expect_replay_without_reset(&hub, &ids[6], &ids[7..]).await;
    expect_reset(&hub, &ids[5], &hub_newest(&hub).await).await;

    // The boundary survives a restart.
    drop(hub);
    let hub = Hub::start_on_disk(dir.path(), &args);
    let newest = hub.publish(&json!({"topic": "r/a", "data": "x"})).await;
    hub.wait_metric("tidings_history_events", WAIT, |v| v == 5.0)
        .await;
    expect_reset(&hub, &ids[5], &newest).await;
}

#[tokio::test]
async fn max_bytes_keeps_what_fits_and_resets_exactly_past_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ARGS.to_vec();
    args.extend(["--history-max-bytes", "120"]);
    let hub = Hub::start_on_disk(dir.path(), &args);
    let ids = publish_n(&hub, 10).await;
    // Every event has the same size here, so what fits is settled once the count stops moving.
    let metrics = loop {
        let m = hub.metrics().await;
        let (events, bytes) = (
            m.sum("tidings_history_events"),
            m.sum("tidings_history_bytes"),
        );
        if bytes.is_some_and(|b| b <= 120.0) && events.is_some_and(|e| e >= 1.0) {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let kept = metrics.sum("tidings_history_events").unwrap() as usize;
    assert!(
        (1..10).contains(&kept),
        "kept {kept} of 10 events within 120 bytes"
    );
    let floor = 10 - kept - 1;
    expect_replay_without_reset(&hub, &ids[floor], &ids[floor + 1..]).await;
    if floor > 0 {
        // The sentinel above made one more event retained and may have pushed one more out;
        // a position two below the old floor is gone either way.
        expect_reset(&hub, &ids[floor - 1], &hub_newest(&hub).await).await;
    }
}

/// The newest id, learned by publishing one more event.
async fn hub_newest(hub: &Hub) -> String {
    hub.publish(&json!({"topic": "r/other", "data": "probe"}))
        .await
}

#[tokio::test]
async fn max_age_drops_events_in_the_background_and_resets_exactly_past_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ARGS.to_vec();
    args.extend(["--history-max-age", "2s"]);
    let hub = Hub::start_on_disk(dir.path(), &args);
    let ids = publish_n(&hub, 3).await;
    // No publish happens meanwhile: retention runs on its own.
    hub.wait_metric("tidings_history_events", WAIT, |v| v == 0.0)
        .await;
    let fresh = hub.publish(&json!({"topic": "r/a", "data": "fresh"})).await;
    expect_replay_without_reset(&hub, &ids[2], std::slice::from_ref(&fresh)).await;
    let newest = hub_newest(&hub).await;
    expect_reset(&hub, &ids[1], &newest).await;
}
