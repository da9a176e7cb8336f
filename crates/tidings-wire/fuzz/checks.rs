//! The properties the fuzz targets check, shared with the stable test
//! `tests/fuzz_corpus.rs`, which replays the committed corpus through the same code.
//!
//! Each check panics when a property fails, which is how libFuzzer learns of a bug.

use tidings_wire::{EncodeError, Event, Item, MessageEvent, ParseError, Parser};

/// Parser input: the first byte picks the chunk sizes and the limits, the rest is the stream.
///
/// Checks that the parser never panics, and that chunking changes neither the items, nor the
/// error, nor the last event ID; with the default limits and with tiny ones, so the limits'
/// paths are reached too.
pub fn parse(input: &[u8]) {
    let Some((&seed, stream)) = input.split_first() else {
        return;
    };
    let tiny = Limits {
        line: usize::from(seed % 16),
        event: usize::from(seed / 16),
    };
    for limits in [None, Some(tiny)] {
        let whole = run_parser(limits, [stream]);
        let step = usize::from(seed >> 4) + 1;
        assert_eq!(
            run_parser(limits, stream.chunks(step)),
            whole,
            "chunks of {step}"
        );
        assert_eq!(run_parser(limits, stream.chunks(1)), whole, "byte by byte");
    }
}

#[derive(Clone, Copy)]
struct Limits {
    line: usize,
    event: usize,
}

type Outcome = (Vec<Item>, Option<ParseError>, String);

fn run_parser<'a>(limits: Option<Limits>, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = Parser::new()
        .with_comments(true)
        .with_last_event_id("start");
    if let Some(limits) = limits {
        parser = parser
            .with_max_line_len(limits.line)
            .with_max_event_len(limits.event);
    }
    let mut items = Vec::new();
    let error = chunks
        .into_iter()
        .try_for_each(|chunk| parser.feed(chunk, &mut items))
        .err();
    parser.finish();
    (items, error, parser.last_event_id().to_owned())
}

/// Encoder input: fields separated by 0x1F (unit separator), decoded as lossy UTF-8:
/// `id`, `event`, `data`, `retry`. An absent or empty `id`/`event` part means `None`; a
/// `retry` part is the little-endian value of its first 8 bytes.
pub fn encode(input: &[u8]) {
    let mut parts = input.split(|&b| b == 0x1F);
    let text = |part: Option<&[u8]>| part.map(|p| String::from_utf8_lossy(p).into_owned());
    let id = text(parts.next()).filter(|s| !s.is_empty());
    let event = text(parts.next()).filter(|s| !s.is_empty());
    let data = text(parts.next()).unwrap_or_default();
    let retry = parts.next().map(|p| {
        let mut bytes = [0; 8];
        let n = p.len().min(8);
        bytes[..n].copy_from_slice(&p[..n]);
        u64::from_le_bytes(bytes)
    });
    let event_fields = Event {
        id: id.as_deref(),
        event: event.as_deref(),
        data: &data,
        retry,
    };

    let breaks = |s: &str| s.contains(['\r', '\n']);
    let expected_error = match (id.as_deref(), event.as_deref()) {
        (Some(id), _) if breaks(id) => Some(EncodeError::NewlineInId),
        (Some(id), _) if id.contains('\0') => Some(EncodeError::NulInId),
        (_, Some(event)) if breaks(event) => Some(EncodeError::NewlineInEvent),
        _ => None,
    };
    let wire = match event_fields.encode() {
        Ok(wire) => wire,
        Err(err) => {
            assert_eq!(Some(err), expected_error);
            return;
        }
    };
    assert_eq!(expected_error, None, "an invalid field was encoded");
    assert_eq!(wire.len(), event_fields.encoded_len());

    let mut expected = Vec::new();
    if let Some(ms) = retry {
        expected.push(Item::Retry(ms));
    }
    let event_type = match event.as_deref() {
        None | Some("") => "message",
        Some(other) => other,
    };
    expected.push(Item::Event(MessageEvent {
        event: event_type.to_owned(),
        data: data.replace("\r\n", "\n").replace('\r', "\n"),
        id: id.unwrap_or_else(|| "start".to_owned()),
    }));
    let (items, error, _) = run_parser(None, wire.chunks(7));
    assert_eq!(error, None);
    assert_eq!(items, expected);
}
