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
    /// Housekeeping ticks since the last frame was queued.
    idle_ticks: u32,
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
    pub fn enqueue(&self, id: EventId, frame: &Bytes) -> Enqueued {
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
        st.idle_ticks = 0;
        st.frames.push_back(frame.clone());
        wake(&mut st);
        Enqueued::Queued
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

    /// One housekeeping tick: queues a heartbeat when idle for `heartbeat_ticks`, and ends the
    /// stream when its token has expired. Returns the reason if it closed the connection now.
    pub fn tick(
        &self,
        heartbeat_ticks: u32,
        heartbeat: &Bytes,
        now_unix: u64,
    ) -> Option<CloseReason> {
        if self.exp.is_some_and(|exp| now_unix >= exp) {
            let was_open = self.state.lock().closed.is_none();
            self.close(CloseReason::Expired);
            return was_open.then_some(CloseReason::Expired);
        }
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return None;
        }
        st.idle_ticks += 1;
        if st.idle_ticks >= heartbeat_ticks {
            st.idle_ticks = 0;
            if st.bytes + heartbeat.len() <= self.limit {
                st.bytes += heartbeat.len();
                st.frames.push_back(heartbeat.clone());
                wake(&mut st);
            }
        }
        None
    }
}

fn wake(st: &mut QueueState) {
    if let Some(w) = st.waker.take() {
        w.wake();
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
        }
    }

    fn next_replay_chunk(&mut self) -> Option<Bytes> {
        let (after, upto) = self.replay?;
        let filter = ReplayFilter {
            patterns: &self.conn.patterns,
            user: self.conn.user.as_deref(),
        };
        match self.hub.history.read(after, upto, &filter, REPLAY_PAGE) {
            Ok(events) => {
                if events.len() < REPLAY_PAGE {
                    self.replay = None;
                }
                let last = events.last()?;
                if self.replay.is_some() {
                    self.replay = Some((last.id, upto));
                }
                self.hub.metrics.replayed_events.add(events.len() as u64);
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
                self.replay = None;
                self.conn.close(CloseReason::HistoryGap);
                None
            }
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
            if let Some(chunk) = this.next_replay_chunk() {
                return this.sent(chunk);
            }
        }
        let mut st = this.conn.state.lock();
        if !st.frames.is_empty() {
            // Coalesce everything pending into one write: one syscall for a burst.
            let chunk = if st.frames.len() == 1 {
                st.frames.pop_front().unwrap_or_default()
            } else {
                let mut buf = BytesMut::with_capacity(st.bytes);
                for f in st.frames.drain(..) {
                    buf.extend_from_slice(&f);
                }
                buf.freeze()
            };
            st.bytes = 0;
            drop(st);
            return this.sent(chunk);
        }
        if let Some(reason) = st.closed {
            drop(st);
            this.finished = true;
            if let CloseReason::Shutdown { retry_ms } = reason {
                return this.sent(tidings_wire::encode_retry(retry_ms));
            }
            return Poll::Ready(None);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
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
