//! One subscriber as the fan-out sees it: who it is, what it listens to, and its bounded queue.
//!
//! This is the one place that decides what a slow subscriber gets: [`Conn::enqueue`] refuses to
//! grow a queue past `--queue-bytes` and closes the connection instead, so a publisher never
//! waits on a subscriber. A stream's sink drains the queue (`subscription`).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::event::EventId;
use crate::topic::Pattern;

/// Why the hub ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Its queue passed `--queue-bytes`.
    SlowConsumer,
    /// Its token expired.
    Expired,
    /// The hub is draining; the client is told to come back after `retry_ms`.
    Shutdown { retry_ms: u64 },
    /// Its replay position was dropped by retention while it was being replayed.
    HistoryGap,
    /// An admin ended it (`DELETE /clients/{id}`).
    Disconnected,
}

/// What [`Conn::poll_drain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Frames were moved out; their total size.
    Frames(usize),
    /// The stream is closed and nothing is left to send.
    Closed(CloseReason),
}

/// What [`Conn::enqueue`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// Queued for sending.
    Queued,
    /// Already queued for this event (matched by several subscriptions) or the stream is closed.
    Skipped,
    /// The queue would pass its bound: the connection is now closed.
    Overflow,
}

/// A live subscriber as the registry and the publishers see it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub key: u64,
    pub client_id: Arc<str>,
    pub user: Option<Arc<str>>,
    pub ip: Option<IpAddr>,
    pub patterns: Box<[Pattern]>,
    /// Token expiry, Unix seconds.
    pub exp: Option<u64>,
    /// When the stream was admitted (Unix ms), for presence.
    pub opened_ms: u64,
    /// How it is served: `http/1.1`, `h2`, with `+tls` over TLS (for the dashboard).
    pub protocol: &'static str,
    limit: usize,
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The newest event queued; an event at or below it is a duplicate.
    last_id: EventId,
    closed: Option<CloseReason>,
    waker: Option<Waker>,
    /// Something was queued since the last heartbeat beat.
    active: bool,
}

impl Conn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: u64,
        client_id: Arc<str>,
        user: Option<Arc<str>>,
        ip: Option<IpAddr>,
        patterns: Box<[Pattern]>,
        exp: Option<u64>,
        limit: usize,
        seam: EventId,
    ) -> Self {
        Self {
            key,
            client_id,
            user,
            ip,
            patterns,
            exp,
            opened_ms: crate::history::unix_ms(),
            protocol: "http/1.1",
            limit,
            state: Mutex::new(QueueState {
                last_id: seam,
                ..Default::default()
            }),
        }
    }

    /// Queues an event frame. Budget: one short lock, no allocation unless the ring grows.
    ///
    /// The writer's waker goes into `wakes` instead of being woken here: the fan-out queues a
    /// whole wave first and wakes it afterwards in one go (see `Inner::wake_writers`), so the
    /// writers it wakes never take the CPU from the fan-out halfway through a wave.
    pub fn enqueue(&self, id: EventId, frame: &Bytes, wakes: &mut Vec<Waker>) -> Enqueued {
        let mut st = self.state.lock();
        if st.closed.is_some() || id <= st.last_id {
            return Enqueued::Skipped;
        }
        if st.bytes + frame.len() > self.limit {
            st.frames.clear();
            st.bytes = 0;
            st.closed = Some(CloseReason::SlowConsumer);
            wake(&mut st);
            return Enqueued::Overflow;
        }
        st.last_id = id;
        st.bytes += frame.len();
        st.active = true;
        st.frames.push_back(frame.clone());
        if let Some(w) = st.waker.take() {
            wakes.push(w);
        }
        Enqueued::Queued
    }

    /// Queues a frame that carries no id (the hub's live system events): it does not move the
    /// stream's position. True if it overflowed the queue (the stream is then closed).
    pub fn enqueue_untracked(&self, frame: &Bytes, wakes: &mut Vec<Waker>) -> bool {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return false;
        }
        if st.bytes + frame.len() > self.limit {
            st.frames.clear();
            st.bytes = 0;
            st.closed = Some(CloseReason::SlowConsumer);
            wake(&mut st);
            return true;
        }
        st.bytes += frame.len();
        st.active = true;
        st.frames.push_back(frame.clone());
        if let Some(w) = st.waker.take() {
            wakes.push(w);
        }
        false
    }

    /// Moves every queued frame into `out` (an empty buffer the writer owns; the two swap, so
    /// nothing is allocated once both have grown), or reports that the stream was closed, or
    /// registers the writer's waker.
    pub fn poll_drain(&self, cx: &mut Context<'_>, out: &mut VecDeque<Bytes>) -> Poll<Drained> {
        let mut st = self.state.lock();
        if !st.frames.is_empty() {
            std::mem::swap(&mut st.frames, out);
            let bytes = std::mem::take(&mut st.bytes);
            return Poll::Ready(Drained::Frames(bytes));
        }
        if let Some(reason) = st.closed {
            return Poll::Ready(Drained::Closed(reason));
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Ends the stream after what is already queued (for `Shutdown`) or at once.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.state.lock();
        if st.closed.is_none() {
            // A draining stream still gets what it was sent; any other end is immediate.
            if !matches!(reason, CloseReason::Shutdown { .. }) {
                st.frames.clear();
                st.bytes = 0;
            }
            st.closed = Some(reason);
            wake(&mut st);
        }
    }

    /// A heartbeat beat: queues the heartbeat comment if nothing was queued since the last
    /// beat, so a stream is never silent for two heartbeat periods and a busy one gets none.
    pub fn beat(&self, heartbeat: &Bytes) {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return;
        }
        if std::mem::take(&mut st.active) {
            return;
        }
        if st.bytes + heartbeat.len() <= self.limit {
            st.bytes += heartbeat.len();
            st.frames.push_back(heartbeat.clone());
            wake(&mut st);
        }
    }

    /// Whether the stream is still open.
    pub fn is_open(&self) -> bool {
        self.state.lock().closed.is_none()
    }

    /// Why the stream was closed, if it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().closed
    }
}

fn wake(st: &mut QueueState) {
    if let Some(w) = st.waker.take() {
        w.wake();
    }
}
