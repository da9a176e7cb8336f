//! The durable history: an indexed event log in an embedded LSM store (fjall), in one
//! directory.
//!
//! # Layout
//! - `codec`: keys of the `log` and `index` keyspaces and the record of one event.
//! - `flusher`: the one writer thread: group commit, retention, failure and reopening.
//! - `replay`: reads for resuming subscribers, from the indexes or the log.
//! - this file: [`DiskStore`], its options, and the state the writer and readers share.
//!
//! The publish path never touches the disk: [`HistoryStore::append`] queues the batch and wakes
//! the flusher, which writes every queued batch in one atomic fjall batch, syncs once (group
//! commit), then calls the callbacks in append order. Readers see an event only once its batch
//! is committed, so a batch that failed is never replayed by this process.
//!
//! `docs/HISTORY.md` explains the design, what each durability mode can lose, and the figures.

mod codec;
mod flusher;
mod replay;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::{Condvar, Mutex, RwLock};

use super::{Bounds, HistoryStore, OnDurable, ReplayFilter, StoreError};
use crate::event::{EventId, StoredEvent};
use crate::metrics::{Counter, Histogram};
use codec::State;

/// When an append counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the journal is synced to stable storage (`fdatasync`); concurrent appends share
    /// one sync. Survives a process crash and a machine crash.
    Sync,
    /// After the journal is written to the operating system; synced every interval. Survives a
    /// process crash (`kill -9`); a machine crash or power loss can lose up to one interval of
    /// acknowledged events.
    Interval(Duration),
}

/// How much history is kept; the oldest events go first when any limit is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events kept.
    pub max_events: u64,
    /// Bytes of encoded frames kept (the disk holds more: targets, indexes, LSM overhead).
    pub max_bytes: u64,
    /// Events older than this are dropped.
    pub max_age: Option<Duration>,
}

impl Retention {
    /// The retention a hub's configuration asks for (`--history-max-events`,
    /// `--history-max-bytes`, `--history-max-age`).
    pub fn of(config: &crate::HubConfig) -> Self {
        Retention {
            max_events: config.history_max_events as u64,
            max_bytes: config.history_max_bytes as u64,
            max_age: config.history_max_age,
        }
    }
}

/// Where and how a [`DiskStore`] keeps its events.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// The data directory (created if missing); one process at a time.
    pub dir: PathBuf,
    /// When an append is acknowledged.
    pub durability: Durability,
    /// What is kept.
    pub retention: Retention,
}

/// Why a [`DiskStore`] could not open its directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process holds the directory.
    #[error("{0} is in use by another tidings process")]
    Locked(PathBuf),
    /// The storage engine failed (I/O error, unreadable journal, ...).
    #[error("cannot open the history in {path}: {source}")]
    Store {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        source: fjall::Error,
    },
    /// The directory holds data this version cannot read.
    #[error("cannot open the history in {path}: {source}")]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// What is wrong.
        source: codec::Corrupt,
    },
    /// The directory cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// An open fjall database and its keyspaces.
pub(super) struct Db {
    db: Database,
    log: Keyspace,
    /// Also holds the retained state under [`codec::STATE_KEY`].
    index: Keyspace,
}

