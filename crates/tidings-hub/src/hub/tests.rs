//! How a fan-out reaches the streams it queued to (`Inner::fan_out`, `Inner::wake_writers`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::{Hub, SubscribeSpec};
use crate::config::HubConfig;
use crate::conn::{Conn, Drained};
use crate::publish::Publish;
use crate::subscription::Subscription;
use crate::topic::Pattern;

/// A stream's writer as the fan-out sees it: counts its wake-ups, and notes whether the
/// whole wave was already queued when the first one came.
#[derive(Default)]
struct Writer {
    wakes: AtomicUsize,
    wave_queued_first: AtomicBool,
    wave: OnceLock<Vec<Arc<Conn>>>,
    woken_on: OnceLock<Option<String>>,
}

impl Wake for Writer {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.wakes.fetch_add(1, Ordering::SeqCst) == 0 {
            let all = self
                .wave
                .get()
                .is_some_and(|wave| wave.iter().all(|c| c.queued_bytes() > 0));
            self.wave_queued_first.store(all, Ordering::SeqCst);
            let _ = self
                .woken_on
                .set(std::thread::current().name().map(str::to_owned));
        }
    }
}

/// `n` parked subscribers of topic `t`, each with its own counting writer.
fn parked_streams(hub: &Hub, n: usize) -> (Vec<Subscription>, Vec<Arc<Writer>>) {
    let mut subs = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..n {
        let spec = SubscribeSpec {
            patterns: vec![Pattern::parse("t").expect("a valid topic")],
            user: None,
            ip: None,
            exp: None,
            last_event_id: None,
            protocol: "http/1.1",
        };
        let sub = hub.inner.subscribe(spec).expect("under the limits");
        let writer = Arc::new(Writer::default());
        let waker = Waker::from(Arc::clone(&writer));
        let mut out = std::collections::VecDeque::new();
        assert!(sub
            .conn()
            .poll_drain(&mut Context::from_waker(&waker), &mut out)
            .is_pending());
        subs.push(sub);
        writers.push(writer);
    }
    let conns: Vec<Arc<Conn>> = subs.iter().map(|s| Arc::clone(s.conn())).collect();
    for writer in &writers {
        let _ = writer.wave.set(conns.clone());
    }
    (subs, writers)
}

fn hub(n: usize) -> Hub {
    Hub::new(HubConfig {
        dev: true,
        max_connections: n + 1,
        max_connections_per_ip: n + 1,
        ..Default::default()
    })
    .expect("a valid configuration")
}

async fn publish_one(hub: &Hub) -> usize {
    let event = Publish::to_topic("t").json(&1).expect("serialisable");
    hub.publish(event).await.expect("published").delivered
}

