//! The encoder: one event in, one immutable [`Bytes`] out, ready to be shared by every
//! connection that should receive it.
//!
//! This is the hub's hot path on the publish side: an event is encoded exactly once, however
//! many subscribers get it, so the budget here is one exact-size allocation and one pass over
//! the data per event. Every field is validated before a single byte is written, so an error
//! never leaves a half-written event in a caller's buffer.

use bytes::{BufMut, Bytes, BytesMut};

/// Why an event (or a comment) cannot be put on the wire as given.
///
/// Each of these would otherwise corrupt the stream: a line break in a single-line field would
/// end the field early and start a new, attacker-chosen field, and a NUL makes a client ignore
/// the whole `id` line.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The event id contains CR or LF.
    #[error("event id contains a line break (CR or LF); an id must be a single line")]
    NewlineInId,
    /// The event id contains U+0000, which makes clients ignore the `id` field entirely.
    #[error("event id contains a NUL character, which clients ignore; remove it from the id")]
    NulInId,
    /// The event type contains CR or LF.
    #[error("event type contains a line break (CR or LF); a type must be a single line")]
    NewlineInEvent,
    /// The comment text contains CR or LF.
    #[error("comment contains a line break (CR or LF); send one comment per line")]
    NewlineInComment,
}

/// One event to encode. The fields borrow from the caller; nothing is copied until
/// [`Event::encode`].
///
/// ```
/// use tidings_wire::Event;
/// let bytes = Event::new("line 1\nline 2").with_event("update").with_id("7").encode()?;
/// assert_eq!(&bytes[..], b"id: 7\nevent: update\ndata: line 1\ndata: line 2\n\n");
/// # Ok::<(), tidings_wire::EncodeError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `id:` field. `Some("")` is sent as `id:` and resets the client's last event ID;
    /// `None` sends no `id:` line, leaving the client's last event ID as it was.
    pub id: Option<&'a str>,
    /// The `event:` field (the event type). `None`, `Some("")` and `Some("message")` all mean
    /// the default type and send no `event:` line.
    pub event: Option<&'a str>,
    /// The payload. Split on CRLF, CR and LF into one `data:` line per line; a client joins
    /// them back with LF. `""` is sent as one `data:` line, which dispatches an event with
    /// empty data.
    pub data: &'a str,
    /// The `retry:` field, in milliseconds: the client's reconnection time.
    pub retry: Option<u64>,
}

impl<'a> Event<'a> {
    /// An event of the default type (`message`) with this data and no id.
    pub fn new(data: &'a str) -> Self {
        Event {
            data,
            ..Event::default()
        }
    }

    /// Sets the `id:` field.
    pub fn with_id(self, id: &'a str) -> Self {
        Event {
            id: Some(id),
            ..self
        }
    }

    /// Sets the `event:` field (the event type).
    pub fn with_event(self, event: &'a str) -> Self {
        Event {
            event: Some(event),
            ..self
        }
    }

    /// Sets the `retry:` field, in milliseconds.
    pub fn with_retry(self, ms: u64) -> Self {
        Event {
            retry: Some(ms),
            ..self
        }
    }

