//! From body bytes to delivered `(seq, ts)` pairs: the receive side's hot path.
//!
//! Two modes. [`ParseMode::Wire`] feeds the stream to the workspace's WHATWG parser
//! ([`tidings_wire::Parser`]) and reads each event's data. [`ParseMode::Fast`], the default,
//! splits lines with `memchr`, looks only at `data:` lines and dispatches at the blank line,
//! allocating nothing: at a million deliveries a second on two shared cores the generator
//! must cost less than the hub it measures. Fast mode expects LF or CRLF line ends and the
//! marker fields on one `data:` line, which every hub the bench targets sends; use `Wire`
//! for anything else.
//!
//! In both modes an event counts when its data holds `"seq":<digits>` and `"ts":<digits>`
//! (the send time, ns since the run's epoch). Other events (`connected`, heartbeats as
//! comments) are ignored.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use tidings_wire::{Item, ParseError, Parser};

static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\":"));
static TS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ts\":"));

/// How the receiver finds events in the stream.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ParseMode {
    /// Allocation-free line scan of `data:` lines (LF or CRLF line ends).
    #[default]
    Fast,
    /// The full WHATWG parser of `tidings-wire`.
    Wire,
}

/// The number after `"name":` (spaces allowed before it), if any.
fn number_after(data: &[u8], finder: &Finder<'_>) -> Option<u64> {
    let at = finder.find(data)? + finder.needle().len();
    let rest = &data[at..];
    let start = rest.iter().position(|b| *b != b' ')?;
    let digits = rest[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 {
        return None;
    }
    rest[start..start + digits].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The `(seq, ts)` markers in one event's data.
pub fn markers(data: &[u8]) -> Option<(u64, u64)> {
    Some((number_after(data, &SEQ)?, number_after(data, &TS)?))
}

/// Incremental extraction of markers from one response body.
#[derive(Debug)]
pub struct EventScanner {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Fast {
        /// The start of a line that the last read cut (empty almost always).
        carry: Vec<u8>,
        /// Markers of the event being read, dispatched at its blank line.
        pending: Option<(u64, u64)>,
    },
    Wire {
        parser: Box<Parser>,
        items: Vec<Item>,
    },
}

impl EventScanner {
    /// A scanner for a new stream.
    pub fn new(mode: ParseMode) -> Self {
        let mode = match mode {
            ParseMode::Fast => Mode::Fast {
                carry: Vec::new(),
                pending: None,
            },
            ParseMode::Wire => Mode::Wire {
                parser: Box::default(),
                items: Vec::new(),
            },
        };
        EventScanner { mode }
    }

    /// Feeds body bytes; `event(seq, ts)` is called for each marked event dispatched.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        event: &mut impl FnMut(u64, u64),
    ) -> Result<(), ParseError> {
        match &mut self.mode {
            Mode::Wire { parser, items } => {
                parser.feed(chunk, items)?;
                for item in items.drain(..) {
                    if let Item::Event(message) = item {
                        if let Some((seq, ts)) = markers(message.data.as_bytes()) {
                            event(seq, ts);
                        }
                    }
                }
            }
            Mode::Fast { carry, pending } => {
                let mut rest = chunk;
                if !carry.is_empty() {
                    let Some(end) = memchr::memchr(b'\n', rest) else {
                        carry.extend_from_slice(rest);
                        return Ok(());
                    };
                    carry.extend_from_slice(&rest[..end]);
                    fast_line(carry, pending, event);
                    carry.clear();
                    rest = &rest[end + 1..];
                }
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', rest) {
                    fast_line(&rest[start..end], pending, event);
                    start = end + 1;
                }
                carry.extend_from_slice(&rest[start..]);
            }
        }
        Ok(())
    }
}

fn fast_line(line: &[u8], pending: &mut Option<(u64, u64)>, event: &mut impl FnMut(u64, u64)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        if let Some((seq, ts)) = pending.take() {
            event(seq, ts);
        }
    } else if let Some(data) = line.strip_prefix(b"data:") {
        if let Some(found) = markers(data) {
            *pending = Some(found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"retry: 3000\n\nevent: connected\ndata: {\"clientId\":\"x\"}\n\n: heartbeat\n\nid: 7\ndata: {\"seq\":0,\"ts\":123}\n\nid: 8\r\ndata: {\"ts\": 456, \"seq\": 1}\r\n\r\ndata: {\"seq\":2,\"ts\":9}\n";

    fn scan(mode: ParseMode, piece: usize) -> Vec<(u64, u64)> {
        let mut scanner = EventScanner::new(mode);
        let mut seen = Vec::new();
        for part in STREAM.chunks(piece) {
            scanner
                .feed(part, &mut |seq, ts| seen.push((seq, ts)))
                .expect("valid stream");
        }
        seen
    }

    #[test]
    fn both_modes_find_the_same_events_at_every_split() {
        for piece in 1..=STREAM.len() {
            assert_eq!(
                scan(ParseMode::Fast, piece),
                [(0, 123), (1, 456)],
                "fast, piece {piece}"
            );
            assert_eq!(
                scan(ParseMode::Wire, piece),
                [(0, 123), (1, 456)],
                "wire, piece {piece}"
            );
        }
    }

    #[test]
    fn an_event_counts_only_once_its_blank_line_arrives() {
        let mut scanner = EventScanner::new(ParseMode::Fast);
        let mut seen = 0;
        scanner
            .feed(b"data: {\"seq\":1,\"ts\":2}\n", &mut |_, _| seen += 1)
            .expect("valid");
        assert_eq!(seen, 0);
        scanner.feed(b"\n", &mut |_, _| seen += 1).expect("valid");
        assert_eq!(seen, 1);
    }

    #[test]
    fn markers_need_digits() {
        assert_eq!(markers(b"{\"seq\":12,\"ts\":34}"), Some((12, 34)));
        assert_eq!(markers(b"{\"seq\":\"12\",\"ts\":34}"), None);
        assert_eq!(markers(b"{\"seq\":12}"), None);
        assert_eq!(markers(b"{\"seq\":99999999999999999999,\"ts\":1}"), None);
    }
}
