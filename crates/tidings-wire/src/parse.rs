//! The incremental parser: bytes in, in whatever chunks the network delivers, [`Item`]s out.
//!
//! It follows the WHATWG HTML rules "Interpreting an event stream" and "Dispatching the
//! event" step by step; the comments name the step where the code is not obviously it.
//!
//! Hot path: lines are found with `memchr2` (CR or LF), never byte by byte. A line that lies
//! wholly inside a chunk is interpreted in place, without being copied. A line cut by a chunk
//! boundary is gathered in a carry buffer, except a `data` line, whose value is appended
//! straight to the data buffer as soon as its field name is known, so a large payload is
//! copied once. Text is decoded from UTF-8 once per dispatched event, not per line.

use crate::item::{Item, MessageEvent};

/// The default limit on the length of one line, 16 MiB. See [`Parser::with_max_line_len`].
pub const DEFAULT_MAX_LINE_LEN: usize = 16 * 1024 * 1024;

/// The default limit on the data of one event, 64 MiB. See [`Parser::with_max_event_len`].
pub const DEFAULT_MAX_EVENT_LEN: usize = 64 * 1024 * 1024;

/// The UTF-8 encoding of U+FEFF, which the stream's decoder skips at the very start.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Why the parser stopped.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// A line grew past the configured limit before its line end arrived.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// The data lines of one event added up to more than the configured limit.
    #[error("event data longer than {limit} bytes")]
    EventTooLarge {
        /// The limit in force, in bytes.
        limit: usize,
    },
}

/// An incremental, WHATWG-exact `text/event-stream` parser.
///
/// Feed it chunks with [`Parser::feed`]; the items it dispatches come out in stream order and
/// do not depend on where the chunks were cut. Call [`Parser::finish`] at end of stream and
/// [`Parser::reset`] before parsing a new connection's stream.
///
/// ```
/// use tidings_wire::{Item, Parser};
/// let mut parser = Parser::new();
/// let mut items = Vec::new();
/// parser.feed(b"id: 1\ndata: hel", &mut items)?;
/// parser.feed(b"lo\r", &mut items)?;
/// parser.feed(b"\n\r\n", &mut items)?;
/// let Item::Event(event) = &items[0] else { unreachable!() };
/// assert_eq!((&*event.event, &*event.data, &*event.id), ("message", "hello", "1"));
/// # Ok::<(), tidings_wire::ParseError>(())
/// ```
///
/// # Limits and errors
/// The standard sets no limits; a parser facing the network needs them. A line longer than
/// [`Parser::with_max_line_len`] (default [`DEFAULT_MAX_LINE_LEN`]) makes `feed` return
/// [`ParseError::LineTooLong`], and an event whose data lines add up to more than
/// [`Parser::with_max_event_len`] (default [`DEFAULT_MAX_EVENT_LEN`]) makes it return
/// [`ParseError::EventTooLarge`]. So the parser's memory stays under the sum of the two limits,
/// whatever the stream. Items dispatched earlier in the same chunk are still in `out`, and which
/// error is reported, and where, does not depend on the chunking. The error is sticky: every
/// later `feed` returns it again, until [`Parser::reset`]. Nothing else is an error: invalid
/// UTF-8 becomes U+FFFD, and lines the standard says to ignore are ignored.
#[derive(Clone)]
pub struct Parser {
    max_line_len: usize,
    max_event_len: usize,
    comments: bool,
    /// How many bytes of a leading BOM have been seen, or `None` once the stream's start is past.
    bom_seen: Option<usize>,
    /// The previous chunk ended with CR, so an LF opening the next chunk ends nothing.
    after_cr: bool,
    /// The part of the current line that arrived in earlier chunks.
    carry: Carry,
    /// Bytes of the current, incomplete line held in `line` (the `Carry::Line` case).
    line: Vec<u8>,
    /// The data buffer, without the spec's trailing LF: `has_data` says whether the spec's
    /// buffer would be non-empty. Keeping the LF out avoids removing it again at dispatch.
    data: Vec<u8>,
    has_data: bool,
    /// The event type buffer, as raw bytes until dispatch.
    event_type: Vec<u8>,
    /// The last event ID buffer (set by `id` fields) and string (set at dispatch).
    id_buffer: String,
    last_event_id: String,
    failed: Option<ParseError>,
}

/// Shows the settings and how much is buffered, not the buffers: they may hold megabytes.
impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("max_line_len", &self.max_line_len)
            .field("max_event_len", &self.max_event_len)
            .field("comments", &self.comments)
            .field("last_event_id", &self.last_event_id)
            .field("buffered_line_bytes", &self.line.len())
            .field("buffered_data_bytes", &self.data.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Where the bytes of a line cut by a chunk boundary went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carry {
    /// At the start of a line: nothing carried.
    Nothing,
    /// The line so far is in `Parser::line`.
    Line,
    /// A `data` line whose value is being appended straight to the data buffer; `len` is the
    /// whole line's length so far, for the limit.
    Data { len: usize },
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_event_len: DEFAULT_MAX_EVENT_LEN,
            comments: false,
            bom_seen: Some(0),
            after_cr: false,
            carry: Carry::Nothing,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            event_type: Vec::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            failed: None,
        }
    }
}

