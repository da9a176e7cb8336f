//! The first request head of a `serve` connection, read natively: is it `GET /events`?
//!
//! httparse reads the head; anything it cannot read, and anything else than `GET /events`, goes
//! to hyper along with the bytes already read ([`Rewind`]), so hyper gives its own answer.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Most headers read natively; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;

/// The head parser, for the fuzz target (whether it took the native path).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_head_for_fuzzing(buf: &[u8]) -> bool {
    matches!(parse_head(buf), Head::Events { .. } | Head::Publish(_))
}

pub(crate) enum Head {
    Events {
        uri: Uri,
        headers: HeaderMap,
    },
    /// `POST /publish` over HTTP/1.1 with a `Content-Length` body (no chunked body, no
    /// `Expect`: hyper answers those).
    Publish(PublishHead),
    Other,
    Partial,
}

/// A `POST /publish` whose head is in the buffer.
pub(crate) struct PublishHead {
    pub uri: Uri,
    pub headers: HeaderMap,
    /// Bytes of the head; the body follows.
    pub head_len: usize,
    pub length: usize,
    /// The client asked to close after this request (`Connection: close`).
    pub close: bool,
}

pub(crate) fn parse_head(buf: &[u8]) -> Head {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        // Let hyper give its own answer to what httparse refuses (too many headers, garbage).
        Err(_) => return Head::Other,
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Head::Other;
    };
    let route = path.split('?').next();
    let publish = match (method, route) {
        ("GET", Some("/events")) => false,
        ("POST", Some("/publish")) if req.version == Some(1) => true,
        _ => return Head::Other,
    };
    let Ok(uri) = path.parse::<Uri>() else {
        return Head::Other;
    };
    // Two differing Content-Length headers (request smuggling): hyper answers 400.
    let mut lengths = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value);
    let length = lengths.next();
    if let Some(first) = length {
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
    if !publish {
        return Head::Events { uri, headers };
    }
    // Only the plain case is native: a body of a stated length, read at once.
    if headers.contains_key(header::TRANSFER_ENCODING) || headers.contains_key(header::EXPECT) {
        return Head::Other;
    }
    let Some(length) = length
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return Head::Other;
    };
    let close = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"));
    Head::Publish(PublishHead {
        uri,
        headers,
        head_len,
        length,
        close,
    })
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
            b"POST /publish HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
            b"POST /publish HTTP/1.1\r\n\r\n",
            b"POST /publish HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
            b"POST /publish HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            b"POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            b"POST /publish HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            b"POST /publishx HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            b"\x16\x03\x01 garbage\r\n\r\n",
        ] {
            assert!(matches!(parse_head(other), Head::Other), "{other:?}");
        }
        assert!(matches!(
            parse_head(b"GET /events HTTP/1.1\r\nHo"),
            Head::Partial
        ));
    }

    #[test]
    fn a_plain_post_publish_is_native_with_its_body_length() {
        let head = b"POST /publish?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: keep-alive, Close\r\n\r\n";
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"{\"topic\":\"a\"}");
        match parse_head(&buf) {
            Head::Publish(PublishHead {
                uri,
                head_len,
                length,
                close,
                ..
            }) => {
                assert_eq!(uri.query(), Some("x=1"));
                assert_eq!(head_len, head.len());
                assert_eq!(length, 12);
                assert!(close);
            }
            _ => panic!("POST /publish with a length must be native"),
        }
        match parse_head(b"POST /publish HTTP/1.1\r\nContent-Length: 0\r\n\r\n") {
            Head::Publish(head) => assert!(head.length == 0 && !head.close),
            _ => panic!("an empty body is still native (and refused as JSON later)"),
        }
    }
}
