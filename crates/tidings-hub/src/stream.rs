//! One subscriber's stream from its first byte to its last, as a state machine with no I/O.
//!
//! Every stream runs the same course: its prelude (`retry:`, `connected`, perhaps `reset`),
//! the replay of the history it missed, page by page, then live events from its queue, and at
//! the end, when the hub drains, a `retry:` that tells it when to come back. [`Stream`] only
//! says what comes next ([`Step`]); the sinks that drive it read history, wait on the queue and
//! write to the socket (`subscription` does the reading and waiting for both; `sse_body` is the
//! hyper response body, `native` the socket writer of `serve`).
//!
//! The seam between replay and live is decided when the stream is registered: the replay ends
//! at the newest event fanned out at that moment (`upto`), and the queue takes only later ids,
//! so nothing is missed or sent twice.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::conn::CloseReason;
use crate::event::{EventId, StoredEvent};
use crate::history::StoreError;

/// Largest replay page read from history per write.
pub(crate) const REPLAY_PAGE: usize = 512;

/// The headers of every event-stream response, on both sinks.
pub(crate) const RESPONSE_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    // nginx: do not buffer this response (docs/DEPLOY.md).
    ("x-accel-buffering", "no"),
];

/// What a sink does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write these bytes.
    Write(Bytes),
    /// Read this page of history and hand it to [`Stream::replayed`].
    Replay(ReplayPage),
    /// Wait for the queue; frames go out as they come, a close goes to [`Stream::closed`].
    Live,
    /// Close the connection.
    Finish,
}

/// A page of history a resuming subscriber needs: up to `limit` events it may see, with
/// `after < id <= upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayPage {
    pub after: EventId,
    pub upto: EventId,
    pub limit: usize,
}

/// One stream's position in its course.
#[derive(Debug)]
pub(crate) struct Stream {
    prelude: Option<Bytes>,
    replay: Option<ReplayPage>,
    end: End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Closing(CloseReason),
    Done,
}

impl Stream {
    /// A stream that starts with `prelude` and then replays `(after, upto]`, if given.
    pub fn new(prelude: Bytes, replay: Option<(EventId, EventId)>) -> Self {
        Self::with_page(prelude, replay, REPLAY_PAGE)
    }

    /// As [`Stream::new`], with replay pages of at most `page` events.
    pub fn with_page(prelude: Bytes, replay: Option<(EventId, EventId)>, page: usize) -> Self {
        Self {
            prelude: Some(prelude),
            replay: replay
                .filter(|(after, upto)| after < upto)
                .map(|(after, upto)| ReplayPage {
                    after,
                    upto,
                    limit: page.max(1),
                }),
            end: End::Open,
        }
    }

    /// Puts `head` in front of the prelude (the native sink's response head: one write for
    /// both). Only before the first step.
    pub fn prefix(&mut self, head: &[u8]) {
        if let Some(prelude) = self.prelude.take() {
            let mut first = BytesMut::with_capacity(head.len() + prelude.len());
            first.extend_from_slice(head);
            first.extend_from_slice(&prelude);
            self.prelude = Some(first.freeze());
        }
    }

    /// What to do next.
    pub fn next(&mut self) -> Step {
        if let Some(prelude) = self.prelude.take() {
            return Step::Write(prelude);
        }
        match self.end {
            End::Done => return Step::Finish,
            End::Closing(reason) => {
                self.end = End::Done;
                return match reason {
                    CloseReason::Shutdown { retry_ms } => {
                        Step::Write(tidings_wire::encode_retry(retry_ms))
                    }
                    _ => Step::Finish,
                };
            }
            End::Open => {}
        }
        if let Some(page) = self.replay {
            return Step::Replay(page);
        }
        Step::Live
    }

    /// A page read for [`Step::Replay`]: the chunk to write (if it holds any event). A store
    /// that no longer has the position (retention overtook the replay) ends the stream: the
    /// client resumes and is told of the gap with a `reset` event, so nothing is lost silently.
    pub fn replayed(&mut self, page: Result<Vec<Arc<StoredEvent>>, StoreError>) -> Option<Bytes> {
        let asked = self.replay?;
        let events = match page {
            Ok(events) => events,
            Err(StoreError::Gap(_) | StoreError::Unavailable(_)) => {
                self.replay = None;
                self.closed(CloseReason::HistoryGap);
                return None;
            }
        };
        let last = events.last().map(|e| e.id);
        self.replay = match last {
            Some(last) if events.len() >= asked.limit && last < asked.upto => Some(ReplayPage {
                after: last,
                ..asked
            }),
            _ => None,
        };
        match events.as_slice() {
            [] => None,
            [only] => Some(only.frame.clone()),
            many => {
                let mut buf = BytesMut::with_capacity(many.iter().map(|e| e.frame.len()).sum());
                for e in many {
                    buf.extend_from_slice(&e.frame);
                }
                Some(buf.freeze())
            }
        }
    }

    /// The queue reported the stream closed. A draining stream gets its `retry:` next; any
    /// other end is immediate. The first reason wins.
    pub fn closed(&mut self, reason: CloseReason) {
        if self.end == End::Open {
            self.end = End::Closing(reason);
        }
    }

    /// Whether the stream has nothing more to write.
    #[cfg(test)]
    pub fn is_finished(&self) -> bool {
        self.end == End::Done && self.prelude.is_none()
    }
}

#[cfg(test)]
mod tests;
