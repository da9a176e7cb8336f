//! The stream's course, step by step, with no socket and no clock.

use std::sync::Arc;

use bytes::Bytes;

use super::{ReplayPage, Step, Stream};
use crate::conn::CloseReason;
use crate::event::{EventId, StoredEvent};
use crate::history::StoreError;

fn event(id: u64) -> Arc<StoredEvent> {
    let frame = Bytes::from(format!("id: {id}\ndata: x\n\n"));
    StoredEvent::new(
        EventId(id),
        vec![Arc::from("t")].into(),
        Box::new([]),
        false,
        0,
        frame,
    )
    .into()
}

fn events(ids: impl IntoIterator<Item = u64>) -> Vec<Arc<StoredEvent>> {
    ids.into_iter().map(event).collect()
}

/// A history holding every id in `held`, read as a store would: `after < id <= upto`.
fn read(held: &[u64], page: ReplayPage) -> Vec<Arc<StoredEvent>> {
    events(
        held.iter()
            .copied()
            .filter(|&id| id > page.after.0 && id <= page.upto.0)
            .take(page.limit),
    )
}

fn text(step: Step) -> String {
    match step {
        Step::Write(bytes) => String::from_utf8(bytes.to_vec()).expect("utf-8"),
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn a_fresh_stream_writes_its_prelude_then_goes_live() {
    let mut s = Stream::new(Bytes::from_static(b"retry: 1000\n\n"), None);
    assert_eq!(text(s.next()), "retry: 1000\n\n");
    assert_eq!(s.next(), Step::Live);
    assert_eq!(s.next(), Step::Live);
    assert!(!s.is_finished());
}

#[test]
fn a_replay_is_read_in_pages_that_meet_the_live_seam_exactly() {
    let held: Vec<u64> = (1..=10).collect();
    // Resumed after 3; the newest event fanned out at registration was 8: live starts at 9.
    let mut s = Stream::with_page(Bytes::from_static(b"p"), Some((EventId(3), EventId(8))), 2);
    assert_eq!(text(s.next()), "p");
    let mut replayed = Vec::new();
    loop {
        match s.next() {
            Step::Replay(page) => {
                let got = read(&held, page);
                replayed.extend(got.iter().map(|e| e.id().0));
                let chunk = s.replayed(Ok(got));
                if let Some(chunk) = chunk {
                    assert!(chunk.starts_with(b"id: "));
                }
            }
            Step::Live => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        replayed,
        vec![4, 5, 6, 7, 8],
        "no gap, nothing past the seam"
    );
}

#[test]
fn a_page_of_several_events_is_one_chunk_in_id_order() {
    let mut s = Stream::with_page(Bytes::new(), Some((EventId(0), EventId(3))), 10);
    s.next();
    let Step::Replay(page) = s.next() else {
        panic!("a replay first")
    };
    let chunk = s.replayed(Ok(read(&[1, 2, 3], page))).expect("a chunk");
    assert_eq!(
        &chunk[..],
        b"id: 1\ndata: x\n\nid: 2\ndata: x\n\nid: 3\ndata: x\n\n"
    );
    assert_eq!(s.next(), Step::Live, "a short page ends the replay");
}

#[test]
fn a_replay_that_finds_nothing_for_this_subscriber_goes_live() {
    let mut s = Stream::new(Bytes::new(), Some((EventId(5), EventId(9))));
    s.next();
    assert!(matches!(s.next(), Step::Replay(_)));
    assert_eq!(s.replayed(Ok(Vec::new())), None);
    assert_eq!(s.next(), Step::Live);
}

#[test]
fn an_empty_range_is_no_replay() {
    let mut s = Stream::new(Bytes::new(), Some((EventId(9), EventId(9))));
    s.next();
    assert_eq!(s.next(), Step::Live);
}

#[test]
fn retention_overtaking_a_replay_ends_the_stream_without_a_retry() {
    let mut s = Stream::with_page(Bytes::new(), Some((EventId(0), EventId(100))), 2);
    s.next();
    let Step::Replay(page) = s.next() else {
        panic!("a replay first")
    };
    assert!(s.replayed(Ok(read(&[1, 2], page))).is_some());
    assert!(matches!(s.next(), Step::Replay(p) if p.after == EventId(2)));
    assert_eq!(s.replayed(Err(StoreError::Gap(EventId(2)))), None);
    assert_eq!(s.next(), Step::Finish);
    assert!(s.is_finished());
    assert_eq!(s.next(), Step::Finish);
}

#[test]
fn a_drained_stream_is_told_when_to_come_back_then_closed() {
    let mut s = Stream::new(Bytes::new(), None);
    s.next();
    assert_eq!(s.next(), Step::Live);
    s.closed(CloseReason::Shutdown { retry_ms: 2500 });
    assert_eq!(text(s.next()), "retry: 2500\n\n");
    assert_eq!(s.next(), Step::Finish);
    assert!(s.is_finished());
}

#[test]
fn an_expired_token_or_a_slow_consumer_ends_the_stream_at_once() {
    for reason in [CloseReason::Expired, CloseReason::SlowConsumer] {
        let mut s = Stream::new(Bytes::new(), None);
        s.next();
        s.closed(reason);
        assert_eq!(s.next(), Step::Finish, "{reason:?}");
    }
}

#[test]
fn the_first_close_wins() {
    let mut s = Stream::new(Bytes::new(), None);
    s.next();
    s.closed(CloseReason::Expired);
    s.closed(CloseReason::Shutdown { retry_ms: 10 });
    assert_eq!(s.next(), Step::Finish);
}

#[test]
fn a_close_during_a_replay_abandons_it() {
    let mut s = Stream::new(Bytes::new(), Some((EventId(0), EventId(1_000))));
    s.next();
    assert!(matches!(s.next(), Step::Replay(_)));
    s.replayed(Ok(events(1..=600)));
    s.closed(CloseReason::Shutdown { retry_ms: 100 });
    assert_eq!(text(s.next()), "retry: 100\n\n");
    assert_eq!(s.next(), Step::Finish);
}

#[test]
fn the_prelude_still_goes_first_with_a_head_in_front() {
    let mut s = Stream::new(Bytes::from_static(b"retry: 5\n\n"), None);
    s.prefix(b"HTTP/1.1 200 OK\r\n\r\n");
    s.closed(CloseReason::Shutdown { retry_ms: 7 });
    assert_eq!(text(s.next()), "HTTP/1.1 200 OK\r\n\r\nretry: 5\n\n");
    assert_eq!(text(s.next()), "retry: 7\n\n");
    assert_eq!(s.next(), Step::Finish);
}
