//! The store's one writer thread: group commit, retention, and recovery from write failures.
//!
//! Each turn takes every queued append, adds the retention deletions that are due (a bounded
//! chunk of the oldest events), and writes all of it as one atomic fjall batch together with
//! the new retained state, then syncs once and calls the callbacks in append order. One
//! writer means no two batches race, so the retained state always matches the log.
//!
//! A failed write (disk full, read-only, I/O error) fails that turn's appends with
//! [`StoreError::Unavailable`] and closes the database (fjall refuses writes after a failed
//! sync, rightly: the page cache can no longer be trusted). Later turns reopen it from disk,
//! which cuts any torn tail, at most every [`REOPEN_BACKOFF`]; appends fail fast meanwhile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjall::PersistMode;

use super::codec::{self, State};
use super::{Db, Durability, Shared};
use crate::event::{EventId, StoredEvent};
use crate::history::{unix_ms, OnDurable, StoreError};

/// How often the writer wakes when idle, to enforce `--history-max-age`.
const TICK: Duration = Duration::from_millis(250);

/// Least time between two attempts to reopen a failed store.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);

/// Most events one turn deletes, so retention never adds much to an append's latency.
const RETENTION_CHUNK: usize = 4096;

struct Writer<'a> {
    shared: &'a Shared,
    /// `published_ms` of the oldest retained event, if known (for the age limit).
    oldest_ms: Option<u64>,
    /// Unsynced writes since (interval durability).
    dirty_since: Option<Instant>,
    /// Why the store is unavailable, and when to try reopening it.
    failed: Option<(String, Instant)>,
    /// A retention-only turn found nothing to delete; wait for the next tick before retrying.
    retention_stalled: bool,
}

pub(super) fn run(shared: &Shared) {
    let mut writer = Writer {
        shared,
        oldest_ms: None,
        dirty_since: None,
        failed: None,
        retention_stalled: false,
    };
    writer.oldest_ms = writer.db().and_then(|db| oldest_ms(&db, shared.floor()));
    loop {
        let timeout = writer.next_wake();
        let (batches, closed) = {
            let mut queue = shared.queue.lock();
            if queue.batches.is_empty() && !queue.closed && !timeout.is_zero() {
                shared.wake.wait_for(&mut queue, timeout);
            }
            (std::mem::take(&mut queue.batches), queue.closed)
        };
        writer.turn(batches);
        writer.sync_if_due(closed);
        if closed && shared.queue.lock().batches.is_empty() {
            return;
        }
    }
}

