//! The native stream path: `GET /events` served straight on the socket.
//!
//! [`crate::serve`] reads each new connection's first request head itself (httparse). A
//! `GET /events` is answered here: the response head and the stream's prelude go out in one
//! write, and from then on the connection is a small task, an [`Arc<Conn>`] and a socket. No
//! HTTP buffers stay allocated while the stream idles, and every wake-up writes all pending
//! frames with one write (`send` for one frame, `writev` for several). The body is delimited
//! by the connection's end (`Connection: close`), so frames go to the socket exactly as
//! encoded, with no chunk framing. Every other request (and every later request on a
//! keep-alive connection) is handed to hyper with the bytes already read.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::conn::{next_replay_chunk, CloseReason, Conn, Drained};
use crate::error::ApiError;
use crate::http::{add_cors, allowed_origin, check_dev_host, open_subscription, CorsGrant};
use crate::http_conns::HttpConn;
use crate::hub::{Hub, Inner};

/// Largest request head read natively; a longer one gets 431.
const MAX_HEAD: usize = 16 * 1024;
/// Largest number of frames written by one `writev`.
const MAX_IOV: usize = 64;

/// What the first request on a connection turned out to be.
pub(crate) enum FirstRequest {
    /// Served natively (a stream, or an error answer); the connection is done.
    Done,
    /// Anything else: serve it (and the rest of the connection) with hyper, still counted
    /// as a non-stream connection.
    Http(Rewind, HttpConn),
}

/// Reads the first request head and serves it if it is `GET /events` (the connection then
/// leaves the non-stream set `slot` belongs to).
pub(crate) async fn first_request(
    hub: &Hub,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: HttpConn,
) -> FirstRequest {
    let mut buf = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + hub.config().header_timeout;
    loop {
        match parse_head(&buf) {
            Head::Events { uri, headers } => {
                drop(buf);
                drop(slot);
                serve_stream(hub, stream, peer, &uri, &headers).await;
                return FirstRequest::Done;
            }
            Head::Other => {
                return FirstRequest::Http(
                    Rewind {
                        prefix: buf.freeze(),
                        inner: stream,
                    },
                    slot,
                )
            }
            Head::Partial if buf.len() >= MAX_HEAD => {
                let err = ApiError::new(
                    axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "invalid_request",
                    format!("request head over {MAX_HEAD} bytes"),
                );
                let _ = write_error(&mut stream, &err, None).await;
                return FirstRequest::Done;
            }
            Head::Partial => {}
        }
        use tokio::io::AsyncReadExt as _;
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
            // Closed to make room for a newcomer (see `http_conns`).
            () = slot.evicted() => return FirstRequest::Done,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed, or too slow to send its head (slow loris): drop it.
            _ => return FirstRequest::Done,
        }
    }
}

/// The head parser, for the fuzz target (whether it took the native path).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_head_for_fuzzing(buf: &[u8]) -> bool {
    matches!(parse_head(buf), Head::Events { .. })
}

enum Head {
    Events { uri: Uri, headers: HeaderMap },
    Other,
    Partial,
}

