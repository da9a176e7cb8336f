//! The bounded set of connections that are not event streams: sockets waiting for their first
//! request head, idle keep-alive connections, and connections in a request.
//!
//! Event streams are bounded by `--max-connections` and friends; everything else would be
//! bounded only by the open-files limit, and a client with many idle sockets could take every
//! descriptor, leaving none for a subscriber or a publish. So at most
//! `--max-http-connections` are open at once; a new one past the bound closes the oldest *idle*
//! one (no request in progress), which under a flood of idle sockets is always a flood socket,
//! and the newcomer (a real client sends its request at once) gets served. When every one is
//! busy the newcomer is refused instead. Out of descriptors, the accept loop closes the oldest
//! idle one too, so the hub serves again as soon as the kernel has a descriptor to give.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// What an admitted connection and the set share.
struct Slot {
    /// Notified when the connection must close (evicted).
    close: Arc<Notify>,
    /// Requests in progress on it.
    busy: Arc<AtomicUsize>,
}

/// The open non-stream connections, oldest first.
pub(crate) struct HttpConns {
    max: usize,
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Slot>>,
    evicted: AtomicU64,
}

impl HttpConns {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            next: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            evicted: AtomicU64::new(0),
        })
    }

    /// Admits a new connection, closing the oldest idle one if the set is full; `None` when
    /// it is full of busy connections.
    pub fn admit(self: &Arc<Self>) -> Option<HttpConn> {
        let mut open = self.open.lock();
        if open.len() >= self.max && !Self::evict_oldest_idle(&mut open) {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let busy = Arc::new(AtomicUsize::new(0));
        open.insert(
            id,
            Slot {
                close: Arc::clone(&close),
                busy: Arc::clone(&busy),
            },
        );
        drop(open);
        Some(HttpConn {
            set: Arc::clone(self),
            id,
            close,
            busy,
        })
    }

    /// Closes the oldest idle connection (to free a descriptor); false if none is idle.
    pub fn evict_idle(&self) -> bool {
        Self::evict_oldest_idle(&mut self.open.lock())
    }

    fn evict_oldest_idle(open: &mut BTreeMap<u64, Slot>) -> bool {
        let Some(id) = open
            .iter()
            .find(|(_, slot)| slot.busy.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(slot) = open.remove(&id) {
            // A stored permit: the connection sees it even if it is not waiting right now.
            slot.close.notify_one();
        }
        true
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    /// Connections closed to make room since start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// One admitted connection; leaves the set when dropped (or when it becomes an event stream).
pub(crate) struct HttpConn {
    set: Arc<HttpConns>,
    id: u64,
    close: Arc<Notify>,
    busy: Arc<AtomicUsize>,
}

impl HttpConn {
    /// Resolves when the connection was chosen to close.
    pub async fn evicted(&self) {
        self.close.notified().await;
        self.set.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks requests in progress (a busy connection is never evicted); for a service
    /// closure that outlives a borrow of the connection.
    pub fn busy_handle(&self) -> BusyHandle {
        BusyHandle(Arc::clone(&self.busy))
    }
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.set.open.lock().remove(&self.id);
    }
}

/// Marks requests in progress on one connection.
#[derive(Clone)]
pub(crate) struct BusyHandle(Arc<AtomicUsize>);

impl BusyHandle {
    pub fn request(&self) -> Busy {
        self.0.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(&self.0))
    }
}

/// A request in progress.
pub(crate) struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its connection counted busy until it is over: a stream served
/// by hyper (a keep-alive connection's later `GET /events`) is in a request for as long as it
/// lasts, so it is never closed as idle to make room for a newcomer.
pub(crate) struct BusyBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl BusyBody {
    pub fn wrap(body: axum::body::Body, busy: Busy) -> axum::body::Body {
        axum::body::Body::new(BusyBody { body, _busy: busy })
    }
}

impl http_body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_set_closes_its_oldest_idle_connection_for_a_newcomer() {
        let set = HttpConns::new(2);
        let a = set.admit().unwrap();
        let _b = set.admit().unwrap();
        let _c = set.admit().expect("room made by closing the oldest idle");
        assert_eq!(set.len(), 2);
        // `a` was told to close (a stored permit), and leaving does not disturb the others.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(a.evicted());
        drop(a);
        assert_eq!(set.len(), 2);
        assert_eq!(set.evicted(), 1);
    }

    #[test]
    fn busy_connections_are_never_closed_and_a_full_busy_set_refuses() {
        let set = HttpConns::new(2);
        let a = set.admit().unwrap();
        let b = set.admit().unwrap();
        let _ra = a.busy_handle().request();
        let rb = b.busy_handle().request();
        assert!(set.admit().is_none());
        drop(rb);
        let _c = set.admit().expect("b is idle again");
        assert!(!set.evict_idle() || set.len() == 1);
    }

    #[test]
    fn a_response_body_keeps_its_connection_busy_until_it_is_dropped() {
        let set = HttpConns::new(1);
        let conn = set.admit().expect("room for one");
        let body = BusyBody::wrap(axum::body::Body::empty(), conn.busy_handle().request());
        assert!(
            set.admit().is_none(),
            "in a request: not evicted for a newcomer"
        );
        drop(body);
        assert!(set.evict_idle(), "idle once the body is over");
    }
}