impl Parser {
    /// A parser for a new stream, with the default line limit (16 MiB), no comments reported
    /// and an empty last event ID.
    pub fn new() -> Self {
        Parser::default()
    }

    /// Sets the longest line accepted, in bytes, not counting its line end. It bounds the
    /// memory one line can take; [`ParseError::LineTooLong`] reports a longer one.
    pub fn with_max_line_len(self, bytes: usize) -> Self {
        Parser {
            max_line_len: bytes,
            ..self
        }
    }

    /// Sets the most data one event may carry, in bytes: its data lines joined with LF. It
    /// bounds the memory of an event that never ends; [`ParseError::EventTooLarge`] reports a
    /// larger one. It is checked when a data line ends, and a line is itself bounded by
    /// [`Parser::with_max_line_len`].
    pub fn with_max_event_len(self, bytes: usize) -> Self {
        Parser {
            max_event_len: bytes,
            ..self
        }
    }

    /// Reports comment lines as [`Item::Comment`] (off by default, as clients ignore them).
    pub fn with_comments(self, yes: bool) -> Self {
        Parser {
            comments: yes,
            ..self
        }
    }

    /// Starts from a known last event ID, as a client resuming a stream does.
    pub fn with_last_event_id(self, id: &str) -> Self {
        Parser {
            id_buffer: id.to_owned(),
            last_event_id: id.to_owned(),
            ..self
        }
    }

    /// The last event ID string: what a reconnecting client sends as `Last-Event-ID`.
    ///
    /// Per the standard it changes only when an event is dispatched, and then even if the
    /// event's data is empty (so the event itself is not delivered). An `id` field in an
    /// event that never completes leaves it unchanged.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Parses the next chunk of the stream and appends every item it completes to `out`, in
    /// stream order. A chunk may be cut anywhere, even inside a CRLF or a UTF-8 character.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) -> Result<(), ParseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.feed_inner(chunk, out);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Ends the stream. The standard discards an event whose closing blank line never came,
    /// and with it any partial line.
    pub fn finish(&mut self) {
        self.carry = Carry::Nothing;
        self.line.clear();
        self.after_cr = false;
        self.clear_event();
    }

    /// Makes the parser ready for a new connection's stream: discards buffered input, clears
    /// any error, and expects a BOM again. Settings and the last event ID string are kept, and
    /// the last event ID buffer goes back to that string, so an `id` seen in an event that
    /// never completed does not leak into the next stream.
    pub fn reset(&mut self) {
        self.finish();
        self.bom_seen = Some(0);
        self.failed = None;
        self.id_buffer.clone_from(&self.last_event_id);
    }