impl Db {
    /// Opens (recovering the journal: a torn tail is cut at the last complete batch) and reads
    /// the retained state. A new directory starts its history at `fresh_floor`.
    fn open(dir: &Path, fresh_floor: EventId) -> Result<(Db, State, EventId), OpenError> {
        let store_err = |source: fjall::Error| match source {
            fjall::Error::Locked => OpenError::Locked(dir.to_owned()),
            source => OpenError::Store {
                path: dir.to_owned(),
                source,
            },
        };
        create_private_dir(dir).map_err(|source| OpenError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let db = Database::builder(dir)
            .cache_size(64 << 20)
            // Bounds the journal a restart replays: memtables are flushed before it grows past
            // this, which keeps start-up time short whatever the history's size.
            .max_journaling_size(64 << 20)
            .manual_journal_persist(true)
            .open()
            .map_err(store_err)?;
        // Small memtables keep the journal a crash leaves behind short (start-up replays it);
        // the log is appended in key order, so small flushes cost little compaction.
        let options = || {
            KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(8 << 20)
        };
        let log = db
            .keyspace("log", || options().expect_point_read_hits(true))
            .map_err(store_err)?;
        // The index's block indexes stay in memory at every level (a few MiB for millions of
        // events, read at start-up), so the first replay after a start finds its range at once.
        let index = db
            .keyspace("index", || {
                options().index_block_pinning_policy(fjall::config::PinningPolicy::all(true))
            })
            .map_err(store_err)?;
        let corrupt = |source| OpenError::Corrupt {
            path: dir.to_owned(),
            source,
        };
        let state = match index.get(codec::STATE_KEY).map_err(store_err)? {
            Some(value) => State::decode(&value).map_err(corrupt)?,
            None => {
                let state = State {
                    floor: fresh_floor,
                    ..State::default()
                };
                index
                    .insert(codec::STATE_KEY, state.encode())
                    .map_err(store_err)?;
                db.persist(PersistMode::SyncAll).map_err(store_err)?;
                state
            }
        };
        let last = match log.last_key_value() {
            Some(guard) => codec::id_of_key(&guard.key().map_err(store_err)?).map_err(corrupt)?,
            None => EventId(0),
        };
        let newest = last.max(state.floor);
        Ok((Db { db, log, index }, state, newest))
    }
}

/// Creates the data directory for the hub's user alone (0700): the history holds private
/// notifications. An existing directory open to others is warned about, not changed (its
/// owner may have reasons); files in it lose their group and other bits (0600).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory is open to other users; `chmod 700` it (the history holds private notifications)"
        );
    }
    restrict_files(dir)
}

/// Clears group and other permission bits of every file below `dir` (0600 at most).
fn restrict_files(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            restrict_files(&entry.path())?;
        } else if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            let mode = meta.permissions().mode() & 0o700;
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// Pending appends, in append order.
#[derive(Default)]
pub(super) struct Queue {
    batches: Vec<(Vec<Arc<StoredEvent>>, OnDurable)>,
    closed: bool,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(super) struct Stats {
    commit_latency: Histogram,
    commits: Counter,
    failed_commits: Counter,
    dropped: Counter,
    reopens: Counter,
}

/// What the store's handle, its flusher and its readers share.
pub(super) struct Shared {
    dir: PathBuf,
    durability: Durability,
    retention: Retention,
    /// `None` while the store is failed and being reopened.
    db: RwLock<Option<Arc<Db>>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Raised *before* a deletion commits, so a reader that raced it sees the gap.
    floor: AtomicU64,
    newest: AtomicU64,
    count: AtomicU64,
    bytes: AtomicU64,
    available: AtomicBool,
    stats: Stats,
}

impl Shared {
    fn floor(&self) -> EventId {
        EventId(self.floor.load(Ordering::SeqCst))
    }

    fn set_state(&self, state: &State) {
        self.floor.store(state.floor.0, Ordering::SeqCst);
        self.count.store(state.count, Ordering::SeqCst);
        self.bytes.store(state.bytes, Ordering::SeqCst);
    }
}

/// The durable history store. See the module documentation.
pub struct DiskStore {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.shared.dir)
            .field("bounds", &self.bounds())
            .finish()
    }
}

