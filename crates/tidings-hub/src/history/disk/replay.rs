//! Reads for resuming subscribers: cost follows the matching events, not the log.
//!
//! Each of a subscriber's patterns maps to one index range (its exact topic, or the prefix of
//! its literal leading segments), plus its user's index and the broadcast index. The ranges
//! are merged by id (a k-way merge; duplicates collapse), and only those events are fetched
//! from the log and checked against the filter. A subscriber with a pattern that has no literal
//! first segment (`**`, `*/x`) reads the log itself, which is what it would match anyway.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::codec::{self, Source};
use super::{Db, Shared};
use crate::event::{EventId, StoredEvent};
use crate::history::{ReplayFilter, StoreError};

pub(super) fn read(
    shared: &Shared,
    after: EventId,
    upto: EventId,
    filter: &ReplayFilter<'_>,
    limit: usize,
) -> Result<Vec<Arc<StoredEvent>>, StoreError> {
    if after < shared.floor() {
        return Err(StoreError::Gap(after));
    }
    if after >= upto || limit == 0 {
        return Ok(Vec::new());
    }
    let db = shared
        .db
        .read()
        .clone()
        .ok_or_else(|| StoreError::Unavailable("the history store is reopening".into()))?;
    let mut sources: Vec<Source> = filter.patterns.iter().map(codec::pattern_source).collect();
    let out = if sources.contains(&Source::Log) {
        scan_log(&db, after, upto, filter, limit)
    } else {
        sources.extend(filter.user.map(|u| Source::Index(codec::user_prefix(u))));
        sources.push(Source::Index(codec::broadcast_prefix()));
        sources.sort_unstable();
        sources.dedup();
        merge_indexes(&db, &sources, after, upto, filter, limit)
    }
    .map_err(|e| StoreError::Unavailable(format!("cannot read the history: {e}")))?;
    // Retention raises the floor before it deletes: if it overtook this read, events may be
    // missing from it, and the reader must be told, not given a silent hole.
    if after < shared.floor() {
        return Err(StoreError::Gap(after));
    }
    Ok(out)
}

/// Errors while reading: the engine's, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Store(#[from] fjall::Error),
    #[error(transparent)]
    Corrupt(#[from] codec::Corrupt),
}

fn scan_log(
    db: &Db,
    after: EventId,
    upto: EventId,
    filter: &ReplayFilter<'_>,
    limit: usize,
) -> Result<Vec<Arc<StoredEvent>>, ReadError> {
    let mut out = Vec::with_capacity(limit.min(1024));
    for guard in db
        .log
        .range(codec::log_key(after.next())..=codec::log_key(upto))
    {
        let (key, value) = guard.into_inner()?;
        let event = codec::decode(codec::id_of_key(&key)?, &value)?;
        if filter.accepts(&event) {
            out.push(Arc::new(event));
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

fn merge_indexes(
    db: &Db,
    sources: &[Source],
    after: EventId,
    upto: EventId,
    filter: &ReplayFilter<'_>,
    limit: usize,
) -> Result<Vec<Arc<StoredEvent>>, ReadError> {
    let mut ranges: Vec<fjall::Iter> = sources
        .iter()
        .filter_map(|s| match s {
            Source::Index(prefix) => Some(
                db.index
                    .range(codec::with_id(prefix, after.next())..=codec::with_id(prefix, upto)),
            ),
            Source::Log => None,
        })
        .collect();
    // The pending entry of each range, smallest id first; on a tie a covering (exact-topic)
    // entry comes first, so the duplicate that is used is the one that needs no log read.
    let mut pending: Vec<Option<fjall::Slice>> = vec![None; ranges.len()];
    let mut heads = BinaryHeap::with_capacity(ranges.len());
    for (i, range) in ranges.iter_mut().enumerate() {
        if let Some((id, covering, value)) = next_entry(range)? {
            pending[i] = Some(value);
            heads.push(Reverse((id, !covering, i)));
        }
    }
    let mut out = Vec::with_capacity(limit.min(1024));
    let mut last = after;
    while let Some(Reverse((id, _, i))) = heads.pop() {
        let value = pending[i].take();
        if let Some((next, covering, next_value)) = next_entry(&mut ranges[i])? {
            pending[i] = Some(next_value);
            heads.push(Reverse((next, !covering, i)));
        }
        if id <= last {
            continue;
        }
        last = id;
        let record = match value.filter(|v| !v.is_empty()) {
            Some(record) => record,
            // Absent when retention deleted it since the index was read; `read` reports the gap.
            None => match db.log.get(codec::log_key(id))? {
                Some(record) => record,
                None => continue,
            },
        };
        let event = codec::decode(id, &record)?;
        // A prefix range also holds topics the pattern does not match (`a/*` vs `a/b/c`).
        if filter.accepts(&event) {
            out.push(Arc::new(event));
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// The next index entry of a range: its id, whether it carries the record, and its value.
fn next_entry(range: &mut fjall::Iter) -> Result<Option<(EventId, bool, fjall::Slice)>, ReadError> {
    match range.next() {
        None => Ok(None),
        Some(guard) => {
            let (key, value) = guard.into_inner()?;
            let covering = !value.is_empty();
            Ok(Some((codec::id_of_key(&key)?, covering, value)))
        }
    }
}