    fn feed_inner(&mut self, mut chunk: &[u8], out: &mut Vec<Item>) -> Result<(), ParseError> {
        if self.bom_seen.is_some() {
            chunk = self.skip_bom(chunk)?;
        }
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) {
            self.end_line(&chunk[..end], out)?;
            let rest = &chunk[end + 1..];
            chunk = match (chunk[end], rest.first()) {
                (b'\r', Some(b'\n')) => &rest[1..],
                (b'\r', None) => {
                    self.after_cr = true;
                    rest
                }
                _ => rest,
            };
        }
        if !chunk.is_empty() {
            self.carry_partial(chunk)?;
        }
        Ok(())
    }

    /// Consumes the bytes of a leading BOM, which may itself be cut across chunks. Bytes that
    /// turn out not to be a BOM are put back at the start of the first line.
    fn skip_bom<'c>(&mut self, mut chunk: &'c [u8]) -> Result<&'c [u8], ParseError> {
        let Some(mut seen) = self.bom_seen else {
            return Ok(chunk);
        };
        while seen < BOM.len() {
            match chunk.first() {
                None => {
                    self.bom_seen = Some(seen);
                    return Ok(chunk);
                }
                Some(&byte) if byte == BOM[seen] => {
                    seen += 1;
                    chunk = &chunk[1..];
                }
                Some(_) => {
                    self.bom_seen = None;
                    // A partial BOM holds no CR or LF, so it can only open the first line.
                    if seen > 0 {
                        self.carry_partial(&BOM[..seen])?;
                    }
                    return Ok(chunk);
                }
            }
        }
        self.bom_seen = None;
        Ok(chunk)
    }

    /// Keeps the start of a line whose end has not arrived yet.
    fn carry_partial(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        match self.carry {
            Carry::Data { len } => {
                let len = self.check_len(len, bytes.len())?;
                self.data.extend_from_slice(bytes);
                self.carry = Carry::Data { len };
            }
            Carry::Nothing | Carry::Line => {
                self.check_len(self.line.len(), bytes.len())?;
                self.line.extend_from_slice(bytes);
                self.carry = Carry::Line;
                self.stream_data_line();
            }
        }
        Ok(())
    }

    /// Once a carried line is known to be `data:` and the byte after the colon has arrived
    /// (to apply the one-space rule), moves its value to the data buffer and streams the rest
    /// of the line there too.
    fn stream_data_line(&mut self) {
        const PREFIX: &[u8] = b"data:";
        if self.line.len() > PREFIX.len() && self.line.starts_with(PREFIX) {
            let len = self.line.len();
            let value = strip_one_space(&self.line[PREFIX.len()..]);
            if self.has_data {
                self.data.push(b'\n');
            }
            self.has_data = true;
            self.data.extend_from_slice(value);
            self.line.clear();
            self.carry = Carry::Data { len };
        }
    }

    /// A line end arrived; `tail` is the part of the line in the current chunk.
    fn end_line(&mut self, tail: &[u8], out: &mut Vec<Item>) -> Result<(), ParseError> {
        match self.carry {
            Carry::Nothing => {
                self.check_len(0, tail.len())?;
                self.interpret_line(tail, out)?;
            }
            Carry::Line => {
                self.check_len(self.line.len(), tail.len())?;
                // Taken out and put back so the buffer keeps its capacity for the next line.
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(tail);
                let interpreted = self.interpret_line(&line, out);
                line.clear();
                self.line = line;
                interpreted?;
            }
            Carry::Data { len } => {
                self.check_len(len, tail.len())?;
                self.data.extend_from_slice(tail);
                // Checked only now, at the line end, as for a line met whole, so the error
                // does not depend on where the chunks were cut.
                self.check_event_len(0)?;
            }
        }
        self.carry = Carry::Nothing;
        Ok(())
    }

    /// The length of a line after `more` bytes are added to `so_far`, if within the limit.
    fn check_len(&self, so_far: usize, more: usize) -> Result<usize, ParseError> {
        match so_far.checked_add(more) {
            Some(len) if len <= self.max_line_len => Ok(len),
            _ => Err(ParseError::LineTooLong {
                limit: self.max_line_len,
            }),
        }
    }

    /// Whether the data buffer may grow by `more` bytes.
    fn check_event_len(&self, more: usize) -> Result<(), ParseError> {
        match self.data.len().checked_add(more) {
            Some(len) if len <= self.max_event_len => Ok(()),
            _ => Err(ParseError::EventTooLarge {
                limit: self.max_event_len,
            }),
        }
    }

    /// "Interpreting an event stream": one complete line, without its line end.
    fn interpret_line(&mut self, line: &[u8], out: &mut Vec<Item>) -> Result<(), ParseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(b":") {
            if self.comments {
                // One leading space is removed, as for field values, so that `: text`
                // reports `text` and a comment round-trips through the encoder.
                out.push(Item::Comment(decode(strip_one_space(comment))));
            }
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => (&line[..colon], strip_one_space(&line[colon + 1..])),
            None => (line, &b""[..]),
        };
        self.process_field(name, value, out)
    }

    /// "Process the field".
    fn process_field(
        &mut self,
        name: &[u8],
        value: &[u8],
        out: &mut Vec<Item>,
    ) -> Result<(), ParseError> {
        match name {
            b"data" => {
                self.check_event_len(usize::from(self.has_data) + value.len())?;
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.has_data = true;
                self.data.extend_from_slice(value);
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            // An id containing NUL is ignored, like an unknown field.
            b"id" if !value.contains(&0) => {
                // Reuses the buffer: ids change on nearly every event of a busy stream.
                self.id_buffer.clear();
                self.id_buffer.push_str(&String::from_utf8_lossy(value));
            }
            b"retry" => {
                if let Some(ms) = parse_retry(value) {
                    out.push(Item::Retry(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// "Dispatching the event".
    fn dispatch(&mut self, out: &mut Vec<Item>) {
        // Step 1: the last event ID string follows the buffer, even for an empty event.
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        // Step 2: an empty data buffer dispatches nothing but still resets the type.
        if !self.has_data {
            self.event_type.clear();
            return;
        }
        // Step 3 (drop the trailing LF) is implicit: `data` never holds it.
        let event = if self.event_type.is_empty() {
            String::from("message")
        } else {
            decode(&self.event_type)
        };
        let data = decode_owned(std::mem::take(&mut self.data));
        out.push(Item::Event(MessageEvent {
            event,
            data,
            id: self.last_event_id.clone(),
        }));
        self.clear_event();
    }

    fn clear_event(&mut self) {
        self.data.clear();
        self.has_data = false;
        self.event_type.clear();
    }
}

/// Removes one leading U+0020 SPACE, not more.
fn strip_one_space(value: &[u8]) -> &[u8] {
    value.strip_prefix(b" ").unwrap_or(value)
}

/// The `retry` value, if it is only ASCII digits. An empty value holds no number to
/// interpret and is ignored, like any other invalid value. A number past `u64::MAX`
/// saturates: it is still "only digits", and the largest delay is the faithful reading.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |ms, &digit| {
        ms.saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    }))
}

/// Decodes UTF-8, replacing each invalid sequence with U+FFFD as the standard's decoder does.
fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Like [`decode`], but reuses the buffer when it is valid UTF-8, which is the common case.
fn decode_owned(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|err| decode(err.as_bytes()))
}

#[cfg(test)]
mod tests;
