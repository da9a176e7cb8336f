//! The history store of a cluster node: its window in memory, then the shared log.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Cluster;
use crate::event::{EventId, StoredEvent};
use crate::history::{Bounds, HistoryStore, OnDurable, ReplayFilter, StoreError};

/// The history a cluster node replays from: its window, then the log.
pub(crate) struct ClusterStore(pub Arc<Cluster>);

impl HistoryStore for ClusterStore {
    fn append(&self, _events: Vec<Arc<StoredEvent>>, on_durable: OnDurable) {
        on_durable(Err(StoreError::Unavailable(
            "in cluster mode events are appended to the shared log".into(),
        )));
    }

    fn read(
        &self,
        after: EventId,
        upto: EventId,
        filter: &ReplayFilter<'_>,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, StoreError> {
        let cluster = &self.0;
        if after.as_u64() < cluster.floor.load(Ordering::Acquire) {
            return Err(StoreError::Gap(after));
        }
        match cluster.window.read(after, upto, filter, limit) {
            Err(StoreError::Gap(_)) => {}
            other => return other,
        }
        // The hub reads a store whose reads block on its blocking pool (`reads_block`),
        // where waiting on the runtime that drives the broker's connection is allowed.
        cluster
            .runtime
            .block_on(cluster.read_log(after, upto, filter, limit))
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            floor: EventId::from_u64(self.0.floor.load(Ordering::Acquire)),
            newest: self.0.applied(),
        }
    }

    fn size(&self) -> (usize, usize) {
        self.0.window.size()
    }

    fn render_metrics(&self, out: &mut String) {
        self.0.render_metrics(out);
    }
}
