//! A scripted HTTP server on loopback, for tests of SSE clients (feature `testing`).
//!
//! A test accepts each connection itself, reads what the client sent, and writes the answer
//! byte for byte: line endings, chunk boundaries, a connection cut in the middle of an event,
//! a redirect, a status, silence. Nothing between the test and the client normalizes
//! anything. Responses are close-delimited (no `Content-Length`, no chunked encoding), so the
//! bytes written are exactly the bytes of the stream.
//!
//! ```no_run
//! # async fn t() -> std::io::Result<()> {
//! use tidings_client::testing::ScriptServer;
//! let server = ScriptServer::bind().await?;
//! // … point a client at server.url("/events") …
//! let mut conn = server.accept().await?;
//! assert_eq!(conn.request().header("accept"), Some("text/event-stream"));
//! conn.start_stream().await?;
//! conn.send(b"data: hello\r\n\r\n").await?;
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long [`ScriptServer::accept`] waits for a client before failing the test.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head accepted, so a broken client cannot grow the buffer forever.
const MAX_HEAD: usize = 64 * 1024;

/// A listener on `127.0.0.1` at a free port.
#[derive(Debug)]
pub struct ScriptServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl ScriptServer {
    /// Binds to a free port on `127.0.0.1`.
    pub async fn bind() -> io::Result<ScriptServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok(ScriptServer { listener, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits (at most [`ACCEPT_TIMEOUT`]) for the next connection and reads its request.
    pub async fn accept(&self) -> io::Result<ScriptConn> {
        self.accept_within(ACCEPT_TIMEOUT).await
    }

    /// Waits at most `limit` for the next connection and reads its request; a
    /// [`io::ErrorKind::TimedOut`] error if none comes.
    pub async fn accept_within(&self, limit: Duration) -> io::Result<ScriptConn> {
        let accepted = tokio::time::timeout(limit, async {
            let (mut stream, _) = self.listener.accept().await?;
            stream.set_nodelay(true)?;
            let request = read_request(&mut stream).await?;
            Ok::<_, io::Error>(ScriptConn { stream, request })
        });
        accepted
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no connection came"))?
    }
}

/// A request as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method, as sent.
    pub method: String,
    /// The request target (path and query), as sent.
    pub target: String,
    /// Every header line, names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body (read by `Content-Length`).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// Every value of a header, by case-insensitive name.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One accepted connection whose request has been read.
#[derive(Debug)]
pub struct ScriptConn {
    stream: TcpStream,
    request: RecordedRequest,
}

impl ScriptConn {
    /// What the client sent.
    pub fn request(&self) -> &RecordedRequest {
        &self.request
    }

    /// Writes the head of a `200 OK` event stream.
    pub async fn start_stream(&mut self) -> io::Result<()> {
        self.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Connection: close\r\n\r\n",
        )
        .await
    }

    /// Writes a complete response with a `Content-Length` body and closes the connection.
    pub async fn respond(
        mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {status} Scripted\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        self.send(head.as_bytes()).await?;
        self.send(body).await?;
        self.close().await
    }

    /// Writes these exact bytes and flushes them.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes `bytes` in pieces of `size` bytes with a pause after each, so that the client
    /// most likely reads each piece on its own.
    pub async fn send_in_pieces(
        &mut self,
        bytes: &[u8],
        size: usize,
        pause: Duration,
    ) -> io::Result<()> {
        for piece in bytes.chunks(size.max(1)) {
            self.send(piece).await?;
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Waits until the client closes the connection (or `limit` passes), discarding anything
    /// it sends. True if the client closed it.
    pub async fn client_closed_within(&mut self, limit: Duration) -> bool {
        let mut sink = [0u8; 1024];
        let closed = async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(limit, closed).await.is_ok()
    }

    /// Ends the response by closing the connection cleanly.
    pub async fn close(mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

async fn read_request(stream: &mut TcpStream) -> io::Result<RecordedRequest> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("request head too large"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the request head ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(invalid("connection closed inside the request body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(RecordedRequest {
        method,
        target,
        headers,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