fn parse_head(buf: &[u8]) -> Head {
    let mut raw = [httparse::EMPTY_HEADER; 64];
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

async fn write_error(
    stream: &mut TcpStream,
    err: &ApiError,
    origin: Option<&CorsGrant>,
) -> std::io::Result<()> {
    let body =
        serde_json::json!({ "error": { "code": err.code, "message": err.message } }).to_string();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        err.status.as_u16(),
        err.status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(secs) = err.retry_after {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    push_cors(&mut head, origin);
    head.push_str("\r\n");
    head.push_str(&body);
    stream.write_all(head.as_bytes()).await?;
    stream.shutdown().await
}

fn push_cors(head: &mut String, origin: Option<&CorsGrant>) {
    let mut h = HeaderMap::new();
    if let Some(origin) = origin {
        add_cors(&mut h, origin);
    }
    for (name, value) in &h {
        if let Ok(v) = value.to_str() {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    }
}

async fn serve_stream(
    hub: &Hub,
    mut stream: TcpStream,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
) {
    let origin = allowed_origin(hub, headers);
    let admitted = check_dev_host(hub, headers)
        .and_then(|()| open_subscription(hub, headers, uri, Some(peer.ip())));
    let subscribed = match admitted {
        Ok(s) => s,
        Err(err) => {
            let _ = write_error(&mut stream, &err, origin.as_ref()).await;
            return;
        }
    };
    let conn = subscribed.conn;
    let guard = Unregister {
        hub: Arc::clone(&hub.inner),
        conn: Arc::clone(&conn),
    };
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\nconnection: close\r\n",
    );
    push_cors(&mut head, origin.as_ref());
    head.push_str("\r\n");
    let mut first = BytesMut::with_capacity(head.len() + subscribed.prelude.len());
    first.extend_from_slice(head.as_bytes());
    first.extend_from_slice(&subscribed.prelude);
    let first = first.freeze();
    let replay = subscribed.replay;
    let Some(writers) = hub.inner.writers() else {
        return run_stream(guard, stream, first, replay).await;
    };
    // Streams live on the writer runtime, so a burst of writes never queues ahead of the
    // publish requests that feed them (publishers stay fast, and writes batch up).
    match stream.into_std() {
        Ok(std) => {
            writers.spawn(async move {
                if let Ok(stream) = TcpStream::from_std(std) {
                    run_stream(guard, stream, first, replay).await;
                }
            });
        }
        Err(_) => drop(guard),
    }
}

async fn run_stream(
    guard: Unregister,
    mut stream: TcpStream,
    first: Bytes,
    replay: Option<(crate::event::EventId, crate::event::EventId)>,
) {
    let _ = stream_loop(&guard.hub, &guard.conn, &mut stream, first, replay).await;
    let _ = stream.shutdown().await;
    drop(guard);
}

/// Unregisters the subscriber however its task ends.
struct Unregister {
    hub: Arc<Inner>,
    conn: Arc<Conn>,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.hub.unregister(&self.conn);
    }
}

/// The hot path of one subscriber: wait for frames, write them all at once, repeat.
async fn stream_loop(
    hub: &Arc<Inner>,
    conn: &Arc<Conn>,
    stream: &mut TcpStream,
    first: Bytes,
    mut replay: Option<(crate::event::EventId, crate::event::EventId)>,
) -> std::io::Result<()> {
    write_counted(hub, stream, first).await?;
    while replay.is_some() {
        match read_replay_page(hub, conn, &mut replay) {
            Some(chunk) => write_counted(hub, stream, chunk).await?,
            None => break,
        }
    }
    // Heartbeats and token expiry come from the hub's housekeeping task through the queue,
    // so an idle stream here is one parked task: no timer of its own.
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    loop {
        let step = std::future::poll_fn(|cx| poll_step(conn, stream, cx, &mut pending)).await;
        match step {
            Step::Write(bytes) => {
                hub.metrics.bytes_sent.add(bytes as u64);
                write_all_vectored(stream, &mut pending).await?;
            }
            Step::Closed(CloseReason::Shutdown { retry_ms }) => {
                return write_counted(hub, stream, tidings_wire::encode_retry(retry_ms)).await;
            }
            Step::Closed(_) | Step::PeerGone => return Ok(()),
        }
    }
}

/// A replay page may come from disk: on a multi-threaded runtime the read tells the runtime it
/// blocks, so other streams move to another thread meanwhile.
fn read_replay_page(
    hub: &Inner,
    conn: &Conn,
    replay: &mut Option<(crate::event::EventId, crate::event::EventId)>,
) -> Option<Bytes> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        tokio::task::block_in_place(|| next_replay_chunk(hub, conn, replay))
    } else {
        next_replay_chunk(hub, conn, replay)
    }
}

enum Step {
    Write(usize),
    Closed(CloseReason),
    PeerGone,
}

