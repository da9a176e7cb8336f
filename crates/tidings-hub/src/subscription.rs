//! A registered stream as its sink holds it: the subscriber's queue, its course ([`Stream`]),
//! the replay reads, and its unregistration however the sink ends.
//!
//! Both sinks (the hyper body in `sse_body`, the socket writer in `native`) poll
//! [`Subscription::poll_next`] and write what it yields; neither knows about history, replay
//! pages or close reasons.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;

use crate::conn::{Conn, Drained};
use crate::event::StoredEvent;
use crate::history::{ReplayFilter, StoreError};
use crate::hub::Inner;
use crate::stream::{ReplayPage, Step, Stream};

/// One admitted stream. Dropping it unregisters the subscriber.
pub(crate) struct Subscription {
    hub: Arc<Inner>,
    conn: Arc<Conn>,
    stream: Stream,
    read: Option<PageRead>,
}

/// What a sink writes next.
#[derive(Debug)]
pub(crate) enum Out {
    /// One chunk: the prelude, a replay page, or the closing `retry:`.
    Chunk(Bytes),
    /// Queued frames, moved into the sink's buffer; their total size.
    Frames(usize),
}

impl Subscription {
    pub(crate) fn new(hub: Arc<Inner>, conn: Arc<Conn>, stream: Stream) -> Self {
        Self {
            hub,
            conn,
            stream,
            read: None,
        }
    }

    /// The subscriber's registry key.
    pub fn key(&self) -> u64 {
        self.conn.key
    }

    /// The subscriber as the fan-out sees it.
    #[cfg(any(test, feature = "bench-support"))]
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Puts the sink's response head in front of the prelude (one write for both).
    pub fn prefix(&mut self, head: &[u8]) {
        self.stream.prefix(head);
    }

    /// The next thing to write; `Ready(None)` once the stream is over. Queued frames are moved
    /// into `frames` (a buffer the sink owns and empties; the two swap, so nothing is allocated
    /// once both have grown).
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut VecDeque<Bytes>,
    ) -> Poll<Option<Out>> {
        let out = ready!(self.poll_step(cx, frames));
        let bytes = match &out {
            Some(Out::Chunk(chunk)) => chunk.len(),
            Some(Out::Frames(bytes)) => *bytes,
            None => 0,
        };
        self.hub.metrics.bytes_sent.add(bytes as u64);
        Poll::Ready(out)
    }

    fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut VecDeque<Bytes>,
    ) -> Poll<Option<Out>> {
        loop {
            if let Some(read) = &mut self.read {
                let page = ready!(Pin::new(read).poll(cx));
                self.read = None;
                if let Ok(events) = &page {
                    self.hub.metrics.replayed_events.add(events.len() as u64);
                }
                if let Some(chunk) = self.stream.replayed(page) {
                    return Poll::Ready(Some(Out::Chunk(chunk)));
                }
                continue;
            }
            match self.stream.next() {
                Step::Write(chunk) => return Poll::Ready(Some(Out::Chunk(chunk))),
                Step::Replay(page) => {
                    // A stream closed while it replays (token expiry, drain) stops replaying.
                    if let Some(reason) = self.conn.close_reason() {
                        self.stream.replayed(Ok(Vec::new()));
                        self.stream.closed(reason);
                        continue;
                    }
                    self.read = Some(PageRead::start(&self.hub, &self.conn, page));
                }
                Step::Live => match self.conn.poll_drain(cx, frames) {
                    Poll::Ready(Drained::Frames(bytes)) => {
                        return Poll::Ready(Some(Out::Frames(bytes)))
                    }
                    Poll::Ready(Drained::Closed(reason)) => self.stream.closed(reason),
                    Poll::Pending => return Poll::Pending,
                },
                Step::Finish => return Poll::Ready(None),
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(&self.conn);
    }
}

type Page = Result<Vec<Arc<StoredEvent>>, StoreError>;

/// One replay page being read. A store whose reads may block (the disk store) is read on the
/// runtime's blocking pool, so a resuming subscriber never holds up a worker that other
/// streams and publishes need; an in-memory read is done in place.
enum PageRead {
    Ready(Option<Page>),
    Blocking(tokio::task::JoinHandle<Page>),
}

impl PageRead {
    fn start(hub: &Arc<Inner>, conn: &Arc<Conn>, page: ReplayPage) -> Self {
        let history = Arc::clone(&hub.history);
        let conn = Arc::clone(conn);
        let read = move || {
            let filter = ReplayFilter {
                patterns: &conn.patterns,
                user: conn.user.as_deref(),
            };
            history.read(page.after, page.upto, &filter, page.limit)
        };
        if hub.history.reads_block() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                return PageRead::Blocking(runtime.spawn_blocking(read));
            }
        }
        PageRead::Ready(Some(read()))
    }
}

impl Future for PageRead {
    type Output = Page;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Page> {
        match &mut *self {
            PageRead::Ready(page) => Poll::Ready(page.take().unwrap_or_else(|| Ok(Vec::new()))),
            PageRead::Blocking(handle) => Poll::Ready(match ready!(Pin::new(handle).poll(cx)) {
                Ok(page) => page,
                Err(err) => Err(StoreError::Unavailable(format!(
                    "a replay read failed: {err}"
                ))),
            }),
        }
    }
}