impl Writer<'_> {
    fn db(&self) -> Option<Arc<Db>> {
        self.shared.db.read().clone()
    }

    /// How long to sleep: not at all while retention is behind.
    fn next_wake(&self) -> Duration {
        if !self.retention_stalled && self.retention_due(unix_ms()) {
            return Duration::ZERO;
        }
        match (self.shared.durability, self.dirty_since) {
            (Durability::Interval(every), Some(since)) => {
                every.saturating_sub(since.elapsed()).min(TICK)
            }
            _ => TICK,
        }
    }

    fn retention_due(&self, now_ms: u64) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let r = &self.shared.retention;
        let count = self.shared.count.load(Ordering::SeqCst);
        let bytes = self.shared.bytes.load(Ordering::SeqCst);
        count > r.max_events
            || (bytes > r.max_bytes && count > 1)
            || r.max_age.zip(self.oldest_ms).is_some_and(|(age, oldest)| {
                oldest < now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
            })
    }

    /// The open database, reopening a failed one when its backoff has passed.
    fn open_db(&mut self) -> Result<Arc<Db>, String> {
        if let Some(db) = self.db() {
            return Ok(db);
        }
        let Some((why, retry_at)) = self.failed.clone() else {
            return Err("the history store is closed".into());
        };
        if Instant::now() < retry_at {
            return Err(why);
        }
        let shared = self.shared;
        match Db::open(&shared.dir, shared.floor()) {
            Ok((db, state, newest)) => {
                let db = Arc::new(db);
                shared.set_state(&state);
                shared.newest.fetch_max(newest.0, Ordering::SeqCst);
                self.oldest_ms = oldest_ms(&db, state.floor);
                *shared.db.write() = Some(Arc::clone(&db));
                shared.available.store(true, Ordering::SeqCst);
                shared.stats.reopens.inc();
                self.failed = None;
                tracing::info!(dir = %shared.dir.display(), "history store reopened; writes resume");
                Ok(db)
            }
            Err(e) => {
                let why = format!("{why}; reopening failed: {e}");
                self.failed = Some((why.clone(), Instant::now() + REOPEN_BACKOFF));
                Err(why)
            }
        }
    }

    /// Closes the database after a failed write; the next turns reopen it.
    fn fail(&mut self, error: &fjall::Error) -> String {
        let why = format!(
            "cannot write the history in {}: {error}",
            self.shared.dir.display()
        );
        if self.failed.is_none() {
            tracing::error!("{why}; publishes fail until it can be written again");
        }
        self.shared.available.store(false, Ordering::SeqCst);
        self.shared.stats.failed_commits.inc();
        // Readers holding the old handle finish with it; the last one closes it.
        *self.shared.db.write() = None;
        self.dirty_since = None;
        self.failed = Some((why.clone(), Instant::now() + REOPEN_BACKOFF));
        why
    }

    /// One group commit: the queued appends plus due retention, one batch, one sync.
    fn turn(&mut self, batches: Vec<(Vec<Arc<StoredEvent>>, OnDurable)>) {
        let now_ms = unix_ms();
        if batches.is_empty() && !self.retention_due(now_ms) {
            if self.failed.is_some() {
                // Reopen without waiting for a publish, so replays work again as soon as the
                // disk does.
                let _ = self.open_db();
            }
            return;
        }
        let db = match self.open_db() {
            Ok(db) => db,
            Err(why) => return fail_all(batches, &why),
        };
        let shared = self.shared;
        let mut state = State {
            floor: shared.floor(),
            count: shared.count.load(Ordering::SeqCst),
            bytes: shared.bytes.load(Ordering::SeqCst),
        };
        let mut batch = db.db.batch();
        let mut newest = None;
        // The hub validates targets first (--max-targets), so a record that cannot be encoded
        // comes from a caller that did not: fail the group loudly rather than store it wrong.
        let records: Result<Vec<_>, _> = batches
            .iter()
            .flat_map(|(events, _)| events)
            .map(|event| codec::encode(event))
            .collect();
        let records = match records {
            Ok(records) => records,
            Err(e) => return fail_all(batches, &e.to_string()),
        };
        let events = batches.iter().flat_map(|(events, _)| events);
        for (event, record) in events.zip(records) {
            let record = fjall::Slice::from(record.as_slice());
            let covers = codec::covers(event);
            for key in codec::index_keys(event) {
                // Exact-topic entries of an event with few topics carry the record, so a
                // topic's replay is one range scan; the rest point into the log.
                let value = if covers && codec::is_topic_key(&key) {
                    record.clone()
                } else {
                    fjall::Slice::from(&[][..])
                };
                batch.insert(&db.index, key, value);
            }
            batch.insert(&db.log, codec::log_key(event.id), record);
            state.count += 1;
            state.bytes += event.size() as u64;
            newest = Some(event.id);
            if self.oldest_ms.is_none() {
                self.oldest_ms = Some(event.published_ms);
            }
        }
        let plan = match plan_retention(&db, &mut state, &shared.retention, now_ms) {
            Ok(plan) => plan,
            Err(e) => {
                let why = self.fail(&e);
                return fail_all(batches, &why);
            }
        };
        for (id, index_keys) in &plan.deletes {
            batch.remove(&db.log, codec::log_key(*id));
            for key in index_keys {
                batch.remove(&db.index, key.as_slice());
            }
        }
        let dropped = plan.deletes.len();
        let mut oldest_after = self.oldest_ms;
        if dropped > 0 {
            oldest_after = plan.oldest_kept_ms;
            // Readers must see the gap before the events vanish.
            shared.floor.fetch_max(state.floor.0, Ordering::SeqCst);
        }
        batch.insert(&db.index, codec::STATE_KEY, state.encode());
        let mode = match shared.durability {
            _ if batches.is_empty() => PersistMode::Buffer,
            Durability::Sync => PersistMode::SyncData,
            Durability::Interval(_) => PersistMode::Buffer,
        };
        let started = Instant::now();
        let result = batch.durability(Some(mode)).commit();
        shared.stats.commit_latency.observe(started.elapsed());
        if let Err(e) = result {
            let why = self.fail(&e);
            return fail_all(batches, &why);
        }
        drop(db);
        shared.stats.commits.inc();
        self.retention_stalled = batches.is_empty() && dropped == 0;
        shared.stats.dropped.add(dropped as u64);
        shared.count.store(state.count, Ordering::SeqCst);
        shared.bytes.store(state.bytes, Ordering::SeqCst);
        if let Some(newest) = newest {
            shared.newest.fetch_max(newest.0, Ordering::SeqCst);
        }
        self.oldest_ms = if state.count == 0 { None } else { oldest_after };
        if mode != PersistMode::SyncData && self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        for (_, on_durable) in batches {
            on_durable(Ok(()));
        }
    }

    /// Interval durability: syncs when the interval has passed (or on close).
    fn sync_if_due(&mut self, closing: bool) {
        let Some(since) = self.dirty_since else {
            return;
        };
        let due = match self.shared.durability {
            Durability::Interval(every) => since.elapsed() >= every,
            // Only retention's deletions are unsynced; the next append's sync covers them.
            Durability::Sync => false,
        };
        if !due && !closing {
            return;
        }
        let Some(db) = self.db() else { return };
        let started = Instant::now();
        let result = db.db.persist(PersistMode::SyncData);
        self.shared.stats.commit_latency.observe(started.elapsed());
        drop(db);
        match result {
            Ok(()) => self.dirty_since = None,
            Err(e) => {
                self.fail(&e);
            }
        }
    }
}

