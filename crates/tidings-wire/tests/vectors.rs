//! Runs every case of `vectors.json` under every chunking that matters: whole, cut at each
//! single split point, cut at each pair of split points, and byte by byte. The parser's promise
//! is that the items, the final last event ID and any error never depend on the chunking.

use serde::Deserialize;
use tidings_wire::{Item, MessageEvent, ParseError, Parser};

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[allow(dead_code)]
    spec: String,
    input: Option<String>,
    input_hex: Option<String>,
    #[serde(default)]
    comments: bool,
    initial_last_event_id: Option<String>,
    max_line_len: Option<usize>,
    max_event_len: Option<usize>,
    items: Vec<Expected>,
    last_event_id: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Expected {
    Event {
        event: String,
        data: String,
        id: String,
    },
    Retry {
        retry: u64,
    },
    Comment {
        comment: String,
    },
}

impl From<Expected> for Item {
    fn from(expected: Expected) -> Item {
        match expected {
            Expected::Event { event, data, id } => Item::Event(MessageEvent { event, data, id }),
            Expected::Retry { retry } => Item::Retry(retry),
            Expected::Comment { comment } => Item::Comment(comment),
        }
    }
}

/// What a run produced: the items, the first error, and the last event ID after `finish`.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    items: Vec<Item>,
    error: Option<ParseError>,
    last_event_id: String,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        match (&self.input, &self.input_hex) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(hex)) => decode_hex(hex),
            _ => panic!("case {}: exactly one of input and input_hex", self.name),
        }
    }

    fn parser(&self) -> Parser {
        let mut parser = Parser::new().with_comments(self.comments);
        if let Some(limit) = self.max_line_len {
            parser = parser.with_max_line_len(limit);
        }
        if let Some(limit) = self.max_event_len {
            parser = parser.with_max_event_len(limit);
        }
        if let Some(id) = &self.initial_last_event_id {
            parser = parser.with_last_event_id(id);
        }
        parser
    }

    fn run<'a>(&self, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        let mut parser = self.parser();
        let mut items = Vec::new();
        let error = chunks
            .into_iter()
            .try_for_each(|chunk| parser.feed(chunk, &mut items))
            .err();
        parser.finish();
        Outcome {
            items,
            error,
            last_event_id: parser.last_event_id().to_owned(),
        }
    }
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

fn load() -> Vec<Case> {
    let vectors: Vectors =
        serde_json::from_str(include_str!("vectors.json")).expect("vectors.json parses");
    vectors.cases
}

#[test]
fn vector_file_has_at_least_sixty_distinct_cases() {
    let cases = load();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 60, "{} cases", names.len());
    assert_eq!(names.len(), cases.len(), "case names are unique");
}

#[test]
fn every_vector_parses_to_its_expected_items_whole() {
    for case in load() {
        let bytes = case.bytes();
        let outcome = case.run([&bytes[..]]);
        let items: Vec<Item> = case.items.into_iter().map(Item::from).collect();
        assert_eq!(outcome.items, items, "case {}", case.name);
        match case.error.as_deref() {
            None => assert_eq!(outcome.error, None, "case {}", case.name),
            Some("line_too_long") => assert!(
                matches!(outcome.error, Some(ParseError::LineTooLong { .. })),
                "case {}: {:?}",
                case.name,
                outcome.error
            ),
            Some("event_too_large") => assert!(
                matches!(outcome.error, Some(ParseError::EventTooLarge { .. })),
                "case {}: {:?}",
                case.name,
                outcome.error
            ),
            Some(other) => panic!("case {}: unknown error kind {other}", case.name),
        }
        if let Some(id) = &case.last_event_id {
            assert_eq!(
                &outcome.last_event_id, id,
                "case {}: last event ID",
                case.name
            );
        }
    }
}

#[test]
fn every_vector_is_the_same_at_every_single_split_point() {
    for case in load() {
        let bytes = case.bytes();
        let whole = case.run([&bytes[..]]);
        for at in 0..=bytes.len() {
            let (head, tail) = bytes.split_at(at);
            assert_eq!(
                case.run([head, tail]),
                whole,
                "case {} split at {at}",
                case.name
            );
        }
    }
}

#[test]
fn every_vector_is_the_same_at_every_pair_of_split_points() {
    for case in load() {
        let bytes = case.bytes();
        let whole = case.run([&bytes[..]]);
        for first in 0..=bytes.len() {
            for second in first..=bytes.len() {
                let chunks = [&bytes[..first], &bytes[first..second], &bytes[second..]];
                assert_eq!(
                    case.run(chunks),
                    whole,
                    "case {} split at {first}, {second}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn every_vector_is_the_same_byte_by_byte() {
    for case in load() {
        let bytes = case.bytes();
        let whole = case.run([&bytes[..]]);
        assert_eq!(
            case.run(bytes.chunks(1)),
            whole,
            "case {} byte by byte",
            case.name
        );
    }
}

#[test]
fn every_vector_is_the_same_with_empty_chunks_between_bytes() {
    for case in load() {
        let bytes = case.bytes();
        let whole = case.run([&bytes[..]]);
        let chunks = bytes.chunks(1).flat_map(|byte| [byte, &[][..]]);
        assert_eq!(
            case.run(chunks),
            whole,
            "case {} with empty chunks",
            case.name
        );
    }
}
