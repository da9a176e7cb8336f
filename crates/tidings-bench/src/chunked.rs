//! HTTP/1.1 `Transfer-Encoding: chunked` decoding, incremental and without copying.
//!
//! SSE responses have no length, so every hub sends them chunked. The decoder is a small state
//! machine fed whatever a `read` returned; it hands back slices of the input that are body
//! data, whatever the chunk boundaries, and keeps only a few integers between calls.

use std::fmt;

/// The input is not valid chunked framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedError(&'static str);

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad chunked encoding: {}", self.0)
    }
}

impl std::error::Error for ChunkedError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size {
        size: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to the end of the size line.
    Extension {
        size: u64,
    },
    /// Saw CR at the end of the size line.
    SizeLf {
        size: u64,
    },
    /// Inside a chunk's data.
    Data {
        left: u64,
    },
    /// After the data, expecting CR LF.
    DataCr,
    DataLf,
    /// The last chunk was read; trailers and anything after are ignored.
    Done,
}

/// Incremental decoder of one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
        }
    }
}

impl ChunkedDecoder {
    /// Whether the terminating zero-size chunk has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, calling `data` with each run of body bytes in order.
    pub fn feed<'a>(
        &mut self,
        mut input: &'a [u8],
        mut data: impl FnMut(&'a [u8]),
    ) -> Result<(), ChunkedError> {
        while let Some((&byte, rest)) = input.split_first() {
            match self.state {
                State::Data { left } => {
                    let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let (run, rest) = input.split_at(take);
                    data(run);
                    input = rest;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::Done => return Ok(()),
                State::Size { size, digits } => {
                    self.state = match byte {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            if digits >= 15 {
                                return Err(ChunkedError("chunk size too large"));
                            }
                            let value = (byte as char).to_digit(16).unwrap_or(0);
                            State::Size {
                                size: size << 4 | u64::from(value),
                                digits: digits + 1,
                            }
                        }
                        _ if digits == 0 => return Err(ChunkedError("missing chunk size")),
                        b';' | b' ' | b'\t' => State::Extension { size },
                        b'\r' => State::SizeLf { size },
                        b'\n' => Self::after_size_line(size),
                        _ => return Err(ChunkedError("invalid chunk size")),
                    };
                }
                State::Extension { size } => {
                    self.state = match byte {
                        b'\r' => State::SizeLf { size },
                        b'\n' => Self::after_size_line(size),
                        _ => State::Extension { size },
                    };
                }
                State::SizeLf { size } => {
                    if byte != b'\n' {
                        return Err(ChunkedError("CR without LF after chunk size"));
                    }
                    self.state = Self::after_size_line(size);
                }
                State::DataCr => {
                    self.state = match byte {
                        b'\r' => State::DataLf,
                        b'\n' => State::Size { size: 0, digits: 0 },
                        _ => return Err(ChunkedError("chunk data longer than its size")),
                    };
                }
                State::DataLf => {
                    if byte != b'\n' {
                        return Err(ChunkedError("CR without LF after chunk data"));
                    }
                    self.state = State::Size { size: 0, digits: 0 };
                }
            }
            input = rest;
        }
        Ok(())
    }

    fn after_size_line(size: u64) -> State {
        if size == 0 {
            State::Done
        } else {
            State::Data { left: size }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(wire: &[u8], piece: usize) -> Result<(Vec<u8>, bool), ChunkedError> {
        let mut decoder = ChunkedDecoder::default();
        let mut out = Vec::new();
        for part in wire.chunks(piece) {
            decoder.feed(part, |run| out.extend_from_slice(run))?;
        }
        Ok((out, decoder.is_done()))
    }

    #[test]
    fn body_is_the_same_whatever_the_read_boundaries() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n";
        for piece in 1..=wire.len() {
            let (body, done) = decode_in_pieces(wire, piece).expect("valid framing");
            assert_eq!(body, b"hello 0123456789", "piece size {piece}");
            assert!(done);
        }
    }

    #[test]
    fn bare_lf_line_ends_are_accepted() {
        let (body, done) = decode_in_pieces(b"3\nabc\n0\n\n", 2).expect("valid framing");
        assert_eq!((body.as_slice(), done), (&b"abc"[..], true));
    }

    #[test]
    fn an_open_stream_is_not_done() {
        let (body, done) = decode_in_pieces(b"2\r\nab\r\n", 64).expect("valid framing");
        assert_eq!((body.as_slice(), done), (&b"ab"[..], false));
    }

    #[test]
    fn garbage_in_place_of_a_size_is_an_error() {
        assert!(decode_in_pieces(b"zz\r\n", 64).is_err());
        assert!(decode_in_pieces(b"2\r\nabc\r\n", 64).is_err());
        assert!(decode_in_pieces(b"ffffffffffffffffff\r\n", 64).is_err());
    }
}
