//! Group commit for publishes to the broker: concurrent publishes share one call (one Redis
//! script call, or one NATS message).
//!
//! One call per publish made the broker parse, dispatch and answer a call for every event
//! (Redis: most of its ~30 µs per event; NATS: ~40 µs) and gave the node one loopback round
//! trip per publish. Here every publish goes to one task that keeps at most [`IN_FLIGHT`]
//! calls outstanding: while they are out, new publishes queue, and the next call takes
//! everything queued (within the sink's limits). At low rates a publish still goes out at
//! once, alone; under load the calls grow and their per-call cost is shared. Each publish keeps
//! its own origin, idempotency key and atomicity (its events stay together and consecutive),
//! so the log, the tail and the answers are the same as with one call each.

use std::future::Future;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::sync::{mpsc, oneshot};

use super::broker::BrokerError;

/// Calls outstanding at once: two keep the broker busy (one is read while the other is
/// answered) without splitting a burst into many small calls.
const IN_FLIGHT: usize = 2;

/// An `Idempotency-Key` as the broker takes it.
pub(crate) struct Idem {
    /// The broker's key of its record.
    pub key: String,
    pub fingerprint: String,
    pub window_ms: u64,
}

/// One publish waiting for its call; `A` is what the broker answers for it.
pub(crate) struct Request<A> {
    pub origin: String,
    pub events: Vec<Vec<u8>>,
    pub idem: Option<Idem>,
    pub reply: oneshot::Sender<Result<A, BrokerError>>,
}

impl<A> Request<A> {
    fn bytes(&self) -> usize {
        self.events.iter().map(Vec::len).sum::<usize>() + self.origin.len()
    }
}

/// A broker that can write several publishes in one call.
pub(crate) trait Sink: Send + Sync + 'static {
    type Appended: Send + 'static;
    /// Most events in one call (a single publish larger than this goes alone).
    const MAX_EVENTS: usize;
    /// About the most bytes of events in one call.
    const MAX_BYTES: usize;
    /// Writes the group in one call; one outcome per request, in order.
    fn append_group(
        &self,
        group: &[Request<Self::Appended>],
    ) -> impl Future<Output = Result<Vec<Self::Appended>, BrokerError>> + Send;
}

/// Starts the committing task; publishes go into the returned sender. It ends when the
/// sender is dropped (with the broker that holds it).
pub(crate) fn start<S: Sink>(sink: S) -> mpsc::UnboundedSender<Request<S::Appended>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(Arc::new(sink), rx));
    tx
}

async fn run<S: Sink>(sink: Arc<S>, mut rx: mpsc::UnboundedReceiver<Request<S::Appended>>) {
    let mut in_flight = FuturesUnordered::new();
    // A publish that did not fit in the previous call: the first of the next.
    let mut carry: Option<Request<S::Appended>> = None;
    loop {
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            first = next(&mut carry, &mut rx), if in_flight.len() < IN_FLIGHT => {
                let Some(first) = first else { break };
                let group = gather::<S>(first, &mut rx, &mut carry);
                in_flight.push(commit(Arc::clone(&sink), group));
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

async fn next<A>(
    carry: &mut Option<Request<A>>,
    rx: &mut mpsc::UnboundedReceiver<Request<A>>,
) -> Option<Request<A>> {
    match carry.take() {
        Some(request) => Some(request),
        None => rx.recv().await,
    }
}

/// `first` and whatever else is queued, within the sink's limits.
fn gather<S: Sink>(
    first: Request<S::Appended>,
    rx: &mut mpsc::UnboundedReceiver<Request<S::Appended>>,
    carry: &mut Option<Request<S::Appended>>,
) -> Vec<Request<S::Appended>> {
    let mut events = first.events.len();
    let mut bytes = first.bytes();
    let mut group = vec![first];
    while events < S::MAX_EVENTS && bytes < S::MAX_BYTES {
        let Ok(next) = rx.try_recv() else { break };
        if events + next.events.len() > S::MAX_EVENTS || bytes + next.bytes() > S::MAX_BYTES {
            *carry = Some(next);
            break;
        }
        events += next.events.len();
        bytes += next.bytes();
        group.push(next);
    }
    group
}

async fn commit<S: Sink>(sink: Arc<S>, group: Vec<Request<S::Appended>>) {
    match sink.append_group(&group).await {
        Ok(outcomes) if outcomes.len() == group.len() => {
            for (request, outcome) in group.into_iter().zip(outcomes) {
                let _ = request.reply.send(Ok(outcome));
            }
        }
        Ok(_) => {
            for request in group {
                let _ = request
                    .reply
                    .send(Err(BrokerError::other("unexpected reply to a publish")));
            }
        }
        Err(err) => {
            for request in group {
                let _ = request.reply.send(Err(err.clone()));
            }
        }
    }
}
