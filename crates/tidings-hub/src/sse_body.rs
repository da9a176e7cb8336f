//! The hyper sink: a stream as an HTTP response body, for the embedded [`crate::router`] (and
//! for `serve` when a keep-alive connection's later request is `GET /events`).
//!
//! Each poll yields one chunk: the prelude, a replay page, or every frame queued since the last
//! poll coalesced into one (one write for a burst).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::subscription::{Out, Subscription};

/// The `text/event-stream` response body of one subscriber.
pub(crate) struct SseBody {
    sub: Subscription,
    frames: VecDeque<Bytes>,
    finished: bool,
}

impl SseBody {
    pub fn new(sub: Subscription) -> Self {
        Self {
            sub,
            frames: VecDeque::new(),
            finished: false,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        let chunk = match ready!(this.sub.poll_next(cx, &mut this.frames)) {
            None => {
                this.finished = true;
                return Poll::Ready(None);
            }
            Some(Out::Chunk(chunk)) => chunk,
            Some(Out::Frames(_)) if this.frames.len() == 1 => {
                this.frames.pop_front().unwrap_or_default()
            }
            Some(Out::Frames(bytes)) => {
                let mut buf = BytesMut::with_capacity(bytes);
                for f in this.frames.drain(..) {
                    buf.extend_from_slice(&f);
                }
                buf.freeze()
            }
        };
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
