//! A raw HTTP/1.1 client: the tests write the request bytes themselves and read the reply
//! head with `httparse`, so nothing between the test and the hub normalizes, retries or hides
//! what was sent.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout_at, Instant};

use super::WAIT;

/// One request to send. Built with [`Req::get`], [`Req::post`] or [`Req::new`].
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The loopback address to connect from, so a test can be "many IPs".
    pub from: Option<Ipv4Addr>,
    /// A `SO_RCVBUF` for the client socket, to make a subscriber that reads slowly for real.
    pub recv_buffer: Option<u32>,
}

impl Req {
    /// A request with any method.
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            from: None,
            recv_buffer: None,
        }
    }

    /// A `GET`.
    pub fn get(target: &str) -> Req {
        Req::new("GET", target)
    }

    /// A `POST`.
    pub fn post(target: &str) -> Req {
        Req::new("POST", target)
    }

    /// Adds a header line (sent as given, in order).
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Req {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Adds `Authorization: Bearer <token>` when there is a token.
    pub fn bearer_opt(self, token: Option<&str>) -> Req {
        match token {
            Some(token) => self.bearer(token),
            None => self,
        }
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    pub fn json(self, value: &Value) -> Req {
        self.header("Content-Type", "application/json")
            .body(serde_json::to_vec(value).expect("a Value serializes"))
    }

    /// Sets the body bytes (no content type).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }

    /// Connects from this loopback address.
    pub fn source_ip(mut self, ip: Ipv4Addr) -> Req {
        self.from = Some(ip);
        self
    }

    /// Sets the client socket's receive buffer.
    pub fn recv_buffer(mut self, bytes: u32) -> Req {
        self.recv_buffer = Some(bytes);
        self
    }

    /// The bytes on the wire. A body, or any `POST`/`PUT`, gets a `Content-Length`; every
    /// request gets `Connection: close` unless it sets `Connection` itself.
    pub fn to_bytes(&self, host: SocketAddr) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\n",
            self.method, self.target
        );
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let wants_length = !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT");
        if wants_length && !has("Content-Length") && !has("Transfer-Encoding") {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if !has("Connection") {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A complete reply.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; fails the test with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {} {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts a 2xx-free success: exactly this status, with the body in the message if not.
    pub fn expect_status(&self, status: u16) -> &Response {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Asserts `200` and returns the JSON body.
    pub fn ok_json(&self) -> Value {
        self.expect_status(200);
        self.json()
    }

    /// Asserts the status and the documented error shape
    /// `{"error": {"code": "<code>", "message": "<non-empty>"}}` with a JSON content type.
    pub fn expect_error(&self, status: u16, code: &str) -> &Response {
        self.expect_status(status);
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error reply with content type {content_type:?}: {}",
            self.text()
        );
        let body = self.json();
        let error = body
            .get("error")
            .unwrap_or_else(|| panic!("no \"error\" object in {body}"));
        assert_eq!(
            error.get("code").and_then(Value::as_str),
            Some(code),
            "error code in {body}"
        );
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(
            !message.trim().is_empty(),
            "error without a message: {body}"
        );
        self
    }

    /// `Retry-After` as whole seconds; fails the test if it is missing or not a number.
    pub fn retry_after(&self) -> u64 {
        let value = self
            .header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After on a {} reply", self.status));
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After {value:?} is not seconds"))
    }
}

/// The first header with this name (case-insensitive).
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Opens a TCP connection to `addr`, from a chosen loopback source address if given.
pub async fn connect(addr: SocketAddr, req: &Req) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = req.recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let Some(ip) = req.from {
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    }
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// The parsed head of a reply, and the body bytes already read past it.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub rest: Vec<u8>,
}

/// Reads until a full response head has arrived. `Err` carries a description (closed early,
/// timed out, not HTTP).
pub async fn read_head(io: &mut TcpStream, deadline: Instant) -> Result<Head, String> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let mut storage = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut storage);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let status = parsed.code.unwrap_or(0);
                return Ok(Head {
                    status,
                    headers,
                    rest: buf[len..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("not an HTTP response ({e}): {:?}", lossy(&buf))),
        }
        let mut chunk = [0u8; 8192];
        match timeout_at(deadline, io.read(&mut chunk)).await {
            Err(_) => {
                return Err(format!(
                    "timed out waiting for a response head; got {:?}",
                    lossy(&buf)
                ))
            }
            Ok(Err(e)) => {
                return Err(format!(
                    "read error before a full head ({e}); got {:?}",
                    lossy(&buf)
                ))
            }
            Ok(Ok(0)) => {
                return Err(format!(
                    "connection closed before a full head; got {:?}",
                    lossy(&buf)
                ))
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]).into_owned()
}

/// How a reply's body is delimited.
#[derive(Debug)]
pub enum Framing {
    Chunked(Dechunker),
    Length(usize),
    UntilClose,
}

impl Framing {
    /// The framing a head announces. Replies that never carry a body get `Length(0)`.
    pub fn of(status: u16, headers: &[(String, String)], method: &str) -> Framing {
        if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            return Framing::Length(0);
        }
        let chunked = find_header(headers, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            Framing::Chunked(Dechunker::default())
        } else if let Some(len) = find_header(headers, "content-length") {
            Framing::Length(len.trim().parse().unwrap_or(0))
        } else {
            Framing::UntilClose
        }
    }

    /// Decodes `input` into `out`. Returns true once the body is complete.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        match self {
            Framing::Chunked(d) => {
                d.feed(input, out)?;
                Ok(d.is_done())
            }
            Framing::Length(left) => {
                let take = input.len().min(*left);
                out.extend_from_slice(&input[..take]);
                *left -= take;
                Ok(*left == 0)
            }
            Framing::UntilClose => {
                out.extend_from_slice(input);
                Ok(false)
            }
        }
    }

    /// True if the body may end only when the connection closes.
    pub fn ends_at_close(&self) -> bool {
        matches!(self, Framing::UntilClose)
    }
}

