//! Property tests: what the encoder writes, the parser reads back, however the bytes are cut;
//! and on any input at all, the parser's output does not depend on the chunking.

use proptest::prelude::*;
use tidings_wire::{encode_comment, EncodeError, Event, Item, MessageEvent, Parser};

/// An event's fields, owned, so proptest can generate them.
#[derive(Debug, Clone)]
struct Fields {
    id: Option<String>,
    event: Option<String>,
    data: String,
    retry: Option<u64>,
}

impl Fields {
    fn event(&self) -> Event<'_> {
        Event {
            id: self.id.as_deref(),
            event: self.event.as_deref(),
            data: &self.data,
            retry: self.retry,
        }
    }
}

/// Text biased toward what makes the format hard: line breaks of every kind, colons,
/// leading spaces, a BOM, NUL and non-ASCII characters.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("\r\n".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("\0".to_owned()),
        Just("data: x".to_owned()),
        "[a-z]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn single_line(forbid_nul: bool) -> impl Strategy<Value = String> {
    tricky_text().prop_map(move |text| {
        text.chars()
            .filter(|&c| c != '\r' && c != '\n' && !(forbid_nul && c == '\0'))
            .collect()
    })
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        prop::option::of(single_line(true)),
        prop::option::of(single_line(false)),
        tricky_text(),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(id, event, data, retry)| Fields {
            id,
            event,
            data,
            retry,
        })
}

/// Cuts `bytes` at the given points (taken modulo its length) into chunks.
fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        chunks.push(bytes[start..point].to_vec());
        start = point;
    }
    chunks
}

fn parse(chunks: &[Vec<u8>], comments: bool) -> (Vec<Item>, String) {
    let mut parser = Parser::new().with_comments(comments);
    let mut items = Vec::new();
    for chunk in chunks {
        parser
            .feed(chunk, &mut items)
            .expect("no line reaches the default limit");
    }
    parser.finish();
    (items, parser.last_event_id().to_owned())
}

/// What a client should see for these events, in order.
fn expected(events: &[Fields]) -> (Vec<Item>, String) {
    let mut items = Vec::new();
    let mut last_id = String::new();
    for fields in events {
        if let Some(ms) = fields.retry {
            items.push(Item::Retry(ms));
        }
        if let Some(id) = &fields.id {
            last_id.clone_from(id);
        }
        let event = match fields.event.as_deref() {
            None | Some("") => "message".to_owned(),
            Some(other) => other.to_owned(),
        };
        // Every kind of line break in the data comes back as LF.
        let data = fields.data.replace("\r\n", "\n").replace('\r', "\n");
        items.push(Item::Event(MessageEvent {
            event,
            data,
            id: last_id.clone(),
        }));
    }
    (items, last_id)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoded_events_parse_back_under_any_chunking(
        events in prop::collection::vec(fields(), 1..5),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for fields in &events {
            let event = fields.event();
            let bytes = event.encode().expect("generated fields are valid");
            prop_assert_eq!(bytes.len(), event.encoded_len());
            wire.extend_from_slice(&bytes);
        }
        prop_assert_eq!(parse(&chunked(&wire, &cuts), false), expected(&events));
    }

    #[test]
    fn encoded_comments_parse_back_under_any_chunking(
        text in single_line(false),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let wire = encode_comment(&text).expect("a single line");
        let (items, _) = parse(&chunked(&wire, &cuts), true);
        prop_assert_eq!(items, vec![Item::Comment(text)]);
    }

    #[test]
    fn encoding_fails_exactly_when_a_field_would_corrupt_the_stream(
        id in prop::option::of(tricky_text()),
        event in prop::option::of(tricky_text()),
        data in tricky_text(),
    ) {
        let breaks = |s: &str| s.contains(['\r', '\n']);
        let fields = Fields { id: id.clone(), event: event.clone(), data, retry: None };
        let result = fields.event().encode();
        let expected_error = match (id.as_deref(), event.as_deref()) {
            (Some(id), _) if breaks(id) => Some(EncodeError::NewlineInId),
            (Some(id), _) if id.contains('\0') => Some(EncodeError::NulInId),
            (_, Some(event)) if breaks(event) => Some(EncodeError::NewlineInEvent),
            _ => None,
        };
        prop_assert_eq!(result.err(), expected_error);
    }

    #[test]
    fn any_input_parses_the_same_under_any_chunking(
        input in prop::collection::vec(stream_token(), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let bytes = input.concat();
        let whole = parse(std::slice::from_ref(&bytes), true);
        prop_assert_eq!(parse(&chunked(&bytes, &cuts), true), whole);
    }
}

/// Pieces of an event stream, valid or not, including bytes that are not UTF-8.
fn stream_token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"data".to_vec()),
        Just(b"id".to_vec()),
        Just(b"event".to_vec()),
        Just(b"retry".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xEF\xBB".to_vec()),
        Just(b"\xE2\x82".to_vec()),
        Just(b"\xFF".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"12".to_vec()),
        prop::collection::vec(any::<u8>(), 1..4),
    ]
}