    /// Encodes the event into a new buffer of exactly [`Event::encoded_len`] bytes, ending with
    /// the blank line that makes a client dispatch it.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        self.validate()?;
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.write(&mut buf);
        Ok(buf.freeze())
    }

    /// Appends the encoded event to `buf`. On error nothing is written.
    pub fn encode_into(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        self.validate()?;
        buf.reserve(self.encoded_len());
        self.write(buf);
        Ok(())
    }

    /// The exact number of bytes [`Event::encode`] produces, for reserving space. For an
    /// invalid event it is the size the event would have; encoding still fails.
    pub fn encoded_len(&self) -> usize {
        let mut len = 0;
        if let Some(id) = self.id {
            len += field_len(b"id", id.len());
        }
        if let Some(event) = self.event_type() {
            len += field_len(b"event", event.len());
        }
        if let Some(ms) = self.retry {
            len += field_len(b"retry", decimal_len(ms));
        }
        for line in DataLines::new(self.data) {
            len += field_len(b"data", line.len());
        }
        len + 1
    }

    /// The type to put on an `event:` line, or `None` when the default applies.
    fn event_type(&self) -> Option<&'a str> {
        self.event.filter(|e| !e.is_empty() && *e != "message")
    }

    fn validate(&self) -> Result<(), EncodeError> {
        if let Some(id) = self.id {
            if has_line_break(id) {
                return Err(EncodeError::NewlineInId);
            }
            if id.as_bytes().contains(&0) {
                return Err(EncodeError::NulInId);
            }
        }
        if let Some(event) = self.event {
            if has_line_break(event) {
                return Err(EncodeError::NewlineInEvent);
            }
        }
        Ok(())
    }

    /// Writes the validated event. The order puts `retry` before `data` so a client learns
    /// the new reconnection time even if the connection drops mid-event.
    fn write(&self, buf: &mut BytesMut) {
        if let Some(id) = self.id {
            put_field(buf, b"id", id.as_bytes());
        }
        if let Some(event) = self.event_type() {
            put_field(buf, b"event", event.as_bytes());
        }
        if let Some(ms) = self.retry {
            let mut digits = [0; 20];
            put_field(buf, b"retry", format_decimal(ms, &mut digits));
        }
        for line in DataLines::new(self.data) {
            put_field(buf, b"data", line);
        }
        buf.put_u8(b'\n');
    }
}

/// Encodes a comment line, `: text\n`. Clients ignore comments, which makes them the
/// heartbeat of an idle stream. `""` encodes as `:\n`.
pub fn encode_comment(text: &str) -> Result<Bytes, EncodeError> {
    if has_line_break(text) {
        return Err(EncodeError::NewlineInComment);
    }
    let mut buf = BytesMut::with_capacity(field_len(b"", text.len()));
    put_field(&mut buf, b"", text.as_bytes());
    Ok(buf.freeze())
}

/// Encodes a lone reconnection time, `retry: N\n\n`. The blank line ends the (empty) event,
/// so nothing is dispatched and no other field can be merged into it.
pub fn encode_retry(ms: u64) -> Bytes {
    let mut digits = [0; 20];
    let value = format_decimal(ms, &mut digits);
    let mut buf = BytesMut::with_capacity(field_len(b"retry", value.len()) + 1);
    put_field(&mut buf, b"retry", value);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Size of `name: value\n`, or `name:\n` for an empty value.
fn field_len(name: &[u8], value_len: usize) -> usize {
    let space = usize::from(value_len > 0);
    name.len() + 1 + space + value_len + 1
}

/// Writes `name: value\n`. The space is always written before a non-empty value: a parser
/// removes exactly one leading space, so a value that itself starts with a space survives.
fn put_field(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    if value.is_empty() {
        buf.put_slice(b":\n");
    } else {
        buf.put_slice(b": ");
        buf.put_slice(value);
        buf.put_u8(b'\n');
    }
}

fn has_line_break(s: &str) -> bool {
    memchr::memchr2(b'\n', b'\r', s.as_bytes()).is_some()
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Formats `n` in base ten into the tail of `digits` without allocating.
fn format_decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        // n % 10 < 10, so the cast cannot truncate.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[start..];
        }
    }
}

/// The lines of an event's data, split on CRLF, CR and LF. Unlike [`str::lines`], a trailing
/// line break yields a final empty line, and a lone CR is a line break, because that is what a
/// parser will make of the text.
struct DataLines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> DataLines<'a> {
    fn new(data: &'a str) -> Self {
        DataLines {
            rest: Some(data.as_bytes()),
        }
    }
}

