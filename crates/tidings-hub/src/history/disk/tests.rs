//! The disk store driven directly: append, read, bounds, retention, restart and recovery.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::history::{unix_ms, MemoryStore};
use crate::topic::Pattern;

const BIG: Retention = Retention {
    max_events: u64::MAX,
    max_bytes: u64::MAX,
    max_age: None,
};

fn options(dir: &Path, retention: Retention) -> DiskOptions {
    DiskOptions {
        dir: dir.to_owned(),
        durability: Durability::Sync,
        retention,
    }
}

fn event(id: u64, topics: &[&str], users: &[&str], broadcast: bool) -> Arc<StoredEvent> {
    Arc::new(StoredEvent {
        id: EventId(id),
        topics: topics.iter().map(|t| Arc::from(*t)).collect(),
        users: users.iter().map(|u| Arc::from(*u)).collect(),
        broadcast,
        published_ms: unix_ms(),
        frame: Bytes::from(format!("id: {id}\ndata: {topics:?}\n\n")),
    })
}

fn on_topic(id: u64, topic: &str) -> Arc<StoredEvent> {
    event(id, &[topic], &[], false)
}

/// Appends and waits for the callback.
fn append(store: &DiskStore, events: Vec<Arc<StoredEvent>>) -> Result<(), StoreError> {
    let (tx, rx) = mpsc::channel();
    store.append(
        events,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the durable callback was called")
}

fn ids(events: &[Arc<StoredEvent>]) -> Vec<u64> {
    events.iter().map(|e| e.id.0).collect()
}

fn read(
    store: &dyn HistoryStore,
    after: u64,
    patterns: &[&str],
    user: Option<&str>,
) -> Result<Vec<u64>, StoreError> {
    let patterns: Vec<Pattern> = patterns
        .iter()
        .map(|p| Pattern::parse(p).unwrap())
        .collect();
    let filter = ReplayFilter {
        patterns: &patterns,
        user,
    };
    store
        .read(EventId(after), EventId(u64::MAX - 1), &filter, usize::MAX)
        .map(|e| ids(&e))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

#[test]
fn appended_events_read_back_in_order_after_their_callback() {
    let dir = tempdir();
    let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
    let start = store.bounds().newest.0;
    append(&store, (1..=3).map(|i| on_topic(start + i, "a")).collect()).unwrap();
    append(&store, vec![on_topic(start + 4, "b")]).unwrap();
    assert_eq!(
        read(&store, start, &["**"], None).unwrap(),
        vec![start + 1, start + 2, start + 3, start + 4]
    );
    assert_eq!(
        read(&store, start + 2, &["a"], None).unwrap(),
        vec![start + 3]
    );
    assert_eq!(store.bounds().newest, EventId(start + 4));
    assert_eq!(store.size().0, 4);
    let patterns = [Pattern::parse("**").unwrap()];
    let filter = ReplayFilter {
        patterns: &patterns,
        user: None,
    };
    let page = store
        .read(EventId(start), EventId(start + 4), &filter, 2)
        .unwrap();
    assert_eq!(ids(&page), vec![start + 1, start + 2]);
    let seam = store
        .read(EventId(start), EventId(start + 2), &filter, 10)
        .unwrap();
    assert_eq!(
        ids(&seam),
        vec![start + 1, start + 2],
        "nothing past `upto`"
    );
}

#[test]
fn callbacks_run_in_append_order_when_many_appends_share_a_commit() {
    let dir = tempdir();
    let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
    let start = store.bounds().newest.0;
    let (tx, rx) = mpsc::channel();
    for i in 1..=500 {
        let tx = tx.clone();
        store.append(
            vec![on_topic(start + i, "a")],
            Box::new(move |r| {
                let _ = tx.send((i, r.is_ok()));
            }),
        );
    }
    let order: Vec<(u64, bool)> = (0..500)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(order, (1..=500).map(|i| (i, true)).collect::<Vec<_>>());
    let mut text = String::new();
    store.render_metrics(&mut text);
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tidings_history_commits_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((1..=500).contains(&commits));
}

#[test]
fn a_reopened_store_keeps_its_events_floor_and_newest() {
    let dir = tempdir();
    let (start, bounds) = {
        let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
        let start = store.bounds().newest.0;
        append(&store, (1..=10).map(|i| on_topic(start + i, "a")).collect()).unwrap();
        (start, store.bounds())
    };
    let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
    assert_eq!(store.bounds(), bounds);
    assert_eq!(store.bounds().newest, EventId(start + 10));
    assert_eq!(store.size().0, 10);
    assert_eq!(
        read(&store, start + 5, &["a"], None).unwrap(),
        (start + 6..=start + 10).collect::<Vec<_>>()
    );
}

#[test]
fn a_new_store_reports_older_ids_as_a_gap() {
    let dir = tempdir();
    let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
    let floor = store.bounds().floor.0;
    assert!(
        floor > 1_700_000_000_000_000,
        "starts at the clock, in microseconds"
    );
    assert!(matches!(
        read(&store, floor - 1, &["**"], None),
        Err(StoreError::Gap(_))
    ));
    assert_eq!(
        read(&store, floor, &["**"], None).unwrap(),
        Vec::<u64>::new()
    );
}

/// A small deterministic generator for the randomized comparison below.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn indexed_reads_return_exactly_what_a_full_scan_would() {
    let dir = tempdir();
    let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
    let start = store.bounds().newest.0;
    let reference = MemoryStore::new(EventId(start), usize::MAX, usize::MAX);
    let topics = [
        "a",
        "a/b",
        "a/c",
        "a/b/c",
        "a/b/c/d",
        "a/b/c/d/e",
        "x/b",
        "x/y/z",
        "q",
    ];
    let users = ["u1", "u2", "https://idp/u3"];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut id = start;
    for _ in 0..40 {
        let batch: Vec<_> = (0..(next(&mut seed) % 20 + 1))
            .map(|_| {
                id += 1;
                let r = next(&mut seed);
                let t: Vec<&str> = (0..r % 3)
                    .map(|k| topics[((r >> (8 * k + 4)) % 9) as usize])
                    .collect();
                let u: Vec<&str> = if r.is_multiple_of(5) {
                    vec![users[((r >> 40) % 3) as usize]]
                } else {
                    vec![]
                };
                event(id, &t, &u, r.is_multiple_of(17))
            })
            .collect();
        reference.push(&batch);
        append(&store, batch).unwrap();
    }
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["a"], None),
        (&["a/*"], None),
        (&["a/**"], None),
        (&["a/b/*"], None),
        (&["a/b/c/d/*"], None),
        (&["*/b"], None),
        (&["**"], Some("u1")),
        (&["q", "x/**"], Some("u2")),
        (&["nothing"], Some("https://idp/u3")),
        (&["nothing"], None),
        (&["a/*", "a/**", "a/b"], None),
    ];
    for (patterns, user) in cases {
        for after in [start, start + 100, id - 3] {
            assert_eq!(
                read(&store, after, patterns, *user).unwrap(),
                read(&reference, after, patterns, *user).unwrap(),
                "{patterns:?} {user:?} after {after}"
            );
        }
    }
}

