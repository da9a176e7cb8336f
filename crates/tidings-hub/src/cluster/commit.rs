//! Group commit for publishes to Redis: concurrent publishes share one script call.
//!
//! One call per publish made Redis parse, dispatch and answer a script for every event (most
//! of its ~30 µs per event) and gave the node one loopback round trip per publish. Here every
//! publish goes to one task that keeps at most [`IN_FLIGHT`] calls outstanding: while they
//! are out, new publishes queue, and the next call takes everything queued (up to
//! [`MAX_EVENTS`] events or [`MAX_BYTES`]). At low rates a publish still goes out at once,
//! alone; under load the calls grow and their per-call cost is shared. Each publish keeps its
//! own origin, idempotency key and atomicity (the script writes one batch after another), so
//! the log, the tail and the answers are the same as with one call each.

use std::sync::{Arc, Weak};

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::broker::{split_ids, text, Appended, Broker, BrokerError};

/// Calls outstanding at once: two keep Redis busy (one is read while the other is answered)
/// without splitting a burst into many small calls.
const IN_FLIGHT: usize = 2;
/// At most this many events in one call...
const MAX_EVENTS: usize = 1024;
/// ...and about this many bytes of events.
const MAX_BYTES: usize = 1 << 20;

/// An `Idempotency-Key` as the script takes it.
pub(crate) struct Idem {
    /// The Redis key of its record.
    pub key: String,
    pub fingerprint: String,
    pub window_ms: u64,
}

/// One publish waiting for its call.
pub(crate) struct Request {
    pub origin: String,
    pub events: Vec<Vec<u8>>,
    pub idem: Option<Idem>,
    pub reply: oneshot::Sender<Result<Appended, BrokerError>>,
}

impl Request {
    fn bytes(&self) -> usize {
        self.events.iter().map(Vec::len).sum::<usize>() + self.origin.len()
    }
}

/// Starts the committing task; publishes go into the returned sender. It ends when the
/// broker is dropped and the sender with it.
pub(crate) fn start(broker: Weak<Broker>, max_len: usize) -> mpsc::UnboundedSender<Request> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(broker, max_len, rx));
    tx
}

async fn run(broker: Weak<Broker>, max_len: usize, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            first = rx.recv(), if in_flight.len() < IN_FLIGHT => {
                let Some(first) = first else { break };
                let group = gather(first, &mut rx);
                let Some(broker) = broker.upgrade() else { break };
                in_flight.push(commit(broker, group, max_len));
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

/// `first` and whatever else is queued, within the limits of one call.
fn gather(first: Request, rx: &mut mpsc::UnboundedReceiver<Request>) -> Vec<Request> {
    let mut events = first.events.len();
    let mut bytes = first.bytes();
    let mut group = vec![first];
    while events < MAX_EVENTS && bytes < MAX_BYTES {
        let Ok(next) = rx.try_recv() else { break };
        events += next.events.len();
        bytes += next.bytes();
        group.push(next);
    }
    group
}

async fn commit(broker: Arc<Broker>, group: Vec<Request>, max_len: usize) {
    match call(&broker, &group, max_len).await {
        Ok(outcomes) => {
            for (request, outcome) in group.into_iter().zip(outcomes) {
                let _ = request.reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            for request in group {
                let _ = request.reply.send(Err(err.clone()));
            }
        }
    }
}

/// One script call for the group; one outcome per request, in order.
async fn call(
    broker: &Arc<Broker>,
    group: &[Request],
    max_len: usize,
) -> Result<Vec<Appended>, BrokerError> {
    let mut conn = broker.conn()?;
    let mut call = broker.publish_script().prepare_invoke();
    call.key(&broker.keys.log);
    call.arg(max_len).arg(group.len());
    for request in group {
        match &request.idem {
            Some(idem) => {
                call.key(idem.key.as_str())
                    .arg(request.origin.as_str())
                    .arg(idem.fingerprint.as_str())
                    .arg(idem.window_ms);
            }
            None => {
                call.key("").arg(request.origin.as_str()).arg("").arg(0);
            }
        }
        call.arg(request.events.len());
        for e in &request.events {
            call.arg(e.as_slice());
        }
    }
    let reply: Value = call
        .invoke_async(&mut conn)
        .await
        .map_err(|e| broker.failed(e))?;
    let Value::Array(parts) = reply else {
        return Err(BrokerError::other("unexpected reply to a publish"));
    };
    if parts.len() != group.len() * 2 {
        return Err(BrokerError::other("unexpected reply to a publish"));
    }
    Ok(parts
        .chunks(2)
        .map(|pair| {
            let fresh = matches!(pair[0], Value::Int(1));
            let text = text(&pair[1]).unwrap_or_default();
            if fresh {
                return Appended::Fresh(split_ids(&text));
            }
            let (fingerprint, ids) = text.split_once('|').unwrap_or(("", ""));
            Appended::Prior {
                fingerprint: fingerprint.to_owned(),
                ids: split_ids(ids),
            }
        })
        .collect())
}
