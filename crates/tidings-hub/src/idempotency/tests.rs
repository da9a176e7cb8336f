//! Retries under one key: answered once, never published twice, never confused with another
//! request.

use std::time::Duration;

use bytes::Bytes;

use super::{fingerprint, validate_key, Claim, Idempotency};

fn first(claim: Claim) -> super::Attempt {
    match claim {
        Claim::First(attempt) => attempt,
        Claim::Replay(_) => panic!("expected a first attempt, got a replay"),
        Claim::Conflict => panic!("expected a first attempt, got a conflict"),
    }
}

#[tokio::test]
async fn a_retry_gets_the_first_answer() {
    let keys = Idempotency::new(Duration::from_secs(60), 100);
    let body = fingerprint("/publish", b"{}");
    let attempt = first(keys.claim("sub:a", "k1", body).await);
    attempt.succeeded(Bytes::from_static(b"{\"id\":\"1\"}"));
    match keys.claim("sub:a", "k1", body).await {
        Claim::Replay(answer) => assert_eq!(&answer[..], b"{\"id\":\"1\"}"),
        _ => panic!("a retry is a replay"),
    }
}

#[tokio::test]
async fn the_same_key_for_another_request_is_a_conflict_and_scopes_are_apart() {
    let keys = Idempotency::new(Duration::from_secs(60), 100);
    let attempt = first(
        keys.claim("sub:a", "k", fingerprint("/publish", b"1"))
            .await,
    );
    attempt.succeeded(Bytes::new());
    assert!(matches!(
        keys.claim("sub:a", "k", fingerprint("/publish", b"2"))
            .await,
        Claim::Conflict
    ));
    assert!(matches!(
        keys.claim("sub:a", "k", fingerprint("/broadcast", b"1"))
            .await,
        Claim::Conflict
    ));
    // Another caller's key of the same name is its own.
    first(
        keys.claim("sub:b", "k", fingerprint("/publish", b"2"))
            .await,
    );
}

#[tokio::test]
async fn a_failed_attempt_leaves_the_key_free() {
    let keys = Idempotency::new(Duration::from_secs(60), 100);
    let body = fingerprint("/publish", b"{}");
    drop(first(keys.claim("s", "k", body).await));
    assert_eq!(keys.len(), 0);
    first(keys.claim("s", "k", body).await);
}

#[tokio::test]
async fn a_retry_during_the_first_attempt_waits_for_its_answer() {
    let keys = Idempotency::new(Duration::from_secs(60), 100);
    let body = fingerprint("/publish", b"{}");
    let attempt = first(keys.claim("s", "k", body).await);
    let retry = tokio::spawn({
        let keys = std::sync::Arc::clone(&keys);
        async move { keys.claim("s", "k", body).await }
    });
    tokio::task::yield_now().await;
    assert!(!retry.is_finished(), "the retry waits");
    attempt.succeeded(Bytes::from_static(b"first"));
    match retry.await.expect("the retry ends") {
        Claim::Replay(answer) => assert_eq!(&answer[..], b"first"),
        _ => panic!("the retry gets the first answer"),
    }
}

#[tokio::test]
async fn a_retry_waiting_on_a_failed_attempt_becomes_the_first() {
    let keys = Idempotency::new(Duration::from_secs(60), 100);
    let body = fingerprint("/publish", b"{}");
    let attempt = first(keys.claim("s", "k", body).await);
    let retry = tokio::spawn({
        let keys = std::sync::Arc::clone(&keys);
        async move { matches!(keys.claim("s", "k", body).await, Claim::First(_)) }
    });
    tokio::task::yield_now().await;
    drop(attempt);
    assert!(retry.await.expect("the retry ends"), "it publishes itself");
}

#[tokio::test]
async fn keys_are_forgotten_after_the_window_and_past_the_bound() {
    let expired = Idempotency::new(Duration::ZERO, 100);
    let body = fingerprint("/publish", b"{}");
    first(expired.claim("s", "k", body).await).succeeded(Bytes::new());
    first(expired.claim("s", "k", body).await);

    let bounded = Idempotency::new(Duration::from_secs(60), 2);
    for key in ["a", "b", "c"] {
        first(bounded.claim("s", key, body).await).succeeded(Bytes::new());
    }
    assert_eq!(bounded.len(), 2);
    assert!(matches!(
        bounded.claim("s", "c", body).await,
        Claim::Replay(_)
    ));
    assert!(
        matches!(bounded.claim("s", "a", body).await, Claim::First(_)),
        "the oldest went"
    );
}

#[test]
fn keys_are_short_visible_ascii() {
    assert!(validate_key("order-42:attempt").is_ok());
    assert!(validate_key(&"k".repeat(255)).is_ok());
    for bad in ["", "has space", "tab\t", "é", &"k".repeat(256)] {
        assert!(validate_key(bad).is_err(), "{bad:?}");
    }
}
