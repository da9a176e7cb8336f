//! The native paths: `GET /events` and `POST /publish` served straight on the socket.
//!
//! [`crate::serve`] reads each new connection's request heads itself (httparse). A
//! `POST /publish` with a plain body is answered by `publish`, and the connection stays for
//! the next request. A `GET /events` is answered here: the response head and the stream's prelude go out in one
//! write, and from then on the connection is a small task, a `Subscription` and a socket. No
//! HTTP buffers stay allocated while the stream idles, and every wake-up writes all pending
//! frames with one write (`send` for one frame, `writev` for several). The body is delimited
//! by the connection's end (`Connection: close`), so frames go to the socket exactly as
//! encoded, with no chunk framing. Any other request is handed to hyper with the bytes already
//! read, and hyper serves the rest of that connection.

mod head;
mod publish;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use head::parse_head_for_fuzzing;
pub(crate) use head::Rewind;
use head::{parse_head, Head, PublishHead};

use crate::admission::{add_cors, admit_stream, allowed_origin, CorsGrant};
use crate::error::ApiError;
use crate::http_conns::HttpConn;
use crate::hub::Hub;
use crate::stream::RESPONSE_HEADERS;
use crate::subscription::{Out, Subscription};

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

/// Reads request heads and serves what is native: a `GET /events` (the connection then
/// leaves the non-stream set `slot` belongs to and becomes the stream), and `POST /publish`,
/// request after request while the client keeps the connection. The first request of any
/// other kind goes to hyper with the rest of the connection.
pub(crate) async fn first_request(
    hub: &Hub,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: HttpConn,
) -> FirstRequest {
    let mut buf = BytesMut::with_capacity(1024);
    // --header-timeout bounds the first head (from the connection's start), the wait for a
    // next request on a keep-alive connection, and that request's head from its first byte.
    let timeout = hub.config().header_timeout;
    let mut deadline = tokio::time::Instant::now() + timeout;
    let mut idle = false;
    loop {
        match parse_head(&buf) {
            Head::Events { uri, headers } => {
                drop(buf);
                drop(slot);
                serve_stream(hub, stream, peer, &uri, &headers).await;
                return FirstRequest::Done;
            }
            Head::Publish(req) => {
                let busy = slot.busy_handle().request();
                // Boxed: the publish path's state would otherwise sit inline in every
                // connection's task, streams included (`bench idle`: 36 bytes per stream).
                let after = Box::pin(publish::serve(hub, &mut stream, &mut buf, req)).await;
                drop(busy);
                if let publish::After::Close = after {
                    let _ = stream.shutdown().await;
                    return FirstRequest::Done;
                }
                idle = true;
                deadline = tokio::time::Instant::now() + timeout;
                continue;
            }
            Head::Other => return FirstRequest::Http(Rewind::new(buf.freeze(), stream), slot),
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
        let waiting = idle && buf.is_empty();
        use tokio::io::AsyncReadExt as _;
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read.ok(),
            // Closed to make room for a newcomer (see `http_conns`).
            () = slot.evicted() => return FirstRequest::Done,
            // An idle keep-alive connection ends with the hub.
            () = hub.draining_started(), if waiting => return FirstRequest::Done,
        };
        match read {
            Some(Ok(n)) if n > 0 => {}
            // Closed, failed, or too slow to send its head (slow loris): drop it.
            _ => return FirstRequest::Done,
        }
        if std::mem::take(&mut idle) {
            deadline = tokio::time::Instant::now() + timeout;
        }
    }
}

/// Renders a response head: the status line, `headers`, and `Connection: close` (the body of
/// every native answer ends with the connection).
fn render_head(status: StatusCode, headers: &HeaderMap) -> String {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in headers {
        if let Ok(v) = value.to_str() {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    head.push_str("connection: close\r\n\r\n");
    head
}

async fn write_error(
    stream: &mut TcpStream,
    err: &ApiError,
    cors: Option<&CorsGrant>,
) -> std::io::Result<()> {
    let body = err.body();
    let mut headers = err.headers();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(grant) = cors {
        add_cors(&mut headers, grant);
    }
    let mut out = render_head(err.status, &headers);
    out.push_str(&body);
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

async fn serve_stream(
    hub: &Hub,
    mut stream: TcpStream,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
) {
    let cors = allowed_origin(hub, headers);
    let mut sub = match admit_stream(hub, headers, uri, Some(peer.ip()), "http/1.1").await {
        Ok(sub) => sub,
        Err(err) => {
            let _ = write_error(&mut stream, &err, cors.as_ref()).await;
            return;
        }
    };
    let mut response = HeaderMap::with_capacity(RESPONSE_HEADERS.len() + 4);
    for (name, value) in RESPONSE_HEADERS {
        response.insert(name, HeaderValue::from_static(value));
    }
    if let Some(grant) = &cors {
        add_cors(&mut response, grant);
    }
    sub.prefix(render_head(StatusCode::OK, &response).as_bytes());
    let Some(writers) = hub.inner.writers() else {
        return run_stream(sub, stream).await;
    };
    // Streams live on the writer runtime, so a burst of writes never queues ahead of the
    // publish requests that feed them (publishers stay fast, and writes batch up).
    if let Ok(std) = stream.into_std() {
        writers.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(std) {
                run_stream(sub, stream).await;
            }
        });
    }
}

/// The hot path of one subscriber: wait for something to write, write it all at once, repeat.
/// Heartbeats and token expiry come from the hub's housekeeping task through the queue, so an
/// idle stream here is one parked task with no timer of its own. The subscriber is
/// unregistered when `sub` drops, however this ends.
async fn run_stream(mut sub: Subscription, mut stream: TcpStream) {
    let mut frames: VecDeque<Bytes> = VecDeque::new();
    loop {
        let next = std::future::poll_fn(|cx| poll_next(&mut sub, &stream, cx, &mut frames)).await;
        let written = match next {
            Next::Write(Out::Chunk(chunk)) => stream.write_all(&chunk).await,
            Next::Write(Out::Frames(_)) => write_all_vectored(&stream, &mut frames).await,
            Next::End => break,
        };
        if written.is_err() {
            break;
        }
    }
    let _ = stream.shutdown().await;
}

enum Next {
    Write(Out),
    End,
}

/// Ready when there is something to write, when the stream is over, or when the client went
/// away (it sends nothing after its request, so readable means EOF, an error, or bytes to
/// ignore).
fn poll_next(
    sub: &mut Subscription,
    stream: &TcpStream,
    cx: &mut Context<'_>,
    frames: &mut VecDeque<Bytes>,
) -> Poll<Next> {
    if let Poll::Ready(out) = sub.poll_next(cx, frames) {
        return Poll::Ready(out.map_or(Next::End, Next::Write));
    }
    while stream.poll_read_ready(cx).is_ready() {
        let mut scratch = [0u8; 64];
        match stream.try_read(&mut scratch) {
            Ok(0) => return Poll::Ready(Next::End),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return Poll::Ready(Next::End),
        }
    }
    Poll::Pending
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
}
