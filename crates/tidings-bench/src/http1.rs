//! The few pieces of HTTP/1.1 the generator needs, written by hand to stay cheap: URL
//! templates for loopback endpoints, request bytes, response heads (parsed with `httparse`),
//! body framing, and a keep-alive connection for publishers.
//!
//! A general client (hyper) would cost more per request than the hub under test spends per
//! publish; here a request is one buffer and one `write`, and a reply is read into a buffer
//! that is reused.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::chunked::ChunkedDecoder;

/// A piece of a template: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Seq,
    Ts,
}

/// A string with `{topic}`, `{seq}` and `{ts}` placeholders, split once so that rendering
/// is a few appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Splits `text` at its placeholders. Braces that are not a known placeholder are text
    /// (JSON bodies are full of them).
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            let found = [
                ("{topic}", Part::Topic),
                ("{seq}", Part::Seq),
                ("{ts}", Part::Ts),
            ]
            .into_iter()
            .find(|(name, _)| rest.starts_with(name));
            if let Some((name, part)) = found {
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(part);
                rest = &rest[name.len()..];
            } else {
                let mut chars = rest.chars();
                literal.extend(chars.next());
                rest = chars.as_str();
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Template { parts }
    }

    /// Whether the template uses `{seq}` and `{ts}`, as a publish body must.
    pub fn has_markers(&self) -> bool {
        self.parts.contains(&Part::Seq) && self.parts.contains(&Part::Ts)
    }

    /// Appends the rendered template to `out`.
    pub fn render_into(&self, out: &mut Vec<u8>, topic: &str, seq: u64, ts: u64) {
        use std::io::Write as _;
        for part in &self.parts {
            // Writing a number into a Vec cannot fail.
            let _ = match part {
                Part::Text(text) => write!(out, "{text}"),
                Part::Topic => write!(out, "{topic}"),
                Part::Seq => write!(out, "{seq}"),
                Part::Ts => write!(out, "{ts}"),
            };
        }
    }

    /// The rendered template as a string.
    #[cfg(test)]
    pub fn render(&self, topic: &str, seq: u64, ts: u64) -> String {
        let mut out = Vec::new();
        self.render_into(&mut out, topic, seq, ts);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A loopback HTTP endpoint: where to connect, what to send as `Host`, and the request
/// target (path and query) as a template.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub authority: String,
    pub target: Template,
}

impl Endpoint {
    /// Parses `http://HOST[:PORT]/PATH?QUERY`. The host must be a loopback address or
    /// `localhost`: the generator never sends load anywhere else.
    pub fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, target) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host,
                port.parse::<u16>()
                    .with_context(|| format!("{url}: bad port {port:?}"))?,
            ),
            _ => (authority, 80),
        };
        let ip: IpAddr = match host.trim_start_matches('[').trim_end_matches(']') {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            other => other
                .parse()
                .with_context(|| format!("{url}: the host must be an IP address or localhost"))?,
        };
        if !ip.is_loopback() {
            bail!("{url}: the bench only targets loopback addresses (127.0.0.0/8, ::1)");
        }
        Ok(Endpoint {
            addr: SocketAddr::new(ip, port),
            authority: authority.to_owned(),
            target: Template::parse(target),
        })
    }
}

/// Extra header lines, already formatted as `Name: value\r\n`.
pub fn header_lines(headers: &[String]) -> anyhow::Result<String> {
    let mut out = String::new();
    for header in headers {
        let Some((name, value)) = header.split_once(':') else {
            bail!("header {header:?} must look like 'Name: value'");
        };
        if header.contains(['\r', '\n']) {
            bail!("header {header:?} must be one line");
        }
        out.push_str(&format!("{}: {}\r\n", name.trim(), value.trim()));
    }
    Ok(out)
}

/// The request head of a subscription.
pub fn subscribe_request(endpoint: &Endpoint, topic: &str, headers: &str) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    endpoint.target.render_into(&mut out, topic, 0, 0);
    out.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n{headers}\r\n",
            endpoint.authority
        )
        .as_bytes(),
    );
    out
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The server will close the connection after this response.
    pub close: bool,
    /// Length of the head in the buffer it was parsed from.
    pub len: usize,
}

/// Parses a response head at the start of `buf`; `None` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<ResponseHead>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf).context("malformed response head")? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => {
            if buf.len() > 64 * 1024 {
                bail!("response head over 64 KiB");
            }
            return Ok(None);
        }
    };
    let status = response.code.unwrap_or(0);
    let mut framing = if status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value).to_ascii_lowercase();
        if header.name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            framing = Framing::Chunked;
        } else if header.name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked
        {
            framing = Framing::Length(value.trim().parse().context("bad Content-Length")?);
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = value.contains("close");
        }
    }
    Ok(Some(ResponseHead {
        status,
        framing,
        close,
        len,
    }))
}

