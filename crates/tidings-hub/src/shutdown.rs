//! Shutdown as one signal: "every stream has closed".
//!
//! [`crate::Hub::drain`] refuses new streams and publishes and tells every open stream when to
//! come back; each stream then writes its `retry:` and ends. The registry reports every change
//! of its size here, so whoever waits for the end ([`crate::serve`], or an embedding app through
//! [`crate::Hub::streams_closed`]) is woken by the last stream's unregistration instead of
//! polling a counter.

use tokio::sync::watch;

/// The number of open streams, watched.
#[derive(Debug)]
pub(crate) struct OpenStreams(watch::Sender<usize>);

impl OpenStreams {
    pub fn new() -> Self {
        Self(watch::channel(0).0)
    }

    /// The registry's new size (called under the registry's write lock, so updates arrive
    /// in order).
    pub fn set(&self, open: usize) {
        self.0
            .send_if_modified(|n| std::mem::replace(n, open) != open);
    }

    /// Resolves once no stream is open.
    pub async fn all_closed(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this cannot fail while it is borrowed.
        let _ = rx.wait_for(|open| *open == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::OpenStreams;

    #[tokio::test]
    async fn the_last_close_wakes_the_waiter() {
        let open = std::sync::Arc::new(OpenStreams::new());
        open.set(2);
        let waiter = tokio::spawn({
            let open = std::sync::Arc::clone(&open);
            async move { open.all_closed().await }
        });
        tokio::task::yield_now().await;
        open.set(1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        open.set(0);
        waiter.await.expect("the waiter ends");
        // With nothing open it resolves at once.
        open.all_closed().await;
    }
}
