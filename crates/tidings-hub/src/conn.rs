//! One subscriber: its bounded send queue, and the response body that drains it.
//!
//! This is the one place that decides what a slow subscriber gets: [`Conn::enqueue`] refuses to
//! grow a queue past `--queue-bytes` and closes the connection instead, so a publisher never
//! waits on a subscriber. The body ([`SseBody`]) writes the stream's prelude, then replayed
//! history, then everything queued since, coalescing all pending frames into one write.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;

use crate::event::EventId;
use crate::history::{ReplayFilter, StoreError};
use crate::hub::Inner;
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
}

fn wake(st: &mut QueueState) {
    if let Some(w) = st.waker.take() {
        w.wake();
    }
}

/// The next page of a subscriber's replay as one chunk; `None` when the replay is over (or
/// was overtaken by retention, which closes the stream so the client resumes and gets `reset`).
pub(crate) fn next_replay_chunk(
    hub: &Inner,
    conn: &Conn,
    replay: &mut Option<(EventId, EventId)>,
) -> Option<Bytes> {
    let (after, upto) = (*replay)?;
    let filter = ReplayFilter {
        patterns: &conn.patterns,
        user: conn.user.as_deref(),
    };
    match hub.history.read(after, upto, &filter, REPLAY_PAGE) {
        Ok(events) => {
            if events.len() < REPLAY_PAGE {
                *replay = None;
            }
            let last = events.last()?;
            if replay.is_some() {
                *replay = Some((last.id, upto));
            }
            hub.metrics.replayed_events.add(events.len() as u64);
            let total = events.iter().map(|e| e.frame.len()).sum();
            let mut buf = BytesMut::with_capacity(total);
            for e in &events {
                buf.extend_from_slice(&e.frame);
            }
            Some(buf.freeze())
        }
        Err(StoreError::Gap(_)) | Err(StoreError::Unavailable(_)) => {
            // Retention overtook this replay: end the stream; the client resumes and is
            // told about the gap with a `reset` event, so nothing is lost silently.
            *replay = None;
            conn.close(CloseReason::HistoryGap);
            None
        }
    }
}

/// Largest replay page read from history per write.
const REPLAY_PAGE: usize = 512;

/// The `text/event-stream` response body of one subscriber.
pub(crate) struct SseBody {
    hub: Arc<Inner>,
    conn: Arc<Conn>,
    prelude: Option<Bytes>,
    replay: Option<(EventId, EventId)>,
    finished: bool,
    spare: VecDeque<Bytes>,
}

impl SseBody {
    pub fn new(
        hub: Arc<Inner>,
        conn: Arc<Conn>,
        prelude: Bytes,
        replay: Option<(EventId, EventId)>,
    ) -> Self {
        Self {
            hub,
            conn,
            prelude: Some(prelude),
            replay,
            finished: false,
            spare: VecDeque::new(),
        }
    }

    fn sent(&self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.hub.metrics.bytes_sent.add(chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(prelude) = this.prelude.take() {
            return this.sent(prelude);
        }
        if this.replay.is_some() {
            if let Some(chunk) = next_replay_chunk(&this.hub, &this.conn, &mut this.replay) {
                return this.sent(chunk);
            }
        }
        match this.conn.poll_drain(cx, &mut this.spare) {
            Poll::Ready(Drained::Frames(bytes)) => {
                // Coalesce everything pending into one chunk: one write for a burst.
                let chunk = if this.spare.len() == 1 {
                    this.spare.pop_front().unwrap_or_default()
                } else {
                    let mut buf = BytesMut::with_capacity(bytes);
                    for f in this.spare.drain(..) {
                        buf.extend_from_slice(&f);
                    }
                    buf.freeze()
                };
                this.sent(chunk)
            }
            Poll::Ready(Drained::Closed(reason)) => {
                this.finished = true;
                if let CloseReason::Shutdown { retry_ms } = reason {
                    return this.sent(tidings_wire::encode_retry(retry_ms));
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.hub.unregister(&self.conn);
    }
}