#[test]
fn retention_by_count_moves_the_floor_and_reports_a_gap() {
    let dir = tempdir();
    let retention = Retention {
        max_events: 5,
        ..BIG
    };
    let store = DiskStore::open(options(dir.path(), retention)).unwrap();
    let start = store.bounds().newest.0;
    append(&store, (1..=20).map(|i| on_topic(start + i, "a")).collect()).unwrap();
    // The batch lands whole; the writer trims it on its next turn.
    wait_until(|| store.size().0 == 5);
    assert_eq!(store.bounds().floor, EventId(start + 15));
    assert!(matches!(
        read(&store, start + 14, &["a"], None),
        Err(StoreError::Gap(_))
    ));
    assert_eq!(
        read(&store, start + 15, &["a"], None).unwrap(),
        (start + 16..=start + 20).collect::<Vec<_>>()
    );
    drop(store);
    let store = DiskStore::open(options(dir.path(), retention)).unwrap();
    assert_eq!(
        store.bounds().floor,
        EventId(start + 15),
        "the floor survives a restart"
    );
    assert_eq!(store.size().0, 5);
}

#[test]
fn retention_by_bytes_keeps_the_newest_event() {
    let dir = tempdir();
    let retention = Retention {
        max_bytes: 1,
        ..BIG
    };
    let store = DiskStore::open(options(dir.path(), retention)).unwrap();
    let start = store.bounds().newest.0;
    append(
        &store,
        vec![on_topic(start + 1, "a"), on_topic(start + 2, "a")],
    )
    .unwrap();
    wait_until(|| store.size().0 == 1);
    assert_eq!(store.bounds().floor, EventId(start + 1));
    assert_eq!(
        read(&store, start + 1, &["a"], None).unwrap(),
        vec![start + 2]
    );
}

#[test]
fn retention_by_age_drops_old_events_without_new_appends() {
    let dir = tempdir();
    let retention = Retention {
        max_age: Some(Duration::from_secs(60)),
        ..BIG
    };
    let store = DiskStore::open(options(dir.path(), retention)).unwrap();
    let start = store.bounds().newest.0;
    let aged = |id: u64, age_ms: u64| {
        let mut e = Arc::try_unwrap(on_topic(id, "a")).unwrap();
        e.published_ms = unix_ms() - age_ms;
        Arc::new(e)
    };
    append(
        &store,
        vec![
            aged(start + 1, 120_000),
            aged(start + 2, 61_000),
            aged(start + 3, 0),
        ],
    )
    .unwrap();
    wait_until(|| store.bounds().floor == EventId(start + 2));
    assert_eq!(
        read(&store, start + 2, &["a"], None).unwrap(),
        vec![start + 3]
    );
    assert!(matches!(
        read(&store, start + 1, &["a"], None),
        Err(StoreError::Gap(_))
    ));
}

