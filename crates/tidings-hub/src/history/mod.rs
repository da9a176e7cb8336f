//! Where published events are kept for replay, behind one trait.
//!
//! The hub calls a store from its publish sequencer, in id order, and reads from it when a
//! client resumes.
//!
//! # Layout
//! - [`MemoryStore`] (`memory`): a bounded ring in memory; `tidings serve --memory`.
//! - [`DiskStore`] (`disk`): the durable default, an indexed log on an embedded LSM store
//!   (fjall) with group commit, continuous retention and crash recovery. `docs/HISTORY.md`
//!   explains its design and its figures.

pub mod disk;
mod memory;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use disk::{DiskOptions, DiskStore, Durability, OpenError, Retention};
pub use memory::MemoryStore;

use crate::event::{EventId, StoredEvent};
use crate::topic::Pattern;

/// What a resuming connection may see.
#[derive(Debug, Clone, Copy)]
pub struct ReplayFilter<'a> {
    /// Its subscriptions.
    pub patterns: &'a [Pattern],
    /// Its user, if its token has a subject.
    pub user: Option<&'a str>,
}

impl ReplayFilter<'_> {
    /// Whether the event is one this connection would have received live.
    pub fn accepts(&self, event: &StoredEvent) -> bool {
        event.visible_to(self.patterns, self.user)
    }
}

/// The ids a store can speak for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Every event with an id above this is still retained (the newest dropped id, or the
    /// position the store started from).
    pub floor: EventId,
    /// The newest id appended (equal to `floor` when nothing is retained).
    pub newest: EventId,
}

/// A history store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The position to read from has been dropped by retention.
    #[error("events after {0} are no longer retained")]
    Gap(EventId),
    /// The store cannot take writes (disk full, read-only, ...).
    #[error("history unavailable: {0}")]
    Unavailable(String),
}

/// Called once an appended batch is durable (or failed to become so).
pub type OnDurable = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

/// An append-only, bounded log of events, read by position and filter.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends events whose ids are strictly greater than every id appended before, and calls
    /// `on_durable` once they are stored at the configured durability.
    ///
    /// The hub calls this under its publish sequencer and fans the events out from
    /// `on_durable`, so a store must call the callbacks in append order; it may call one
    /// inline (an in-memory store does) or later from its own flusher (a group commit).
    /// Events whose batch failed must never be returned by [`HistoryStore::read`].
    fn append(&self, events: Vec<Arc<StoredEvent>>, on_durable: OnDurable);

    /// Up to `limit` events with `after < id <= upto` that `filter` accepts, in id order.
    /// `Err(Gap)` when events after `after` have been dropped.
    fn read(
        &self,
        after: EventId,
        upto: EventId,
        filter: &ReplayFilter<'_>,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, StoreError>;

    /// The retained range.
    fn bounds(&self) -> Bounds;

    /// Number of events and bytes retained, for metrics.
    fn size(&self) -> (usize, usize);

    /// Whether [`HistoryStore::read`] may block on I/O. The hub then reads replay pages on the
    /// runtime's blocking pool instead of a worker thread.
    fn reads_block(&self) -> bool {
        true
    }

    /// Appends the store's own metric families (Prometheus text) to `/metrics`.
    fn render_metrics(&self, _out: &mut String) {}
}

/// The wall clock in Unix milliseconds, as events are stamped (`StoredEvent::published_ms`).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