impl DiskStore {
    /// Opens or creates the store in `options.dir`, repairing a torn journal tail, and starts
    /// its writer thread. A new store's history starts at the current time (like the memory
    /// store), so ids from an earlier, unrelated hub are reported as a gap.
    pub fn open(options: DiskOptions) -> Result<DiskStore, OpenError> {
        let fresh_floor = EventId(super::unix_ms().saturating_mul(1000));
        let (db, state, newest) = Db::open(&options.dir, fresh_floor)?;
        let shared = Arc::new(Shared {
            dir: options.dir,
            durability: options.durability,
            retention: options.retention,
            db: RwLock::new(Some(Arc::new(db))),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            floor: AtomicU64::new(0),
            newest: AtomicU64::new(newest.0),
            count: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            available: AtomicBool::new(true),
            stats: Stats::default(),
        });
        shared.set_state(&state);
        let worker = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("tidings-history".into())
            .spawn(move || flusher::run(&worker))
            .map_err(|source| OpenError::CreateDir {
                path: shared.dir.clone(),
                source,
            })?;
        Ok(DiskStore {
            shared,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Writes what is queued, syncs the journal, stops the writer, and flushes the memtables
    /// into tables so the next start has no journal to replay (start-up time). Later appends
    /// fail with [`StoreError::Unavailable`]. Call it on a clean stop; dropping the store only
    /// stops the writer (nothing is lost either way: the journal is synced).
    pub fn close(&self) {
        if !self.stop() {
            return;
        }
        // fjall 3 exposes the flush only as a hidden method; a failure here costs the next
        // start time, never data.
        if let Some(db) = self.shared.db.read().clone() {
            for keyspace in [&db.log, &db.index] {
                if let Err(err) = keyspace.rotate_memtable_and_wait() {
                    tracing::warn!(%err, "history: memtables not flushed at close");
                }
            }
        }
    }

    /// Writes what is queued, syncs the journal and stops the writer; false if it was stopped
    /// already.
    fn stop(&self) -> bool {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_all();
        let Some(flusher) = self.flusher.lock().take() else {
            return false;
        };
        let _ = flusher.join();
        true
    }

    /// Whether the last write succeeded (false while the disk is full or read-only).
    pub fn is_available(&self) -> bool {
        self.shared.available.load(Ordering::SeqCst)
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        self.stop();
    }
}

impl HistoryStore for DiskStore {
    fn append(&self, events: Vec<Arc<StoredEvent>>, on_durable: OnDurable) {
        // The one lock the publish path takes here; the flusher holds it only to swap the
        // queue out, never across I/O.
        let mut queue = self.shared.queue.lock();
        if queue.closed {
            drop(queue);
            on_durable(Err(StoreError::Unavailable(
                "the history store is closed".into(),
            )));
            return;
        }
        queue.batches.push((events, on_durable));
        drop(queue);
        self.shared.wake.notify_one();
    }

    fn read(
        &self,
        after: EventId,
        upto: EventId,
        filter: &ReplayFilter<'_>,
        limit: usize,
    ) -> Result<Vec<Arc<StoredEvent>>, StoreError> {
        replay::read(&self.shared, after, upto, filter, limit)
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            floor: self.shared.floor(),
            newest: EventId(self.shared.newest.load(Ordering::SeqCst)),
        }
    }

    fn size(&self) -> (usize, usize) {
        let as_usize =
            |v: &AtomicU64| usize::try_from(v.load(Ordering::SeqCst)).unwrap_or(usize::MAX);
        (as_usize(&self.shared.count), as_usize(&self.shared.bytes))
    }

    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.shared.stats;
        s.commit_latency.render(
            out,
            "tidings_history_commit_seconds",
            "Time to write (and, with --durability sync, fsync) one group of appends.",
        );
        let disk = self
            .shared
            .db
            .read()
            .as_ref()
            .map_or(0, |db| db.db.disk_space().unwrap_or(0));
        let _ = write!(
            out,
            "# HELP tidings_history_commits_total Groups of appends written (group commit).\n\
             # TYPE tidings_history_commits_total counter\ntidings_history_commits_total {}\n\
             # HELP tidings_history_commit_failures_total Groups of appends that failed (disk full, read-only, I/O error).\n\
             # TYPE tidings_history_commit_failures_total counter\ntidings_history_commit_failures_total {}\n\
             # HELP tidings_history_dropped_total Events dropped by retention.\n\
             # TYPE tidings_history_dropped_total counter\ntidings_history_dropped_total {}\n\
             # HELP tidings_history_reopens_total Times the store was reopened after a failure.\n\
             # TYPE tidings_history_reopens_total counter\ntidings_history_reopens_total {}\n\
             # HELP tidings_history_available 1 while the history accepts writes.\n\
             # TYPE tidings_history_available gauge\ntidings_history_available {}\n\
             # HELP tidings_history_disk_bytes Bytes the history's files take on disk.\n\
             # TYPE tidings_history_disk_bytes gauge\ntidings_history_disk_bytes {disk}\n",
            s.commits.get(),
            s.failed_commits.get(),
            s.dropped.get(),
            s.reopens.get(),
            u8::from(self.is_available()),
        );
    }
}