/// Connects to `addr` from `source` (bound before connecting, so the kernel picks the
/// source port in that address's range), with `TCP_NODELAY`.
pub async fn connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let (Some(source), SocketAddr::V4(_)) = (source, addr) {
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A reply to a publish: its status and the start of its body (for error messages).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The longest body prefix a [`Reply`] keeps.
const REPLY_KEEP: usize = 512;

/// One keep-alive connection for sequential requests.
#[derive(Debug)]
pub struct Connection {
    stream: Option<TcpStream>,
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    buf: Vec<u8>,
}

impl Connection {
    /// A connection that connects on first use (and again after the server closed it).
    pub fn new(addr: SocketAddr, source: Option<Ipv4Addr>) -> Connection {
        Connection {
            stream: None,
            addr,
            source,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one whole request and reads its whole reply.
    pub async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Reply> {
        let result = self.exchange_inner(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange_inner(&mut self, request: &[u8]) -> anyhow::Result<Reply> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(
                connect(self.addr, self.source)
                    .await
                    .with_context(|| format!("connecting to {}", self.addr))?,
            ),
        };
        stream
            .write_all(request)
            .await
            .context("sending a request")?;
        self.buf.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the server closed the connection before replying");
            }
        };
        let mut body = Vec::new();
        let mut keep = |run: &[u8]| {
            let room = REPLY_KEEP.saturating_sub(body.len());
            body.extend_from_slice(&run[..run.len().min(room)]);
        };
        let mut close = head.close;
        match head.framing {
            Framing::Length(len) => {
                let want = head.len + usize::try_from(len).context("body too large")?;
                while self.buf.len() < want {
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        bail!("the server closed the connection inside a reply body");
                    }
                }
                keep(&self.buf[head.len..want]);
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::default();
                let mut at = head.len;
                loop {
                    decoder.feed(&self.buf[at..], &mut keep)?;
                    at = self.buf.len();
                    if decoder.is_done() {
                        break;
                    }
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        bail!("the server closed the connection inside a chunked reply");
                    }
                }
            }
            Framing::UntilClose => {
                let mut at = head.len;
                loop {
                    keep(&self.buf[at..]);
                    at = self.buf.len();
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        break;
                    }
                }
                close = true;
            }
        }
        if close {
            self.stream = None;
        }
        Ok(Reply {
            status: head.status,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_placeholders_and_keep_json_braces() {
        let body = Template::parse(r#"{"topic":"{topic}","data":{"seq":{seq},"ts":{ts}}}"#);
        assert!(body.has_markers());
        assert_eq!(
            body.render("t/1", 7, 99),
            r#"{"topic":"t/1","data":{"seq":7,"ts":99}}"#
        );
        assert!(!Template::parse("{seq} only").has_markers());
    }

    #[test]
    fn endpoints_are_loopback_only() {
        let endpoint =
            Endpoint::parse("http://127.0.0.1:8080/events?topic={topic}").expect("valid");
        assert_eq!(endpoint.addr, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(endpoint.authority, "127.0.0.1:8080");
        assert_eq!(endpoint.target.render("x", 0, 0), "/events?topic=x");
        assert_eq!(
            Endpoint::parse("http://localhost").expect("valid").addr,
            "127.0.0.1:80".parse().expect("addr")
        );
        assert!(Endpoint::parse("http://[::1]:9/").is_ok());
        assert!(Endpoint::parse("http://10.0.0.1:80/").is_err());
        assert!(Endpoint::parse("https://127.0.0.1/").is_err());
        assert!(Endpoint::parse("http://example.com/").is_err());
    }

    #[test]
    fn heads_tell_how_the_body_ends() {
        let head = |text: &str| {
            parse_head(text.as_bytes())
                .expect("valid")
                .expect("complete")
        };
        let chunked = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxx");
        assert_eq!(
            (chunked.status, chunked.framing, chunked.len),
            (200, Framing::Chunked, 47)
        );
        let sized = head("HTTP/1.1 201 Created\r\nContent-Length: 12\r\nConnection: close\r\n\r\n");
        assert_eq!((sized.framing, sized.close), (Framing::Length(12), true));
        assert_eq!(head("HTTP/1.1 200 OK\r\n\r\n").framing, Framing::UntilClose);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-")
            .expect("partial")
            .is_none());
        assert!(parse_head(b"NOT HTTP\r\n\r\n").is_err());
    }

    #[test]
    fn header_lines_need_a_colon() {
        assert_eq!(
            header_lines(&["Authorization: Bearer x".into()]).expect("valid"),
            "Authorization: Bearer x\r\n"
        );
        assert!(header_lines(&["nocolon".into()]).is_err());
    }
}