#[test]
fn a_store_emptied_by_retention_restarts_above_its_last_id() {
    let dir = tempdir();
    let retention = Retention {
        max_age: Some(Duration::from_secs(1)),
        ..BIG
    };
    let last = {
        let store = DiskStore::open(options(dir.path(), retention)).unwrap();
        let start = store.bounds().newest.0;
        let mut old = Arc::try_unwrap(on_topic(start + 1, "a")).unwrap();
        old.published_ms = 0;
        append(&store, vec![Arc::new(old)]).unwrap();
        wait_until(|| store.size().0 == 0);
        start + 1
    };
    let store = DiskStore::open(options(dir.path(), retention)).unwrap();
    assert_eq!(store.bounds().newest, EventId(last));
    assert_eq!(store.bounds().floor, EventId(last));
}

fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "keyspaces") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "jnl") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// How a crash left the journal's last bytes.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The file ends early.
    Truncated,
    /// The bytes are there but zero: a torn write into the preallocated journal.
    Zeroed,
}

/// Damages the last `cut` bytes of journal data (the journal file is preallocated, so its
/// data ends at its last non-zero byte, not at its length).
fn damage_journal_tail(dir: &Path, cut: usize, how: Damage) {
    let journal = journal_files(dir).pop().expect("a journal file");
    let mut bytes = std::fs::read(&journal).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let from = end.saturating_sub(cut);
    match how {
        Damage::Truncated => bytes.truncate(from),
        Damage::Zeroed => bytes[from..end].fill(0),
    }
    std::fs::write(&journal, bytes).unwrap();
}

#[test]
fn a_torn_or_truncated_journal_tail_is_cut_at_the_last_complete_batch() {
    for how in [Damage::Truncated, Damage::Zeroed] {
        for cut in [1usize, 7, 40, 200, 1000] {
            let dir = tempdir();
            let start = {
                let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
                let start = store.bounds().newest.0;
                for b in 0..20u64 {
                    let batch = (1..=5).map(|i| on_topic(start + b * 5 + i, "a")).collect();
                    append(&store, batch).unwrap();
                }
                start
            };
            damage_journal_tail(dir.path(), cut, how);

            let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
            let got = read(&store, start, &["a"], None).unwrap();
            let case = format!("{how:?} {cut}");
            // Whole batches survive, in order, and the store's account agrees with its log.
            let n = got.len() as u64;
            assert_eq!(got, (start + 1..=start + n).collect::<Vec<_>>(), "{case}");
            assert_eq!(n % 5, 0, "{case}: a batch is all or nothing");
            assert!(
                (80..100).contains(&n),
                "{case}: only the tail is lost ({n} left)"
            );
            assert_eq!(store.size().0 as u64, n, "{case}");
            assert_eq!(store.bounds().newest, EventId(start + n), "{case}");
            // And it takes writes again after the repair.
            append(&store, vec![on_topic(start + n + 1, "a")]).unwrap();
            assert_eq!(
                read(&store, start + n, &["a"], None).unwrap(),
                vec![start + n + 1]
            );
        }
    }
}

#[test]
fn interval_durability_acknowledges_and_reads_back() {
    let dir = tempdir();
    let store = DiskStore::open(DiskOptions {
        dir: dir.path().to_owned(),
        durability: Durability::Interval(Duration::from_millis(50)),
        retention: BIG,
    })
    .unwrap();
    let start = store.bounds().newest.0;
    append(&store, vec![on_topic(start + 1, "a")]).unwrap();
    assert_eq!(read(&store, start, &["a"], None).unwrap(), vec![start + 1]);
}

#[test]
fn a_closed_store_refuses_appends() {
    let dir = tempdir();
    let store = DiskStore::open(options(dir.path(), BIG)).unwrap();
    store.close();
    let start = store.bounds().newest.0;
    assert!(matches!(
        append(&store, vec![on_topic(start + 1, "a")]),
        Err(StoreError::Unavailable(_))
    ));
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempdir();
    let _store = DiskStore::open(options(dir.path(), BIG)).unwrap();
    assert!(matches!(
        DiskStore::open(options(dir.path(), BIG)),
        Err(OpenError::Locked(_))
    ));
}

/// Waits for the writer thread's background work; a deadline, never a timing assertion.
fn wait_until(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 10s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