fn fail_all(batches: Vec<(Vec<Arc<StoredEvent>>, OnDurable)>, why: &str) {
    for (_, on_durable) in batches {
        on_durable(Err(StoreError::Unavailable(why.to_owned())));
    }
}

/// The oldest events to delete now, and what is left.
struct Plan {
    deletes: Vec<(EventId, Vec<Vec<u8>>)>,
    oldest_kept_ms: Option<u64>,
}

/// Walks the log from the floor and deletes, oldest first, while any limit is passed; at most
/// [`RETENTION_CHUNK`] events, so a big backlog is worked off over several turns. `state`
/// counts this turn's appends already, and is updated to what stays.
fn plan_retention(
    db: &Db,
    state: &mut State,
    retention: &super::Retention,
    now_ms: u64,
) -> Result<Plan, fjall::Error> {
    let cutoff = retention
        .max_age
        .map(|age| now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
    let over = |state: &State, published_ms: u64| {
        state.count > retention.max_events
            || (state.bytes > retention.max_bytes && state.count > 1)
            || cutoff.is_some_and(|cutoff| published_ms < cutoff)
    };
    let mut plan = Plan {
        deletes: Vec::new(),
        oldest_kept_ms: None,
    };
    if !over(state, u64::MAX) && cutoff.is_none() {
        return Ok(plan);
    }
    // Seek past the floor: tombstones of earlier deletions are never walked again.
    for guard in db.log.range(codec::log_key(state.floor.next())..) {
        let (key, value) = guard.into_inner()?;
        let id = codec::id_of_key(&key).map_err(corrupt)?;
        let (size, published_ms) = codec::size_and_time(&value).map_err(corrupt)?;
        if !over(state, published_ms) || plan.deletes.len() >= RETENTION_CHUNK {
            plan.oldest_kept_ms = Some(published_ms);
            break;
        }
        let event = codec::decode(id, &value).map_err(corrupt)?;
        plan.deletes.push((id, codec::index_keys(&event)));
        state.count = state.count.saturating_sub(1);
        state.bytes = state.bytes.saturating_sub(size as u64);
        state.floor = id;
    }
    Ok(plan)
}

/// A record that cannot be decoded stops retention the way an I/O error would: loudly.
fn corrupt(e: codec::Corrupt) -> fjall::Error {
    fjall::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// `published_ms` of the first event above `floor`.
fn oldest_ms(db: &Db, floor: EventId) -> Option<u64> {
    let guard = db.log.range(codec::log_key(floor.next())..).next()?;
    let value = guard.value().ok()?;
    codec::size_and_time(&value).ok().map(|(_, ms)| ms)
}
