//! The first request head of a `serve` connection, read natively: is it `GET /events`?
//!
//! httparse reads the head; anything it cannot read, and anything else than `GET /events`, goes
//! to hyper along with the bytes already read ([`Rewind`]), so hyper gives its own answer.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Most headers read natively; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;

/// The head parser, for the fuzz target (whether it took the native path).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_head_for_fuzzing(buf: &[u8]) -> bool {
    matches!(parse_head(buf), Head::Events { .. })
}

pub(crate) enum Head {
    Events { uri: Uri, headers: HeaderMap },
    Other,
    Partial,
}

pub(crate) fn parse_head(buf: &[u8]) -> Head {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Head::Partial,
        // Let hyper give its own answer to what httparse refuses (too many headers, garbage).
        Err(_) => return Head::Other,
    }
    let (Some("GET"), Some(path)) = (req.method, req.path) else {
        return Head::Other;
    };
    if path.split('?').next() != Some("/events") {
        return Head::Other;
    }
    let Ok(uri) = path.parse::<Uri>() else {
        return Head::Other;
    };
    // Two differing Content-Length headers (request smuggling): hyper answers 400.
    let mut lengths = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value);
    if let Some(first) = lengths.next() {
        if lengths.any(|other| other != first) {
            return Head::Other;
        }
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Other;
        };
        headers.append(name, value);
    }
    Head::Events { uri, headers }
}

/// A socket whose first bytes were already read: they are replayed to hyper first.
pub(crate) struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    pub fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Self { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_events_takes_the_native_path() {
        let events = b"GET /events?topic=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n";
        match parse_head(events) {
            Head::Events { uri, headers } => {
                assert_eq!(uri.query(), Some("topic=a"));
                assert_eq!(headers.get("last-event-id").unwrap(), "7");
            }
            _ => panic!("GET /events must be native"),
        }
        for other in [
            &b"POST /events HTTP/1.1\r\n\r\n"[..],
            b"GET /eventsx HTTP/1.1\r\n\r\n",
            b"GET /publish HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01 garbage\r\n\r\n",
        ] {
            assert!(matches!(parse_head(other), Head::Other), "{other:?}");
        }
        assert!(matches!(
            parse_head(b"GET /events HTTP/1.1\r\nHo"),
            Head::Partial
        ));
    }
}
