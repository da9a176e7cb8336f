//! The publish side: `C` concurrent publishers, each on its own keep-alive connection,
//! sending sequence numbers `0..K` either back to back (the next as soon as the previous is
//! acknowledged) or on a fixed schedule (`--rate`).
//!
//! Each request carries its sequence number and its send time (`{seq}`, `{ts}` in the body
//! template), taken just before the request is written, so publish→receive latency includes
//! the hub's whole publish path.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::http1::{Connection, Endpoint, Template};
use super::{new_histogram, now_ns};

/// What to publish and how fast.
#[derive(Debug, Clone)]
pub struct Plan {
    pub endpoint: Endpoint,
    pub method: String,
    pub body: Template,
    pub content_type: String,
    pub headers: String,
    pub topic: String,
    pub events: u64,
    /// Events per second over all publishers; `None` is back to back.
    pub rate: Option<f64>,
    pub publishers: usize,
    /// Stop sending new events after this long.
    pub duration: Option<Duration>,
    pub epoch_ns: u64,
    pub source: Option<Ipv4Addr>,
}

/// Live counters, read by the progress bar.
#[derive(Debug, Default)]
pub struct Counters {
    pub acked: Cell<u64>,
    pub failed: Cell<u64>,
}

/// What the publishers did.
#[derive(Debug)]
pub struct Outcome {
    /// Sequence numbers handed out (`0..sent`).
    pub sent: u64,
    /// Those whose publish failed (sorted).
    pub failed: Vec<u64>,
    pub errors: Vec<String>,
    /// Request written → reply read, ns.
    pub ack: Histogram<u64>,
    /// Epoch-relative ns of the first send and the last acknowledgement.
    pub first_send_ns: u64,
    pub last_ack_ns: u64,
}

struct State {
    plan: Plan,
    next: Cell<u64>,
    started: Instant,
    failed: RefCell<Vec<u64>>,
    errors: RefCell<Vec<String>>,
    ack: RefCell<Histogram<u64>>,
    first_send_ns: Cell<u64>,
    last_ack_ns: Cell<u64>,
}

/// Runs the plan to its end (on the current `LocalSet`).
pub async fn run(plan: Plan, counters: Rc<Counters>) -> Outcome {
    let state = Rc::new(State {
        next: Cell::new(0),
        started: Instant::now(),
        failed: RefCell::new(Vec::new()),
        errors: RefCell::new(Vec::new()),
        ack: RefCell::new(new_histogram()),
        first_send_ns: Cell::new(u64::MAX),
        last_ack_ns: Cell::new(0),
        plan,
    });
    let tasks: Vec<_> = (0..state.plan.publishers.max(1))
        .map(|_| {
            let state = Rc::clone(&state);
            let counters = Rc::clone(&counters);
            tokio::task::spawn_local(async move { publisher(&state, &counters).await })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let mut failed = state.failed.take();
    failed.sort_unstable();
    Outcome {
        sent: state.next.get(),
        failed,
        errors: state.errors.take(),
        ack: state.ack.replace(new_histogram()),
        first_send_ns: state.first_send_ns.get().min(state.last_ack_ns.get()),
        last_ack_ns: state.last_ack_ns.get(),
    }
}

async fn publisher(state: &State, counters: &Counters) {
    let plan = &state.plan;
    let mut connection = Connection::new(plan.endpoint.addr, plan.source);
    let mut request = Vec::with_capacity(512);
    let mut body = Vec::with_capacity(256);
    loop {
        let seq = state.next.get();
        if seq >= plan.events {
            return;
        }
        if plan
            .duration
            .is_some_and(|limit| state.started.elapsed() >= limit)
        {
            return;
        }
        state.next.set(seq + 1);
        if let Some(rate) = plan.rate {
            let due = state.started + Duration::from_secs_f64(seq as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        let ts = now_ns(plan.epoch_ns);
        body.clear();
        plan.body.render_into(&mut body, &plan.topic, seq, ts);
        request.clear();
        request.extend_from_slice(plan.method.as_bytes());
        request.push(b' ');
        plan.endpoint
            .target
            .render_into(&mut request, &plan.topic, seq, ts);
        request.extend_from_slice(
            format!(
                " HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
                plan.endpoint.authority,
                plan.content_type,
                body.len(),
                plan.headers
            )
            .as_bytes(),
        );
        request.extend_from_slice(&body);
        state.first_send_ns.set(state.first_send_ns.get().min(ts));
        let sent_at = Instant::now();
        let outcome = connection.exchange(&request).await;
        let elapsed = sent_at.elapsed();
        state.last_ack_ns.set(now_ns(plan.epoch_ns));
        let error = match outcome {
            Ok(reply) if (200..300).contains(&reply.status) => {
                state.ack.borrow_mut().saturating_record(
                    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1),
                );
                counters.acked.set(counters.acked.get() + 1);
                continue;
            }
            Ok(reply) => format!(
                "publish: status {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            ),
            Err(error) => format!("publish: {error:#}"),
        };
        counters.failed.set(counters.failed.get() + 1);
        state.failed.borrow_mut().push(seq);
        note_error(&state.errors, error);
        // A hub that refuses or dropped us: do not spin.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn note_error(errors: &RefCell<Vec<String>>, error: String) {
    let mut errors = errors.borrow_mut();
    if errors.len() < 5 && !errors.contains(&error) {
        errors.push(error);
    }
}