/// An incremental decoder for `Transfer-Encoding: chunked`. Chunk-size lines are read by
/// httparse (`parse_chunk_size`); this only walks the data, the CRLF after it and the trailer.
#[derive(Debug, Default)]
pub struct Dechunker {
    state: ChunkState,
    /// Bytes received but not yet decoded.
    pending: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// Inside chunk data, with this many bytes left.
    Data(usize),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines after the last chunk.
    Trailer,
    Done,
}

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

impl Dechunker {
    /// True once the terminal chunk and the trailer have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes `input`, appending chunk data to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.pending.extend_from_slice(input);
        let mut at = 0;
        let result = loop {
            let rest = &self.pending[at..];
            match self.state {
                ChunkState::Done => break Ok(()),
                ChunkState::Data(_)
                | ChunkState::Size
                | ChunkState::DataEnd
                | ChunkState::Trailer
                    if rest.is_empty() =>
                {
                    break Ok(())
                }
                ChunkState::Data(left) => {
                    let take = rest.len().min(left);
                    out.extend_from_slice(&rest[..take]);
                    at += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        at += used;
                        self.state = ChunkState::Trailer;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        at += used;
                        self.state = ChunkState::Data(size as usize);
                    }
                    Ok(httparse::Status::Partial) if rest.len() > MAX_LINE => {
                        break Err("chunk size line too long".into())
                    }
                    Ok(httparse::Status::Partial) => break Ok(()),
                    Err(_) => break Err(format!("bad chunk size line {:?}", lossy(rest))),
                },
                ChunkState::DataEnd if rest.len() < 2 => break Ok(()),
                ChunkState::DataEnd if rest.starts_with(b"\r\n") => {
                    at += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::DataEnd => {
                    break Err(format!(
                        "chunk data not followed by CRLF: {:?}",
                        lossy(rest)
                    ))
                }
                ChunkState::Trailer => match rest.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        at += 2;
                        self.state = ChunkState::Done;
                    }
                    Some(line) => at += line + 2,
                    None if rest.len() > MAX_LINE => break Err("trailer line too long".into()),
                    None => break Ok(()),
                },
            }
        };
        self.pending.drain(..at);
        result
    }
}

/// Sends `req` and reads the whole reply. Fails the test on any transport problem.
pub async fn send(addr: SocketAddr, req: &Req) -> Response {
    try_send(addr, req)
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", req.method, req.target))
}

/// Sends `req` and reads the whole reply; `Err` describes a transport problem.
pub async fn try_send(addr: SocketAddr, req: &Req) -> Result<Response, String> {
    let deadline = Instant::now() + WAIT;
    let mut io = connect(addr, req)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    io.write_all(&req.to_bytes(addr))
        .await
        .map_err(|e| format!("write: {e}"))?;
    read_response(&mut io, &req.method, deadline).await
}

/// Reads one complete reply from `io`.
pub async fn read_response(
    io: &mut TcpStream,
    method: &str,
    deadline: Instant,
) -> Result<Response, String> {
    let head = read_head(io, deadline).await?;
    let mut framing = Framing::of(head.status, &head.headers, method);
    let mut body = Vec::new();
    let mut done = framing.decode(&head.rest, &mut body)? || matches!(framing, Framing::Length(0));
    let mut chunk = vec![0u8; 16 * 1024];
    while !done {
        match timeout_at(deadline, io.read(&mut chunk)).await {
            Err(_) => {
                return Err(format!(
                    "timed out reading the body of a {} reply",
                    head.status
                ))
            }
            Ok(Ok(0)) if framing.ends_at_close() => done = true,
            Ok(Ok(0)) => {
                return Err(format!(
                    "connection closed inside the body of a {} reply",
                    head.status
                ))
            }
            Ok(Err(e)) => return Err(format!("read error in the body: {e}")),
            Ok(Ok(n)) => done = framing.decode(&chunk[..n], &mut body)?,
        }
    }
    Ok(Response {
        status: head.status,
        headers: head.headers,
        body,
    })
}

/// Writes raw bytes and reads whatever comes back until the hub closes the connection (or
/// `wait` passes). Returns the bytes and whether the connection was closed by the hub.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut io = connect(addr, &Req::get("/"))
        .await
        .expect("connect to the hub");
    // The hub may close before reading everything; a write error is then part of the answer.
    let _ = io.write_all(bytes).await;
    read_until_close(&mut io, wait).await
}

/// Reads until the peer closes or `wait` passes; returns the bytes and whether it closed.
pub async fn read_until_close(io: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match timeout_at(deadline, io.read(&mut chunk)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The status code of a raw reply, if it starts with an HTTP status line.
pub fn raw_status(bytes: &[u8]) -> Option<u16> {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut storage);
    match parsed.parse(bytes) {
        Ok(_) => parsed.code,
        Err(_) => None,
    }
}
