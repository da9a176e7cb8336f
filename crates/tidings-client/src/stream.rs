//! [`EventStream`], the `Stream` of [`SseItem`]s, and [`Handle`], its remote control.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::driver::{Command, Driver};
use crate::item::SseItem;

/// A Server-Sent Events stream that reconnects by itself: a [`Stream`] of [`SseItem`]s.
///
/// Nothing happens until it is polled; dropping it closes the connection. It needs a tokio
/// runtime with the time and I/O drivers enabled.
///
/// ```no_run
/// use tidings_client::{EventStream, SseItem};
/// # async fn run() -> Result<(), tidings_client::BuildError> {
/// let mut stream = EventStream::builder("http://127.0.0.1:8080/events?topic=news").build()?;
/// while let Some(item) = stream.next().await {
///     match item {
///         SseItem::Event(event) => println!("{}: {}", event.event, event.data),
///         SseItem::Reset(reset) => println!("missed events ({}): reload", reset.reason),
///         SseItem::Error { error, will_retry } => eprintln!("{error} (retrying: {will_retry})"),
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct EventStream {
    inner: BoxStream<'static, SseItem>,
    commands: mpsc::UnboundedSender<Command>,
}

impl EventStream {
    pub(crate) fn new(config: Config) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver::new(config, rx, tx.clone());
        let inner = futures_util::stream::unfold(driver, |mut driver| async move {
            let item = driver.next().await?;
            Some((item, driver))
        })
        .boxed();
        EventStream {
            inner,
            commands: tx,
        }
    }

    /// The next item, or `None` after [`SseItem::Closed`]. The same as
    /// [`StreamExt::next`], without the import.
    pub async fn next(&mut self) -> Option<SseItem> {
        self.inner.next().await
    }

    /// A handle to restart or close this stream from elsewhere, for instance another task.
    pub fn handle(&self) -> Handle {
        Handle {
            commands: self.commands.clone(),
        }
    }
}

impl Stream for EventStream {
    type Item = SseItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SseItem>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

/// Restarts or closes an [`EventStream`]. Cheap to clone; commands to a stream that has been
/// dropped are ignored.
#[derive(Debug, Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
}

impl Handle {
    /// Drops the current connection (or cuts short the wait before the next one) and
    /// connects again at once, with the current `Last-Event-ID`. The stream yields
    /// [`SseItem::Reconnecting`] with a zero delay, not an error, and the attempt count starts
    /// again.
    pub fn restart(&self) {
        // A send fails only when the stream is gone, and then there is nothing to restart.
        let _ = self.commands.send(Command::Restart);
    }

    /// Closes the stream: it yields [`SseItem::Closed`] with
    /// [`CloseReason::Requested`](crate::CloseReason::Requested), then ends.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}