/// Ready when frames are queued, the stream was closed, or the client went away (it sends
/// nothing after its request, so readable means EOF, an error, or bytes to ignore).
fn poll_step(
    conn: &Conn,
    stream: &TcpStream,
    cx: &mut Context<'_>,
    pending: &mut VecDeque<Bytes>,
) -> Poll<Step> {
    match conn.poll_drain(cx, pending) {
        Poll::Ready(Drained::Frames(bytes)) => return Poll::Ready(Step::Write(bytes)),
        Poll::Ready(Drained::Closed(reason)) => return Poll::Ready(Step::Closed(reason)),
        Poll::Pending => {}
    }
    while stream.poll_read_ready(cx).is_ready() {
        let mut scratch = [0u8; 64];
        match stream.try_read(&mut scratch) {
            Ok(0) => return Poll::Ready(Step::PeerGone),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return Poll::Ready(Step::PeerGone),
        }
    }
    Poll::Pending
}

async fn write_counted(hub: &Inner, stream: &mut TcpStream, chunk: Bytes) -> std::io::Result<()> {
    hub.metrics.bytes_sent.add(chunk.len() as u64);
    stream.write_all(&chunk).await
}

/// Writes every frame in `frames` with as few `writev` calls as the socket allows.
async fn write_all_vectored(
    stream: &TcpStream,
    frames: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !frames.is_empty() {
        match try_writev(stream, frames) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => consume(frames, written),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One non-blocking `writev` of up to [`MAX_IOV`] frames. Kept out of the async function so the
/// slice array never lives in a parked stream's task.
///
/// A single frame (the usual case at low rates: one event per wake-up) goes out with `send`
/// instead: it skips the VFS layer `writev` passes through (measured on loopback here: 4-10%
/// less kernel time per write).
fn try_writev(stream: &TcpStream, frames: &VecDeque<Bytes>) -> std::io::Result<usize> {
    if let (1, Some(only)) = (frames.len(), frames.front()) {
        return stream.try_write(only);
    }
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    let mut n = 0;
    for f in frames.iter().take(MAX_IOV) {
        iov[n] = IoSlice::new(f);
        n += 1;
    }
    stream.try_write_vectored(&iov[..n])
}

/// Drops `written` bytes from the front of the queue.
fn consume(frames: &mut VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let Some(front) = frames.front_mut() else {
            break;
        };
        if front.len() <= written {
            written -= front.len();
            frames.pop_front();
        } else {
            front.advance(written);
            written = 0;
        }
    }
}

/// A socket whose first bytes were already read: they are replayed to hyper first.
pub(crate) struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
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

    fn frames(parts: &[&'static str]) -> VecDeque<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect()
    }

    #[tokio::test]
    async fn one_frame_or_many_reach_the_socket_in_order() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (client, accepted) = tokio::join!(
            TcpStream::connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let (mut client, server) = (client.unwrap(), accepted.unwrap().0);
        // One frame goes out with `send`, several with one `writev`.
        write_all_vectored(&server, &mut frames(&["data: 1\n\n"]))
            .await
            .unwrap();
        write_all_vectored(
            &server,
            &mut frames(&["data: 2\n\n", "data: 3\n\n", ": c\n\n"]),
        )
        .await
        .unwrap();
        drop(server);
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "data: 1\n\ndata: 2\n\ndata: 3\n\n: c\n\n");
    }

    #[test]
    fn a_partial_write_resumes_mid_frame() {
        let mut q = frames(&["abc", "defg", "h"]);
        consume(&mut q, 5);
        assert_eq!(q, frames(&["fg", "h"]));
        consume(&mut q, 3);
        assert!(q.is_empty());
    }

    #[test]
    fn a_write_ending_on_a_frame_boundary_drops_exactly_those_frames() {
        let mut q = frames(&["ab", "cd", "ef"]);
        consume(&mut q, 4);
        assert_eq!(q, frames(&["ef"]));
    }

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
