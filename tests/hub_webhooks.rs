//! Webhooks through the real hub and a real HTTP receiver on loopback: what is sent, the
//! signature a receiver verifies, retries with the same delivery id, and that a dead receiver
//! is never in the way of delivery.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::{json, Hub, Metrics, Req, Token, Value, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const SECRET: &str = "webhook-test-secret-0123456789";

/// One request the receiver got: its headers (lower-cased names) and body.
#[derive(Debug)]
struct Hook {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Hook {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver answering 500 to the first `fail_first` requests, 200 after (or never, when
/// `stall`).
async fn receiver(fail_first: usize, stall: bool) -> (String, mpsc::UnboundedReceiver<Hook>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                loop {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head_end, length) = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let mut headers = [httparse::EMPTY_HEADER; 32];
                        let mut req = httparse::Request::new(&mut headers);
                        if let Ok(httparse::Status::Complete(end)) = req.parse(&buf) {
                            let len = req
                                .headers
                                .iter()
                                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                                .unwrap_or(0usize);
                            break (end, len);
                        }
                    };
                    while buf.len() < head_end + length {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut req = httparse::Request::new(&mut headers);
                    let _ = req.parse(&buf);
                    let hook = Hook {
                        headers: req
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: buf[head_end..head_end + length].to_vec(),
                    };
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(hook);
                    if stall {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let status = if n < fail_first {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

async fn next_of(rx: &mut mpsc::UnboundedReceiver<Hook>, kind: &str) -> Hook {
    loop {
        let hook = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} webhook within {WAIT:?}"))
            .expect("the receiver runs");
        if hook.header("tidings-event") == kind {
            return hook;
        }
    }
}

fn verify(hook: &Hook) {
    let ts = hook.header("tidings-timestamp");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&hook.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hook.header("tidings-signature"),
        format!("v1={expected}"),
        "the signature verifies"
    );
}

fn hub_with(url: &str, extra: &[&str]) -> Hub {
    let mut args = vec!["--webhook", url, "--webhook-secret", SECRET];
    args.extend_from_slice(extra);
    Hub::standard(&args)
}

#[tokio::test]
async fn connects_disconnects_finished_tasks_and_publishes_are_posted_signed() {
    let (url, mut rx) = receiver(0, false).await;
    let hub = hub_with(
        &url,
        &[
            "--webhook-event",
            "connect",
            "--webhook-event",
            "disconnect",
            "--webhook-event",
            "task.finished",
            "--webhook-event",
            "publish",
        ],
    );
    let alice = Token::new().sub("alice").subscribe(&["news"]).sign();
    let stream = hub
        .subscribe(Req::get("/events?topic=news").bearer(&alice))
        .await;
    let connect = next_of(&mut rx, "connect").await;
    verify(&connect);
    let body = connect.json();
    assert_eq!(body["type"], "connect");
    assert_eq!(body["data"]["connection"]["user"], "alice");
    assert_eq!(
        body["id"].as_str(),
        Some(connect.header("tidings-delivery"))
    );
    assert_eq!(connect.header("content-type"), "application/json");

    let id = hub.publish(&json!({"topic": "news", "data": 1})).await;
    let publish = next_of(&mut rx, "publish").await;
    verify(&publish);
    assert_eq!(publish.json()["data"]["events"][0]["id"], id.as_str());
    assert_eq!(
        publish.json()["data"]["events"][0]["topics"],
        json!(["news"])
    );

    let task = hub
        .send(
            Req::post("/tasks")
                .bearer(support::PUBLISH_KEY)
                .json(&json!({"topic": "news"})),
        )
        .await
        .json();
    let task_id = task["taskId"].as_str().unwrap();
    hub.post_ok(
        &format!("/tasks/{task_id}"),
        &json!({"status": "completed", "result": 7}),
    )
    .await;
    let finished = next_of(&mut rx, "task.finished").await;
    verify(&finished);
    assert_eq!(finished.json()["data"]["taskId"], task_id);
    assert_eq!(finished.json()["data"]["result"], 7);

    drop(stream);
    let gone = next_of(&mut rx, "disconnect").await;
    verify(&gone);
    assert_eq!(gone.json()["data"]["connection"]["user"], "alice");
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_the_same_delivery_id() {
    let (url, mut rx) = receiver(2, false).await;
    let hub = hub_with(&url, &[]);
    let _s = hub.subscribe(Req::get("/events?topic=a")).await;
    let first = next_of(&mut rx, "connect").await;
    let second = next_of(&mut rx, "connect").await;
    let third = next_of(&mut rx, "connect").await;
    let id = first.header("tidings-delivery").to_owned();
    assert_eq!(
        second.header("tidings-delivery"),
        id,
        "a retry, not a new notification"
    );
    assert_eq!(third.header("tidings-delivery"), id);
    verify(&third);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let m: Metrics = hub.metrics().await;
        let delivered = m
            .samples
            .iter()
            .find(|(n, l, _)| n == "tidings_webhook_notifications_total" && l.contains("delivered"))
            .map(|(_, _, v)| *v);
        if delivered == Some(1.0) {
            assert_eq!(m.sum("tidings_webhook_retries_total"), Some(2.0));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never counted as delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_dead_receiver_never_holds_up_delivery() {
    let (url, _rx) = receiver(0, true).await;
    let hub = hub_with(&url, &["--webhook-event", "publish"]);
    let mut s = hub.subscribe(Req::get("/events?topic=fast")).await;
    for i in 0..200 {
        hub.publish(&json!({"topic": "fast", "data": i})).await;
    }
    for i in 0..200 {
        assert_eq!(s.next_event(WAIT).await.data, i.to_string());
    }
}

#[test]
fn webhook_urls_and_events_are_checked_at_start() {
    for (args, needle) in [
        (vec!["--webhook", "ftp://x/hooks"], "http://"),
        (
            vec![
                "--webhook",
                "http://127.0.0.1:1/h",
                "--webhook-event",
                "nope",
            ],
            "webhook-event",
        ),
        (
            vec![
                "--webhook",
                "http://127.0.0.1:1/h",
                "--webhook-secret",
                "short",
            ],
            "16 bytes",
        ),
    ] {
        let mut full = vec!["--memory", "--listen", "127.0.0.1:0", "--dev"];
        full.extend(args);
        let out = support::serve_until_exit(&full, &[], WAIT);
        assert!(out.status.is_some_and(|s| !s.success()), "{out:?}");
        assert!(out.stderr.contains(needle), "{}", out.stderr);
    }
}