impl<'a> Iterator for DataLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr2(b'\n', b'\r', rest) {
            None => {
                self.rest = None;
                Some(rest)
            }
            Some(i) => {
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                self.rest = Some(&rest[i + skip..]);
                Some(&rest[..i])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(event: Event<'_>) -> String {
        let bytes = event.encode().expect("valid event");
        assert_eq!(bytes.len(), event.encoded_len(), "encoded_len is exact");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn plain_event_is_one_data_line_and_a_blank_line() {
        assert_eq!(encoded(Event::new("hello")), "data: hello\n\n");
    }

    #[test]
    fn empty_data_is_one_bare_data_line() {
        assert_eq!(encoded(Event::new("")), "data:\n\n");
    }

    #[test]
    fn data_splits_on_crlf_cr_and_lf() {
        assert_eq!(
            encoded(Event::new("a\r\nb\rc\nd")),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn trailing_and_doubled_line_breaks_keep_their_empty_lines() {
        assert_eq!(encoded(Event::new("a\n")), "data: a\ndata:\n\n");
        assert_eq!(encoded(Event::new("\r\r\n")), "data:\ndata:\ndata:\n\n");
    }

    #[test]
    fn data_line_starting_with_space_keeps_it_after_the_separator_space() {
        assert_eq!(encoded(Event::new(" x")), "data:  x\n\n");
    }

    #[test]
    fn all_fields_in_a_fixed_order() {
        let event = Event::new("d")
            .with_id("1")
            .with_event("e")
            .with_retry(3000);
        assert_eq!(encoded(event), "id: 1\nevent: e\nretry: 3000\ndata: d\n\n");
    }

    #[test]
    fn default_event_type_sends_no_event_line() {
        assert_eq!(
            encoded(Event::new("d").with_event("message")),
            "data: d\n\n"
        );
        assert_eq!(encoded(Event::new("d").with_event("")), "data: d\n\n");
    }

    #[test]
    fn empty_id_is_sent_to_reset_the_last_event_id() {
        assert_eq!(encoded(Event::new("d").with_id("")), "id:\ndata: d\n\n");
    }

    #[test]
    fn retry_encodes_extreme_values() {
        assert_eq!(
            encoded(Event::new("d").with_retry(0)),
            "retry: 0\ndata: d\n\n"
        );
        assert_eq!(
            &encode_retry(u64::MAX)[..],
            b"retry: 18446744073709551615\n\n"
        );
    }

    #[test]
    fn line_breaks_in_single_line_fields_are_errors() {
        assert_eq!(
            Event::new("d").with_id("a\nb").encode(),
            Err(EncodeError::NewlineInId)
        );
        assert_eq!(
            Event::new("d").with_id("a\rb").encode(),
            Err(EncodeError::NewlineInId)
        );
        assert_eq!(
            Event::new("d").with_id("a\0b").encode(),
            Err(EncodeError::NulInId)
        );
        assert_eq!(
            Event::new("d").with_event("a\r").encode(),
            Err(EncodeError::NewlineInEvent)
        );
        assert_eq!(encode_comment("a\nb"), Err(EncodeError::NewlineInComment));
        assert_eq!(encode_comment("a\rb"), Err(EncodeError::NewlineInComment));
    }

    #[test]
    fn failed_encode_into_leaves_the_buffer_untouched() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let result = Event::new("d").with_id("bad\n").encode_into(&mut buf);
        assert_eq!(result, Err(EncodeError::NewlineInId));
        assert_eq!(&buf[..], b"keep");
    }

    #[test]
    fn encode_into_appends() {
        let mut buf = BytesMut::new();
        Event::new("a").encode_into(&mut buf).expect("valid");
        Event::new("b").encode_into(&mut buf).expect("valid");
        assert_eq!(&buf[..], b"data: a\n\ndata: b\n\n");
    }

    #[test]
    fn comments_encode_as_one_line() {
        assert_eq!(
            &encode_comment("keep-alive").expect("valid")[..],
            b": keep-alive\n"
        );
        assert_eq!(&encode_comment("").expect("valid")[..], b":\n");
    }
}
