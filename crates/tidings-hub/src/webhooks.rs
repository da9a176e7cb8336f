//! Webhooks: the hub POSTs what happens (`connect`, `disconnect`, `task.finished`, and with
//! `--webhook-events` also `publish`) to the URLs of `--webhook`, signed, retried, and never in
//! the way of delivery.
//!
//! Each URL has its own worker and its own bounded queue ([`QUEUE`] notifications): a slow or
//! dead receiver delays only its own notifications, and when its queue is full new ones are
//! dropped and counted (`tidings_webhook_notifications_total{result="dropped"}`) instead of
//! growing memory or slowing the hub. A notification is tried up to [`ATTEMPTS`] times, waiting
//! 0.5 s, 1 s, 2 s, 4 s between tries; a 2xx answer is success, anything else (or no answer
//! within 5 s) is retried.
//!
//! # What a receiver gets
//! `POST <url>` with `Content-Type: application/json`, the body
//! `{"type": "connect", "id": "<delivery id>", "at": <Unix ms>, "data": {...}}`, and headers
//! `Tidings-Event: <type>`, `Tidings-Delivery: <delivery id>` (the same on every retry: use it to
//! drop repeats), `Tidings-Timestamp: <Unix seconds>` and, with `--webhook-secret`,
//! `Tidings-Signature: v1=<hex>`: HMAC-SHA256 keyed with the secret over
//! `<timestamp>.<body>`. A receiver recomputes it over the raw body, compares in constant time,
//! and refuses timestamps older than a few minutes (replays).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tokio::sync::mpsc;

/// Notifications waiting per URL before new ones are dropped.
pub const QUEUE: usize = 10_000;
/// Tries per notification.
pub const ATTEMPTS: u32 = 5;
/// How long one try may take.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A stream opened.
    Connect,
    /// A stream closed.
    Disconnect,
    /// A task completed or failed.
    TaskFinished,
    /// An event was published (on the node that took the publish).
    Publish,
}

impl WebhookEvent {
    /// The name in `--webhook-events` and in `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Disconnect => "disconnect",
            Self::TaskFinished => "task.finished",
            Self::Publish => "publish",
        }
    }

    /// Reads a name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Connect,
            Self::Disconnect,
            Self::TaskFinished,
            Self::Publish,
        ]
        .into_iter()
        .find(|e| e.as_str() == text.trim())
    }
}

#[derive(Debug, Default)]
struct Stats {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

/// The webhook senders of a hub.
pub(crate) struct Webhooks {
    queues: Vec<mpsc::Sender<Bytes>>,
    events: Vec<WebhookEvent>,
    stats: Arc<Stats>,
    next: AtomicU64,
}

impl Webhooks {
    /// One worker per URL (none without URLs). Must be called inside a tokio runtime when
    /// `urls` is not empty.
    pub fn start(urls: &[String], secret: Option<String>, events: Vec<WebhookEvent>) -> Self {
        let stats = Arc::new(Stats::default());
        let secret = secret.map(|s| Arc::<[u8]>::from(s.into_bytes()));
        let queues = urls
            .iter()
            .map(|url| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(worker(url.clone(), secret.clone(), rx, Arc::clone(&stats)));
                tx
            })
            .collect();
        Self {
            queues,
            events,
            stats,
            next: AtomicU64::new(1),
        }
    }

    /// Whether notifications of this kind are sent at all.
    pub fn wants(&self, event: WebhookEvent) -> bool {
        !self.queues.is_empty() && self.events.contains(&event)
    }

    /// Queues a notification to every URL (dropped, and counted, where a queue is full).
    /// `data` is only built when the kind is sent: this runs for every stream that opens.
    pub fn notify(&self, event: WebhookEvent, data: impl FnOnce() -> serde_json::Value) {
        if !self.wants(event) {
            return;
        }
        let data = data();
        let id = format!(
            "{:x}-{:x}",
            crate::history::unix_ms(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let body = serde_json::json!({
            "type": event.as_str(),
            "id": id,
            "at": crate::history::unix_ms(),
            "data": data,
        });
        let body = Bytes::from(body.to_string());
        for q in &self.queues {
            if q.try_send(body.clone()).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `/metrics` lines.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.queues.is_empty() {
            return;
        }
        let s = &self.stats;
        let _ = write!(
            out,
            "# HELP tidings_webhook_notifications_total Webhook notifications by outcome: delivered (2xx), failed (every try failed), dropped (queue full).\n\
             # TYPE tidings_webhook_notifications_total counter\n\
             tidings_webhook_notifications_total{{result=\"delivered\"}} {}\n\
             tidings_webhook_notifications_total{{result=\"failed\"}} {}\n\
             tidings_webhook_notifications_total{{result=\"dropped\"}} {}\n\
             # HELP tidings_webhook_retries_total Webhook tries after a failed one.\n\
             # TYPE tidings_webhook_retries_total counter\ntidings_webhook_retries_total {}\n",
            s.delivered.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.dropped.load(Ordering::Relaxed),
            s.retries.load(Ordering::Relaxed),
        );
    }
}

/// The signature header's value for a body sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + 64);
    out.push_str("v1=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

async fn worker(
    url: String,
    secret: Option<Arc<[u8]>>,
    mut rx: mpsc::Receiver<Bytes>,
    stats: Arc<Stats>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    while let Some(body) = rx.recv().await {
        let (event, delivery) = serde_json::from_slice::<serde_json::Value>(&body)
            .map(|v| {
                (
                    v["type"].as_str().unwrap_or_default().to_owned(),
                    v["id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .unwrap_or_default();
        let mut pause = Duration::from_millis(500);
        let mut delivered = false;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            let timestamp = crate::history::unix_ms() / 1000;
            let mut req = http::Request::post(&url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("tidings-event", &event)
                .header("tidings-delivery", &delivery)
                .header("tidings-timestamp", timestamp.to_string());
            if let Some(secret) = &secret {
                req = req.header("tidings-signature", signature(secret, timestamp, &body));
            }
            let Ok(req) = req.body(Full::new(body.clone())) else {
                break;
            };
            match tokio::time::timeout(TRY_TIMEOUT, client.request(req)).await {
                Ok(Ok(res)) if res.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(Ok(res)) => {
                    tracing::debug!(%url, status = %res.status(), "a webhook was refused");
                }
                Ok(Err(err)) => tracing::debug!(%url, %err, "a webhook could not be sent"),
                Err(_) => tracing::debug!(%url, "a webhook timed out"),
            }
        }
        if delivered {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%url, %event, "a webhook notification failed after {ATTEMPTS} tries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231 test case 2 shape: key "Jefe"; message "1700000000.what do ya want for nothing?"
        let sig = signature(b"Jefe", 1_700_000_000, b"what do ya want for nothing?");
        assert!(sig.starts_with("v1=") && sig.len() == 67, "{sig}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, format!("v1={hex}"));
    }

    #[test]
    fn event_names_round_trip() {
        for e in [
            WebhookEvent::Connect,
            WebhookEvent::Disconnect,
            WebhookEvent::TaskFinished,
            WebhookEvent::Publish,
        ] {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(WebhookEvent::parse("nope"), None);
    }
}