#[tokio::test]
async fn a_wave_is_woken_on_the_writer_runtime_after_all_of_it_is_queued() {
    let writers_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-writer")
        .build()
        .expect("a runtime");
    let hub = hub(50);
    hub.inner.set_writers(Some(writers_rt.handle().clone()));
    let (conns, writers) = parked_streams(&hub, 50);
    assert_eq!(publish_one(&hub).await, 50);
    for _ in 0..500 {
        if writers.iter().all(|w| w.wakes.load(Ordering::SeqCst) > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (writer, sub) in writers.iter().zip(&conns) {
        let conn = sub.conn();
        assert_eq!(
            writer.wakes.load(Ordering::SeqCst),
            1,
            "each stream is woken once"
        );
        assert!(
            writer.wave_queued_first.load(Ordering::SeqCst),
            "no stream is woken before the whole wave is queued"
        );
        assert_eq!(
            writer.woken_on.get().cloned().flatten().as_deref(),
            Some("test-writer"),
            "the wake-ups come from the writer runtime"
        );
        let mut out = std::collections::VecDeque::new();
        let waker = Waker::noop();
        assert!(matches!(
            conn.poll_drain(&mut Context::from_waker(waker), &mut out),
            Poll::Ready(Drained::Frames(_))
        ));
        assert_eq!(out.len(), 1);
    }
    hub.inner.set_writers(None);
    writers_rt.shutdown_background();
}

#[tokio::test]
async fn without_a_writer_runtime_a_wave_is_woken_before_the_publish_resolves() {
    let hub = hub(20);
    let (_conns, writers) = parked_streams(&hub, 20);
    assert_eq!(publish_one(&hub).await, 20);
    for writer in &writers {
        assert_eq!(writer.wakes.load(Ordering::SeqCst), 1);
        assert!(writer.wave_queued_first.load(Ordering::SeqCst));
    }
}

#[tokio::test]
async fn a_cancelled_serve_leaves_no_stale_writer_runtime_behind() {
    let hub = hub(20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    // The first poll starts the writer runtime; dropping the future then ends `serve` early.
    let served = crate::serve(listener, hub.clone(), std::future::pending());
    assert!(tokio::time::timeout(Duration::from_millis(50), served)
        .await
        .is_err());
    assert!(hub.inner.writers.read().is_none());
    // A wave now has no writer runtime to go to, and is woken inline instead of being lost.
    let (_conns, writers) = parked_streams(&hub, 20);
    assert_eq!(publish_one(&hub).await, 20);
    for writer in &writers {
        assert_eq!(writer.wakes.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn a_closed_stream_leaves_the_token_expiry_index() {
    let hub = Hub::new(HubConfig::default()).expect("a valid config");
    let far = u64::MAX / 2;
    for _ in 0..100 {
        let spec = SubscribeSpec {
            patterns: vec![Pattern::parse("t").expect("a valid topic")],
            user: None,
            ip: None,
            exp: Some(far),
            last_event_id: None,
            protocol: "http/1.1",
        };
        let sub = hub.inner.subscribe(spec).expect("under the limits");
        assert_eq!(hub.inner.expiring_len(), 1);
        drop(sub);
    }
    assert_eq!(hub.inner.expiring_len(), 0);
}

#[tokio::test]
async fn publishers_cannot_forge_control_events_or_oversize_fields() {
    let hub = Hub::new(HubConfig::default()).expect("a valid config");
    for reserved in ["connected", "reset", "progress"] {
        let err = hub
            .publish(Publish::to_topic("t").event(reserved).text("x"))
            .await
            .expect_err("reserved");
        assert!(err.to_string().contains("reserved"), "{err}");
    }
    let long = "e".repeat(129);
    assert!(hub
        .publish(Publish::to_topic("t").event(long).text("x"))
        .await
        .is_err());
    assert!(hub
        .publish(Publish::to_topic("t").event("e".repeat(128)).text("x"))
        .await
        .is_ok());
    assert!(hub
        .publish(Publish::to_topic("t").retry(86_400_001).text("x"))
        .await
        .is_err());
    assert!(hub
        .publish(Publish::to_topic("t").retry(86_400_000).text("x"))
        .await
        .is_ok());
}

#[tokio::test]
async fn targets_count_toward_the_event_size_and_are_bounded() {
    let hub = Hub::new(HubConfig {
        max_event_bytes: 1000,
        max_targets: 64,
        ..HubConfig::default()
    })
    .expect("a valid config");
    let mut many = Publish::to_topic("t0").text("x");
    for i in 1..65 {
        many = many.topic(format!("t{i}"));
    }
    let err = hub.publish(many).await.expect_err("65 targets");
    assert!(err.to_string().contains("--max-targets"), "{err}");
    // 20 topics of 60 bytes: a tiny frame, but 1,200 bytes of names.
    let mut wide = Publish::to_topic("a".repeat(60)).text("x");
    for i in 1..20 {
        wide = wide.topic(format!("{i:0>60}"));
    }
    let err = hub.publish(wide).await.expect_err("names count");
    assert!(err.to_string().contains("--max-event-bytes"), "{err}");
}

/// A subscriber of `t` whose token expires at `exp` (Unix seconds).
fn subscriber(hub: &Hub, exp: Option<u64>) -> Subscription {
    let spec = SubscribeSpec {
        patterns: vec![Pattern::parse("t").expect("a valid topic")],
        user: None,
        ip: None,
        exp,
        last_event_id: None,
        protocol: "http/1.1",
    };
    hub.inner.subscribe(spec).expect("under the limits")
}

/// What the subscriber's queue holds now: frames, or the reason it was closed.
fn drained(sub: &Subscription) -> Poll<Drained> {
    let mut out = std::collections::VecDeque::new();
    sub.conn()
        .poll_drain(&mut Context::from_waker(Waker::noop()), &mut out)
}

#[tokio::test(start_paused = true)]
async fn housekeeping_ends_a_stream_once_its_token_has_expired() {
    let hub = Hub::new(HubConfig::default()).expect("a valid config");
    let now = super::unix_now().as_secs();
    let expired = subscriber(&hub, Some(now - 1));
    let valid = subscriber(&hub, Some(now + 3600));
    let forever = subscriber(&hub, None);
    // The expiry pass runs every 250 ms of the (paused) runtime clock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        drained(&expired),
        Poll::Ready(Drained::Closed(crate::conn::CloseReason::Expired))
    );
    assert!(drained(&valid).is_pending());
    assert!(drained(&forever).is_pending());
    assert_eq!(hub.inner.metrics.expired_disconnects.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_gets_one_heartbeat_per_period_and_a_busy_one_none() {
    let config = HubConfig {
        heartbeat: Duration::from_secs(15),
        ..HubConfig::default()
    };
    let hub = Hub::new(config).expect("a valid config");
    let idle = subscriber(&hub, None);
    let busy = {
        let spec = SubscribeSpec {
            patterns: vec![Pattern::parse("busy").expect("a valid topic")],
            user: None,
            ip: None,
            exp: None,
            last_event_id: None,
            protocol: "http/1.1",
        };
        hub.inner.subscribe(spec).expect("under the limits")
    };
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert!(
        drained(&idle).is_pending(),
        "nothing before the first period"
    );
    hub.publish(Publish::to_topic("busy").text("x"))
        .await
        .expect("published");
    assert!(matches!(drained(&busy), Poll::Ready(Drained::Frames(_))));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        matches!(drained(&idle), Poll::Ready(Drained::Frames(n)) if n == b": heartbeat\n\n".len()),
        "the idle stream's heartbeat"
    );
    assert!(drained(&busy).is_pending(), "an event counted as activity");
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(matches!(drained(&idle), Poll::Ready(Drained::Frames(_))));
    assert!(matches!(drained(&busy), Poll::Ready(Drained::Frames(_))));
}
