//! Unit tests of the parser's chunk handling, limits and state; the spec rules themselves
//! are covered by `tests/vectors.json`.

use super::*;

fn parse_chunks(chunks: &[&[u8]]) -> Vec<Item> {
    let mut parser = Parser::new().with_comments(true);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut out).expect("within limits");
    }
    parser.finish();
    out
}

fn event(event: &str, data: &str, id: &str) -> Item {
    Item::Event(MessageEvent {
        event: event.into(),
        data: data.into(),
        id: id.into(),
    })
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    let items = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(items, vec![event("message", "a\nb", "")]);
}

#[test]
fn cr_then_empty_chunk_then_lf_is_still_one_line_end() {
    let items = parse_chunks(&[b"data: a\r", b"", b"\n", b"\n"]);
    assert_eq!(items, vec![event("message", "a", "")]);
}

#[test]
fn bom_split_across_chunks_is_skipped() {
    let items = parse_chunks(&[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"]);
    assert_eq!(items, vec![event("message", "x", "")]);
}

#[test]
fn partial_bom_is_kept_as_line_bytes() {
    // EF BB then 'd' is not a BOM: the bytes start the first line, which is then an
    // unknown field, so nothing is dispatched from it.
    let items = parse_chunks(&[b"\xEF\xBB", b"data: x\n\ndata: y\n\n"]);
    assert_eq!(items, vec![event("message", "y", "")]);
}

#[test]
fn data_line_streamed_across_many_chunks_keeps_every_byte() {
    let items = parse_chunks(&[b"da", b"ta:", b" ", b" x", b"y", b"z\n", b"data:", b"w\n\n"]);
    assert_eq!(items, vec![event("message", " xyz\nw", "")]);
}

#[test]
fn line_over_the_limit_is_an_error_whatever_the_chunking() {
    for chunks in [
        &[&b"data: 123456\n"[..]][..],
        &[b"data: 12", b"3456"],
        &[b"data: 123", b"456\n"],
    ] {
        let mut parser = Parser::new().with_max_line_len(10);
        let mut out = Vec::new();
        let result = chunks
            .iter()
            .try_for_each(|chunk| parser.feed(chunk, &mut out));
        assert_eq!(
            result,
            Err(ParseError::LineTooLong { limit: 10 }),
            "{chunks:?}"
        );
    }
}

#[test]
fn line_at_the_limit_is_accepted() {
    let mut parser = Parser::new().with_max_line_len(10);
    let mut out = Vec::new();
    parser
        .feed(b"data: 1234\n\n", &mut out)
        .expect("10 bytes is within a limit of 10");
    assert_eq!(out, vec![event("message", "1234", "")]);
}

#[test]
fn error_is_sticky_until_reset() {
    let mut parser = Parser::new().with_max_line_len(4);
    let mut out = Vec::new();
    assert!(parser.feed(b"data: long\n\n", &mut out).is_err());
    assert!(parser.feed(b"\n", &mut out).is_err());
    parser.reset();
    parser
        .feed(b"data\n\n", &mut out)
        .expect("reset clears the error");
    assert_eq!(out, vec![event("message", "", "")]);
}

#[test]
fn items_before_an_error_in_the_same_chunk_are_delivered() {
    let mut parser = Parser::new().with_max_line_len(8);
    let mut out = Vec::new();
    let result = parser.feed(b"data: a\n\ndata: too long\n\n", &mut out);
    assert!(result.is_err());
    assert_eq!(out, vec![event("message", "a", "")]);
}

#[test]
fn last_event_id_moves_at_dispatch_even_without_data() {
    let mut parser = Parser::new();
    let mut out = Vec::new();
    parser.feed(b"id: 5\n", &mut out).expect("ok");
    assert_eq!(parser.last_event_id(), "", "not before the blank line");
    parser.feed(b"\n", &mut out).expect("ok");
    assert_eq!(parser.last_event_id(), "5");
    assert!(out.is_empty());
}

#[test]
fn reset_keeps_the_dispatched_id_and_drops_an_undispatched_one() {
    let mut parser = Parser::new().with_last_event_id("3");
    let mut out = Vec::new();
    parser.feed(b"id: 4\ndata: x", &mut out).expect("ok");
    parser.reset();
    parser.feed(b"data: y\n\n", &mut out).expect("ok");
    assert_eq!(out, vec![event("message", "y", "3")]);
    assert_eq!(parser.last_event_id(), "3");
}

#[test]
fn reset_expects_a_new_bom() {
    let mut parser = Parser::new();
    let mut out = Vec::new();
    parser
        .feed(b"\xEF\xBB\xBFdata: a\n\n", &mut out)
        .expect("ok");
    parser.reset();
    parser
        .feed(b"\xEF\xBB\xBFdata: b\n\n", &mut out)
        .expect("ok");
    assert_eq!(
        out,
        vec![event("message", "a", ""), event("message", "b", "")]
    );
}

#[test]
fn retry_overflow_saturates() {
    let items = parse_chunks(&[b"retry: 99999999999999999999999\n"]);
    assert_eq!(items, vec![Item::Retry(u64::MAX)]);
}

#[test]
fn invalid_utf8_split_across_chunks_is_replaced_once() {
    // A valid 3-byte character cut in two must survive; a truncated one becomes U+FFFD.
    let items = parse_chunks(&[b"data: \xE2\x82", b"\xAC\ndata: \xE2\x82\n\n"]);
    assert_eq!(items, vec![event("message", "\u{20AC}\n\u{FFFD}", "")]);
}

#[test]
fn debug_output_shows_sizes_not_buffer_contents() {
    let mut parser = Parser::new();
    let mut out = Vec::new();
    parser.feed(b"data: secret-payload", &mut out).expect("ok");
    let debug = format!("{parser:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(debug.contains("buffered_data_bytes: 14"), "{debug}");
}
